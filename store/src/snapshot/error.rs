//! [`SnapshotError`]: everything snapshots can fail with.

use std::path::PathBuf;

use crate::SessionId;
use crate::StoreError;

/// Everything snapshots can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The store URL is not one this build understands, or the `AWS_*` settings of an `s3://` store are unusable.
    #[error("bad snapshot store {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What was wrong, and what to write or set instead.
        reason: String,
    },

    /// The workspace holds more than the cap.
    #[error(
        "the workspace {} holds {} of files, more than the snapshot cap of {}{}; add large paths to .gitignore or raise the cap (--snapshot-max-mb)",
        work_dir.display(),
        human(*bytes),
        human(*limit),
        largest_list(largest)
    )]
    TooLarge {
        /// The work directory.
        work_dir: PathBuf,
        /// Its size.
        bytes: u64,
        /// The cap.
        limit: u64,
        /// Its largest files, biggest first.
        largest: Vec<(String, u64)>,
    },

    /// The recorded snapshot is not in the store.
    #[error(
        "snapshot {key} of this session is missing from {store}; the session's history is intact: start it with restore `skip` to go on with the work_dir as it is (restore an older snapshot into it first with `codepilot snapshots restore`), or point --snapshots at the store that holds it"
    )]
    Missing {
        /// The store.
        store: String,
        /// The object key.
        key: String,
    },

    /// The snapshot could not be unpacked.
    #[error(
        "snapshot {key} in {store} is corrupt ({reason}); the session's history is intact: start it with restore `skip` to go on with the work_dir as it is (restore an older snapshot into it first with `codepilot snapshots restore`)"
    )]
    Corrupt {
        /// The store.
        store: String,
        /// The object key.
        key: String,
        /// What the decoder said.
        reason: String,
    },

    /// The object store failed (unreachable, refused, full).
    #[error("the snapshot store {store} failed while {op}: {source}")]
    Store {
        /// The store.
        store: String,
        /// What was being done.
        op: &'static str,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    /// The work directory holds files that are not an unchanged copy of this session's workspace.
    #[error(
        "the work_dir {} is not empty and is not an unchanged copy of session {session}'s workspace, so its snapshot {key} was not restored over it; resume into an empty or missing directory, or start the session with restore `replace` (replaces the files a snapshot holds; .gitignored files stay) or `skip` (keeps the directory as it is)",
        work_dir.display()
    )]
    NotEmpty {
        /// The work directory.
        work_dir: PathBuf,
        /// The session.
        session: SessionId,
        /// The snapshot that was not restored.
        key: String,
    },

    /// A restore failed after it had started moving files; none were deleted.
    #[error(
        "restoring into {} failed midway ({source}); the files it had moved aside are in {}, nothing was deleted: move back what you need, then start the session again",
        work_dir.display(),
        kept.display()
    )]
    Interrupted {
        /// The work directory.
        work_dir: PathBuf,
        /// Where the replaced files are.
        kept: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },

    /// Recording the snapshot with the session failed.
    #[error(transparent)]
    Session(#[from] StoreError),
}

fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mib = bytes as f64 / f64::from(1 << 20);
    format!("{mib:.1} MiB")
}

fn largest_list(largest: &[(String, u64)]) -> String {
    if largest.is_empty() {
        return String::new();
    }
    let list: Vec<String> = largest
        .iter()
        .map(|(p, n)| format!("{p} ({})", human(*n)))
        .collect();
    format!(" (largest: {})", list.join(", "))
}
