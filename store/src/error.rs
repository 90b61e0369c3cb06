//! The crate's error type.

use std::path::PathBuf;
use std::str::FromStr;

use crate::id::InvalidSessionId;
use crate::id::SessionId;
use crate::id::describe_invalid;
use crate::lease::LeaseHolder;

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything a [`SessionStore`](crate::SessionStore) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another live process holds the session's lease.
    #[error(
        "another codepilot process ({holder}) is running session {session}; wait for it to finish or use another --session-id"
    )]
    LeaseHeld {
        /// The session asked for.
        session: SessionId,
        /// Who holds it.
        holder: LeaseHolder,
    },

    /// The lease this process held was taken over (it expired or was released) or the session was deleted.
    #[error(
        "lost the lease on session {session}{}; stop driving this session (another process may be running it) and open it again",
        holder.as_ref().map(|h| format!(" (now held by {h})")).unwrap_or_default()
    )]
    LeaseLost {
        /// The session.
        session: SessionId,
        /// The new holder, if any.
        holder: Option<LeaseHolder>,
    },

    /// A stored session file could not be parsed. It was moved aside, never treated as empty.
    #[error(
        "session file {} is corrupt ({reason}); it was moved to {} so nothing is lost; inspect or delete it, then run again",
        path.display(),
        kept_at.display()
    )]
    Corrupt {
        /// Where the file was.
        path: PathBuf,
        /// Where it is now.
        kept_at: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// A database row holds a value this version cannot read.
    #[error(
        "session {session} has an unreadable stored value: {reason}; the database may have been edited by hand"
    )]
    CorruptRow {
        /// The session.
        session: SessionId,
        /// What was wrong.
        reason: String,
    },

    /// The session does not exist.
    #[error("session {session} does not exist; check the id with `codepilot sessions list`")]
    NotFound {
        /// The session asked for.
        session: SessionId,
    },

    /// A checkpoint does not line up with the stored history.
    #[error(
        "checkpoint for session {session} does not match the stored history: {reason}; the session was changed by someone else, reload it"
    )]
    Conflict {
        /// The session.
        session: SessionId,
        /// `base_len` of the rejected checkpoint.
        base_len: u64,
        /// Messages stored when it was rejected.
        stored: u64,
        /// What did not match.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"writing"`, `"reading"`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A database operation failed.
    #[error("session database error: {0}")]
    Sql(#[from] sqlx::Error),

    /// A SQLite checkpoint failed ([`crate::SqliteStore`] writes them on a connection of its own).
    #[error("session database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// Applying the embedded schema migrations failed.
    #[error("could not migrate the session database: {0}; was it created by a newer codepilot?")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A session id with characters outside `[A-Za-z0-9._-]` or of a bad length (an [`InvalidSessionId`]).
    #[error("{}", describe_invalid(id))]
    InvalidId {
        /// The rejected text.
        id: String,
    },

    /// A store URL or option could not be used.
    #[error("invalid session store configuration: {0}")]
    Config(String),

    /// A value could not be encoded for storage: what it was and why (for the archives a bug; for an
    /// [`AgentSource`](crate::AgentSource) a path that is not UTF-8).
    #[error("could not encode {0}")]
    Encode(String),

    /// A background task of the store died (a bug).
    #[error("session store worker failed: {0}")]
    Worker(String),
}

impl From<InvalidSessionId> for StoreError {
    fn from(e: InvalidSessionId) -> Self {
        Self::InvalidId { id: e.into_id() }
    }
}

/// `str::parse` gives a [`StoreError`] ([`StoreError::InvalidId`]), so callers whose error converts from it use
/// `?` on `text.parse::<SessionId>()`.
impl FromStr for SessionId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s)?)
    }
}

impl StoreError {
    /// Another process holds the lease.
    #[must_use]
    pub fn is_lease_held(&self) -> bool {
        matches!(self, Self::LeaseHeld { .. })
    }

    /// This process lost its lease.
    #[must_use]
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Self::LeaseLost { .. })
    }

    /// A checkpoint did not match the stored history.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// The session does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Stored data was unreadable (a corrupt file or row).
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::CorruptRow { .. })
    }

    /// The holder named by a `LeaseHeld` error, or the new holder of a `LeaseLost` one.
    #[must_use]
    pub fn lease_holder(&self) -> Option<&LeaseHolder> {
        match self {
            Self::LeaseHeld { holder, .. } => Some(holder),
            Self::LeaseLost { holder, .. } => holder.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
