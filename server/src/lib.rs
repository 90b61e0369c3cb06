//! The CodePilot daemon behind `codepilot serve` (SPEC §13): many sessions in one process, driven by any number
//! of clients over JSON-RPC 2.0.
//!
//! Sessions live in the daemon, not in a connection: a client starts or resumes one, subscribes to its events,
//! starts turns, steers and interrupts them, and answers the permission and ask-user requests the session sends to
//! its subscribers. A client that drops and comes back resubscribes with `after_seq` and is replayed what it
//! missed (the `session` module documents how the log and its pumps keep a slow client from slowing a
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
mod open;
mod rpc;
mod session;
mod transport;
mod ui;
mod web;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot::StoreConfig;
use codepilot::store::SessionStore;
use codepilot::store::StoreOptions;
use codepilot::store::snapshot::SnapshotStore;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::codes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use conn::serve_connection;
pub use transport::Listen;
pub use transport::ServeError;

use codepilot_protocol::sync::lock;
use session::SessionHost;

/// How long a permission or ask-user request waits for a client's answer by default
/// ([`DaemonConfig::request_timeout`], `codepilot serve --request-timeout-s`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// Where sessions' checkpoints are kept (SPEC §19). Default: `checkpoints/` in `$CODEPILOT_HOME`.
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// Where code indexes are kept (SPEC §22). Default: `index/` in `$CODEPILOT_HOME`.
    pub index_dir: Option<std::path::PathBuf>,
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
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            stall_timeout: Duration::from_secs(30),
            queue: 1024,
            max_message_bytes: 8 << 20,
            token: None,
            allowed_origins: Vec::new(),
            event_probe: None,
            snapshots: None,
            checkpoint_dir: None,
            index_dir: None,
            store_options: StoreOptions::default(),
            env: None,
        }
    }
}

struct Inner {
    config: DaemonConfig,
    store: Arc<dyn SessionStore>,
    sessions: Mutex<HashMap<String, Arc<SessionHost>>>,
    /// Serialises the opening (`session/start`, `session/resume`) and closing of one id, so it is never opened
    /// twice; other ids go on (an opening may take a while: it can restore a workspace).
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

/// Held while a session opens or closes (see [`Daemon::opening`]); forgets the id's lock when nobody else waits.
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

/// A method's result, or the JSON-RPC error it failed with.
type Reply = Result<serde_json::Value, RpcError>;

/// `value` as a method's result.
fn ok(value: impl Serialize) -> Reply {
    serde_json::to_value(value).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

/// An engine error as the JSON-RPC error a client can act on.
fn engine_error(error: &codepilot::Error) -> RpcError {
    let code = match error {
        codepilot::Error::Store(e) if e.is_lease_held() => codes::SESSION_LEASED,
        codepilot::Error::Busy => codes::TURN_RUNNING,
        codepilot::Error::Snapshot(_) => codes::SNAPSHOT_FAILED,
        codepilot::Error::Checkpoint(_)
        | codepilot::Error::CheckpointsOff
        | codepilot::Error::RewindHalfDone { .. } => codes::CHECKPOINT_FAILED,
        // A turn's own limits or output schema: the request's parameters, not the agent file.
        codepilot::Error::OutputSchema(_) | codepilot::Error::Limits(_) => codes::INVALID_PARAMS,
        e if e.is_config() => codes::BAD_AGENT_CONFIG,
        _ => codes::INTERNAL_ERROR,
    };
    RpcError::new(code, error.to_string())
}

fn unknown_session(id: &str) -> RpcError {
    RpcError::new(
        codes::UNKNOWN_SESSION,
        format!(
            "no session {id:?} is open in this daemon; open it with session/resume (or session/start)"
        ),
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

    /// Waits until no other opening or closing of session `id` runs; holds that until dropped.
    async fn opening(&self, id: &str) -> Opening {
        let slot = Arc::clone(lock(&self.inner.opening).entry(id.to_owned()).or_default());
        Opening {
            guard: Some(slot.lock_owned().await),
            daemon: self.clone(),
            id: id.to_owned(),
        }
    }
}
