//! Workspace snapshots for a runtime (SPEC §17): restored before the first step when the work directory lacks
//! the session's workspace, saved at the end of every run (awaited) and when the host asks.
//!
//! Between those, every step that ends starts a save in the background (coalesced: one at a time, one more if
//! steps ended meanwhile), so a process killed mid-turn loses the files of at most the last step or two, as its
//! history loses at most the step in flight. Unchanged workspaces cost one directory scan. A background failure
//! is reported once and pauses background saves until the run's own save at its end.

use std::sync::Arc;
use std::sync::Mutex;

use codepilot_store::snapshot::Prepared;
use codepilot_store::snapshot::Saved;
use codepilot_store::snapshot::SnapshotStore;

use super::Inner;
use crate::error::Error;
use crate::error::Result;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::RuntimeErrorEvent;
use crate::events::WorkspaceSavedEvent;

/// A runtime's snapshot store and what happened to its work directory at start.
pub(crate) struct Snapshots {
    pub(crate) store: SnapshotStore,
    /// What [`SnapshotStore::prepare`] did when the runtime was built.
    pub(crate) prepared: Prepared,
    /// One save at a time per runtime (the end of a run and a host's request may meet).
    saving: tokio::sync::Mutex<()>,
    /// The background save started after a step, if any.
    background: Mutex<Background>,
}

#[derive(Default)]
struct Background {
    task: Option<tokio::task::JoinHandle<()>>,
    /// A step ended while the task was saving: save once more.
    again: bool,
    /// A background save failed this run: no more until the run's end.
    failed: bool,
}

impl Snapshots {
    pub(crate) fn new(store: SnapshotStore, prepared: Prepared) -> Self {
        Self {
            store,
            prepared,
            saving: tokio::sync::Mutex::new(()),
            background: Mutex::new(Background::default()),
        }
    }

    fn background(&self) -> std::sync::MutexGuard<'_, Background> {
        self.background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// After a step: starts a background save, or asks the running one to save again.
pub(crate) fn after_step(inner: &Arc<Inner>) {
    let Some(snapshots) = &inner.snapshots else {
        return;
    };
    let mut bg = snapshots.background();
    if bg.failed {
        return;
    }
    if bg.task.as_ref().is_some_and(|t| !t.is_finished()) {
        bg.again = true;
        return;
    }
    let weak = Arc::downgrade(inner);
    bg.task = Some(tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { break };
            let result = save(&inner).await;
            let Some(snapshots) = &inner.snapshots else {
                break;
            };
            let mut bg = snapshots.background();
            if let Err(e) = result {
                bg.failed = true;
                drop(bg);
                report(&inner, &e);
                break;
            }
            if !std::mem::take(&mut bg.again) {
                break;
            }
        }
    }));
}

/// At the end of a run: waits for the background save, then saves (awaited) so the run's last state is stored.
/// A failure is reported as an event; the run's outcome stands.
pub(crate) async fn at_run_end(inner: &Arc<Inner>) {
    let Some(snapshots) = &inner.snapshots else {
        return;
    };
    let task = snapshots.background().task.take();
    if let Some(task) = task {
        let _ = task.await;
    }
    *snapshots.background() = Background::default();
    if let Err(e) = save(inner).await {
        report(inner, &e);
    }
}

fn report(inner: &Inner, e: &Error) {
    tracing::warn!("saving the workspace snapshot: {e}");
    inner.emit(Event::RuntimeError(RuntimeErrorEvent {
        kind: ErrorKind::Snapshot,
        message: e.to_string(),
    }));
}

/// Saves the work directory as the current session's snapshot; `None` when the runtime has no snapshot store.
/// Emits [`Event::WorkspaceSaved`] for a new snapshot.
pub(crate) async fn save(inner: &Inner) -> Result<Option<Saved>> {
    let Some(snapshots) = &inner.snapshots else {
        return Ok(None);
    };
    let _one = snapshots.saving.lock().await;
    let Some(lease) = inner.lease.current() else {
        return Err(Error::Closed);
    };
    let saved = snapshots
        .store
        .save(&**inner.session.store(), &lease, inner.env.workspace.root())
        .await?;
    if let Saved::Stored {
        info,
        files,
        content_bytes,
        elapsed,
    } = &saved
    {
        inner.emit(Event::WorkspaceSaved(WorkspaceSavedEvent {
            key: info.key.clone(),
            files: *files,
            content_bytes: *content_bytes,
            size: info.size,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }));
    }
    Ok(Some(saved))
}
