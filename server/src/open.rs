//! Opening and closing sessions. `session/start` and `session/resume` open a session through one path,
//! [`Daemon::open`]: the session's lease is taken, its workspace restored from its snapshot when the daemon keeps
//! snapshots (SPEC §17), its events logged for subscribers, and the caller subscribed. `session/read` only reads
//! the store.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
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
use crate::session::PermissionViaClients;
use crate::session::SessionHost;
use crate::session::Shared;
use crate::session::Subscriber;
use crate::sync::lock;
use crate::unknown_session;

/// How a client asked to open a session.
struct OpenRequest {
    /// The agent to run it with; needed unless the session is open here already.
    agent: Option<AgentFile>,
    /// What to do with a work directory that lacks the session's snapshot.
    restore: Option<RestoreMode>,
    /// `session/resume`: the session must be in the store already.
    stored_only: bool,
}

/// The agent named by `agent_file` (a path on the daemon's machine) or `agent` (YAML text), with `work_dir`
/// applied; `None` when neither is given.
fn load_agent(
    method: &str,
    agent_file: Option<&str>,
    agent: Option<&str>,
    work_dir: Option<&str>,
) -> Result<Option<AgentFile>, RpcError> {
    let loaded = match (agent_file, agent) {
        (None, None) => return Ok(None),
        (Some(path), None) => AgentFile::load(Path::new(path)),
        (None, Some(text)) => AgentFile::from_yaml_str(text, None),
        (Some(_), Some(_)) => {
            return Err(RpcError::new(
                codes::INVALID_PARAMS,
                format!(
                    "{method} takes one of agent_file (a path) and agent (YAML text), not both"
                ),
            ));
        }
    };
    let mut agent = loaded.map_err(|e| RpcError::new(codes::BAD_AGENT_CONFIG, e.to_string()))?;
    if let Some(dir) = work_dir {
        agent.runtime.work_dir = PathBuf::from(dir);
    }
    Ok(Some(agent))
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
            restore: params.restore,
            stored_only: false,
        };
        let (_, restored) = self.open(caller, &id, request).await?;
        Ok(SessionStartResult {
            session_id: id.to_string(),
            restored,
        })
    }

    /// `session/resume`: opens a stored session here unless it is open already, subscribes the caller, and
    /// returns the conversation.
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
        if request.stored_only {
            let stored = self
                .inner
                .store
                .load(id)
                .await
                .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?;
            if stored.is_none() {
                return Err(not_stored(id.as_str()));
            }
        }
        let agent = request.agent.ok_or_else(|| {
            RpcError::new(
                codes::INVALID_PARAMS,
                format!(
                    "session {:?} is not open in this daemon, and the store keeps its history but not its agent: \
                     pass agent_file (a path) or agent (YAML text) to resume it here, or read its history with \
                     session/read",
                    id.as_str()
                ),
            )
        })?;
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
        let mut builder = AsyncRuntime::builder(agent);
        if let Some(env) = &self.inner.config.env {
            let env = Arc::clone(env);
            builder = builder.env(move |var| env(var));
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
