//! [`RuntimeBuilder`]: everything a runtime needs, checked and started in [`RuntimeBuilder::build`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::Weak;
use std::time::Duration;

use codepilot_llm::Provider;
use codepilot_llm::ProviderConfig;
use codepilot_llm::ProviderKind;
use codepilot_llm::RetryPolicy;
use codepilot_llm::TokenCounter;
use codepilot_script::Limits;
use codepilot_store::AgentSource;
use codepilot_store::SessionId;
use codepilot_store::SessionStore;
use codepilot_store::StoreConfig;
use codepilot_store::snapshot::RestoreMode;
use codepilot_store::snapshot::SnapshotStore;
use codepilot_terminal::TerminalConfig;
use codepilot_terminal::TerminalManager;

use super::AsyncRuntime;
use super::Inner;
use crate::agent::Context;
use crate::agent::RunHooks;
use crate::config::AgentFile;
use crate::context::ContextParams;
use crate::error::Error;
use crate::error::Result;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::EventBus;
use crate::events::RuntimeErrorEvent;
use crate::handlers::AskUserHandler;
use crate::handlers::PermissionHandler;
use crate::state::LeaseKeeper;
use crate::state::RunControl;
use crate::state::SessionCell;
use crate::state::SessionState;
use crate::toolbox::ToolBox;
use crate::tools::Registry;
use crate::tools::Tool;
use crate::tools::ToolEnv;
use crate::tools::ToolSettings;
use crate::tools::builtin::Builtin;
use crate::tools::fs::ReadLedger;
use crate::tools::workspace::Workspace;

/// The sandbox policy for `runtime`, or `None` when it is off. Whether this machine can enforce it for shells is
/// found out when the first shell starts (`codepilot-terminal` says so there, once per process): a run that never
/// starts one never pays for the check. The file tools enforce their part in the runtime either way.
fn sandbox_policy(
    runtime: &crate::config::RuntimeConfig,
    work_dir: &std::path::Path,
) -> Option<codepilot_sandbox::Policy> {
    if runtime.sandbox == codepilot_sandbox::Mode::Off {
        return None;
    }
    Some(codepilot_sandbox::Policy::new(
        runtime.sandbox,
        runtime.network,
        vec![work_dir.to_path_buf()],
    ))
}

/// The session's resource limits in force, or `None` with `runtime.resources: off`. Where a cgroup cannot be
/// made (said once per process), the rlimits still apply.
fn session_limits(
    runtime: &crate::config::RuntimeConfig,
    work_dir: &std::path::Path,
) -> Option<Arc<codepilot_sandbox::resources::SessionLimits>> {
    use codepilot_sandbox::resources::Mechanism;
    use codepilot_sandbox::resources::SessionLimits;
    static NO_CGROUP: std::sync::Once = std::sync::Once::new();
    let limits = runtime.resources?;
    match SessionLimits::new(limits, work_dir) {
        Ok(l) => Some(l),
        Err(e) => {
            NO_CGROUP.call_once(|| {
                tracing::warn!(
                    "{e}; only the rlimits apply (processes per sandboxed shell, open files, file size). \
                     `codepilot sandbox check` shows what this machine enforces"
                );
            });
            SessionLimits::with_mechanism(
                limits,
                work_dir,
                Mechanism::Rlimits { why: e.to_string() },
            )
            .ok()
        }
    }
}

/// Reads an environment variable, for API keys.
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds an [`AsyncRuntime`]. From [`AsyncRuntime::builder`].
pub struct RuntimeBuilder {
    agent: AgentFile,
    session: StoreConfig,
    store: Option<Arc<dyn SessionStore>>,
    session_id: Option<String>,
    provider: Option<Arc<dyn Provider>>,
    permission: Option<Arc<dyn PermissionHandler>>,
    ask_user: Option<Arc<dyn AskUserHandler>>,
    mcp_login: Option<Arc<dyn crate::mcp::loopback::LoginHandler>>,
    tools: Vec<Arc<dyn Tool>>,
    env: Option<EnvLookup>,
    socket_dir: Option<PathBuf>,
    limits: Option<Limits>,
    store_events: bool,
    snapshots: Option<SnapshotStore>,
    restore: RestoreMode,
    agent_source: Option<AgentSource>,
    checkpoint_dir: Option<std::path::PathBuf>,
    index_dir: Option<std::path::PathBuf>,
    search: Option<Arc<crate::code_index::CodeSearch>>,
    worker: Option<crate::state::WorkerLink>,
}

impl RuntimeBuilder {
    pub(super) fn new(agent: AgentFile) -> Self {
        Self {
            agent,
            session: StoreConfig::Memory,
            store: None,
            session_id: None,
            provider: None,
            permission: None,
            ask_user: None,
            mcp_login: None,
            tools: Vec::new(),
            env: None,
            socket_dir: None,
            limits: None,
            store_events: false,
            snapshots: None,
            restore: RestoreMode::default(),
            agent_source: None,
            checkpoint_dir: None,
            index_dir: None,
            search: None,
            worker: None,
        }
    }

    /// Shares another runtime's code index (a worker uses its parent's).
    pub(crate) fn shared_search(
        mut self,
        search: Option<Arc<crate::code_index::CodeSearch>>,
    ) -> Self {
        self.search = search;
        self
    }

    /// Builds a worker of another runtime (SPEC §20).
    pub(crate) fn worker(mut self, link: crate::state::WorkerLink) -> Self {
        self.worker = Some(link);
        self
    }

    pub(crate) fn permission_handler_arc(mut self, handler: Arc<dyn PermissionHandler>) -> Self {
        self.permission = Some(handler);
        self
    }

    pub(crate) fn ask_user_handler_arc(mut self, handler: Arc<dyn AskUserHandler>) -> Self {
        self.ask_user = Some(handler);
        self
    }

    pub(crate) fn tool_arc(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    /// Where the session is kept. Default: [`StoreConfig::Memory`].
    #[must_use]
    pub fn session(mut self, session: StoreConfig) -> Self {
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

    /// Shows a person the authorization URL of an MCP server that needs an OAuth login (SPEC §18): the login then
    /// runs in the background — the redirect comes back to a loopback listener — and the server's tools come with
    /// the step after it is approved. Default: none, so such a server says `codepilot mcp login NAME` and offers
    /// no tools.
    #[must_use]
    pub fn mcp_login_handler(
        mut self,
        handler: impl crate::mcp::loopback::LoginHandler + 'static,
    ) -> Self {
        self.mcp_login = Some(Arc::new(handler));
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

    /// Keep every event with the session in its store (for a daemon that replays them to reconnecting clients);
    /// events are then numbered on from the session's last stored event. Default: off.
    #[must_use]
    pub fn store_events(mut self, yes: bool) -> Self {
        self.store_events = yes;
        self
    }

    /// Keep the session's checkpoints (SPEC §19) in `dir` instead of `checkpoints/` in
    /// [`codepilot_home`](codepilot_store::codepilot_home) (one folder per session under it).
    #[must_use]
    pub fn checkpoint_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Keep the code index (SPEC §22) in `dir` instead of `index/` in
    /// [`codepilot_home`](codepilot_store::codepilot_home) (one folder per work dir under it).
    #[must_use]
    pub fn index_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.index_dir = Some(dir.into());
        self
    }

    /// Keep the work directory in `store` (SPEC §17): when the session has a snapshot and the work directory lacks
    /// it, [`build`](Self::build) restores it before anything runs (per [`RuntimeBuilder::restore`]); every run
    /// saves it when it ends. Default: none.
    #[must_use]
    pub fn snapshots(mut self, store: SnapshotStore) -> Self {
        self.snapshots = Some(store);
        self
    }

    /// What [`build`](Self::build) does when the session has a snapshot and the work directory holds something
    /// else. Default: [`RestoreMode::IfEmpty`] (restore into an empty or missing directory or over an older copy
    /// of this session's workspace, else fail with a message saying what to do).
    #[must_use]
    pub fn restore(mut self, mode: RestoreMode) -> Self {
        self.restore = mode;
        self
    }

    /// Record `source`, where this builder's agent came from, with the session once its lease is held
    /// ([`SessionStore::set_agent_source`]), so a host can open the session later with the same agent (the daemon's
    /// `session/resume`). Default: nothing is recorded.
    #[must_use]
    pub fn agent_source(mut self, source: AgentSource) -> Self {
        self.agent_source = Some(source);
        self
    }

    /// Record the agent file this builder's agent was loaded from (its text as it is on disk now, the file, the
    /// work directory) with the session, as [`RuntimeBuilder::agent_source`] does; nothing when the agent was not
    /// loaded from a file or the file cannot be read. Hosts that load agent files (the CLI, the Python package)
    /// call it so a session can be exported and replayed (SPEC §23) or opened by another host.
    #[must_use]
    pub fn record_agent_file(mut self) -> Self {
        let Some(file) = self.agent.source.clone() else {
            return self;
        };
        match std::fs::read_to_string(&file) {
            Ok(yaml) => {
                self.agent_source = Some(AgentSource {
                    yaml,
                    file: Some(std::path::absolute(&file).unwrap_or(file)),
                    work_dir: self.agent.runtime.work_dir.clone(),
                });
            }
            Err(e) => tracing::debug!("not recording the agent file {}: {e}", file.display()),
        }
        self
    }

    /// Limits for each control block. Default: `runtime.step_timeout_s` of wall clock, the rest as
    /// [`Limits::default`] ([`codepilot_script::DEFAULT_MAX_TOOL_CALLS`] tool calls).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The variable the API key is read from: `model.api_key_env`, else the provider's usual one.
    /// The code index behind the search tools: the parent's for a worker, none when `search.enabled` is false or
    /// no search tool is on; otherwise one started now (its first build runs in the background).
    fn code_search(
        &self,
        root: &std::path::Path,
    ) -> Result<Option<Arc<crate::code_index::CodeSearch>>> {
        if let Some(shared) = &self.search {
            return Ok(Some(Arc::clone(shared)));
        }
        let cfg = &self.agent.search;
        let wanted = cfg.enabled
            && self.agent.effective_tools().iter().any(|t| {
                matches!(
                    Builtin::from_name(&t.name),
                    Some(
                        Builtin::SemanticSearch
                            | Builtin::Definition
                            | Builtin::References
                            | Builtin::RepoMap
                    )
                )
            });
        if !wanted {
            return Ok(None);
        }
        let dir = match &self.index_dir {
            Some(dir) => dir.clone(),
            None => codepilot_store::codepilot_home()?.join("index"),
        };
        let embedder = match &cfg.embeddings {
            Some(e) => {
                let lookup = |var: &str| match &self.env {
                    Some(f) => f(var),
                    None => std::env::var(var).ok(),
                };
                Some(codepilot_search::Embedder::new(
                    codepilot_search::EmbeddingsConfig {
                        base_url: e.base_url.clone(),
                        model: e.model.clone(),
                        api_key: e.api_key_env.as_deref().and_then(lookup),
                        batch_size: e.batch_size as usize,
                        timeout: Duration::from_secs(60),
                    },
                )?)
            }
            None => None,
        };
        Ok(Some(crate::code_index::CodeSearch::start(
            root,
            dir,
            cfg.max_file_bytes,
            embedder,
        )?))
    }

    fn api_key_var(&self) -> Option<&str> {
        let m = &self.agent.model;
        m.api_key_env
            .as_deref()
            .or_else(|| m.provider.default_api_key_env())
    }

    fn provider_config(&self) -> Result<ProviderConfig> {
        let m = &self.agent.model;
        let kind = m.provider;
        let lookup = |var: &str| match &self.env {
            Some(f) => f(var),
            None => std::env::var(var).ok(),
        };
        let var = self.api_key_var().map(str::to_owned);
        let api_key = var
            .as_deref()
            .and_then(lookup)
            .filter(|k| !k.trim().is_empty());
        if api_key.is_none() && kind.requires_api_key() && self.provider.is_none() {
            return Err(Error::MissingApiKey {
                provider: m.provider.to_string(),
                var: var.unwrap_or_else(|| "an API key variable (model.api_key_env)".to_owned()),
            });
        }
        let base_url = match (&m.base_url, kind.base_url_env()) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(var)) => match lookup(var).filter(|u| !u.trim().is_empty()) {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => Some(url),
                Some(url) => {
                    return Err(Error::BadEnvironment {
                        var: var.to_owned(),
                        message: format!(
                            "'{url}' is not an http(s) URL, e.g. https://gateway.example/anthropic"
                        ),
                    });
                }
                None => None,
            },
            (None, None) => None,
        };
        let scripted_answers = match (&kind, &m.script) {
            (ProviderKind::Scripted, Some(path)) => Some(codepilot_llm::load_script(path)?),
            _ => None,
        };
        Ok(ProviderConfig {
            kind,
            model: m.name.clone(),
            api_key,
            base_url,
            temperature: m.temperature,
            max_tokens: m.max_tokens,
            thinking: m.thinking.enabled.then_some(m.thinking.budget_tokens),
            stream: m.stream,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(m.timeout_s),
            scripted_answers,
        })
    }

    /// The built-in tools the agent file enables, with their settings, and the settings terminals start with
    /// (`execute`'s, else the first enabled terminal tool's; `None` when no terminal tool is enabled).
    ///
    /// `send_input` can run a command too (typed into an idle shell, or into a REPL), so it passes the same gate
    /// as `execute`: when `execute` requires permission, so does `send_input`, whatever its own entry says.
    fn builtin_tools(&self) -> (Vec<(Builtin, ToolSettings)>, Option<ToolSettings>) {
        let entries = self.agent.effective_tools();
        let execute_gated = entries
            .iter()
            .filter(|e| e.name == Builtin::Execute.name())
            .any(|e| ToolSettings::from_config(&e.config).require_permission);
        let mut tools = Vec::new();
        let mut terminal_settings: Option<ToolSettings> = None;
        for entry in entries {
            let Some(builtin) = Builtin::from_name(&entry.name) else {
                continue;
            };
            // Only a worker asks a main agent.
            if builtin == Builtin::AskMainAgent && self.worker.is_none() {
                continue;
            }
            let mut settings = ToolSettings::from_config(&entry.config);
            if builtin == Builtin::SendInput {
                settings.require_permission |= execute_gated;
            }
            if builtin == Builtin::Execute || (builtin.is_terminal() && terminal_settings.is_none())
            {
                terminal_settings = Some(settings.clone());
            }
            tools.push((builtin, settings));
        }
        (tools, terminal_settings)
    }

    /// Builds the runtime: checks the API key, opens the session (taking its lease), creates the work directory and
    /// declares terminal `main` when terminal tools are enabled (its shell starts on first use).
    pub async fn build(self) -> Result<AsyncRuntime> {
        self.agent.validate()?;
        let budget = self.agent.model.context_budget()?;
        let provider = match &self.provider {
            Some(p) => Arc::clone(p),
            None => codepilot_llm::build_provider(self.provider_config()?)?,
        };
        let traces = crate::traces::Traces::new(
            &self.agent,
            self.worker.as_ref().map(|w| (w.agent_id, w.parent_id)),
            |var| match &self.env {
                Some(f) => f(var),
                None => std::env::var(var).ok(),
            },
        )?;
        let rt = &self.agent.runtime;
        let workspace =
            Workspace::new(&rt.work_dir, rt.unsafe_mode).map_err(|source| Error::WorkDir {
                path: rt.work_dir.clone(),
                source,
            })?;
        let sandbox = sandbox_policy(rt, workspace.root());
        let limits = session_limits(rt, workspace.root());
        let workspace = Arc::new(
            workspace
                .with_write_policy(sandbox.clone())
                .with_limits(limits),
        );
        let (builtins, terminal_settings) = self.builtin_tools();
        let mut registry = Registry::default();
        for (builtin, settings) in builtins {
            registry.insert(Arc::new(builtin), settings)?;
        }
        for tool in &self.tools {
            registry.insert_host(Arc::clone(tool))?;
        }

        let store = match &self.store {
            Some(s) => Arc::clone(s),
            None => codepilot_store::open_store(self.session.clone()).await?,
        };
        let id = match &self.session_id {
            Some(id) => id.parse::<SessionId>()?,
            None => SessionId::generate(),
        };
        let (lease, record) = store.open(&id, &self.agent.name).await?;
        // Renewed from here on: restoring a workspace from a slow store may take longer than the lease's TTL. What
        // a lost lease does to the runtime is wired in once the runtime exists.
        let lease = LeaseKeeper::new(Arc::clone(&store), lease);
        let runtime: Arc<OnceLock<Weak<Context>>> = Arc::default();
        let on_lost = Arc::clone(&runtime);
        lease.start_heartbeat(move |e| {
            let Some(cx) = on_lost.get().and_then(Weak::upgrade) else {
                return;
            };
            cx.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Store,
                message: e.to_string(),
            }));
            cx.control.cancel_now();
        });
        let started = match lease.current() {
            Some(held) => {
                self.start(
                    &*store,
                    &held,
                    &record,
                    &workspace,
                    sandbox,
                    terminal_settings,
                )
                .await
            }
            None => Err(Error::Closed),
        };
        let started = match (started, lease.lost_message()) {
            (Ok(started), None) => started,
            (Ok(_), Some(message)) => return Err(Error::LeaseLost(message)),
            (Err(e), _) => {
                if let Err(release) = lease.release().await {
                    tracing::warn!("releasing the session lease after a failed start: {release}");
                }
                return Err(e);
            }
        };

        let context = self.context_params(budget.budget);
        let limits = self.limits.clone().unwrap_or_else(|| Limits {
            wall_clock: Duration::from_secs(rt.step_timeout_s.max(1)),
            ..Limits::default()
        });
        let events = Arc::new(EventBus::new(id.to_string(), started.last_seq));
        let search = self.code_search(workspace.root())?;
        // A worker's warnings reach its parent's stream through its own; attaching it too would say them twice.
        if let (Some(search), None) = (&search, &self.worker) {
            search.attach(&events);
        }
        let mcp = self.start_mcp(&events);
        let worker_spend: Arc<std::sync::Mutex<crate::state::WorkerSpend>> = Arc::default();
        if let Some(hub) = &mcp {
            hub.set_sampler(Arc::new(super::sampling::RuntimeSampler {
                provider: Arc::clone(&provider),
                permission: self.permission.clone(),
                spend: Arc::clone(&worker_spend),
                prices: self.agent.model.prices(),
                model: self.agent.model.name.clone(),
            }));
            if let Some(asker) = &self.ask_user {
                hub.set_asker(Arc::clone(asker));
            }
        }
        let event_log = self.store_events.then(|| {
            let writer = super::event_log::EventWriter::start(Arc::clone(&lease));
            let pushed = Arc::clone(&writer);
            events.add(None, Arc::new(move |e| pushed.push(e)));
            writer
        });
        let snapshots = started.snapshots.map(Arc::new);
        let checkpoints = Arc::new(crate::agent::Checkpoints::new(
            self.agent.runtime.checkpoints,
            codepilot_store::checkpoint::CheckpointOptions {
                keep: self.agent.runtime.checkpoint_keep,
                max_file_bytes: self.agent.runtime.checkpoint_max_file_bytes,
                dir: self.checkpoint_dir.clone(),
            },
            self.snapshots
                .as_ref()
                .map(codepilot_store::snapshot::SnapshotStore::checkpoint_mirror),
        ));
        let tools = ToolBox::new(
            self.agent.clone(),
            registry,
            limits.clone(),
            mcp,
            workspace.root(),
        );
        let control = Arc::new(RunControl::new());
        let depth = self.worker.as_ref().map_or(0, |w| w.depth);
        let own_id = self.worker.as_ref().map_or(0, |w| w.agent_id);
        let workers = self
            .agent
            .effective_tools()
            .iter()
            .any(|t| t.name == Builtin::SpawnSubagent.name())
            .then(|| {
                super::workers::Workers::new(
                    super::workers::WorkerRecipe {
                        agent: self.agent.clone(),
                        store: Arc::clone(&store),
                        env: self.env.clone(),
                        permission: self.permission.clone(),
                        ask_user: self.ask_user.clone(),
                        host_tools: self.tools.clone(),
                        checkpoint_dir: self.checkpoint_dir.clone(),
                        search: search.clone(),
                        provider: Arc::clone(&provider),
                        depth,
                    },
                    id.to_string(),
                    Arc::downgrade(&events),
                    Arc::downgrade(&control),
                    own_id,
                    self.worker.as_ref().map(|w| Arc::clone(&w.ids)),
                    Arc::downgrade(&worker_spend),
                ) as Arc<dyn crate::tools::Delegate>
            });
        if let Some(link) = &self.worker {
            // A worker's events go into its parent's stream, marked with the worker (its own workers' keep theirs).
            let parent = link.parent_events.clone();
            let spend = link.spend.clone();
            let (agent_id, parent_id) = (link.agent_id, link.parent_id);
            events.add(
                None,
                Arc::new(move |e: &codepilot_protocol::EventEnvelope| {
                    // Every call below the parent counts toward its limits: this worker's and its own workers'.
                    if let (Event::Usage(u), Some(sink)) = (&e.event, spend.upgrade()) {
                        let mut sink = codepilot_protocol::sync::lock(&sink);
                        sink.tokens.add(&u.call);
                        sink.cost_usd += u.cost_usd.unwrap_or(0.0);
                    }
                    if let Some(bus) = parent.upgrade() {
                        let (id, of) = e.agent_id.zip(e.parent).unwrap_or((agent_id, parent_id));
                        bus.forward(e.event.clone(), id, of);
                    }
                }),
            );
        }
        let cx = Arc::new(Context {
            provider,
            env: Arc::new(ToolEnv {
                workspace,
                ledger: Arc::new(ReadLedger::default()),
                terminals: started.terminals,
                ask_user: self.ask_user,
                events: Arc::clone(&events),
                workers,
                worker: self.worker.map(Arc::new),
                search,
                search_note_given: std::sync::atomic::AtomicBool::new(false),
            }),
            tools,
            events,
            session: SessionCell::new(store, SessionState::from_record(id, record, context)),
            lease,
            control,
            permission: self.permission,
            limits,
            context,
            max_steps: self.agent.runtime.max_steps,
            spending: crate::agent::Spending {
                run: self.agent.runtime.limits,
                session: self.agent.runtime.session_limits,
                prices: self.agent.model.prices(),
                max_output: self.agent.model.max_output_tokens(),
                output_retries: self.agent.runtime.output_retries,
            },
            last_spend: std::sync::Mutex::new(None),
            traces,
            worker_spend,
            checkpoints,
            hooks: snapshots.as_ref().map(|s| {
                Arc::new(super::snapshots::SnapshotHooks(Arc::clone(s))) as Arc<dyn RunHooks>
            }),
        });
        let _ = runtime.set(Arc::downgrade(&cx));
        Ok(AsyncRuntime {
            inner: Arc::new(Inner {
                agent_name: self.agent.name,
                cx,
                event_log,
                snapshots,
            }),
        })
    }

    /// What starts once the session's lease is held: the agent source recorded, the workspace restored from its
    /// snapshot, the terminals, the event numbering. The caller gives the lease back when this fails.
    async fn start(
        &self,
        store: &dyn SessionStore,
        lease: &codepilot_store::Lease,
        record: &codepilot_store::SessionRecord,
        workspace: &Workspace,
        sandbox: Option<codepilot_sandbox::Policy>,
        terminal_settings: Option<ToolSettings>,
    ) -> Result<Started> {
        let id = lease.session();
        let snapshots = match &self.snapshots {
            Some(snapshots) => {
                let prepared = snapshots
                    .prepare(record, workspace.root(), self.restore)
                    .await?;
                if let codepilot_store::snapshot::Prepared::Restored {
                    key, files, size, ..
                } = &prepared
                {
                    tracing::info!(
                        "restored the workspace of session {id} from snapshot {key} ({files} files, {size} bytes)"
                    );
                }
                Some(super::snapshots::Snapshots::new(
                    snapshots.clone(),
                    prepared,
                    record.meta.snapshot.clone(),
                ))
            }
            None => None,
        };
        let terminals = match terminal_settings {
            Some(settings) => {
                let mut cfg = TerminalConfig::new(workspace.root().to_path_buf());
                // The key variable the agent file names never reaches a shell, whatever it is called.
                cfg.hidden_vars
                    .extend(self.api_key_var().map(str::to_owned));
                cfg.hidden_vars.extend(
                    self.agent
                        .search
                        .embeddings
                        .as_ref()
                        .and_then(|e| e.api_key_env.clone()),
                );
                // So do MCP servers' client secrets.
                cfg.hidden_vars.extend(
                    self.agent
                        .mcp_servers
                        .iter()
                        .filter_map(|s| s.oauth.as_ref()?.client_secret_env.clone()),
                );
                if let Some(n) = settings.max_output_chars {
                    cfg.max_output_chars = n;
                }
                cfg.socket_dir.clone_from(&self.socket_dir);
                cfg.sandbox = sandbox;
                // The session's limits: the same the file tools obey.
                cfg.limits = workspace.limits().cloned();
                let mgr = TerminalManager::new(cfg).await?;
                // Started on first use (a tool, a person attaching): a run that never uses a terminal never waits
                // for bash.
                mgr.declare("main")?;
                Some(mgr)
            }
            None => None,
        };
        // Recorded last: a start that fails (a refused restore, a terminal that does not start) leaves the
        // session's record as it was.
        if let Some(source) = &self.agent_source {
            store.set_agent_source(lease, source).await?;
        }
        let last_seq = if self.store_events {
            store.last_event_seq(id).await?
        } else {
            0
        };
        Ok(Started {
            snapshots,
            terminals,
            last_seq,
        })
    }

    /// How requests are budgeted: the token counter for the model, the budget, the maintenance threshold.
    fn context_params(&self, budget: u64) -> ContextParams {
        let model = &self.agent.model;
        if model.context_window.is_none()
            && codepilot_llm::known_context_window(&model.name).is_none()
            && model.provider != ProviderKind::Scripted
        {
            tracing::warn!(
                "model `{}` has no known context window; assuming {} tokens (set model.context_window in \
                 agent.yaml)",
                model.name,
                codepilot_llm::DEFAULT_CONTEXT_WINDOW
            );
        }
        let context = ContextParams {
            counter: TokenCounter::for_model(model.provider, &model.name),
            budget,
            threshold: self.agent.runtime.context_threshold,
        };
        if context.counter.is_exact() {
            // Loading the tokenizer takes ~0.1 s; do it while the rest starts.
            let counter = context.counter;
            std::thread::spawn(move || counter.warm_up());
        }
        context
    }

    /// Starts the agent file's MCP servers in the background; their failures become `mcp` runtime errors.
    fn start_mcp(&self, events: &Arc<EventBus>) -> Option<Arc<crate::mcp::McpHub>> {
        if self.agent.mcp_servers.is_empty() {
            return None;
        }
        let env: crate::mcp::EnvLookup = match &self.env {
            Some(f) => Arc::clone(f),
            None => Arc::new(|var: &str| std::env::var(var).ok()),
        };
        let bus = Arc::downgrade(events);
        let auth = crate::mcp::McpAuth {
            home: codepilot_store::codepilot_home().ok(),
            approver: self.mcp_login.as_ref().map(|handler| {
                Arc::new(crate::mcp::loopback::LoopbackApprover::new(Arc::clone(
                    handler,
                ))) as Arc<dyn crate::mcp::auth::Approver>
            }),
            login: crate::mcp::auth::LoginOptions::default(),
        };
        Some(crate::mcp::McpHub::start_with_auth(
            &self.agent.mcp_servers,
            env,
            Arc::new(move |message: &str| {
                if let Some(bus) = bus.upgrade() {
                    bus.emit(Event::RuntimeError(RuntimeErrorEvent {
                        kind: ErrorKind::Mcp,
                        message: message.to_owned(),
                    }));
                }
            }),
            auth,
        ))
    }
}

/// What [`RuntimeBuilder::start`] started.
struct Started {
    snapshots: Option<super::snapshots::Snapshots>,
    terminals: Option<TerminalManager>,
    last_seq: u64,
}
