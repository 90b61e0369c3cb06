//! Keeping the session's lease: renewing it while the runtime lives, noticing when another process took it over,
//! and giving it back.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;

use codepilot_store::Lease;
use codepilot_store::SessionStore;
use codepilot_store::StoreError;
use tokio::task::JoinHandle;

/// The lease on the current session and the heartbeat that renews it.
///
/// The heartbeat renews every [`codepilot_store::heartbeat_interval`] of the store's own lease TTL, so a store
/// with a short TTL is renewed often enough that no other process can take a live session over.
pub(crate) struct LeaseKeeper {
    store: Arc<dyn SessionStore>,
    lease: Mutex<Option<Arc<Lease>>>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// Why the lease was lost, once another process took the session over.
    lost: Mutex<Option<String>>,
}

impl LeaseKeeper {
    pub(crate) fn new(store: Arc<dyn SessionStore>, lease: Lease) -> Arc<Self> {
        Arc::new(Self {
            store,
            lease: Mutex::new(Some(Arc::new(lease))),
            heartbeat: Mutex::new(None),
            lost: Mutex::new(None),
        })
    }

    /// Starts renewing. `on_lost` runs once, with the store's message, when another process has taken the
    /// session over; the heartbeat stops then.
    pub(crate) fn start_heartbeat(
        self: &Arc<Self>,
        on_lost: impl Fn(&StoreError) + Send + Sync + 'static,
    ) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = codepilot_store::heartbeat_interval(self.store.lease_ttl());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keeper) = weak.upgrade() else { break };
                let Some(lease) = keeper.current() else { break };
                match keeper.store.renew(&lease).await {
                    Ok(()) => {}
                    Err(e) if e.is_lease_lost() => {
                        keeper.mark_lost(e.to_string());
                        on_lost(&e);
                        break;
                    }
                    Err(e) => tracing::warn!("could not renew the session lease (will retry): {e}"),
                }
            }
        });
        if let Ok(mut slot) = self.heartbeat.lock()
            && let Some(old) = slot.replace(task)
        {
            old.abort();
        }
    }

    /// The lease, unless it was released.
    pub(crate) fn current(&self) -> Option<Arc<Lease>> {
        self.lease.lock().ok().and_then(|l| l.clone())
    }

    /// Stores `events` with the current session, under its lease.
    pub(crate) async fn append_events(
        &self,
        events: &[codepilot_store::StoredEvent],
    ) -> Result<(), StoreError> {
        match self.current() {
            Some(lease) => self.store.append_events(&lease, events).await,
            None => Ok(()),
        }
    }

    /// Why the lease was lost, if it was.
    pub(crate) fn lost_message(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|m| m.clone())
    }

    /// Remembers that another process owns the session now (the first reason wins).
    pub(crate) fn mark_lost(&self, message: String) {
        if let Ok(mut m) = self.lost.lock() {
            m.get_or_insert(message);
        }
    }

    /// Holds `lease` instead of the current one and releases the old one (after a reset to a new session).
    pub(crate) async fn replace(&self, lease: Lease) {
        let old = self
            .lease
            .lock()
            .ok()
            .and_then(|mut l| l.replace(Arc::new(lease)));
        if let Some(old) = old.and_then(|l| Arc::try_unwrap(l).ok())
            && let Err(e) = self.store.release(old).await
        {
            tracing::warn!("releasing the previous session's lease: {e}");
        }
    }

    /// Stops the heartbeat, waits until it is gone, and releases the lease.
    pub(crate) async fn release(&self) -> Result<(), StoreError> {
        let heartbeat = self.heartbeat.lock().ok().and_then(|mut hb| hb.take());
        if let Some(h) = heartbeat {
            h.abort();
            // Wait until it is gone, so it no longer holds a reference to the lease.
            let _ = h.await;
        }
        match self.take() {
            Some(lease) => self.store.release(lease).await,
            None => Ok(()),
        }
    }

    /// Takes the lease out, for release. `None` if it is gone or still shared.
    fn take(&self) -> Option<Lease> {
        let arc = self.lease.lock().ok()?.take()?;
        Arc::try_unwrap(arc).ok()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Ok(mut hb) = self.heartbeat.lock()
            && let Some(h) = hb.take()
        {
            h.abort();
        }
        // Best effort: hand the lease back so the next process need not wait for it to expire. Needs a runtime.
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && let Some(lease) = self.take()
        {
            let store = Arc::clone(&self.store);
            handle.spawn(async move {
                if let Err(e) = store.release(lease).await {
                    tracing::debug!("releasing the session lease on drop failed: {e}");
                }
            });
        }
    }
}
