//! [`AsyncRuntime`], its builder, and the blocking [`Runtime`] facade.
//!
//! # Shared state and lock order
//!
//! One [`Inner`] is shared by every clone of a runtime. Its state is split by job, each part with private fields:
//! - [`SessionCell`]: the conversation (held by one run at a time) and the checkpointed copy readers see;
//! - [`LeaseKeeper`]: the session's lease and the heartbeat that renews it;
//! - [`RunControl`]: abort, queued user messages, closing;
//! - the tool set (a read-mostly `RwLock`), the event bus, and what tools use ([`ToolEnv`]).
//!
//! Locks are taken in this order, and a lock later in the list is never held while an earlier one is taken:
//! 1. the session state (a tokio mutex, held for a whole run or reset; the only lock held across awaits);
//! 2. the tool set's `RwLock` (only to clone the current `Arc`);
//! 3. leaf mutexes: the published session copy, the lease slot, the heartbeat slot, the cancel token, the inbox,
//!    the event bus's sequence and callback list. A leaf mutex is never held across an await, a callback or
//!    another lock.

mod blocking;
mod builder;
mod control;
mod event_log;
mod lease;
mod session;
mod snapshots;

use std::sync::Arc;
use std::sync::RwLock;

use codepilot_llm::Provider;
use codepilot_protocol::EventEnvelope;
use codepilot_protocol::Message;
use codepilot_protocol::ToolSpec;
use codepilot_protocol::Usage;
use codepilot_script::Limits;
use codepilot_store::SessionId;
use codepilot_terminal::TerminalManager;

pub use blocking::Runtime;
pub use builder::RuntimeBuilder;
pub(crate) use control::RunControl;
pub(crate) use lease::LeaseKeeper;
pub(crate) use session::SessionCell;
pub(crate) use session::SessionState;
pub(crate) use snapshots::after_step as snapshot_after_step;
pub(crate) use snapshots::at_run_end as snapshots_at_run_end;

use crate::config::AgentFile;
use crate::error::Error;
use crate::error::Result;
use crate::events::Event;
use crate::events::EventBus;
use crate::events::EventKind;
use crate::events::EventStream;
use crate::events::FinishEvent;
use crate::events::SessionResetEvent;
use crate::events::StepEvent;
use crate::events::StreamEvent;
use crate::events::ToolCallEvent;
use crate::events::ToolResultEvent;
use crate::events::UserMessageEvent;
use crate::handlers::PermissionHandler;
use crate::tools::Registry;
use crate::tools::Tool;
use crate::tools::ToolEnv;

/// The registry and the prompt rendered from it, swapped as a whole when a tool is registered.
pub(crate) struct ToolSet {
    pub(crate) registry: Registry,
    pub(crate) specs: Arc<[ToolSpec]>,
    pub(crate) static_prompt: Arc<str>,
}

impl ToolSet {
    pub(crate) fn new(agent: &AgentFile, registry: Registry, limits: &Limits) -> Self {
        let specs: Arc<[ToolSpec]> = registry.specs().to_vec().into();
        let static_prompt = crate::prompt::render_static(&crate::prompt::StaticVars {
            name: &agent.name,
            role: agent.role.as_deref().unwrap_or(""),
            tools: &specs,
            host_prompt: &agent.system_prompt,
            step_timeout_s: limits.wall_clock.as_secs(),
            max_tool_calls: limits.max_tool_calls,
        });
        Self {
            registry,
            specs,
            static_prompt: static_prompt.into(),
        }
    }
}

/// Everything one runtime shares between its clones and its running task.
pub(crate) struct Inner {
    pub(crate) agent: AgentFile,
    pub(crate) provider: Arc<dyn Provider>,
    tools: RwLock<Arc<ToolSet>>,
    pub(crate) events: Arc<EventBus>,
    pub(crate) session: SessionCell,
    pub(crate) lease: Arc<LeaseKeeper>,
    pub(crate) control: RunControl,
    pub(crate) env: Arc<ToolEnv>,
    pub(crate) permission: Option<Arc<dyn PermissionHandler>>,
    pub(crate) limits: Limits,
    /// How requests are budgeted (SPEC §16).
    pub(crate) context: crate::context::ContextParams,
    /// Stores the session's events, when asked to.
    pub(crate) event_log: Option<Arc<event_log::EventWriter>>,
    /// Workspace snapshots, when configured (SPEC §17).
    pub(crate) snapshots: Option<snapshots::Snapshots>,
    /// MCP servers, when the agent file lists any (SPEC §18).
    pub(crate) mcp: Option<Arc<crate::mcp::McpHub>>,
}

impl Inner {
    pub(crate) fn emit(&self, e: Event) {
        self.events.emit(e);
    }

    pub(crate) fn toolset(&self) -> Arc<ToolSet> {
        match self.tools.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub(crate) fn terminals(&self) -> Option<&TerminalManager> {
        self.env.terminals.as_ref()
    }

    /// Edits a copy of the registry and swaps it in with a freshly rendered prompt; a running step keeps the
    /// tool set it started with.
    pub(crate) fn update_tools<T>(
        &self,
        edit: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self
            .tools
            .write()
            .map_err(|_| Error::Internal("tool registry lock poisoned".to_owned()))?;
        let mut registry = guard.registry.clone();
        let out = edit(&mut registry)?;
        *guard = Arc::new(ToolSet::new(&self.agent, registry, &self.limits));
        Ok(out)
    }

    /// Before a step: fetches MCP tool lists that changed and puts the current MCP tools in the tool set.
    pub(crate) async fn sync_mcp_tools(&self) -> Result<()> {
        let Some(hub) = &self.mcp else {
            return Ok(());
        };
        if !hub.refresh().await {
            return Ok(());
        }
        let tools = hub.tools();
        self.update_tools(|registry| {
            registry.remove_where(|name| hub.is_mcp_tool(name));
            for tool in tools {
                let name = tool.spec().name;
                if registry.get(&name).is_some() {
                    tracing::warn!(
                        "two MCP tools are both called `{name}` in the block (their names differ only in \
                         characters that become `_`); the second is left out"
                    );
                    continue;
                }
                // A tool the block cannot call (a parameter that is not a Python identifier) is left out, the
                // server's other tools stay.
                if let Err(e) = registry.insert_host(tool) {
                    tracing::warn!("MCP tool `{name}` is left out: {e}");
                }
            }
            Ok(())
        })
    }
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
        crate::agent::run(&self.inner, task).await
    }

    /// Saves the work directory as the session's latest snapshot now, unless nothing changed since the last one
    /// (then [`Saved::Unchanged`](codepilot_store::snapshot::Saved::Unchanged)). `Ok(None)` when the runtime has
    /// no snapshot store. Emits [`Event::WorkspaceSaved`] for a new snapshot.
    ///
    /// # Errors
    /// [`Error::Snapshot`] (too large, store unreachable or full), [`Error::Closed`].
    pub async fn snapshot(&self) -> Result<Option<codepilot_store::snapshot::Saved>> {
        snapshots::save(&self.inner).await
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
        self.inner.control.queue(text.clone());
        self.inner
            .emit(Event::UserMessageQueued(UserMessageEvent { text }));
    }

    /// Cancels the running task promptly: the model call, the control block and any terminal wait. The run returns
    /// [`crate::Outcome::Aborted`] and emits [`Event::Aborted`]. Does nothing when idle.
    pub fn abort(&self) {
        self.inner.control.abort();
    }

    /// Starts a fresh conversation: a new session (new id, empty history, task counter 0) in the same store, with
    /// the same terminals and work directory. The old session stays stored. Emits [`Event::SessionReset`] and
    /// returns the new id. Fails with [`Error::Busy`] while a task runs.
    pub async fn reset(&self) -> Result<String> {
        let Some(mut state) = self.inner.session.try_lock() else {
            return Err(Error::Busy);
        };
        if self.inner.control.is_closed() {
            return Err(Error::Closed);
        }
        let id = SessionId::generate();
        let (lease, record) = self
            .inner
            .session
            .store()
            .open(&id, &self.inner.agent.name)
            .await?;
        self.inner.lease.replace(lease).await;
        self.inner.session.replace(
            &mut state,
            SessionState::from_record(id.clone(), record, self.inner.context),
        );
        self.inner.env.ledger.clear();
        if let Some(snapshots) = &self.inner.snapshots {
            snapshots.forget_recorded();
        }
        self.inner.events.start_session(id.to_string());
        self.inner.emit(Event::SessionReset(SessionResetEvent {
            session_id: id.to_string(),
        }));
        Ok(id.to_string())
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
        self.inner.update_tools(edit)
    }

    /// A stream of every event from now on, each in its envelope.
    #[must_use]
    pub fn subscribe(&self) -> EventStream {
        self.inner.events.subscribe()
    }

    /// Calls `f` for every event, synchronously and in order. Keep it quick: it runs on the agent's task.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.events.add(None, Arc::new(move |e| f(&e.event)));
    }

    /// Calls `f` for every event in its envelope (session, turn and sequence number), as a host that forwards
    /// events to another process needs them.
    pub fn on_envelope(&self, f: impl Fn(&EventEnvelope) + Send + Sync + 'static) {
        self.inner.events.add(None, Arc::new(f));
    }

    /// Calls `f` for every event of one kind.
    pub fn on(&self, kind: EventKind, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner
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
        self.inner.session.session_id()
    }

    /// The conversation as stored so far: everything up to the last checkpoint (the end of the last finished step).
    /// Does not wait for a running task.
    #[must_use]
    pub fn history(&self) -> Vec<Message> {
        self.inner.session.history()
    }

    /// Token usage of the session as of the last checkpoint.
    #[must_use]
    pub fn usage(&self) -> Usage {
        self.inner.session.usage()
    }

    /// The terminal manager, for hosts that attach people or web terminals to the agent's shells.
    #[must_use]
    pub fn terminals(&self) -> Option<&TerminalManager> {
        self.inner.terminals()
    }

    /// The work directory (canonical).
    #[must_use]
    pub fn work_dir(&self) -> &std::path::Path {
        self.inner.env.workspace.root()
    }

    /// Shuts down cleanly: waits for a running task to stop (call [`AsyncRuntime::abort`] first to hurry it), kills
    /// the terminals and removes their sockets, and releases the session lease.
    pub async fn close(&self) -> Result<()> {
        let _state = self.inner.session.lock().await;
        self.inner.control.close();
        if let Some(t) = self.inner.terminals() {
            t.shutdown().await;
        }
        if let Some(hub) = &self.inner.mcp {
            hub.shutdown().await;
        }
        if let Some(log) = &self.inner.event_log {
            log.flush().await;
        }
        self.inner.lease.release().await?;
        Ok(())
    }
}
