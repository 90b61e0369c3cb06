//! Opening and closing sessions. `session/start` and `session/resume` open a session through one path,
//! [`Daemon::open`]: the session's lease is taken, its workspace restored from its snapshot when the daemon keeps
//! snapshots (SPEC §17), its events logged for subscribers, and the caller subscribed. `session/read` only reads
//! the store.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::store::AgentSource;
use codepilot::store::SessionId;
use codepilot::store::snapshot::Prepared;
use codepilot_protocol::rpc::RestoreMode;
use codepilot_protocol::rpc::RestoredWorkspace;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::SessionReadResult;
use codepilot_protocol::rpc::SessionResumeParams;
use codepilot_protocol::rpc::SessionResumeResult;
use codepilot_protocol::rpc::SessionStartParams;
use codepilot_protocol::rpc::SessionStartResult;
use codepilot_protocol::rpc::codes;

use crate::Daemon;
use crate::engine_error;
use crate::session::AskViaClients;
use crate::session::LoginViaClients;
use crate::session::PermissionViaClients;
use crate::session::SessionHost;
use crate::session::Shared;
use crate::session::Subscriber;
use crate::unknown_session;
use codepilot_protocol::sync::lock;

/// How a client asked to open a session.
struct OpenRequest {
    /// The agent to run it with; when `None`, the one the store recorded for it (`session/resume`).
    agent: Option<Agent>,
    /// Overrides the work directory of the recorded agent.
    work_dir: Option<String>,
    /// What to do with a work directory that lacks the session's snapshot.
    restore: Option<RestoreMode>,
    /// `session/resume`: the session must be in the store already.
    stored_only: bool,
}

/// An agent to open a session with, and what the store keeps of it to open the session with it again elsewhere.
struct Agent {
    file: AgentFile,
    source: AgentSource,
}

impl Agent {
    /// Parses `yaml` (read from `file`, the base of its relative paths, or given as text when `None`), with
    /// `work_dir` applied and made absolute.
    fn parse(
        yaml: String,
        file: Option<PathBuf>,
        work_dir: Option<&Path>,
    ) -> Result<Self, codepilot::config::ConfigError> {
        let mut agent = AgentFile::from_yaml_str(&yaml, file.as_deref())?;
        if let Some(dir) = work_dir {
            agent.runtime.work_dir = dir.to_path_buf();
        }
        agent.runtime.work_dir = absolute(&agent.runtime.work_dir);
        Ok(Self {
            source: AgentSource {
                yaml,
                file,
                work_dir: agent.runtime.work_dir.clone(),
            },
            file: agent,
        })
    }
}

/// `path` made absolute against the daemon's current directory (as given when that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The agent named by `agent_file` (a path on the daemon's machine) or `agent` (YAML text), with `work_dir`
/// applied; `None` when neither is given.
fn load_agent(
    method: &str,
    agent_file: Option<&str>,
    agent: Option<&str>,
    work_dir: Option<&str>,
) -> Result<Option<Agent>, RpcError> {
    let (yaml, file) = match (agent_file, agent) {
        (None, None) => return Ok(None),
        (Some(path), None) => {
            let path = absolute(Path::new(path));
            let yaml = AgentFile::read_text(&path)
                .map_err(|e| RpcError::new(codes::BAD_AGENT_CONFIG, e.to_string()))?;
            (yaml, Some(path))
        }
        (None, Some(text)) => (text.to_owned(), None),
        (Some(_), Some(_)) => {
            return Err(RpcError::new(
                codes::INVALID_PARAMS,
                format!(
                    "{method} takes one of agent_file (a path) and agent (YAML text), not both"
                ),
            ));
        }
    };
    Agent::parse(yaml, file, work_dir.map(Path::new))
        .map(Some)
        .map_err(|e| RpcError::new(codes::BAD_AGENT_CONFIG, e.to_string()))
}

/// The agent the store recorded for session `id` — its file read again when it still exists — with `work_dir`
/// applied (else the recorded work directory).
fn recorded_agent(
    id: &SessionId,
    source: Option<AgentSource>,
    work_dir: Option<&str>,
) -> Result<Agent, RpcError> {
    let source = source.ok_or_else(|| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "session {:?} is not open in this daemon and the store has no agent for it (the CLI, the Python \
                 package or an older daemon created it): pass agent_file (a path) or agent (YAML text) to resume it \
                 here, or read its history with session/read",
                id.as_str()
            ),
        )
    })?;
    let work_dir = work_dir.map_or_else(|| source.work_dir.clone(), PathBuf::from);
    // The agent file as it is now when this machine has it, so an edit made since (a tightened permission, another
    // model) applies; the recorded text when it is gone.
    let yaml = match &source.file {
        Some(path) if path.is_file() => AgentFile::read_text(path)
            .map_err(|e| RpcError::new(codes::BAD_AGENT_CONFIG, e.to_string()))?,
        _ => source.yaml,
    };
    Agent::parse(yaml, source.file, Some(&work_dir)).map_err(|e| {
        RpcError::new(
            codes::BAD_AGENT_CONFIG,
            format!(
                "the agent session {:?} was last opened with does not load in this daemon: {e}; pass agent_file \
                 (a path) or agent (YAML text) to resume it with another",
                id.as_str()
            ),
        )
    })
}

fn session_id(id: &str) -> Result<SessionId, RpcError> {
    id.parse::<SessionId>()
        .map_err(|e| RpcError::new(codes::INVALID_PARAMS, e.to_string()))
}

impl Daemon {
    /// `session/start`: creates a session, or opens a stored one, and subscribes the caller.
    pub(crate) async fn start_session(
        &self,
        caller: &Arc<dyn Subscriber>,
        params: SessionStartParams,
    ) -> Result<SessionStartResult, RpcError> {
        let agent = load_agent(
            "session/start",
            params.agent_file.as_deref(),
            params.agent.as_deref(),
            params.work_dir.as_deref(),
        )?
        .ok_or_else(|| {
            RpcError::new(
                codes::INVALID_PARAMS,
                "session/start needs exactly one of agent_file (a path) and agent (YAML text)",
            )
        })?;
        let id = match params.session_id {
            Some(id) => session_id(&id)?,
            None => SessionId::generate(),
        };
        let request = OpenRequest {
            agent: Some(agent),
            work_dir: None,
            restore: params.restore,
            stored_only: false,
        };
        let (_, restored) = self.open(caller, &id, request).await?;
        Ok(SessionStartResult {
            session_id: id.to_string(),
            restored,
        })
    }

    /// `session/resume`: opens a stored session here unless it is open already (with the agent given, else the one
    /// the store recorded), subscribes the caller, and returns the conversation.
    pub(crate) async fn resume_session(
        &self,
        caller: &Arc<dyn Subscriber>,
        params: SessionResumeParams,
    ) -> Result<SessionResumeResult, RpcError> {
        let id = session_id(&params.session_id)?;
        let request = OpenRequest {
            agent: load_agent(
                "session/resume",
                params.agent_file.as_deref(),
                params.agent.as_deref(),
                params.work_dir.as_deref(),
            )?,
            work_dir: params.work_dir,
            restore: params.restore,
            stored_only: true,
        };
        let (host, restored) = self.open(caller, &id, request).await?;
        Ok(SessionResumeResult {
            session_id: id.to_string(),
            messages: host.rt.history(),
            restored,
        })
    }

    /// `session/read`: the conversation, from the open session or the store; nothing is opened.
    pub(crate) async fn read_session(
        &self,
        session_id: &str,
    ) -> Result<SessionReadResult, RpcError> {
        let messages = match self.open_session(session_id) {
            Some(host) => host.rt.history(),
            None => {
                self.inner
                    .store
                    .load(&self::session_id(session_id)?)
                    .await
                    .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?
                    .ok_or_else(|| not_stored(session_id))?
                    .messages
            }
        };
        Ok(SessionReadResult {
            session_id: session_id.to_owned(),
            messages,
        })
    }

    /// Opens session `id` in this daemon (or finds it open) and subscribes `caller` to its live events unless it
    /// follows them already; the session and the workspace restored from its snapshot, if one was.
    async fn open(
        &self,
        caller: &Arc<dyn Subscriber>,
        id: &SessionId,
        request: OpenRequest,
    ) -> Result<(Arc<SessionHost>, Option<RestoredWorkspace>), RpcError> {
        let (host, restored) = {
            let _opening = self.opening(id.as_str()).await;
            match self.open_session(id.as_str()) {
                Some(host) => (host, None),
                None => self.open_here(id, request).await?,
            }
        };
        if !host.shared.is_subscribed(caller.id()) {
            host.shared.subscribe(caller, None);
        }
        Ok((host, restored))
    }

    /// Builds the session's runtime; called with the id's opening lock held and the session not open here.
    async fn open_here(
        &self,
        id: &SessionId,
        request: OpenRequest,
    ) -> Result<(Arc<SessionHost>, Option<RestoredWorkspace>), RpcError> {
        let recorded = if request.stored_only {
            self.inner
                .store
                .load(id)
                .await
                .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?
                .ok_or_else(|| not_stored(id.as_str()))?
                .meta
                .agent_source
        } else {
            None
        };
        let agent = match request.agent {
            Some(agent) => agent,
            None => recorded_agent(id, recorded, request.work_dir.as_deref())?,
        };
        let base_seq = self
            .inner
            .store
            .last_event_seq(id)
            .await
            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?;
        let shared = Shared::new(
            id.to_string(),
            (Arc::clone(&self.inner.store), base_seq),
            Arc::clone(&self.inner.next_request),
            self.inner.config.request_timeout,
            self.inner.config.stall_timeout,
        );
        let mut builder = AsyncRuntime::builder(agent.file).agent_source(agent.source);
        if let Some(env) = &self.inner.config.env {
            let env = Arc::clone(env);
            builder = builder.env(move |var| env(var));
        }
        if let Some(dir) = &self.inner.config.checkpoint_dir {
            builder = builder.checkpoint_dir(dir.clone());
        }
        if let Some(dir) = &self.inner.config.index_dir {
            builder = builder.index_dir(dir.clone());
        }
        if let Some(snapshots) = &self.inner.config.snapshots {
            builder = builder.snapshots(snapshots.clone()).restore(
                match request.restore.unwrap_or(RestoreMode::IfEmpty) {
                    RestoreMode::IfEmpty => codepilot::store::snapshot::RestoreMode::IfEmpty,
                    RestoreMode::Replace => codepilot::store::snapshot::RestoreMode::Replace,
                    RestoreMode::Skip => codepilot::store::snapshot::RestoreMode::Skip,
                },
            );
        }
        let rt = builder
            .store(Arc::clone(&self.inner.store))
            .store_events(true)
            .session_id(id.to_string())
            .permission_handler(PermissionViaClients(Arc::clone(&shared)))
            .ask_user_handler(AskViaClients(Arc::clone(&shared)))
            .mcp_login_handler(LoginViaClients::new(Arc::clone(&shared)))
            .build()
            .await
            .map_err(|e| engine_error(&e))?;
        let restored = match rt.workspace_restore() {
            Some(Prepared::Restored {
                key,
                files,
                size,
                elapsed,
            }) => Some(RestoredWorkspace {
                snapshot: key.clone(),
                files: *files,
                size: *size,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            }),
            _ => None,
        };
        let log = Arc::clone(&shared);
        let probe = self.inner.config.event_probe.clone();
        rt.on_envelope(move |e| {
            if let Some(probe) = &probe {
                probe(e);
            }
            log.on_envelope(e);
        });
        let host = Arc::new(SessionHost {
            rt,
            shared,
            starting: tokio::sync::Mutex::new(()),
        });
        lock(&self.inner.sessions).insert(id.to_string(), Arc::clone(&host));
        Ok((host, restored))
    }

    /// `session/close`: aborts a running turn, ends every subscription, closes the runtime (its lease is
    /// released).
    pub(crate) async fn close_session(&self, session_id: &str) -> Result<(), RpcError> {
        let _opening = self.opening(session_id).await;
        let host = lock(&self.inner.sessions)
            .remove(session_id)
            .ok_or_else(|| unknown_session(session_id))?;
        host.rt.abort();
        host.shared.unsubscribe_all();
        host.rt.close().await.map_err(|e| engine_error(&e))
    }
}

/// A session the store does not hold.
fn not_stored(session_id: &str) -> RpcError {
    RpcError::new(
        codes::UNKNOWN_SESSION,
        format!(
            "no session {session_id:?} in this daemon's store; session/list shows the stored ones, session/start creates one"
        ),
    )
}
