//! Workspace snapshots for a runtime (SPEC §17): restored before the first step when the work directory lacks
//! the session's workspace, saved at the end of every run (awaited) and when the host asks.
//!
//! Between those, every step that ends starts a save in the background (coalesced: one at a time, one more if
//! steps ended meanwhile), so a process killed mid-turn loses the files of at most the last step or two, as its
//! history loses at most the step in flight. Unchanged workspaces cost one directory scan. A background failure
//! is reported once and pauses background saves until the run's own save at its end. A background save reads
//! files while the next step may be changing them; a file changed mid-read is stored as read, and the save after
//! it (at the latest the run's own) archives the workspace again.

use codepilot_protocol::sync::lock;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot_store::snapshot::Prepared;
use codepilot_store::snapshot::Saved;
use codepilot_store::snapshot::SnapshotStore;

use crate::agent::Context;
use crate::agent::RunHooks;
use crate::error::Error;
use crate::error::Result;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::RuntimeErrorEvent;
use crate::events::WorkspaceSavedEvent;
use crate::handlers::BoxFuture;

/// A runtime's snapshot store and what happened to its work directory at start.
pub(crate) struct Snapshots {
    pub(crate) store: SnapshotStore,
    /// What [`SnapshotStore::prepare`] did when the runtime was built.
    pub(crate) prepared: Prepared,
    /// The snapshot the current session records (what a save compares with and orders after).
    recorded: Mutex<Option<String>>,
    /// One save at a time per runtime (the end of a run and a host's request may meet).
    saving: tokio::sync::Mutex<()>,
    /// The background save started after a step, if any.
    background: Mutex<Background>,
}

#[derive(Default)]
struct Background {
    task: Option<tokio::task::JoinHandle<()>>,
    /// A background task is saving or about to; decided under this lock together with `again`.
    running: bool,
    /// A step ended while the task was saving: save once more.
    again: bool,
    /// A background save failed this run: no more until the run's end.
    failed: bool,
}

impl Snapshots {
    pub(crate) fn new(store: SnapshotStore, prepared: Prepared, recorded: Option<String>) -> Self {
        Self {
            store,
            prepared,
            recorded: Mutex::new(recorded),
            saving: tokio::sync::Mutex::new(()),
            background: Mutex::new(Background::default()),
        }
    }

    /// A new session (after a reset) records no snapshot yet.
    pub(crate) fn forget_recorded(&self) {
        *lock(&self.recorded) = None;
    }

    /// Saves the work directory as the current session's snapshot. Emits [`Event::WorkspaceSaved`] for a new
    /// snapshot.
    pub(crate) async fn save(&self, cx: &Context) -> Result<Saved> {
        let _one = self.saving.lock().await;
        let Some(lease) = cx.lease.current() else {
            return Err(Error::Closed);
        };
        let recorded = lock(&self.recorded).clone();
        let saved = self
            .store
            .save(
                &**cx.session.store(),
                &lease,
                cx.env.workspace.root(),
                recorded.as_deref(),
            )
            .await?;
        if let Saved::Stored {
            info,
            files,
            content_bytes,
            elapsed,
        } = &saved
        {
            *lock(&self.recorded) = Some(info.key.clone());
            cx.emit(Event::WorkspaceSaved(WorkspaceSavedEvent {
                key: info.key.clone(),
                files: *files,
                content_bytes: *content_bytes,
                size: info.size,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            }));
        }
        Ok(saved)
    }
}

/// The runtime's own handle on its snapshots, as the loop's hooks.
pub(crate) struct SnapshotHooks(pub(crate) Arc<Snapshots>);

impl RunHooks for SnapshotHooks {
    /// Starts a background save, or asks the running one to save again.
    fn step_saved(&self, cx: &Arc<Context>) {
        let mut bg = lock(&self.0.background);
        if bg.failed {
            return;
        }
        if bg.running {
            bg.again = true;
            return;
        }
        bg.running = true;
        let weak = Arc::downgrade(cx);
        let snapshots = Arc::clone(&self.0);
        bg.task = Some(tokio::spawn(async move {
            loop {
                let Some(cx) = weak.upgrade() else { break };
                let result = snapshots.save(&cx).await;
                let mut bg = lock(&snapshots.background);
                if let Err(e) = result {
                    bg.failed = true;
                    bg.running = false;
                    drop(bg);
                    report(&cx, &e);
                    break;
                }
                if !std::mem::take(&mut bg.again) {
                    bg.running = false;
                    break;
                }
            }
        }));
    }

    /// Waits for the background save, then saves (awaited) so the run's last state is stored. A failure is
    /// reported as an event; the run's outcome stands.
    fn run_ended<'a>(&'a self, cx: &'a Arc<Context>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let task = lock(&self.0.background).task.take();
            if let Some(task) = task {
                let _ = task.await;
            }
            *lock(&self.0.background) = Background::default();
            if let Err(e) = self.0.save(cx).await {
                report(cx, &e);
            }
        })
    }
}

fn report(cx: &Context, e: &Error) {
    tracing::warn!("saving the workspace snapshot: {e}");
    cx.emit(Event::RuntimeError(RuntimeErrorEvent {
        kind: ErrorKind::Snapshot,
        message: e.to_string(),
    }));
}
