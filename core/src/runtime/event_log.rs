//! Keeping a session's events in its store (opt-in, [`crate::RuntimeBuilder::store_events`]): every envelope is
//! serialised and appended under the session's lease by one background task, in batches, so a daemon can replay
//! them to a client that reconnects later, even after a restart.

use std::sync::Arc;
use std::sync::Mutex;

use codepilot_protocol::EventEnvelope;
use codepilot_store::StoredEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::state::LeaseKeeper;

/// Most events appended in one call.
const BATCH: usize = 256;

/// The writer: a channel into the task that appends.
pub(crate) struct EventWriter {
    tx: Mutex<Option<mpsc::UnboundedSender<(String, StoredEvent)>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl EventWriter {
    pub(crate) fn start(keeper: Arc<LeaseKeeper>) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, StoredEvent)>();
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                // Events of a session the runtime left (a reset raced the writer) are not the lease's to store.
                let session = keeper.current().map(|l| l.session().to_string());
                let events: Vec<StoredEvent> = batch
                    .drain(..)
                    .filter(|(id, _)| session.as_deref() == Some(id.as_str()))
                    .map(|(_, e)| e)
                    .collect();
                if events.is_empty() {
                    continue;
                }
                if let Err(e) = keeper.append_events(&events).await {
                    tracing::warn!("could not store {} session events: {e}", events.len());
                }
            }
        });
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        })
    }

    /// Queues `envelope` for the store.
    pub(crate) fn push(&self, envelope: &EventEnvelope) {
        let body = match serde_json::to_string(envelope) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("could not serialise event {}: {e}", envelope.seq);
                return;
            }
        };
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            let _ = tx.send((
                envelope.session_id.clone(),
                StoredEvent {
                    seq: envelope.seq,
                    body,
                },
            ));
        }
    }

    /// Stores what is queued and stops.
    pub(crate) async fn flush(&self) {
        drop(self.tx.lock().ok().and_then(|mut tx| tx.take()));
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
