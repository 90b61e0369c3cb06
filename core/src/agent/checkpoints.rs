//! Checkpoints and rewind for a runtime (SPEC §19): taken before each turn (or step) by the step loop, listed and
//! rewound to by the host.
//!
//! A failed capture never stops a turn: it is reported as [`Event::RuntimeError`] of kind `checkpoint` and the
//! turn runs without one. With a snapshot store (`--snapshots`), every new checkpoint is copied to it in the
//! background (in order, one copy at a time; a run waits for the copies at its end), and a runtime that finds a
//! session's checkpoints missing here (another machine took them) reads them from there.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot_protocol::CheckpointInfo;
use codepilot_protocol::CheckpointKind;
use codepilot_protocol::RewindScope;
use codepilot_protocol::RewoundEvent;
use codepilot_protocol::sync::lock;
use codepilot_store::HistoryRewrite;
use codepilot_store::SessionId;
use codepilot_store::checkpoint::CheckpointError;
use codepilot_store::checkpoint::CheckpointMirror;
use codepilot_store::checkpoint::CheckpointOptions;
use codepilot_store::checkpoint::CheckpointRecord;
use codepilot_store::checkpoint::Cut;
use codepilot_store::checkpoint::FilePlan;
use codepilot_store::checkpoint::HistoryDigest;
use codepilot_store::checkpoint::Position;
use codepilot_store::checkpoint::SessionCheckpoints;

use super::Context;
use crate::config::CheckpointMode;
use crate::error::Error;
use crate::error::Result;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::EventBus;
use crate::events::RuntimeErrorEvent;
use crate::state::SessionState;

/// The open checkpoints of the runtime's current session.
type Slot = Arc<Mutex<Option<SessionCheckpoints>>>;

/// A runtime's checkpoints.
pub(crate) struct Checkpoints {
    mode: CheckpointMode,
    opts: CheckpointOptions,
    mirror: Option<CheckpointMirror>,
    open: Slot,
    /// Held while the slot is checked and (re)opened, so two callers never open it twice (the second copy would
    /// not have the first one's captures).
    opening: tokio::sync::Mutex<()>,
    /// The digest of the conversation as far as the last capture saw it.
    digest: Mutex<HistoryDigest>,
    /// Files already reported as left out, so each is named once, not at every turn.
    reported: Mutex<std::collections::HashSet<String>>,
    /// Copies to the mirror and collections, in order; awaited at a run's end.
    background: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The capture still under way: it runs beside the model's answer and is awaited ([`Checkpoints::ready`])
    /// before anything that could change the files it reads runs, and before the next capture, a listing or a
    /// rewind.
    pending: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What a blocking rewind step found and did.
struct Done {
    conversation: Option<codepilot_store::checkpoint::ConversationPlan>,
    files: Option<FilePlan>,
    saved: Option<codepilot_store::checkpoint::Captured>,
}

impl Checkpoints {
    /// Where the checkpoints are kept, when not in the default place.
    pub(crate) fn dir(&self) -> Option<std::path::PathBuf> {
        self.opts.dir.clone()
    }

    pub(crate) fn new(
        mode: CheckpointMode,
        opts: CheckpointOptions,
        mirror: Option<CheckpointMirror>,
    ) -> Self {
        Self {
            mode,
            opts,
            mirror,
            open: Arc::new(Mutex::new(None)),
            opening: tokio::sync::Mutex::new(()),
            digest: Mutex::new(HistoryDigest::default()),
            reported: Mutex::new(std::collections::HashSet::new()),
            background: tokio::sync::Mutex::new(None),
            pending: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for the capture under way, if any.
    pub(crate) async fn ready(&self) {
        let pending = self.pending.lock().await.take();
        if let Some(pending) = pending {
            let _ = pending.await;
        }
    }

    /// The conversation changed other than by appending (a reset, a rewind): digest it afresh next time.
    pub(crate) fn history_replaced(&self) {
        *lock(&self.digest) = HistoryDigest::default();
    }

    /// Runs `f` on session `session`'s checkpoints on a blocking thread, opening them (and merging the mirror's
    /// index, once per process and session) first.
    async fn with<T: Send + 'static>(
        &self,
        session: &SessionId,
        f: impl FnOnce(&mut SessionCheckpoints) -> Result<T, CheckpointError> + Send + 'static,
    ) -> Result<T> {
        let opening = self.opening.lock().await;
        let fresh = {
            let slot = lock(&self.open);
            slot.as_ref().is_none_or(|c| c.session() != session)
        };
        if fresh {
            let opts = self.opts.clone();
            let id = session.clone();
            let mut opened = blocking(move || SessionCheckpoints::open(&id, opts)).await?;
            if let Some(mirror) = &self.mirror {
                match mirror.pull_index(session).await {
                    Ok(Some(bytes)) => {
                        opened = blocking(move || {
                            opened.merge_mirrored(&bytes)?;
                            Ok(opened)
                        })
                        .await?;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("reading the mirrored checkpoints of {session}: {e}"),
                }
            }
            *lock(&self.open) = Some(opened);
        }
        let slot = Arc::clone(&self.open);
        // The guard is held until `f` is done, so a session switch cannot replace the slot between the check
        // above and `f`.
        let out = blocking(move || {
            let mut guard = lock(&slot);
            match guard.as_mut() {
                Some(c) => f(c),
                None => Err(CheckpointError::Io {
                    op: "opening the checkpoints",
                    path: PathBuf::new(),
                    source: std::io::Error::other("they were closed"),
                }),
            }
        })
        .await;
        drop(opening);
        out
    }

    /// Starts the checkpoint before turn `turn` (and, with `step`, before that step), unless checkpoints are off
    /// or this is a step checkpoint and the mode is `turn`. It is taken in the background, beside the model's
    /// answer (a large work directory takes a while to compare); [`Checkpoints::ready`] waits for it. Failures are
    /// reported, never returned.
    pub(crate) async fn capture(
        self: &Arc<Self>,
        cx: &Context,
        state: &SessionState,
        turn: u64,
        step: Option<u32>,
        parent: &codepilot_telemetry::Span,
    ) {
        match (self.mode, step) {
            (CheckpointMode::Off, _) | (CheckpointMode::Turn, Some(_)) => return,
            (CheckpointMode::Turn | CheckpointMode::Step, _) => {}
        }
        self.ready().await;
        let span = parent.child(
            || "codepilot.checkpoint".into(),
            codepilot_telemetry::SpanKind::Internal,
            Vec::new,
        );
        let position = Position {
            kind: if step.is_some() {
                CheckpointKind::Step
            } else {
                CheckpointKind::Turn
            },
            turn,
            step,
            messages: state.messages.len() as u64,
            digest: lock(&self.digest).advance(&state.messages),
            archives: state.book().archives().to_vec(),
            cut: None,
        };
        let label = match step {
            Some(s) => format!("before step {s} of turn {turn}"),
            None => format!("before turn {turn}"),
        };
        let this = Arc::clone(self);
        let events = Arc::clone(&cx.events);
        let work_dir = cx.env.workspace.root().to_path_buf();
        let session = state.id.clone();
        let task = tokio::spawn(async move {
            this.take(&events, &session, work_dir, position, &label, &span)
                .await;
        });
        *self.pending.lock().await = Some(task);
    }

    /// Takes a checkpoint [`Checkpoints::capture`] started.
    async fn take(
        &self,
        events: &EventBus,
        session: &SessionId,
        work_dir: PathBuf,
        position: Position,
        label: &str,
        span: &codepilot_telemetry::Span,
    ) {
        let taken = self
            .with(session, move |c| {
                let captured = c.capture(&work_dir, &position)?;
                let upload = c.upload(&captured.new_objects)?;
                Ok((captured, upload))
            })
            .await;
        match taken {
            Ok((captured, upload)) => {
                span.set_with(|| {
                    vec![
                        codepilot_telemetry::KeyValue::new(
                            codepilot_telemetry::names::CHECKPOINT_ID,
                            captured.info.id.clone(),
                        ),
                        codepilot_telemetry::KeyValue::new(
                            codepilot_telemetry::names::CHECKPOINT_FILES,
                            i64::try_from(captured.new_objects.len()).unwrap_or(i64::MAX),
                        ),
                    ]
                });
                let fresh: Vec<String> = {
                    let mut reported = lock(&self.reported);
                    captured
                        .info
                        .skipped
                        .iter()
                        .filter(|p| reported.insert((*p).clone()))
                        .cloned()
                        .collect()
                };
                if !fresh.is_empty() {
                    report(
                        events,
                        format!(
                            "the checkpoint {label} left out {} (over {} MiB, runtime.checkpoint_max_file_mb, or a name that is not UTF-8); a rewind leaves them as they are",
                            fresh.join(", "),
                            self.opts.max_file_bytes >> 20
                        ),
                    );
                }
                self.after_capture(session, upload, captured.pruned).await;
            }
            Err(e) => {
                span.fail("checkpoint", || e.to_string());
                report(
                    events,
                    format!("no checkpoint {label}: {e}; the turn runs without one"),
                );
            }
        }
    }

    /// Queues the mirror copy and the collection a capture calls for.
    async fn after_capture(
        &self,
        session: &SessionId,
        upload: codepilot_store::checkpoint::Upload,
        pruned: bool,
    ) {
        let mirror = self.mirror.clone();
        let slot = Arc::clone(&self.open);
        let session = session.clone();
        let mut queue = self.background.lock().await;
        let previous = queue.take();
        *queue = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Some(mirror) = mirror
                && let Err(e) = mirror.push(upload).await
            {
                tracing::warn!(
                    "copying the checkpoints of {session} to {}: {e}",
                    mirror.url()
                );
            }
            if pruned {
                let collected = blocking(move || match lock(&slot).as_ref() {
                    Some(c) => c.collect_garbage(),
                    None => Ok(0),
                })
                .await;
                if let Err(e) = collected {
                    tracing::warn!("collecting old checkpoint contents of {session}: {e}");
                }
            }
        }));
    }

    /// Waits for the background copies to the mirror queued so far, so a session resumed elsewhere finds them.
    /// Without a mirror, collections finish on their own.
    pub(crate) async fn settle(&self) {
        self.ready().await;
        if self.mirror.is_none() {
            return;
        }
        let task = self.background.lock().await.take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The checkpoints of the current session, oldest first.
    pub(crate) async fn list(&self, session: &SessionId) -> Result<Vec<CheckpointInfo>> {
        if self.mode == CheckpointMode::Off {
            return Err(Error::CheckpointsOff);
        }
        self.ready().await;
        self.with(session, |c| Ok(c.list())).await
    }

    /// The record `id` names, reading the mirror's index when it is not known here, with every object it needs
    /// stored here.
    async fn prepare(&self, session: &SessionId, id: &str) -> Result<CheckpointRecord> {
        let wanted = id.to_owned();
        let found = self.with(session, move |c| c.find(&wanted).cloned()).await;
        let record = match (found, &self.mirror) {
            (Ok(record), _) => record,
            (Err(Error::Checkpoint(CheckpointError::Unknown { .. })), Some(mirror)) => {
                if let Some(bytes) = mirror.pull_index(session).await? {
                    self.with(session, move |c| c.merge_mirrored(&bytes))
                        .await?;
                }
                let wanted = id.to_owned();
                self.with(session, move |c| c.find(&wanted).cloned())
                    .await?
            }
            (Err(e), _) => return Err(e),
        };
        if let Some(mirror) = &self.mirror {
            // Link by link down the manifest chain, then the contents its end names: each round fetches what the
            // objects already here say is missing (bounded: a chain is at most a few dozen links).
            for _ in 0..64 {
                let r = record.clone();
                let missing = self.with(session, move |c| c.missing_objects(&r)).await?;
                if missing.is_empty() {
                    break;
                }
                let fetched = mirror.pull_objects(session, &missing).await?;
                self.with(session, move |c| c.store_mirrored(&fetched))
                    .await?;
            }
        }
        Ok(record)
    }

    /// Rewinds `scope` of the session to checkpoint `id`; with `preview`, only says what it would change.
    pub(crate) async fn rewind(
        &self,
        cx: &Context,
        state: &mut SessionState,
        id: &str,
        scope: RewindScope,
        preview: bool,
    ) -> Result<RewoundEvent> {
        self.ready().await;
        if self.mode == CheckpointMode::Off {
            return Err(Error::CheckpointsOff);
        }
        let record = self.prepare(&state.id, id).await?;
        let history = state.messages.clone();
        let digest = lock(&self.digest).advance(&state.messages);
        let archives = state.book().archives().to_vec();
        let turn = state.task_counter;
        let work_dir = cx.env.workspace.root().to_path_buf();
        let target = record.clone();
        let done = self
            .with(&state.id, move |c| {
                rewind_blocking(
                    c, &target, &history, digest, archives, turn, &work_dir, scope, preview,
                )
            })
            .await?;
        let mut event = RewoundEvent {
            checkpoint: record.info.id.clone(),
            scope,
            files_restored: done.files.as_ref().map_or(0, FilePlan::files_restored),
            files_deleted: done.files.as_ref().map_or(0, FilePlan::files_deleted),
            files_left: done
                .files
                .as_ref()
                .map_or_else(Vec::new, |p| p.left_alone().to_vec()),
            messages: done
                .conversation
                .as_ref()
                .map_or(state.messages.len() as u64, |p| {
                    p.keep + p.append.len() as u64
                }),
            saved_as: String::new(),
        };
        let Some(saved) = done.saved else {
            return Ok(event);
        };
        event.saved_as.clone_from(&saved.info.id);
        let upload = {
            let new_objects = saved.new_objects.clone();
            self.with(&state.id, move |c| c.upload(&new_objects))
                .await?
        };
        self.after_capture(&state.id, upload, saved.pruned).await;
        if scope.files() {
            cx.env.ledger.clear();
        }
        if let Some(plan) = done.conversation {
            let half_done = |source| Error::RewindHalfDone {
                checkpoint: record.info.id.clone(),
                source,
            };
            let Some(lease) = cx.lease.current() else {
                return Err(if scope.files() {
                    half_done(codepilot_store::StoreError::LeaseLost {
                        session: state.id.clone(),
                        holder: None,
                    })
                } else {
                    Error::Closed
                });
            };
            let rewrite = HistoryRewrite {
                keep: plan.keep,
                append: plan.append,
                archives: plan.archives,
            };
            if let Err(e) = cx.session.store().rewrite_history(&lease, &rewrite).await {
                return Err(if scope.files() {
                    half_done(e)
                } else {
                    e.into()
                });
            }
            cx.session
                .replace(state, state.rewritten(rewrite, cx.context));
            self.history_replaced();
        }
        cx.emit(Event::Rewound(event.clone()));
        Ok(event)
    }
}

/// The blocking half of a rewind: plan the conversation, record the state it replaces, rewind the files.
#[allow(clippy::too_many_arguments)]
fn rewind_blocking(
    c: &mut SessionCheckpoints,
    target: &CheckpointRecord,
    history: &[codepilot_protocol::Message],
    digest: String,
    archives: Vec<codepilot_protocol::ArchiveEntry>,
    turn: u64,
    work_dir: &Path,
    scope: RewindScope,
    preview: bool,
) -> Result<Done, CheckpointError> {
    let conversation = if scope.conversation() {
        Some(c.conversation_plan(target, history)?)
    } else {
        None
    };
    if preview {
        let files = if scope.files() {
            Some(c.preview_files(target, work_dir)?)
        } else {
            None
        };
        return Ok(Done {
            conversation,
            files,
            saved: None,
        });
    }
    let cut = conversation.as_ref().map(|plan| {
        let base = usize::try_from(plan.keep)
            .unwrap_or(usize::MAX)
            .min(history.len());
        Cut {
            base: plan.keep,
            base_digest: HistoryDigest::of(&history[..base]),
            messages: history[base..].to_vec(),
        }
    });
    let saved = c.capture(
        work_dir,
        &Position {
            kind: CheckpointKind::Rewind,
            turn,
            step: None,
            messages: history.len() as u64,
            digest,
            archives,
            cut,
        },
    )?;
    let files = if scope.files() {
        let now = c.find(&saved.info.id)?.clone();
        let plan = c.file_plan(target, &now, work_dir)?;
        c.apply_files(work_dir, &plan, &saved.info.id)?;
        Some(plan)
    } else {
        None
    };
    Ok(Done {
        conversation,
        files,
        saved: Some(saved),
    })
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CheckpointError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a checkpoint task failed: {e}")))?
        .map_err(Error::from)
}

fn report(events: &EventBus, message: String) {
    tracing::warn!("{message}");
    events.emit(Event::RuntimeError(RuntimeErrorEvent {
        kind: ErrorKind::Checkpoint,
        message,
    }));
}
