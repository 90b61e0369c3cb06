//! [`AsyncRuntime`], its builder, and the blocking [`Runtime`] facade.
//!
//! # Shared state and lock order
//!
//! One [`Inner`] is shared by every clone of a runtime. It holds the step loop's [`Context`] — built here, handed
//! to the loop whole; the loop never sees the runtime — and what only the runtime uses (the event log, workspace
//! snapshots, which it runs through the loop's [`RunHooks`](crate::agent::RunHooks)). The context's state is split
//! by job, each part with private fields:
//! - [`SessionCell`](crate::state::SessionCell): the conversation (held by one run at a time) and the
//!   checkpointed copy readers see;
//! - [`LeaseKeeper`](crate::state::LeaseKeeper): the session's lease and the heartbeat that renews it;
//! - [`RunControl`](crate::state::RunControl): abort, queued user messages, closing;
//! - the tool set ([`ToolBox`](crate::toolbox::ToolBox), a read-mostly `RwLock`), the event bus, and what tools use
//!   ([`ToolEnv`](crate::tools::ToolEnv)).
//!
//! Locks are taken in this order, and a lock later in the list is never held while an earlier one is taken:
//! 1. the session state (a tokio mutex, held for a whole run or reset; the only lock held across awaits);
//! 2. the tool set's `RwLock` (only to clone the current `Arc`);
//! 3. leaf mutexes: the published session copy, the lease slot, the heartbeat slot, the cancel token, the inbox,
//!    the event bus's sequence and callback list. A leaf mutex is never held across an await, a callback or
//!    another lock.

mod blocking;
mod builder;
mod event_log;
mod sampling;
mod snapshots;
mod workers;

use std::sync::Arc;

use codepilot_protocol::EventEnvelope;
use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use codepilot_store::SessionId;
use codepilot_terminal::TerminalManager;

pub use blocking::Runtime;
pub use builder::RuntimeBuilder;

use crate::agent::Context;
use crate::agent::RunOptions;
use crate::config::AgentFile;
use crate::error::Error;
use crate::error::Result;
use crate::events::Event;
use crate::events::EventKind;
use crate::events::EventStream;
use crate::events::FinishEvent;
use crate::events::SessionResetEvent;
use crate::events::StepEvent;
use crate::events::StreamEvent;
use crate::events::ToolCallEvent;
use crate::events::ToolResultEvent;
use crate::events::UserMessageEvent;
use crate::state::SessionState;
use crate::tools::Registry;
use crate::tools::Tool;

/// Everything one runtime shares between its clones: the step loop's [`Context`] and what only the runtime uses.
pub(crate) struct Inner {
    /// The agent's name, the session store's label for new sessions.
    agent_name: String,
    /// What the step loop works with.
    cx: Arc<Context>,
    /// Stores the session's events, when asked to.
    event_log: Option<Arc<event_log::EventWriter>>,
    /// Workspace snapshots, when configured (SPEC §17).
    snapshots: Option<Arc<snapshots::Snapshots>>,
}

/// The agent runtime (async, tokio). Cheap to clone: clones share one agent, one session and one set of terminals.
///
/// ```no_run
/// # async fn demo() -> Result<(), codepilot::Error> {
/// use codepilot::AgentFile;
/// use codepilot::AsyncRuntime;
/// use codepilot::Outcome;
///
/// let agent = AgentFile::load("agent.yaml".as_ref())?;
/// let rt = AsyncRuntime::builder(agent).build().await?;
/// rt.on_stream(|e| eprint!("{}", e.text));
/// match rt.run("make the failing test pass").await? {
///     Outcome::Completed { summary, .. } => println!("{summary}"),
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncRuntime {
    pub(crate) inner: Arc<Inner>,
}

impl AsyncRuntime {
    /// Starts building a runtime for `agent`.
    #[must_use]
    pub fn builder(agent: AgentFile) -> RuntimeBuilder {
        RuntimeBuilder::new(agent)
    }

    /// Runs one task to its end: completion, a chat reply, the step limit, or an abort.
    ///
    /// Errors are reserved for what stops the run itself (the provider failing after retries, the store failing,
    /// a task already running); everything the model does wrong is fed back to it as an observation.
    ///
    /// With a snapshot store ([`RuntimeBuilder::snapshots`]) the work directory is saved when the run ends,
    /// unless nothing changed; a failed save is reported as [`Event::RuntimeError`] of kind `snapshot` and does
    /// not change the outcome.
    pub async fn run(&self, task: &str) -> Result<crate::Outcome> {
        crate::agent::run(&self.inner.cx, task, &RunOptions::default()).await
    }

    /// [`Self::run`] with this run's own limits and output schema (SPEC §21). A limit reached ends the run with
    /// [`Outcome::LimitExceeded`](crate::Outcome::LimitExceeded); with an output schema, the outcome of a completed
    /// run carries the validated value ([`Outcome::structured`](crate::Outcome::structured)), or the run ends
    /// with [`Outcome::InvalidOutput`](crate::Outcome::InvalidOutput) after `runtime.output_retries` refusals.
    ///
    /// # Errors
    /// As [`Self::run`]; [`Error::OutputSchema`] for a schema the validator refuses and [`Error::Limits`] for a
    /// cost limit on a model whose prices are unknown, both before the turn starts.
    pub async fn run_with(&self, task: &str, options: &RunOptions) -> Result<crate::Outcome> {
        crate::agent::run(&self.inner.cx, task, options).await
    }

    /// Answers worker `agent_id`'s waiting `ask_main_agent` (a `subagent_message` event) on behalf of the parent,
    /// as the block's `reply_subagent` does (SPEC §20).
    ///
    /// # Errors
    /// [`Error::Subagent`] when there is no such worker, it ended, or sub-agents are off.
    pub fn reply_subagent(&self, agent_id: u32, message: impl Into<String>) -> Result<()> {
        let workers = self
            .inner
            .cx
            .env
            .workers
            .as_ref()
            .ok_or_else(|| Error::Subagent("sub-agents are off for this agent".to_owned()))?;
        workers
            .reply(agent_id, message.into())
            .map_err(Error::Subagent)
    }

    /// The workers started so far: `agent_id`, `task`, `status` (`running`, `completed`, `stopped`, `failed`,
    /// `aborted`) and `elapsed_seconds`, as the block's `list_subagents` returns them.
    #[must_use]
    pub fn subagents(&self) -> Vec<serde_json::Value> {
        self.inner
            .cx
            .env
            .workers
            .as_ref()
            .map(|w| w.list())
            .unwrap_or_default()
    }

    /// What the last run spent (tokens by kind, cost, wall time); `None` before the first run.
    #[must_use]
    pub fn last_spend(&self) -> Option<codepilot_protocol::Spend> {
        *codepilot_protocol::sync::lock(&self.inner.cx.last_spend)
    }

    /// Saves the work directory as the session's latest snapshot now, unless nothing changed since the last one
    /// (then [`Saved::Unchanged`](codepilot_store::snapshot::Saved::Unchanged)). `Ok(None)` when the runtime has
    /// no snapshot store. Emits [`Event::WorkspaceSaved`] for a new snapshot.
    ///
    /// # Errors
    /// [`Error::Snapshot`] (too large, store unreachable or full), [`Error::Closed`].
    pub async fn snapshot(&self) -> Result<Option<codepilot_store::snapshot::Saved>> {
        match &self.inner.snapshots {
            Some(snapshots) => snapshots.save(&self.inner.cx).await.map(Some),
            None => Ok(None),
        }
    }

    /// What happened to the work directory when this runtime started: restored from the session's snapshot,
    /// already up to date, and so on. `None` without a snapshot store.
    #[must_use]
    pub fn workspace_restore(&self) -> Option<&codepilot_store::snapshot::Prepared> {
        self.inner.snapshots.as_ref().map(|s| &s.prepared)
    }

    /// Queues a message for the model; it is added as `[USER MESSAGE]` at the start of the next step.
    pub fn send_message(&self, text: impl Into<String>) {
        let text = text.into();
        self.inner.cx.control.queue(text.clone());
        self.inner
            .cx
            .emit(Event::UserMessageQueued(UserMessageEvent { text }));
    }

    /// Cancels the running task promptly: the model call, the control block and any terminal wait. The run returns
    /// [`crate::Outcome::Aborted`] and emits [`Event::Aborted`]. Does nothing when idle.
    pub fn abort(&self) {
        self.inner.cx.control.abort();
    }

    /// Starts a fresh conversation: a new session (new id, empty history, task counter 0) in the same store, with
    /// the same terminals and work directory. The old session stays stored. Emits [`Event::SessionReset`] and
    /// returns the new id. Fails with [`Error::Busy`] while a task runs.
    pub async fn reset(&self) -> Result<String> {
        let Some(mut state) = self.inner.cx.session.try_lock() else {
            return Err(Error::Busy);
        };
        if self.inner.cx.control.is_closed() {
            return Err(Error::Closed);
        }
        let id = SessionId::generate();
        let (lease, record) = self
            .inner
            .cx
            .session
            .store()
            .open(&id, &self.inner.agent_name)
            .await?;
        self.inner.cx.lease.replace(lease).await;
        self.inner.cx.session.replace(
            &mut state,
            SessionState::from_record(id.clone(), record, self.inner.cx.context),
        );
        self.inner.cx.env.ledger.clear();
        self.inner.cx.checkpoints.history_replaced();
        if let Some(snapshots) = &self.inner.snapshots {
            snapshots.forget_recorded();
        }
        self.inner.cx.events.start_session(id.to_string());
        self.inner.cx.emit(Event::SessionReset(SessionResetEvent {
            session_id: id.to_string(),
        }));
        Ok(id.to_string())
    }

    /// The session's checkpoints (SPEC §19), oldest first: one before each turn (`runtime.checkpoints: turn`, the
    /// default), before every step (`step`), and one for the state each rewind replaced.
    ///
    /// # Errors
    /// [`Error::CheckpointsOff`] when the agent takes none; [`Error::Checkpoint`] when they cannot be read.
    pub async fn checkpoints(&self) -> Result<Vec<crate::CheckpointInfo>> {
        let id = codepilot_store::SessionId::new(self.session_id())
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.inner.cx.checkpoints.list(&id).await
    }

    /// Writes this runtime's session as a trajectory (SPEC §23) to `out`: see
    /// [`export_trajectory`](crate::trajectory::export_trajectory). The agent file is the one recorded with the
    /// session ([`RuntimeBuilder::record_agent_file`], the daemon's agent), the work directory this runtime's.
    ///
    /// # Errors
    /// As [`export_trajectory`](crate::trajectory::export_trajectory).
    pub async fn export_trajectory(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<crate::trajectory::ExportStats> {
        let id = codepilot_store::SessionId::new(self.session_id())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let options = crate::trajectory::ExportOptions {
            work_dir: Some(self.work_dir().to_path_buf()),
            checkpoint_dir: self.inner.cx.checkpoints.dir(),
            ..crate::trajectory::ExportOptions::default()
        };
        crate::trajectory::export_trajectory(&**self.inner.cx.session.store(), &id, &options, out)
            .await
    }

    /// Rewinds the work directory, the conversation or both to checkpoint `checkpoint` (`"3"`: before turn 3,
    /// `"3.2"`: before its step 2, `"rewind-1"`: the state a rewind replaced). Records the current state first as
    /// a checkpoint of its own (returned as `saved_as`), so the rewind can be undone. Files: the work directory
    /// becomes what the checkpoint recorded — changed and deleted files written back, files created since deleted,
    /// files `.gitignore` excludes and `.git` untouched. Conversation: the history is cut back to that point in
    /// the store (turn numbers go on; usage stays). Emits [`Event::Rewound`]; with a snapshot store, saves the
    /// rewound work directory.
    ///
    /// # Errors
    /// [`Error::Busy`] while a task runs; [`Error::CheckpointsOff`]; [`Error::Checkpoint`] for an unknown
    /// checkpoint, one on a conversation a later rewind replaced, or files that could not be written (staging
    /// failures change nothing; a failure after changes names the checkpoint that undoes them);
    /// [`Error::RewindHalfDone`] when the files were rewound but the store refused the conversation.
    pub async fn rewind(
        &self,
        checkpoint: &str,
        scope: crate::RewindScope,
    ) -> Result<crate::RewoundEvent> {
        self.rewind_inner(checkpoint, scope, false).await
    }

    /// What [`AsyncRuntime::rewind`] would change now (files restored and deleted, messages left), changing
    /// nothing: for a confirmation prompt. `saved_as` is empty.
    ///
    /// # Errors
    /// As [`AsyncRuntime::rewind`].
    pub async fn rewind_preview(
        &self,
        checkpoint: &str,
        scope: crate::RewindScope,
    ) -> Result<crate::RewoundEvent> {
        self.rewind_inner(checkpoint, scope, true).await
    }

    async fn rewind_inner(
        &self,
        checkpoint: &str,
        scope: crate::RewindScope,
        preview: bool,
    ) -> Result<crate::RewoundEvent> {
        let cx = &self.inner.cx;
        let Some(mut state) = cx.session.try_lock() else {
            return Err(Error::Busy);
        };
        if cx.control.is_closed() {
            return Err(Error::Closed);
        }
        let done = cx
            .checkpoints
            .rewind(cx, &mut state, checkpoint, scope, preview)
            .await?;
        drop(state);
        if !preview
            && scope.files()
            && let Some(snapshots) = &self.inner.snapshots
            && let Err(e) = snapshots.save(cx).await
        {
            cx.emit(Event::RuntimeError(crate::events::RuntimeErrorEvent {
                kind: crate::events::ErrorKind::Snapshot,
                message: e.to_string(),
            }));
        }
        Ok(done)
    }

    /// Registers a custom tool; it appears in the prompt from the next step on. Fails with
    /// [`crate::RegisterError::Duplicate`] when the name is taken.
    pub fn register_tool(&self, tool: impl Tool + 'static) -> Result<()> {
        self.update_tools(|registry| Ok(registry.insert_host(Arc::new(tool))?))
    }

    /// Registers a custom tool in place of the tool of the same name, built-in or custom, if there is one (the
    /// replaced tool's settings from the agent file go with it). Returns whether a tool was replaced.
    pub fn replace_tool(&self, tool: impl Tool + 'static) -> Result<bool> {
        let tool: Arc<dyn Tool> = Arc::new(tool);
        self.update_tools(|registry| {
            let replaced = registry.remove(&tool.spec().name);
            registry.insert_host(tool)?;
            Ok(replaced)
        })
    }

    fn update_tools<T>(&self, edit: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        self.inner.cx.tools.update(edit)
    }

    /// A stream of every event from now on, each in its envelope.
    #[must_use]
    pub fn subscribe(&self) -> EventStream {
        self.inner.cx.events.subscribe()
    }

    /// Calls `f` for every event, synchronously and in order. Keep it quick: it runs on the agent's task.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner
            .cx
            .events
            .add(None, Arc::new(move |e| f(&e.event)));
    }

    /// Calls `f` for every event in its envelope (session, turn and sequence number), as a host that forwards
    /// events to another process needs them.
    pub fn on_envelope(&self, f: impl Fn(&EventEnvelope) + Send + Sync + 'static) {
        self.inner.cx.events.add(None, Arc::new(f));
    }

    /// The `seq` of the session's last event so far (0 before the first): a callback registered now gets the
    /// events after it. Callbacks run on the emitting task, so two tasks' events can reach them out of `seq` order;
    /// a host that needs the order (as `codepilot run --json` does) holds an early one back until the gap fills.
    #[must_use]
    pub fn last_event_seq(&self) -> u64 {
        self.inner.cx.events.last_seq()
    }

    /// Calls `f` for every event of one kind.
    pub fn on(&self, kind: EventKind, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner
            .cx
            .events
            .add(Some(kind), Arc::new(move |e| f(&e.event)));
    }

    /// Calls `f` with streamed model text.
    pub fn on_stream(&self, f: impl Fn(&StreamEvent) + Send + Sync + 'static) {
        self.on(EventKind::Stream, move |e| {
            if let Event::Stream(s) = e {
                f(s);
            }
        });
    }

    /// Calls `f` when a task finishes (completion or reply).
    pub fn on_finish(&self, f: impl Fn(&FinishEvent) + Send + Sync + 'static) {
        self.on(EventKind::Finish, move |e| {
            if let Event::Finish(s) = e {
                f(s);
            }
        });
    }

    /// Calls `f` before every tool call.
    pub fn on_tool_call(&self, f: impl Fn(&ToolCallEvent) + Send + Sync + 'static) {
        self.on(EventKind::ToolCall, move |e| {
            if let Event::ToolCall(s) = e {
                f(s);
            }
        });
    }

    /// Calls `f` after every tool call.
    pub fn on_tool_result(&self, f: impl Fn(&ToolResultEvent) + Send + Sync + 'static) {
        self.on(EventKind::ToolResult, move |e| {
            if let Event::ToolResult(s) = e {
                f(s);
            }
        });
    }

    /// Calls `f` at the start of every step.
    pub fn on_step(&self, f: impl Fn(&StepEvent) + Send + Sync + 'static) {
        self.on(EventKind::Step, move |e| {
            if let Event::Step(s) = e {
                f(s);
            }
        });
    }

    /// The session id (pass it to `session_id` to resume).
    #[must_use]
    pub fn session_id(&self) -> String {
        self.inner.cx.session.session_id()
    }

    /// The conversation as stored so far: everything up to the last checkpoint (the end of the last finished step).
    /// Does not wait for a running task.
    #[must_use]
    pub fn history(&self) -> Vec<Message> {
        self.inner.cx.session.history()
    }

    /// Token usage of the session as of the last checkpoint.
    #[must_use]
    pub fn usage(&self) -> Usage {
        self.inner.cx.session.usage()
    }

    /// The terminal manager, for hosts that attach people or web terminals to the agent's shells.
    #[must_use]
    pub fn terminals(&self) -> Option<&TerminalManager> {
        self.inner.cx.terminals()
    }

    /// The work directory (canonical).
    #[must_use]
    pub fn work_dir(&self) -> &std::path::Path {
        self.inner.cx.env.workspace.root()
    }

    /// The system prompt the next task's first model call would send: the rules, the tools, the project
    /// instructions as they are on disk now (`AGENTS.md` files, `runtime.instructions_files`), the host's
    /// `system_prompt`, and the environment for step 1. What `codepilot run --print-prompt` prints.
    ///
    /// # Errors
    /// [`Error::Busy`] while a task runs.
    pub fn system_prompt(&self) -> Result<String> {
        crate::agent::system_prompt(&self.inner.cx)
    }

    /// Sends the spans that ended to the trace collector, waiting at most 3 seconds (SPEC §23); nothing to do when
    /// tracing is off. [`Self::close`] does it; a host that exits without closing (or wants a trace to show now)
    /// calls it. Spans also leave on their own every few seconds.
    pub async fn flush_traces(&self) {
        if self.inner.cx.traces.is_none() {
            return;
        }
        let cx = Arc::clone(&self.inner.cx);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(traces) = &cx.traces {
                traces.flush(codepilot_telemetry::FLUSH_TIMEOUT);
            }
        })
        .await;
    }

    /// Shuts down cleanly: waits for a running task to stop (call [`AsyncRuntime::abort`] first to hurry it), kills
    /// the terminals and removes their sockets, and releases the session lease.
    pub async fn close(&self) -> Result<()> {
        let _state = self.inner.cx.session.lock().await;
        self.inner.cx.control.close();
        if let Some(t) = self.inner.cx.terminals() {
            t.shutdown().await;
        }
        if let Some(hub) = &self.inner.cx.tools.mcp() {
            hub.shutdown().await;
        }
        if let Some(log) = &self.inner.event_log {
            log.flush().await;
        }
        // A worker's spans leave with its parent's (the exporter is shared): its result never waits for them.
        if self.inner.cx.env.worker.is_none() {
            self.flush_traces().await;
        }
        self.inner.cx.lease.release().await?;
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    /// Hosts spawn these futures on multi-threaded runtimes (`tokio::spawn`): this compiles only while they are
    /// `Send`.
    #[allow(dead_code, reason = "a compile-time check, never called")]
    fn futures_are_send(rt: &super::AsyncRuntime) {
        fn is_send<T: Send>(_: T) {}
        is_send(rt.run("x"));
        is_send(rt.checkpoints());
        is_send(rt.rewind("1", crate::RewindScope::Both));
        is_send(rt.rewind_preview("1", crate::RewindScope::Files));
    }
}
