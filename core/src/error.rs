//! The runtime's error type.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::tools::RegisterError;

/// Everything that can stop the runtime from being built or a task from running.
///
/// Problems inside a step (bad model output, a failing tool, an exception in the control block) are not errors:
/// they become observations the model reads, and the run goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The agent file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider needs an API key and its variable is not set.
    #[error(
        "the {provider} provider needs an API key: set the environment variable {var} (or point model.api_key_env \
         in agent.yaml at the variable that holds it)"
    )]
    MissingApiKey {
        /// Provider name.
        provider: String,
        /// The variable that was read.
        var: String,
    },
    /// An environment variable the runtime reads has an unusable value.
    #[error("the environment variable {var} is not usable: {message}; fix or unset it")]
    BadEnvironment {
        /// The variable.
        var: String,
        /// What is wrong with its value.
        message: String,
    },
    /// The model provider failed, after retries.
    #[error("model provider failed: {0}")]
    Provider(#[from] codepilot_llm::LlmError),
    /// The session store failed.
    #[error("session store: {0}")]
    Store(#[from] codepilot_store::StoreError),
    /// A workspace snapshot could not be restored or saved.
    #[error("workspace snapshot: {0}")]
    Snapshot(#[from] codepilot_store::snapshot::SnapshotError),
    /// A trajectory could not be exported or replayed: the session is unknown, its agent or work directory was
    /// not recorded, the file is not a trajectory (SPEC §23).
    #[error("{0}")]
    Trajectory(String),
    /// Traces were asked for with settings that cannot work (SPEC §23).
    #[error("traces: {0}")]
    Telemetry(#[from] codepilot_telemetry::TelemetryError),
    /// The code index could not be opened or its embeddings client built (SPEC §22).
    #[error("code search: {0}")]
    Search(#[from] codepilot_search::SearchError),
    /// A checkpoint could not be found, read or rewound to (SPEC §19).
    #[error("{0}")]
    Checkpoint(#[from] codepilot_store::checkpoint::CheckpointError),
    /// The agent takes no checkpoints, so there is nothing to list or rewind to.
    #[error(
        "this agent takes no checkpoints (runtime.checkpoints: off), so there is nothing to rewind to; set runtime.checkpoints: turn"
    )]
    CheckpointsOff,
    /// A rewind changed the work directory but could not cut the conversation in the store.
    #[error(
        "the files were rewound to checkpoint {checkpoint}, but the conversation could not be: {source}; rewind again with scope conversation"
    )]
    RewindHalfDone {
        /// The checkpoint.
        checkpoint: String,
        /// What failed.
        source: codepilot_store::StoreError,
    },
    /// The terminals could not be started.
    #[error("terminal: {0}")]
    Terminal(#[from] codepilot_terminal::TerminalError),
    /// The work directory could not be created or opened.
    #[error("work_dir {path}: {source}; check that the directory can be created and is writable")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A task is already running on this runtime.
    #[error(
        "a task is already running on this runtime; wait for it to finish or call abort() first"
    )]
    Busy,
    /// A custom tool could not be registered.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The runtime was closed; build a new one to continue the session.
    #[error("this runtime is closed; build a new one (with the same session id) to continue")]
    Closed,
    /// Another process took the session over (this process stalled past the lease's expiry).
    #[error("{0}; this runtime stopped so the two processes don't both drive the session")]
    LeaseLost(String),
    /// The current task's opening message and newest step alone do not fit the request budget.
    #[error(
        "the request cannot fit the context window: the current task's opening message and newest step take \
         {tokens} tokens, more than the budget of {budget}; shorten the task or raise model.context_window"
    )]
    ContextOverflow {
        /// Tokens of the smallest request the runtime could make.
        tokens: u64,
        /// The request budget.
        budget: u64,
    },
    /// A sub-agent request the runtime cannot carry out (no such worker, it ended, sub-agents off).
    #[error("sub-agent: {0}")]
    Subagent(String),
    /// A run's output schema is not a JSON Schema the validator accepts.
    #[error(
        "the output schema is not a valid JSON Schema (draft 2020-12): {0}; fix the schema and run again"
    )]
    OutputSchema(String),
    /// A run's limits are not usable (a negative cost, a cost limit for a model whose prices are unknown).
    #[error("{0}")]
    Limits(String),
    /// An internal invariant failed (a poisoned lock, a runtime that could not start).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether this is a configuration or usage problem the user can fix in agent.yaml or the environment.
    #[must_use]
    pub fn is_config(&self) -> bool {
        match self {
            Error::Config(_)
            | Error::MissingApiKey { .. }
            | Error::BadEnvironment { .. }
            | Error::Register(_)
            | Error::OutputSchema(_)
            | Error::Limits(_)
            | Error::Trajectory(_)
            | Error::Telemetry(_) => true,
            Error::Provider(e) => {
                matches!(
                    e,
                    codepilot_llm::LlmError::MissingApiKey { .. }
                        | codepilot_llm::LlmError::UnknownProvider { .. }
                        | codepilot_llm::LlmError::InvalidConfig(_)
                        | codepilot_llm::LlmError::Script { .. }
                ) || matches!(e.status(), Some(401 | 403 | 404))
            }
            Error::Store(e) => matches!(e, codepilot_store::StoreError::InvalidId { .. }),
            Error::Snapshot(e) => matches!(e, codepilot_store::snapshot::SnapshotError::Url { .. }),
            Error::Search(e) => matches!(e, codepilot_search::SearchError::Embeddings(_)),
            Error::Checkpoint(_) | Error::CheckpointsOff | Error::RewindHalfDone { .. } => false,
            Error::Closed
            | Error::LeaseLost(_)
            | Error::Terminal(_)
            | Error::WorkDir { .. }
            | Error::Busy
            | Error::ContextOverflow { .. }
            | Error::Subagent(_)
            | Error::Internal(_) => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::context::Overflow> for Error {
    fn from(o: crate::context::Overflow) -> Self {
        Self::ContextOverflow {
            tokens: o.tokens,
            budget: o.budget,
        }
    }
}
