//! [`CheckpointError`].

use std::path::PathBuf;

/// Why a checkpoint could not be taken, listed or rewound to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file operation failed.
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
    /// No checkpoint has that id.
    #[error(
        "session {session} has no checkpoint {id:?}; {}",
        available_text(available)
    )]
    Unknown {
        /// The session.
        session: String,
        /// The id asked for.
        id: String,
        /// The ids it has, oldest first.
        available: Vec<String>,
    },
    /// A checkpoint's stored data is missing or damaged.
    #[error("checkpoint {id} of session {session} cannot be read: {reason}")]
    Damaged {
        /// The session.
        session: String,
        /// The checkpoint.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint's conversation is no longer a prefix of the session's: a later rewind replaced it.
    #[error(
        "checkpoint {id} belongs to a conversation that a later rewind replaced; rewind to {hint} first, then to {id}"
    )]
    OtherBranch {
        /// The checkpoint asked for.
        id: String,
        /// The rewind checkpoint to go back to first.
        hint: String,
    },
    /// Changing the work directory failed after some files were changed.
    #[error(
        "the rewind stopped after changing {done} of {total} files in {}: {source}; the state before it is checkpoint {saved_as} (rewind to it to undo what was done)",
        work_dir.display()
    )]
    Interrupted {
        /// The work directory.
        work_dir: PathBuf,
        /// Files changed before the failure.
        done: u64,
        /// Files the rewind would have changed.
        total: u64,
        /// The checkpoint holding the state before the rewind.
        saved_as: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The object store mirroring checkpoints failed.
    #[error("checkpoint store {store}: {op}: {source}")]
    Remote {
        /// Its URL.
        store: String,
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: object_store::Error,
    },
}

fn available_text(ids: &[String]) -> String {
    if ids.is_empty() {
        return "it has none yet (one is taken before each turn)".to_owned();
    }
    let shown: Vec<&str> = ids
        .iter()
        .rev()
        .take(12)
        .rev()
        .map(String::as_str)
        .collect();
    let more = if ids.len() > shown.len() { "…, " } else { "" };
    format!("it has {more}{}", shown.join(", "))
}

impl CheckpointError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
