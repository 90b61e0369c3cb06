//! The CodePilot daemon behind `codepilot serve` (SPEC §13): many sessions in one process, driven by any number
//! of clients over JSON-RPC 2.0.
//!
//! Sessions live in the daemon, not in a connection: a client starts or resumes one, subscribes to its events,
//! starts turns, steers and interrupts them, and answers the permission and ask-user requests the session sends to
//! its subscribers. A client that drops and comes back resubscribes with `after_seq` and is replayed what it
//! missed (see [`session`](crate::session) for how the log and its pumps keep a slow client from slowing a
//! session).
//!
//! ```no_run
//! # async fn demo() -> Result<(), codepilot_server::ServeError> {
//! use codepilot_server::{Daemon, DaemonConfig, Listen};
//! let daemon = Daemon::start(DaemonConfig::default()).await?;
//! daemon.serve(vec![Listen::Unix("/run/codepilot/runtime.sock".into())]).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod conn;
mod session;
mod transport;
mod ui;
mod web;
mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::StoreConfig;
use codepilot::store::SessionId;
use codepilot::store::SessionStore;
use codepilot::store::StoreOptions;
use codepilot::store::snapshot::Prepared;
use codepilot::store::snapshot::Saved;
use codepilot::store::snapshot::SnapshotStore;
use codepilot_protocol::rpc::ClientInfo;
use codepilot_protocol::rpc::ClientRequest;
use codepilot_protocol::rpc::Empty;
use codepilot_protocol::rpc::InitializeResult;
use codepilot_protocol::rpc::PROTOCOL_VERSION;
use codepilot_protocol::rpc::RawMessage;
use codepilot_protocol::rpc::RestoreMode;
use codepilot_protocol::rpc::RestoredWorkspace;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::SessionListResult;
use codepilot_protocol::rpc::SessionResumeResult;
use codepilot_protocol::rpc::SessionStartParams;
use codepilot_protocol::rpc::SessionStartResult;
use codepilot_protocol::rpc::SessionStatus;
use codepilot_protocol::rpc::SessionSummary;
use codepilot_protocol::rpc::SnapshotResult;
use codepilot_protocol::rpc::SubscribeResult;
use codepilot_protocol::rpc::TerminalInfo;
use codepilot_protocol::rpc::TerminalListResult;
use codepilot_protocol::rpc::TurnStartResult;
use codepilot_protocol::rpc::codes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use conn::serve_connection;
pub use transport::Listen;
pub use transport::ServeError;

use conn::Conn;
use session::AskViaClients;
use session::PermissionViaClients;
use session::SessionHost;
use session::Shared;
use session::lock;

/// How the daemon runs.
#[derive(Clone)]
pub struct DaemonConfig {
    /// Where sessions are stored (default: in memory).
    pub store: StoreConfig,
    /// How long a permission or ask-user request waits for any client's answer before it is denied.
    pub request_timeout: Duration,
    /// How long a subscriber may keep its queue full before its subscription ends (it is told, and resubscribes).
    pub stall_timeout: Duration,
    /// Outgoing event lines queued per connection.
    pub queue: usize,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// The token WebSocket clients must present; required for a `ws://` listener.
    pub token: Option<String>,
    /// Browser origins allowed besides the daemon's own page (e.g. a code-server's).
    pub allowed_origins: Vec<String>,
    /// Called with every event as the engine emits it, before any client sees it (metrics, tracing, benchmarks).
    pub event_probe: Option<EventProbe>,
    /// Where work directories are kept between daemons (SPEC §17): restored when a session starts on a daemon
    /// that lacks its workspace, saved at the end of every turn and on `session/snapshot`. Default: none.
    pub snapshots: Option<SnapshotStore>,
    /// How the daemon takes session leases: their TTL, and the node name (default: this host's name) that tells
    /// daemons on other machines apart. Daemons sharing a store need distinct node names.
    pub store_options: StoreOptions,
    /// Where sessions read environment variables (API keys, base URLs) instead of the process environment: a host
    /// that took its secrets out of the environment the agents' shells inherit passes its private copy here.
    pub env: Option<EnvLookup>,
}

/// See [`DaemonConfig::env`].
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// See [`DaemonConfig::event_probe`].
pub type EventProbe = Arc<dyn Fn(&codepilot::EventEnvelope) + Send + Sync>;

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConfig")
            .field("store", &self.store)
            .field("request_timeout", &self.request_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("queue", &self.queue)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_origins", &self.allowed_origins)
            .field("event_probe", &self.event_probe.is_some())
            .field(
                "snapshots",
                &self.snapshots.as_ref().map(SnapshotStore::url),
            )
            .field("store_options", &self.store_options)
            .field("env", &self.env.is_some())
            .finish()
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::Memory,
            request_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(30),
            queue: 1024,
            max_message_bytes: 8 << 20,
            token: None,
            allowed_origins: Vec::new(),
            event_probe: None,
            snapshots: None,
            store_options: StoreOptions::default(),
            env: None,
        }
    }
}

struct Inner {
    config: DaemonConfig,
    store: Arc<dyn SessionStore>,
    sessions: Mutex<HashMap<String, Arc<SessionHost>>>,
    /// Serialises `session/start` and `session/close` of one id, so it is never opened twice; other ids go on
    /// (a start may take a while: it can restore a workspace).
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_request: Arc<AtomicU64>,
    next_connection: AtomicU64,
    shutdown: CancellationToken,
    /// Addresses the HTTP listeners bound (a `:0` port resolved).
    bound: tokio::sync::watch::Sender<Vec<std::net::SocketAddr>>,
}

/// The daemon: its sessions and their store. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

/// Held while a session starts or closes (see [`Daemon::opening`]); forgets the id's lock when nobody else waits.
struct Opening {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    daemon: Daemon,
    id: String,
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut slots = lock(&self.daemon.inner.opening);
        drop(self.guard.take());
        // Only the map holds it now: nobody is waiting for this id.
        if slots
            .get(&self.id)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(&self.id);
        }
    }
}

/// A method's failure, as the JSON-RPC error it becomes.
type Reply = Result<serde_json::Value, RpcError>;

fn ok(value: impl Serialize) -> Reply {
    serde_json::to_value(value).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

/// An engine error as the JSON-RPC error a client can act on.
fn engine_error(error: &codepilot::Error) -> RpcError {
    let code = match error {
        codepilot::Error::Store(e) if e.is_lease_held() => codes::SESSION_LEASED,
        codepilot::Error::Busy => codes::TURN_RUNNING,
        codepilot::Error::Snapshot(_) => codes::SNAPSHOT_FAILED,
        e if e.is_config() => codes::BAD_AGENT_CONFIG,
        _ => codes::INTERNAL_ERROR,
    };
    RpcError::new(code, error.to_string())
}

fn unknown_session(id: &str) -> RpcError {
    RpcError::new(
        codes::UNKNOWN_SESSION,
        format!("no session {id:?} is open in this daemon; start or resume it with session/start"),
    )
}

impl Daemon {
    /// Opens the session store; serve it with [`Daemon::serve`] or [`serve_connection`].
    ///
    /// # Errors
    /// The store cannot be opened.
    pub async fn start(config: DaemonConfig) -> Result<Self, ServeError> {
        let store =
            codepilot::store::open_store_with(config.store.clone(), config.store_options.clone())
                .await
                .map_err(ServeError::Store)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                sessions: Mutex::new(HashMap::new()),
                opening: Mutex::new(HashMap::new()),
                next_request: Arc::new(AtomicU64::new(1)),
                next_connection: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
                bound: tokio::sync::watch::Sender::new(Vec::new()),
            }),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &DaemonConfig {
        &self.inner.config
    }

    pub(crate) fn note_bound(&self, addr: std::net::SocketAddr) {
        self.inner.bound.send_modify(|b| b.push(addr));
    }

    /// The addresses of the HTTP listeners once bound (waits for the first).
    pub async fn http_addrs(&self) -> Vec<std::net::SocketAddr> {
        let mut rx = self.inner.bound.subscribe();
        match rx.wait_for(|b| !b.is_empty()).await {
            Ok(b) => b.clone(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.inner.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    fn host(&self, id: &str) -> Result<Arc<SessionHost>, RpcError> {
        lock(&self.inner.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| unknown_session(id))
    }

    /// The open session `id`.
    pub(crate) fn open_session(&self, id: &str) -> Option<Arc<SessionHost>> {
        lock(&self.inner.sessions).get(id).cloned()
    }

    pub(crate) fn unsubscribe(&self, session_id: &str, conn_id: u64) {
        if let Ok(host) = self.host(session_id) {
            host.shared.unsubscribe(conn_id);
        }
    }

    /// Closes every session (aborting running turns) and ends every connection.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let hosts: Vec<Arc<SessionHost>> =
            lock(&self.inner.sessions).drain().map(|(_, h)| h).collect();
        for host in hosts {
            host.rt.abort();
            if let Err(e) = host.rt.close().await {
                tracing::warn!("closing session {}: {e}", host.shared.session_id);
            }
        }
    }

    /// Handles one line from a connection; returns the response line, if the message wants one.
    pub(crate) async fn handle_line(&self, conn: &mut Conn, line: &str) -> Option<String> {
        let message: RawMessage = match serde_json::from_str(line) {
            Ok(m) => m,
            Err(e) => {
                let code = if serde_json::from_str::<serde_json::Value>(line).is_ok() {
                    codes::INVALID_REQUEST
                } else {
                    codes::PARSE_ERROR
                };
                return Some(wire::error(
                    None,
                    &RpcError::new(code, format!("not a JSON-RPC 2.0 message: {e}")),
                ));
            }
        };
        if message.jsonrpc != "2.0" {
            return Some(wire::error(
                message.id.as_ref(),
                &RpcError::new(codes::INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""),
            ));
        }
        match (message.id, message.method) {
            (Some(id), Some(method)) => {
                let reply = self.call(conn, &method, message.params).await;
                Some(match reply {
                    Ok(result) => wire::response(&id, &result),
                    Err(error) => wire::error(Some(&id), &error),
                })
            }
            (Some(id), None) => {
                // A client's answer to one of our requests.
                let value = match (message.result, message.error) {
                    (Some(result), _) => Some(result),
                    (None, _) => None,
                };
                self.answer(conn, &id, value);
                None
            }
            // Client notifications need no reply and change nothing here.
            (None, Some(_)) => None,
            (None, None) => Some(wire::error(
                None,
                &RpcError::new(
                    codes::INVALID_REQUEST,
                    "a message needs \"method\" or \"id\"",
                ),
            )),
        }
    }

    /// Routes an answer to the session that asked (any session this connection subscribes to).
    fn answer(
        &self,
        conn: &Conn,
        id: &codepilot_protocol::rpc::RequestId,
        value: Option<serde_json::Value>,
    ) {
        let sessions: Vec<String> = lock(&conn.sessions).iter().cloned().collect();
        for session in sessions {
            if let Ok(host) = self.host(&session)
                && host.shared.has_request(id)
            {
                host.shared.resolve(id, value);
                return;
            }
        }
        tracing::debug!("an answer to unknown request {id:?}");
    }

    async fn call(
        &self,
        conn: &mut Conn,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Reply {
        let mut object = serde_json::Map::new();
        object.insert(
            "method".to_owned(),
            serde_json::Value::String(method.to_owned()),
        );
        object.insert(
            "params".to_owned(),
            params.unwrap_or_else(|| serde_json::json!({})),
        );
        let request: ClientRequest = match serde_json::from_value(serde_json::Value::Object(object))
        {
            Ok(r) => r,
            Err(e) if ClientRequest::METHODS.contains(&method) => {
                return Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    format!("{method}: {e}"),
                ));
            }
            Err(_) => {
                return Err(RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    format!(
                        "unknown method {method:?}; the methods are {}",
                        ClientRequest::METHODS.join(", ")
                    ),
                ));
            }
        };
        if !conn.initialized && !matches!(request, ClientRequest::Initialize(_)) {
            return Err(RpcError::new(
                codes::NOT_INITIALIZED,
                "call initialize first",
            ));
        }
        match request {
            ClientRequest::Initialize(_) => {
                conn.initialized = true;
                ok(InitializeResult {
                    server: ClientInfo {
                        name: "codepilot".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    },
                    protocol: PROTOCOL_VERSION,
                })
            }
            ClientRequest::SessionStart(params) => {
                let (id, restored) = self.start_session(params).await?;
                self.subscribe(conn, &id, None)?;
                ok(SessionStartResult {
                    session_id: id,
                    restored,
                })
            }
            ClientRequest::SessionSnapshot(p) => {
                let host = self.host(&p.session_id)?;
                match host.rt.snapshot().await {
                    Ok(Some(Saved::Stored { info, .. })) => ok(SnapshotResult {
                        snapshot: info.key,
                        saved: true,
                    }),
                    Ok(Some(Saved::Unchanged { key })) => ok(SnapshotResult {
                        snapshot: key,
                        saved: false,
                    }),
                    Ok(None) => Err(RpcError::new(
                        codes::SNAPSHOT_FAILED,
                        "this daemon keeps no snapshots; start it with --snapshots file:///DIR or s3://BUCKET/PREFIX",
                    )),
                    Err(e) => Err(engine_error(&e)),
                }
            }
            ClientRequest::SessionResume(p) => self.resume(&p.session_id).await,
            ClientRequest::SessionSubscribe(p) => {
                let last_seq = self.subscribe(conn, &p.session_id, p.after_seq)?;
                ok(SubscribeResult {
                    session_id: p.session_id,
                    last_seq,
                })
            }
            ClientRequest::SessionList(Empty {}) => self.list().await,
            ClientRequest::SessionClose(p) => {
                self.close_session(&p.session_id).await?;
                lock(&conn.sessions).remove(&p.session_id);
                ok(Empty {})
            }
            ClientRequest::TurnStart(p) => self.start_turn(&p.session_id, p.text).await,
            ClientRequest::TurnSteer(p) => {
                self.host(&p.session_id)?.rt.send_message(p.text);
                ok(Empty {})
            }
            ClientRequest::TurnInterrupt(p) => {
                self.host(&p.session_id)?.rt.abort();
                ok(Empty {})
            }
            ClientRequest::TerminalList(p) => {
                let host = self.host(&p.session_id)?;
                let terminals = host
                    .rt
                    .terminals()
                    .map(|t| {
                        t.list()
                            .into_iter()
                            .map(|i| TerminalInfo {
                                attach: conn.local.then(|| {
                                    codepilot_protocol::rpc::TerminalAttach {
                                        socket: t
                                            .socket_dir()
                                            .join(format!("{}.sock", i.name))
                                            .display()
                                            .to_string(),
                                        token: t.token().to_owned(),
                                    }
                                }),
                                name: i.name,
                                pid: i.pid,
                                cols: i.cols,
                                rows: i.rows,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ok(TerminalListResult { terminals })
            }
        }
    }

    /// Waits until no other start or close of session `id` runs; holds that until dropped.
    async fn opening(&self, id: &str) -> Opening {
        let slot = Arc::clone(lock(&self.inner.opening).entry(id.to_owned()).or_default());
        Opening {
            guard: Some(slot.lock_owned().await),
            daemon: self.clone(),
            id: id.to_owned(),
        }
    }

    fn subscribe(
        &self,
        conn: &Conn,
        session_id: &str,
        after_seq: Option<u64>,
    ) -> Result<u64, RpcError> {
        let host = self.host(session_id)?;
        lock(&conn.sessions).insert(session_id.to_owned());
        Ok(host.shared.subscribe(&conn.handle, after_seq))
    }

    async fn start_session(
        &self,
        params: SessionStartParams,
    ) -> Result<(String, Option<RestoredWorkspace>), RpcError> {
        let mut agent = match (&params.agent_file, &params.agent) {
            (Some(path), None) => AgentFile::load(std::path::Path::new(path)),
            (None, Some(text)) => AgentFile::from_yaml_str(text, None),
            _ => {
                return Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    "session/start needs exactly one of agent_file (a path) and agent (YAML text)",
                ));
            }
        }
        .map_err(|e| RpcError::new(codes::BAD_AGENT_CONFIG, e.to_string()))?;
        if let Some(dir) = params.work_dir {
            agent.runtime.work_dir = PathBuf::from(dir);
        }
        let id = match params.session_id {
            Some(id) => id
                .parse::<SessionId>()
                .map_err(|e| RpcError::new(codes::INVALID_PARAMS, e.to_string()))?,
            None => SessionId::generate(),
        };
        let _opening = self.opening(id.as_str()).await;
        if lock(&self.inner.sessions).contains_key(id.as_str()) {
            return Ok((id.to_string(), None));
        }
        let base_seq = self
            .inner
            .store
            .last_event_seq(&id)
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
                match params.restore.unwrap_or(RestoreMode::IfEmpty) {
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
        lock(&self.inner.sessions).insert(
            id.to_string(),
            Arc::new(SessionHost {
                rt,
                shared,
                starting: tokio::sync::Mutex::new(()),
            }),
        );
        Ok((id.to_string(), restored))
    }

    async fn resume(&self, session_id: &str) -> Reply {
        if let Ok(host) = self.host(session_id) {
            return ok(SessionResumeResult {
                session_id: session_id.to_owned(),
                messages: host.rt.history(),
            });
        }
        let id = session_id
            .parse::<SessionId>()
            .map_err(|e| RpcError::new(codes::INVALID_PARAMS, e.to_string()))?;
        match self.inner.store.load(&id).await {
            Ok(Some(record)) => ok(SessionResumeResult {
                session_id: session_id.to_owned(),
                messages: record.messages,
            }),
            Ok(None) => Err(RpcError::new(
                codes::UNKNOWN_SESSION,
                format!("no session {session_id:?} in this daemon's store"),
            )),
            Err(e) => Err(RpcError::new(codes::INTERNAL_ERROR, e.to_string())),
        }
    }

    async fn list(&self) -> Reply {
        let open: HashMap<String, SessionStatus> = lock(&self.inner.sessions)
            .iter()
            .map(|(id, h)| {
                let status = if h.shared.running_turn().is_some() {
                    SessionStatus::Running
                } else {
                    SessionStatus::Idle
                };
                (id.clone(), status)
            })
            .collect();
        let mut stored = self
            .inner
            .store
            .list()
            .await
            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?;
        stored.sort_by_key(|s| std::cmp::Reverse(s.meta.updated_at));
        let mut sessions: Vec<SessionSummary> = stored
            .into_iter()
            .map(|s| SessionSummary {
                status: open
                    .get(s.id.as_str())
                    .copied()
                    .unwrap_or(SessionStatus::Stored),
                session_id: s.id.to_string(),
                title: s.meta.title.unwrap_or_default(),
                updated_at: codepilot::store::rfc3339(s.meta.updated_at),
                runs_on: s.holder.map(|h| format!("{} (pid {})", h.host, h.pid)),
                snapshot: s.meta.snapshot,
            })
            .collect();
        sessions.sort_by_key(|s| s.status == SessionStatus::Stored);
        ok(SessionListResult { sessions })
    }

    async fn close_session(&self, session_id: &str) -> Result<(), RpcError> {
        let _opening = self.opening(session_id).await;
        let host = lock(&self.inner.sessions)
            .remove(session_id)
            .ok_or_else(|| unknown_session(session_id))?;
        host.rt.abort();
        host.shared.unsubscribe_all();
        host.rt.close().await.map_err(|e| engine_error(&e))
    }

    async fn start_turn(&self, session_id: &str, text: String) -> Reply {
        let host = self.host(session_id)?;
        let _starting = host.starting.lock().await;
        if host.shared.running_turn().is_some() {
            return Err(RpcError::new(
                codes::TURN_RUNNING,
                format!(
                    "session {session_id:?} is running a turn; steer it, interrupt it or wait for turn/completed"
                ),
            ));
        }
        let started = host.shared.expect_start();
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        let runner = Arc::clone(&host);
        tokio::spawn(async move {
            let result = runner.rt.run(&text).await;
            let turn = runner.shared.running_turn();
            match (result, turn) {
                (Ok(outcome), Some(turn)) => runner.shared.turn_ended(turn, Ok(outcome)),
                (Err(e), Some(turn)) => runner.shared.turn_ended(turn, Err(engine_error(&e))),
                // It never started: the caller gets the error.
                (Err(e), None) => {
                    let _ = failed_tx.send(engine_error(&e));
                }
                (Ok(_), None) => {}
            }
        });
        tokio::select! {
            biased;
            Ok(turn_id) = started => ok(TurnStartResult { turn_id }),
            Ok(error) = failed_rx => Err(error),
            else => Err(RpcError::new(codes::INTERNAL_ERROR, "the turn ended before it started")),
        }
    }
}
