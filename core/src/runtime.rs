//! [`AsyncRuntime`], its builder, and the blocking [`Runtime`] facade.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot_llm::Provider;
use codepilot_llm::ProviderConfig;
use codepilot_llm::ProviderKind;
use codepilot_llm::RetryPolicy;
use codepilot_script::Limits;
use codepilot_store::Lease;
use codepilot_store::SessionId;
use codepilot_store::SessionStore;
use codepilot_store::StoreConfig;
use codepilot_terminal::TerminalConfig;
use codepilot_terminal::TerminalManager;
use tokio_util::sync::CancellationToken;

use crate::config::AgentFile;
use crate::error::Error;
use crate::error::Result;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::EventBus;
use crate::events::EventKind;
use crate::events::EventStream;
use crate::events::FinishEvent;
use crate::events::RuntimeErrorEvent;
use crate::events::SessionResetEvent;
use crate::events::StepEvent;
use crate::events::StreamEvent;
use crate::events::ToolCallEvent;
use crate::events::ToolResultEvent;
use crate::events::UserMessageEvent;
use crate::handlers::AskUserHandler;
use crate::handlers::PermissionHandler;
use crate::tools::Registered;
use crate::tools::Registry;
use crate::tools::Tool;
use crate::tools::ToolSettings;
use crate::tools::builtin::Builtin;
use crate::tools::fs::ReadLedger;
use crate::tools::workspace::Workspace;

/// Default cap on tool calls in one control block.
const DEFAULT_MAX_TOOL_CALLS: u32 = 200;

/// Where the session (history, task counter, usage) is kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Session {
    /// In this process only; gone when the runtime is dropped. The default.
    Memory,
    /// One JSON file per session in a directory.
    File(PathBuf),
    /// A SQLite database, e.g. `sqlite:///home/me/.codepilot/sessions.db`.
    Sqlite(String),
    /// A PostgreSQL database, e.g. `postgres://user@localhost/codepilot`.
    Postgres(String),
    /// A SQLite pool the host application owns.
    SqlitePool(sqlx_pools::SqlitePool),
    /// A PostgreSQL pool the host application owns.
    PgPool(sqlx_pools::PgPool),
}

/// Re-exports of the pool types [`Session`] accepts.
pub mod sqlx_pools {
    pub use sqlx::PgPool;
    pub use sqlx::SqlitePool;
}

impl From<Session> for StoreConfig {
    fn from(s: Session) -> Self {
        match s {
            Session::Memory => StoreConfig::Memory,
            Session::File(dir) => StoreConfig::File { dir },
            Session::Sqlite(url) => StoreConfig::Sqlite { url },
            Session::Postgres(url) => StoreConfig::Postgres { url },
            Session::SqlitePool(pool) => StoreConfig::SqlitePool(pool),
            Session::PgPool(pool) => StoreConfig::PgPool(pool),
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The model finished with a completion block.
    Completed {
        /// The completion text.
        summary: String,
        /// Steps taken.
        steps: u32,
    },
    /// The model answered without acting (a chat reply).
    Replied {
        /// The reply.
        text: String,
        /// Steps taken.
        steps: u32,
    },
    /// `max_steps` was reached first.
    MaxSteps {
        /// Steps taken.
        steps: u32,
    },
    /// The host called [`AsyncRuntime::abort`].
    Aborted {
        /// Steps started.
        steps: u32,
    },
}

/// The conversation state the step loop owns while it runs.
pub(crate) struct SessionState {
    pub(crate) id: SessionId,
    pub(crate) messages: Vec<codepilot_protocol::Message>,
    pub(crate) stored_len: u64,
    pub(crate) task_counter: u64,
    pub(crate) usage: codepilot_protocol::Usage,
    pub(crate) title: Option<String>,
}

/// The registry and the prompt rendered from it, swapped as a whole when a tool is registered.
pub(crate) struct ToolSet {
    pub(crate) registry: Registry,
    pub(crate) specs: Arc<[codepilot_script::ToolSpec]>,
    pub(crate) static_prompt: Arc<str>,
}

pub(crate) struct Inner {
    pub(crate) agent: AgentFile,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) tools: RwLock<Arc<ToolSet>>,
    pub(crate) events: EventBus,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) session: tokio::sync::Mutex<SessionState>,
    pub(crate) terminals: Option<TerminalManager>,
    pub(crate) workspace: Arc<Workspace>,
    pub(crate) ledger: Arc<ReadLedger>,
    pub(crate) permission: Option<Arc<dyn PermissionHandler>>,
    pub(crate) ask_user: Option<Arc<dyn AskUserHandler>>,
    pub(crate) inbox: Mutex<VecDeque<String>>,
    pub(crate) cancel: Mutex<CancellationToken>,
    pub(crate) limits: Limits,
    pub(crate) heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) lease: Mutex<Option<Arc<Lease>>>,
    /// Set by `close()`; `run` refuses afterwards.
    pub(crate) closed: AtomicBool,
    /// Set when another process took the session over; `run` refuses afterwards.
    pub(crate) lease_lost: Mutex<Option<String>>,
    /// `run` calls in progress (including ones waiting to start), so `abort()` knows whether there is work to stop.
    pub(crate) active_runs: AtomicUsize,
    /// What has been checkpointed, readable while a run holds the session.
    pub(crate) published: Mutex<Published>,
    /// The model's context window in tokens: configured, known for the model, or a conservative default.
    pub(crate) context_window: u64,
}

/// The durable state of the session, updated after every checkpoint.
#[derive(Default)]
pub(crate) struct Published {
    pub(crate) session_id: String,
    pub(crate) messages: Vec<codepilot_protocol::Message>,
    pub(crate) usage: codepilot_protocol::Usage,
}

impl Inner {
    pub(crate) fn emit(&self, e: Event) {
        self.events.emit(e);
    }

    pub(crate) fn lease_lost_message(&self) -> Option<String> {
        self.lease_lost.lock().ok().and_then(|m| m.clone())
    }

    /// Another process owns the session now: remember it and stop the running task.
    pub(crate) fn mark_lease_lost(&self, message: String) {
        if let Ok(mut m) = self.lease_lost.lock() {
            m.get_or_insert(message);
        }
        if let Ok(token) = self.cancel.lock() {
            token.cancel();
        }
    }

    /// Appends checkpointed messages to the published snapshot.
    pub(crate) fn publish(
        &self,
        new: &[codepilot_protocol::Message],
        usage: codepilot_protocol::Usage,
    ) {
        if let Ok(mut p) = self.published.lock() {
            p.messages.extend_from_slice(new);
            p.usage = usage;
        }
    }

    pub(crate) fn lease(&self) -> Option<Arc<Lease>> {
        self.lease.lock().ok().and_then(|l| l.clone())
    }

    /// Takes the lease out, for release. `None` if it is gone or still shared.
    fn take_lease(&self) -> Option<Lease> {
        let arc = self.lease.lock().ok()?.take()?;
        Arc::try_unwrap(arc).ok()
    }

    pub(crate) fn toolset(&self) -> Arc<ToolSet> {
        match self.tools.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut hb) = self.heartbeat.lock()
            && let Some(h) = hb.take()
        {
            h.abort();
        }
        // Best effort: hand the lease back so the next process need not wait for it to expire. Needs a runtime.
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && let Some(lease) = self.take_lease()
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

/// Reads an environment variable, for API keys.
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds an [`AsyncRuntime`]. From [`AsyncRuntime::builder`].
pub struct RuntimeBuilder {
    agent: AgentFile,
    session: Session,
    store: Option<Arc<dyn SessionStore>>,
    session_id: Option<String>,
    provider: Option<Arc<dyn Provider>>,
    permission: Option<Arc<dyn PermissionHandler>>,
    ask_user: Option<Arc<dyn AskUserHandler>>,
    tools: Vec<Arc<dyn Tool>>,
    env: Option<EnvLookup>,
    socket_dir: Option<PathBuf>,
    limits: Option<Limits>,
}

impl AsyncRuntime {
    /// Starts building a runtime for `agent`.
    #[must_use]
    pub fn builder(agent: AgentFile) -> RuntimeBuilder {
        RuntimeBuilder {
            agent,
            session: Session::Memory,
            store: None,
            session_id: None,
            provider: None,
            permission: None,
            ask_user: None,
            tools: Vec::new(),
            env: None,
            socket_dir: None,
            limits: None,
        }
    }
}

impl RuntimeBuilder {
    /// Where the session is kept. Default: [`Session::Memory`].
    #[must_use]
    pub fn session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// A session store the host built itself; overrides [`RuntimeBuilder::session`].
    #[must_use]
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Resume (or create) this session. Default: a new id.
    #[must_use]
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = Some(id.into());
        self
    }

    /// Use this provider instead of the one the agent file describes (tests, custom backends).
    #[must_use]
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Decides gated tool calls. Default: none, so gated calls are denied with a message saying so.
    #[must_use]
    pub fn permission_handler(mut self, handler: impl PermissionHandler + 'static) -> Self {
        self.permission = Some(Arc::new(handler));
        self
    }

    /// Answers `ask_user`. Default: none, so `ask_user` fails with a message saying so.
    #[must_use]
    pub fn ask_user_handler(mut self, handler: impl AskUserHandler + 'static) -> Self {
        self.ask_user = Some(Arc::new(handler));
        self
    }

    /// Registers a custom tool (see [`crate::FnTool`]).
    #[must_use]
    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        self.tools.push(Arc::new(tool));
        self
    }

    /// Reads environment variables (API keys) through `f` instead of the process environment.
    #[must_use]
    pub fn env(mut self, f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Some(Arc::new(f));
        self
    }

    /// Directory for the terminal multiplexer's sockets. Default: a fresh private directory.
    #[must_use]
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Limits for each control block. Default: `runtime.step_timeout_s` of wall clock, 200 tool calls.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    fn provider_config(&self) -> Result<ProviderConfig> {
        let m = &self.agent.model;
        let kind: ProviderKind = m.provider.parse()?;
        let lookup = |var: &str| match &self.env {
            Some(f) => f(var),
            None => std::env::var(var).ok(),
        };
        let var = m
            .api_key_env
            .clone()
            .or_else(|| kind.default_api_key_env().map(str::to_owned));
        let api_key = var
            .as_deref()
            .and_then(lookup)
            .filter(|k| !k.trim().is_empty());
        if api_key.is_none() && kind.requires_api_key() && self.provider.is_none() {
            return Err(Error::MissingApiKey {
                provider: m.provider.clone(),
                var: var.unwrap_or_else(|| "an API key variable (model.api_key_env)".to_owned()),
            });
        }
        let scripted_answers = match (&kind, &m.script) {
            (ProviderKind::Scripted, Some(path)) => Some(codepilot_llm::load_script(path)?),
            _ => None,
        };
        Ok(ProviderConfig {
            kind,
            model: m.name.clone(),
            api_key,
            base_url: m.base_url.clone(),
            temperature: m.temperature,
            max_tokens: m.max_tokens,
            thinking: m.thinking.enabled.then_some(m.thinking.budget_tokens),
            stream: m.stream,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(600),
            scripted_answers,
        })
    }

    /// Builds the runtime: checks the API key, opens the session (taking its lease), creates the work directory and
    /// starts terminal `main` when terminal tools are enabled.
    pub async fn build(self) -> Result<AsyncRuntime> {
        self.agent.validate()?;
        let provider = match &self.provider {
            Some(p) => Arc::clone(p),
            None => codepilot_llm::build_provider(self.provider_config()?)?,
        };
        let rt = &self.agent.runtime;
        let workspace =
            Workspace::new(&rt.work_dir, rt.unsafe_mode).map_err(|source| Error::WorkDir {
                path: rt.work_dir.clone(),
                source,
            })?;
        let workspace = Arc::new(workspace);

        let mut registry = Registry::default();
        let mut terminal_settings: Option<ToolSettings> = None;
        for entry in enabled_tools(&self.agent) {
            let Some(builtin) = Builtin::from_name(&entry.0) else {
                continue;
            };
            let settings = ToolSettings::from_config(&entry.1);
            if builtin == Builtin::Execute || (builtin.is_terminal() && terminal_settings.is_none())
            {
                terminal_settings = Some(settings.clone());
            }
            registry.insert(builtin.spec(), Registered::Builtin(builtin, settings))?;
        }
        for tool in &self.tools {
            registry.insert(
                tool.spec(),
                Registered::Custom(Arc::clone(tool), ToolSettings::for_custom(tool.as_ref())),
            )?;
        }

        let store = match self.store {
            Some(s) => s,
            None => codepilot_store::open_store(self.session.into()).await?,
        };
        let id = match self.session_id {
            Some(id) => id.parse::<SessionId>()?,
            None => SessionId::generate(),
        };
        let (lease, record) = store.open(&id, &self.agent.name).await?;
        let stored_len = record.messages.len() as u64;
        let published = Published {
            session_id: id.to_string(),
            messages: record.messages.clone(),
            usage: record.usage,
        };
        let terminals = match terminal_settings {
            Some(settings) => {
                let mut cfg = TerminalConfig::new(workspace.root().to_path_buf());
                if let Some(n) = settings.max_output_chars {
                    cfg.max_output_chars = n;
                }
                cfg.socket_dir.clone_from(&self.socket_dir);
                let started = async {
                    let mgr = TerminalManager::new(cfg).await?;
                    mgr.create("main").await?;
                    Ok::<_, codepilot_terminal::TerminalError>(mgr)
                }
                .await;
                match started {
                    Ok(mgr) => Some(mgr),
                    Err(e) => {
                        // Don't leave the session locked behind a runtime that never existed.
                        if let Err(release) = store.release(lease).await {
                            tracing::warn!(
                                "releasing the session lease after a failed start: {release}"
                            );
                        }
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };

        let state = SessionState {
            id: id.clone(),
            messages: record.messages,
            stored_len,
            task_counter: record.task_counter,
            usage: record.usage,
            title: record.meta.title,
        };

        let limits = self.limits.unwrap_or_else(|| Limits {
            wall_clock: Duration::from_secs(rt.step_timeout_s.max(1)),
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            ..Limits::default()
        });
        let toolset = build_toolset(&self.agent, registry, &limits);
        let context_window = match self.agent.model.context_window {
            Some(n) => n,
            None => crate::agent::known_context_window(&self.agent.model.name).unwrap_or_else(|| {
                tracing::warn!(
                    "model `{}` has no known context window; assuming {} tokens (set model.context_window in \
                     agent.yaml)",
                    self.agent.model.name,
                    crate::agent::DEFAULT_CONTEXT_TOKENS
                );
                crate::agent::DEFAULT_CONTEXT_TOKENS
            }),
        };
        let inner = Arc::new(Inner {
            agent: self.agent,
            provider,
            tools: RwLock::new(Arc::new(toolset)),
            events: EventBus::new(),
            store: Arc::clone(&store),
            session: tokio::sync::Mutex::new(state),
            terminals,
            workspace,
            ledger: Arc::new(ReadLedger::default()),
            permission: self.permission,
            ask_user: self.ask_user,
            inbox: Mutex::new(VecDeque::new()),
            cancel: Mutex::new(CancellationToken::new()),
            limits,
            heartbeat: Mutex::new(None),
            lease: Mutex::new(Some(Arc::new(lease))),
            closed: AtomicBool::new(false),
            lease_lost: Mutex::new(None),
            active_runs: AtomicUsize::new(0),
            published: Mutex::new(published),
            context_window,
        });
        let weak = Arc::downgrade(&inner);
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(codepilot_store::HEARTBEAT_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let Some(lease) = inner.lease() else { break };
                match inner.store.renew(&lease).await {
                    Ok(()) => {}
                    Err(e) if e.is_lease_lost() => {
                        inner.emit(Event::RuntimeError(RuntimeErrorEvent {
                            kind: ErrorKind::Store,
                            message: e.to_string(),
                        }));
                        inner.mark_lease_lost(e.to_string());
                        break;
                    }
                    Err(e) => tracing::warn!("could not renew the session lease (will retry): {e}"),
                }
            }
        });
        if let Ok(mut hb) = inner.heartbeat.lock() {
            *hb = Some(heartbeat);
        }
        Ok(AsyncRuntime { inner })
    }
}

/// The enabled tools of an agent file: every built-in, minus those listed with `enabled: false`, each with the
/// config its entry gives.
fn enabled_tools(agent: &AgentFile) -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
    agent
        .effective_tools()
        .into_iter()
        .map(|t| (t.name, t.config))
        .collect()
}

pub(crate) fn build_toolset(agent: &AgentFile, registry: Registry, limits: &Limits) -> ToolSet {
    let specs: Arc<[codepilot_script::ToolSpec]> = registry.specs().to_vec().into();
    let static_prompt = crate::prompt::render_static(&crate::prompt::StaticVars {
        name: &agent.name,
        role: agent.role.as_deref().unwrap_or(""),
        tools: &specs,
        host_prompt: &agent.system_prompt,
        step_timeout_s: limits.wall_clock.as_secs(),
        max_tool_calls: limits.max_tool_calls,
    });
    ToolSet {
        registry,
        specs,
        static_prompt: static_prompt.into(),
    }
}

impl AsyncRuntime {
    /// Runs one task to its end: completion, a chat reply, the step limit, or an abort.
    ///
    /// Errors are reserved for what stops the run itself (the provider failing after retries, the store failing,
    /// a task already running); everything the model does wrong is fed back to it as an observation.
    pub async fn run(&self, task: &str) -> Result<Outcome> {
        crate::agent::run(&self.inner, task).await
    }

    /// Queues a message for the model; it is added as `[USER MESSAGE]` at the start of the next step.
    pub fn send_message(&self, text: impl Into<String>) {
        let text = text.into();
        if let Ok(mut inbox) = self.inner.inbox.lock() {
            inbox.push_back(text.clone());
        }
        self.inner
            .emit(Event::UserMessageQueued(UserMessageEvent { text }));
    }

    /// Cancels the running task promptly: the model call, the control block and any terminal wait. The run returns
    /// [`Outcome::Aborted`] and emits [`Event::Aborted`]. Does nothing when idle.
    pub fn abort(&self) {
        if self.inner.active_runs.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Ok(token) = self.inner.cancel.lock() {
            token.cancel();
        }
    }

    /// Starts a fresh conversation: a new session (new id, empty history, task counter 0) in the same store, with
    /// the same terminals and work directory. The old session stays stored. Emits [`Event::SessionReset`] and
    /// returns the new id. Fails with [`Error::Busy`] while a task runs.
    pub async fn reset(&self) -> Result<String> {
        let Ok(mut state) = self.inner.session.try_lock() else {
            return Err(Error::Busy);
        };
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let id = SessionId::generate();
        let (lease, record) = self.inner.store.open(&id, &self.inner.agent.name).await?;
        let old = self
            .inner
            .lease
            .lock()
            .map_err(|_| Error::Internal("lease lock poisoned".to_owned()))?
            .replace(Arc::new(lease));
        if let Some(old) = old.and_then(|l| Arc::try_unwrap(l).ok())
            && let Err(e) = self.inner.store.release(old).await
        {
            tracing::warn!("releasing the previous session's lease: {e}");
        }
        *state = SessionState {
            id: id.clone(),
            stored_len: record.messages.len() as u64,
            messages: record.messages,
            task_counter: record.task_counter,
            usage: record.usage,
            title: record.meta.title,
        };
        if let Ok(mut p) = self.inner.published.lock() {
            *p = Published {
                session_id: id.to_string(),
                messages: Vec::new(),
                usage: state.usage,
            };
        }
        self.inner.ledger.clear();
        self.inner.emit(Event::SessionReset(SessionResetEvent {
            session_id: id.to_string(),
        }));
        Ok(id.to_string())
    }

    /// Registers a custom tool; it appears in the prompt from the next step on.
    pub fn register_tool(&self, tool: impl Tool + 'static) -> Result<()> {
        let tool: Arc<dyn Tool> = Arc::new(tool);
        let mut guard = self
            .inner
            .tools
            .write()
            .map_err(|_| Error::Internal("tool registry lock poisoned".to_owned()))?;
        let mut registry = guard.registry.clone();
        registry.insert(
            tool.spec(),
            Registered::Custom(tool, ToolSettings::default()),
        )?;
        *guard = Arc::new(build_toolset(
            &self.inner.agent,
            registry,
            &self.inner.limits,
        ));
        Ok(())
    }

    /// A stream of every event from now on.
    #[must_use]
    pub fn subscribe(&self) -> EventStream {
        self.inner.events.subscribe()
    }

    /// Calls `f` for every event, synchronously and in order. Keep it quick: it runs on the agent's task.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.events.add(None, Arc::new(f));
    }

    /// Calls `f` for every event of one kind.
    pub fn on(&self, kind: EventKind, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.events.add(Some(kind), Arc::new(f));
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
        self.inner
            .published
            .lock()
            .map(|p| p.session_id.clone())
            .unwrap_or_default()
    }

    /// The conversation as stored so far: everything up to the last checkpoint (the end of the last finished step).
    /// Does not wait for a running task.
    #[must_use]
    pub fn history(&self) -> Vec<codepilot_protocol::Message> {
        self.inner
            .published
            .lock()
            .map(|p| p.messages.clone())
            .unwrap_or_default()
    }

    /// Token usage of the session as of the last checkpoint.
    #[must_use]
    pub fn usage(&self) -> codepilot_protocol::Usage {
        self.inner
            .published
            .lock()
            .map(|p| p.usage)
            .unwrap_or_default()
    }

    /// The terminal manager, for hosts that attach people or web terminals to the agent's shells.
    #[must_use]
    pub fn terminals(&self) -> Option<&TerminalManager> {
        self.inner.terminals.as_ref()
    }

    /// The work directory (canonical).
    #[must_use]
    pub fn work_dir(&self) -> &std::path::Path {
        self.inner.workspace.root()
    }

    /// Shuts down cleanly: waits for a running task to stop (call [`AsyncRuntime::abort`] first to hurry it), kills
    /// the terminals and removes their sockets, and releases the session lease.
    pub async fn close(&self) -> Result<()> {
        let _state = self.inner.session.lock().await;
        self.inner.closed.store(true, Ordering::SeqCst);
        let heartbeat = self
            .inner
            .heartbeat
            .lock()
            .ok()
            .and_then(|mut hb| hb.take());
        if let Some(h) = heartbeat {
            h.abort();
            // Wait until it is gone, so it no longer holds a reference to the lease.
            let _ = h.await;
        }
        if let Some(t) = &self.inner.terminals {
            t.shutdown().await;
        }
        if let Some(lease) = self.inner.take_lease() {
            self.inner.store.release(lease).await?;
        }
        Ok(())
    }
}

/// The blocking facade over [`AsyncRuntime`]: owns a tokio runtime and blocks on each call.
///
/// Do not use it from inside an async context (tokio forbids blocking there); use [`AsyncRuntime`] instead.
/// Dropping it closes the runtime (terminals killed, lease released), as [`Runtime::close`] does.
pub struct Runtime {
    rt: tokio::runtime::Runtime,
    inner: AsyncRuntime,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(e) = self.rt.block_on(self.inner.close()) {
            tracing::warn!("closing the runtime on drop: {e}");
        }
    }
}

impl Runtime {
    /// Builds a runtime from a builder, on a private tokio runtime with two worker threads.
    pub fn new(builder: RuntimeBuilder) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("codepilot")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("could not start a tokio runtime: {e}")))?;
        let inner = rt.block_on(builder.build())?;
        Ok(Self { rt, inner })
    }

    /// See [`AsyncRuntime::run`].
    pub fn run(&self, task: &str) -> Result<Outcome> {
        self.rt.block_on(self.inner.run(task))
    }

    /// See [`AsyncRuntime::send_message`].
    pub fn send_message(&self, text: impl Into<String>) {
        self.inner.send_message(text);
    }

    /// See [`AsyncRuntime::abort`]. Safe to call from another thread while `run` blocks.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// A handle for aborting or messaging from another thread while `run` blocks this one.
    #[must_use]
    pub fn handle(&self) -> AsyncRuntime {
        self.inner.clone()
    }

    /// See [`AsyncRuntime::register_tool`].
    pub fn register_tool(&self, tool: impl Tool + 'static) -> Result<()> {
        self.inner.register_tool(tool)
    }

    /// See [`AsyncRuntime::on_event`].
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.on_event(f);
    }

    /// See [`AsyncRuntime::subscribe`]; poll the stream from any async context, or with [`Runtime::block_on`].
    #[must_use]
    pub fn subscribe(&self) -> EventStream {
        let _guard = self.rt.enter();
        self.inner.subscribe()
    }

    /// Runs a future on this runtime's tokio runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// See [`AsyncRuntime::session_id`].
    #[must_use]
    pub fn session_id(&self) -> String {
        self.inner.session_id()
    }

    /// See [`AsyncRuntime::history`].
    #[must_use]
    pub fn history(&self) -> Vec<codepilot_protocol::Message> {
        self.inner.history()
    }

    /// See [`AsyncRuntime::usage`].
    #[must_use]
    pub fn usage(&self) -> codepilot_protocol::Usage {
        self.inner.usage()
    }

    /// See [`AsyncRuntime::on`].
    pub fn on(&self, kind: EventKind, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.on(kind, f);
    }

    /// See [`AsyncRuntime::on_stream`].
    pub fn on_stream(&self, f: impl Fn(&StreamEvent) + Send + Sync + 'static) {
        self.inner.on_stream(f);
    }

    /// See [`AsyncRuntime::on_finish`].
    pub fn on_finish(&self, f: impl Fn(&FinishEvent) + Send + Sync + 'static) {
        self.inner.on_finish(f);
    }

    /// See [`AsyncRuntime::reset`].
    pub fn reset(&self) -> Result<String> {
        self.rt.block_on(self.inner.reset())
    }

    /// See [`AsyncRuntime::close`]. Dropping the runtime does the same.
    pub fn close(self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
