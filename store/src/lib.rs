//! Session persistence for CodePilot: memory, JSON file, SQLite and PostgreSQL behind one [`SessionStore`].
//!
//! A session is an append-only list of messages plus a task counter, usage totals and metadata. The runtime
//! [`open`](SessionStore::open)s it (taking a lease, so two processes never drive one session), calls
//! [`checkpoint`](SessionStore::checkpoint) after every step (so a crash loses at most the step in flight),
//! [`renew`](SessionStore::renew)s the lease every [`heartbeat_interval`] of its TTL and finally
//! [`release`](SessionStore::release)s it.
//!
//! ```no_run
//! # async fn demo() -> codepilot_store::Result<()> {
//! use codepilot_protocol::Message;
//! use codepilot_store::Checkpoint;
//! use codepilot_store::SessionId;
//! use codepilot_store::StoreConfig;
//!
//! let store = codepilot_store::open_store(StoreConfig::Sqlite { url: "sqlite:///./codepilot.db".into() }).await?;
//! let id = SessionId::generate();
//! let (lease, record) = store.open(&id, "agent").await?;
//! let cp = Checkpoint {
//!     base_len: record.meta.message_count,
//!     messages: vec![Message::user("fix the bug"), Message::assistant("done")],
//!     task_counter: record.task_counter + 1,
//!     usage: record.usage,
//!     title: codepilot_store::title_from_task("fix the bug"),
//!     archives: None,
//!     answers: Vec::new(),
//! };
//! store.checkpoint(&lease, &cp).await?;
//! store.release(lease).await?;
//! # Ok(()) }
//! ```
//!
//! Advanced: [`open_store_with`] takes [`StoreOptions`] (lease TTL, holder identity).
#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

pub mod checkpoint;
mod error;
mod file;
mod home;
mod id;
mod lease;
mod memory;
pub mod snapshot;
mod sql;
mod types;
mod url;

use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use error::Result;
pub use error::StoreError;
pub use file::FileStore;
pub use home::codepilot_home;
pub use id::InvalidSessionId;
pub use id::MAX_SESSION_ID_LEN;
pub use id::SessionId;
pub use lease::LEASE_TTL;
pub use lease::Lease;
pub use lease::LeaseHolder;
pub use lease::StoreOptions;
pub use lease::hostname;
pub use lease::rfc3339;
pub use memory::MemoryStore;
pub use sql::postgres::PgStore;
pub use sql::sqlite::SqliteStore;
pub use types::AgentSource;
pub use types::Checkpoint;
pub use types::HistoryRewrite;
pub use types::RawAnswer;
pub use types::SessionMeta;
pub use types::SessionRecord;
pub use types::SessionSummary;
pub use types::StoredEvent;
pub use types::title_from_task;
pub use url::parse_db_url;

/// Where sessions live. Every backend implements the same contract.
///
/// Lease rules (all backends): a lease names its holder (pid + host) and lasts [`LEASE_TTL`] unless renewed;
/// an expired lease, or one whose holder is on this host with a dead pid, is taken over by the next `open`.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// Takes the lease (creating the session with `agent_name` if missing) and returns the current record.
    ///
    /// An existing session keeps its stored agent name.
    ///
    /// # Errors
    /// [`StoreError::LeaseHeld`] naming the holder while another live process has the session;
    /// [`StoreError::Corrupt`] when a JSON session file does not parse (it is moved aside first).
    async fn open(&self, id: &SessionId, agent_name: &str) -> Result<(Lease, SessionRecord)>;

    /// Appends `cp.messages` at position `cp.base_len` and sets the counters, in one transaction (one atomic
    /// file replacement for the JSON store).
    ///
    /// Idempotent: messages that overlap the stored history must equal it and are not stored twice, so
    /// re-sending a checkpoint is harmless. A stale checkpoint (ending before the stored end) changes nothing.
    /// Concurrent checkpoints on one lease are serialised.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `base_len` is past the stored end (a gap) or an overlapping message
    /// differs; [`StoreError::LeaseLost`] when the lease was taken over, released or the session deleted.
    async fn checkpoint(&self, lease: &Lease, cp: &Checkpoint) -> Result<()>;

    /// How long a lease taken through this store lasts without renewal ([`StoreOptions::lease_ttl`]). A driver
    /// renews well within it: [`heartbeat_interval`] gives the interval the runtime uses.
    fn lease_ttl(&self) -> Duration;

    /// Extends the lease by the store's TTL. Call every [`heartbeat_interval`]`(self.lease_ttl())` while driving
    /// the session.
    ///
    /// An expired lease that nobody took over is renewed.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another process has taken it over.
    async fn renew(&self, lease: &Lease) -> Result<()>;

    /// Gives the lease up. Does nothing when the lease was already lost.
    ///
    /// # Errors
    /// Only I/O and database errors.
    async fn release(&self, lease: Lease) -> Result<()>;

    /// Reads a session without taking its lease. `None` when it does not exist.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an unparsable JSON file (moved aside), database errors.
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>>;

    /// All sessions, most recently updated first. Unreadable JSON files are skipped (with a warning).
    ///
    /// # Errors
    /// I/O and database errors.
    async fn list(&self) -> Result<Vec<SessionSummary>>;

    /// Appends events to the session under `lease`. Events whose `seq` is already stored are skipped, so sending a
    /// batch twice is harmless; `events` must be in increasing `seq` order.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the lease was taken over, released or the session deleted.
    async fn append_events(&self, lease: &Lease, events: &[StoredEvent]) -> Result<()>;

    /// Rewinds the session's history (SPEC §19): keeps its first `rewrite.keep` messages, stores `rewrite.append`
    /// after them and replaces the archive list, in one transaction (one atomic file replacement for the JSON store).
    /// Task counter, usage and title are kept.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `keep` is past the stored end; [`StoreError::LeaseLost`] when the lease was
    /// taken over, released or the session deleted.
    async fn rewrite_history(&self, lease: &Lease, rewrite: &HistoryRewrite) -> Result<()>;

    /// Records `key` as the session's latest workspace snapshot ([`SessionMeta::snapshot`]).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the lease was taken over, released or the session deleted.
    async fn set_snapshot(&self, lease: &Lease, key: &str) -> Result<()>;

    /// Records `source` as the agent the session runs with ([`SessionMeta::agent_source`]), replacing the one
    /// recorded before, so a host that opens the session later can build the same agent.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the lease was taken over, released or the session deleted;
    /// [`StoreError::Encode`] when `source` cannot be serialised (a path that is not UTF-8).
    async fn set_agent_source(&self, lease: &Lease, source: &AgentSource) -> Result<()>;

    /// Up to `limit` stored events of session `id` with `seq` above `after_seq`, in order (none for an unknown
    /// session).
    ///
    /// # Errors
    /// I/O and database errors.
    async fn load_events(
        &self,
        id: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// The model's answers of session `id` as it gave them, where the stored message differs ([`RawAnswer`]), by
    /// message index (none for an unknown session). A rewind drops those past what it keeps.
    ///
    /// # Errors
    /// I/O and database errors.
    async fn load_answers(&self, id: &SessionId) -> Result<Vec<RawAnswer>>;

    /// The highest stored event `seq` of session `id`; 0 when it has none.
    ///
    /// # Errors
    /// I/O and database errors.
    async fn last_event_seq(&self, id: &SessionId) -> Result<u64>;

    /// Deletes a session; `false` when it did not exist. A stale lease does not prevent deletion.
    ///
    /// # Errors
    /// [`StoreError::LeaseHeld`] while a live holder (this process included) has the session.
    async fn delete(&self, id: &SessionId) -> Result<bool>;
}

/// Which store [`open_store`] builds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In-process only; gone at exit.
    Memory,
    /// One JSON file per session in `dir` (created if missing).
    File {
        /// The session directory.
        dir: PathBuf,
    },
    /// SQLite, e.g. `sqlite:///./codepilot.db` (relative) or `sqlite:////var/lib/codepilot.db` (absolute): the
    /// forms of [`parse_db_url`]. The file and its parent directory are created if missing; WAL mode,
    /// `synchronous=FULL`, 30 s busy timeout.
    Sqlite {
        /// A `sqlite:` URL.
        url: String,
    },
    /// PostgreSQL, e.g. `postgres://root@localhost/codepilot?host=/var/run/postgresql`.
    Postgres {
        /// A `postgres:` URL.
        url: String,
    },
    /// An existing SQLite pool (the caller chose its options). Migrations are applied to it.
    SqlitePool(sqlx::SqlitePool),
    /// An existing PostgreSQL pool. Migrations are applied to it.
    PgPool(sqlx::PgPool),
}

/// How often a driver renews a lease that lasts `lease_ttl`: a third of it (so two missed beats still keep the
/// lease), at least 10 ms: every 10 s for the default [`LEASE_TTL`]. The one home of the renewal interval: the
/// runtime's heartbeat uses it.
#[must_use]
pub fn heartbeat_interval(lease_ttl: Duration) -> Duration {
    (lease_ttl / 3).max(Duration::from_millis(10))
}

/// Re-exports of the SQL pool types [`StoreConfig`] accepts, so hosts need no direct `sqlx` dependency.
pub mod pools {
    pub use sqlx::PgPool;
    pub use sqlx::SqlitePool;
}

impl StoreConfig {
    /// SQLite in the file at `path` (relative paths resolve against the current directory now).
    #[must_use]
    pub fn sqlite_file(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        StoreConfig::Sqlite {
            url: url::SqliteUrl {
                target: url::SqliteTarget::File(abs),
                query: None,
            }
            .to_canonical(),
        }
    }
}

/// Busy timeout of SQLite connections opened from a URL.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a store with default [`StoreOptions`], applying the embedded migrations for SQL backends.
///
/// # Errors
/// [`StoreError::Config`] for a bad URL, [`StoreError::Sql`] when the database cannot be reached,
/// [`StoreError::Migrate`] when the schema cannot be applied, [`StoreError::Io`] when a directory cannot
/// be created.
pub async fn open_store(cfg: StoreConfig) -> Result<Arc<dyn SessionStore>> {
    open_store_with(cfg, StoreOptions::default()).await
}

/// [`open_store`] with explicit options.
///
/// # Errors
/// As [`open_store`].
pub async fn open_store_with(
    cfg: StoreConfig,
    opts: StoreOptions,
) -> Result<Arc<dyn SessionStore>> {
    Ok(match cfg {
        StoreConfig::Memory => Arc::new(MemoryStore::new(opts)),
        StoreConfig::File { dir } => Arc::new(FileStore::new(dir, opts)?),
        StoreConfig::Sqlite { url } => {
            Arc::new(SqliteStore::new(sqlite_pool(&url).await?, opts).await?)
        }
        StoreConfig::Postgres { url } => Arc::new(PgStore::new(pg_pool(&url).await?, opts).await?),
        StoreConfig::SqlitePool(pool) => Arc::new(SqliteStore::new(pool, opts).await?),
        StoreConfig::PgPool(pool) => Arc::new(PgStore::new(pool, opts).await?),
    })
}

/// Opens a SQLite pool the way [`StoreConfig::Sqlite`] does (`mode=rwc`, parent directory created, WAL,
/// `synchronous=FULL`, [`SQLITE_BUSY_TIMEOUT`]).
///
/// # Errors
/// [`StoreError::Config`] for a bad URL, [`StoreError::Io`] when the parent directory cannot be created,
/// [`StoreError::Sql`] when the file cannot be opened.
pub async fn sqlite_pool(url: &str) -> Result<sqlx::SqlitePool> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::sqlite::SqliteJournalMode;
    use sqlx::sqlite::SqlitePoolOptions;
    use sqlx::sqlite::SqliteSynchronous;

    let cwd = std::env::current_dir()
        .map_err(|e| StoreError::io("reading the current directory", Path::new("."), e))?;
    let parsed = url::parse_sqlite_url(url, &cwd)?;
    let options = SqliteConnectOptions::from_str(&parsed.to_sqlx())
        .map_err(|e| {
            StoreError::Config(format!(
                "bad SQLite URL {url:?}: {e}; use e.g. sqlite:///./codepilot.db"
            ))
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let file = options.get_filename();
    if !parsed.is_memory() {
        if let Some(parent) = file.parent()
            && !parent.as_os_str().is_empty()
        {
            create_private_dir(parent)
                .map_err(|e| StoreError::io("creating database directory", parent, e))?;
        }
        // The database and its WAL and shared-memory files (SQLite gives them the database's mode) are private.
        private_file(file)
            .map_err(|e| StoreError::io("making the database file private", file, e))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = file.as_os_str().to_owned();
            side.push(suffix);
            let side = PathBuf::from(side);
            if side.exists() {
                private_file(&side).map_err(|e| StoreError::io("securing", &side, e))?;
            }
        }
    }
    let mut attempt = 1;
    loop {
        match SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) if sql::is_busy(&e) && attempt < sql::MIGRATE_ATTEMPTS => {
                tracing::debug!("opening the SQLite database: {e}; trying again");
                tokio::time::sleep(sql::RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens a PostgreSQL pool for [`StoreConfig::Postgres`].
///
/// # Errors
/// [`StoreError::Config`] for a bad URL, [`StoreError::Sql`] when the server cannot be reached.
pub async fn pg_pool(url: &str) -> Result<sqlx::PgPool> {
    let Some(url) = url::normalize_pg_url(url) else {
        return Err(StoreError::Config(
            "bad PostgreSQL URL: it must start with `postgres://` or `postgresql://`; use e.g. postgres://USER@localhost/DB?host=/var/run/postgresql".to_owned(),
        ));
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).map_err(|e| {
        StoreError::Config(format!(
            "bad PostgreSQL URL: {e}; use e.g. postgres://USER@localhost/DB?host=/var/run/postgresql"
        ))
    })?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?)
}

/// Installs the process-wide TLS crypto provider (ring) that HTTPS clients built on `rustls-no-provider` need;
/// harmless when one is installed already.
pub(crate) fn install_tls_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// Creates `dir` and its missing parents readable by the owner only (0700): sessions hold file contents and
/// command output. Directories that already exist are left as they are.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes a session file readable by its owner only (0600): created so when missing; tightened when this user
/// owns it and it is open to others. A symlink, or a database that belongs to another user (shared on purpose),
/// is left as it is.
pub(crate) fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            let own = meta.uid() == rustix::process::geteuid().as_raw();
            if meta.is_file() && own && mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
            {
                Ok(_) => Ok(()),
                // Another process created it meanwhile: theirs is as good.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Most recently updated first, then newest created, then by id.
pub(crate) fn sort_newest_first(list: &mut [SessionSummary]) {
    list.sort_by(|a, b| {
        b.meta
            .updated_at
            .cmp(&a.meta.updated_at)
            .then(b.meta.created_at.cmp(&a.meta.created_at))
            .then(a.id.cmp(&b.id))
    });
}
