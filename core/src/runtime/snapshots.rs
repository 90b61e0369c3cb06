//! Workspace snapshots for a runtime (SPEC §17): restored before the first step when the work directory lacks
//! the session's workspace, saved at the end of every run (awaited) and when the host asks.
//!
//! Between those, every step that ends starts a save in the background (coalesced: one at a time, one more if
//! steps ended meanwhile), so a process killed mid-turn loses the files of at most the last step or two, as its
//! history loses at most the step in flight. Unchanged workspaces cost one directory scan. A background failure
//! is reported once and pauses background saves until the run's own save at its end. A background save reads
//! files while the next step may be changing them; a file changed mid-read is stored as read, and the save after
//! it (at the latest the run's own) archives the workspace again.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    let recorded = lock(&snapshots.recorded).clone();
    let saved = snapshots
        .store
        .save(
            &**inner.session.store(),
            &lease,
            inner.env.workspace.root(),
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
        *lock(&snapshots.recorded) = Some(info.key.clone());
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

/// After a step: starts a background save, or asks the running one to save again.
pub(crate) fn after_step(inner: &Arc<Inner>) {
    let Some(snapshots) = &inner.snapshots else {
        return;
    };
    let mut bg = lock(&snapshots.background);
    if bg.failed {
        return;
    }
    if bg.running {
        bg.again = true;
        return;
    }
    bg.running = true;
    let weak = Arc::downgrade(inner);
    bg.task = Some(tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { break };
            let result = save(&inner).await;
            let Some(snapshots) = &inner.snapshots else {
                break;
            };
            let mut bg = lock(&snapshots.background);
            if let Err(e) = result {
                bg.failed = true;
                bg.running = false;
                drop(bg);
                report(&inner, &e);
                break;
            }
            if !std::mem::take(&mut bg.again) {
                bg.running = false;
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
    let task = lock(&snapshots.background).task.take();
    if let Some(task) = task {
        let _ = task.await;
    }
    *lock(&snapshots.background) = Background::default();
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
