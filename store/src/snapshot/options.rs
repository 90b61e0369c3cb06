//! What a [`SnapshotStore`](super::SnapshotStore)(super::SnapshotStore) is told ([`SnapshotOptions`], [`RestoreMode`]) and what it
//! answers ([`SnapshotInfo`], [`Saved`], [`Prepared`]).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

/// Default cap on the size of the files a snapshot holds: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Default number of snapshots kept per session.
pub const DEFAULT_KEEP: usize = 10;

/// What [`SnapshotStore::prepare`](super::SnapshotStore::prepare) does with a work directory when the session has a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMode {
    /// Restore into a missing or empty work directory, or over an older copy of this session's workspace; refuse
    /// ([`SnapshotError::NotEmpty`](super::SnapshotError::NotEmpty)) to restore over anything else.
    #[default]
    IfEmpty,
    /// Restore whatever the work directory holds: the files a snapshot would hold are replaced (files
    /// `.gitignore` excludes stay).
    Replace,
    /// Never restore: use the work directory as it is.
    Skip,
}

impl FromStr for RestoreMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "if-empty" => Ok(Self::IfEmpty),
            "replace" => Ok(Self::Replace),
            "skip" => Ok(Self::Skip),
            other => Err(format!(
                "unknown restore mode {other:?}; use if-empty, replace or skip"
            )),
        }
    }
}

/// How a [`SnapshotStore`](super::SnapshotStore) behaves.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Largest total size of the files a snapshot may hold. Default [`DEFAULT_MAX_BYTES`].
    pub max_bytes: u64,
    /// Snapshots kept per session after each save (the newest; at least 1). Default [`DEFAULT_KEEP`].
    pub keep: usize,
    /// Where markers and upload scratch files live. Default: `workspaces/` in [`codepilot_home`](crate::codepilot_home).
    pub state_dir: Option<PathBuf>,
    /// The `AWS_*` settings an `s3://` store reads, instead of the process environment (for hosts that keep
    /// credentials elsewhere, and tests).
    pub env: Option<Vec<(String, String)>>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
            state_dir: None,
            env: None,
        }
    }
}

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The object key, `<session>/<unix-ms>-<random>.tar.zst`.
    pub key: String,
    /// The session.
    pub session: String,
    /// When it was taken, Unix milliseconds.
    pub created_ms: i64,
    /// Compressed size in bytes.
    pub size: u64,
}

/// What [`SnapshotStore::save`](super::SnapshotStore::save) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// The workspace is unchanged since snapshot `key` (or since it was restored from it): nothing uploaded.
    Unchanged {
        /// The snapshot that still holds it.
        key: String,
    },
    /// A new snapshot.
    Stored {
        /// It.
        info: SnapshotInfo,
        /// Files it holds.
        files: u64,
        /// Their total size.
        content_bytes: u64,
        /// Time taken, archive and upload.
        elapsed: Duration,
    },
}

/// What [`SnapshotStore::prepare`](super::SnapshotStore::prepare) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The session has no snapshot: the work directory is used as it is.
    NoSnapshot,
    /// The work directory already holds snapshot `key`.
    UpToDate {
        /// The snapshot.
        key: String,
    },
    /// Snapshot `key` was restored.
    Restored {
        /// The snapshot.
        key: String,
        /// Files restored.
        files: u64,
        /// Compressed bytes downloaded.
        size: u64,
        /// Time taken, download and unpack.
        elapsed: Duration,
    },
    /// [`RestoreMode::Skip`]: snapshot `key` was not restored.
    Skipped {
        /// The snapshot.
        key: String,
    },
}
