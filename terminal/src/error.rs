//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `codepilot-terminal`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TerminalError {
    /// A terminal name did not match `[A-Za-z0-9_-]{1,64}`.
    #[error(
        "invalid terminal name {name:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// `create` was called with a name that is already in use.
    #[error("terminal {name:?} already exists; use it, pick another name, or terminate it first")]
    AlreadyExists {
        /// The name in use.
        name: String,
    },
    /// No terminal has this name.
    #[error("terminal {name:?} not found; create it first (new_terminal=True)")]
    NotFound {
        /// The unknown name.
        name: String,
    },
    /// The terminal's shell has exited.
    #[error("terminal {name} has exited (code {code}); create a new one with new_terminal=True")]
    Exited {
        /// Terminal name.
        name: String,
        /// The shell's exit code (128 + signal number when killed by a signal).
        code: i32,
    },
    /// An agent command is still running in the terminal.
    #[error(
        "terminal {name} is still running cmd{index} (`{command}`); wait with read_output, interrupt it with send_input(\"\\x03\"), or use another terminal"
    )]
    Busy {
        /// Terminal name.
        name: String,
        /// Index of the running command.
        index: u32,
        /// Its text.
        command: String,
    },
    /// A command a human started in the shared terminal did not finish in time.
    #[error(
        "terminal {name} is busy with a command a human started (`{command}`); wait for it, interrupt it with send_input(\"\\x03\"), or use another terminal"
    )]
    HumanBusy {
        /// Terminal name.
        name: String,
        /// The human's command line as seen on screen.
        command: String,
    },
    /// The shell did not print its first prompt in time.
    #[error(
        "terminal {name} did not show its first prompt within {secs} s; the shell may be broken: terminate it and create a new one"
    )]
    NotReady {
        /// Terminal name.
        name: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The command text cannot be sent.
    #[error("invalid command: {reason}")]
    InvalidCommand {
        /// What is wrong with it.
        reason: String,
    },
    /// The manager was shut down.
    #[error("the terminal manager has been shut down; create a new one")]
    ShutDown,
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Starting the shell failed.
    #[error(
        "could not start the shell {shell} in {work_dir}: {source}; check that the shell exists and is executable and that the directory exists"
    )]
    Spawn {
        /// The shell binary.
        shell: PathBuf,
        /// The directory it was to start in.
        work_dir: PathBuf,
        /// The underlying error.
        #[source]
        source: pty_process::Error,
    },
    /// The multiplexer server refused or broke the connection (client side).
    #[error("multiplexer: {0}")]
    Protocol(String),
}

impl TerminalError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the terminal's shell has exited.
    #[must_use]
    pub fn is_exited(&self) -> bool {
        matches!(self, Self::Exited { .. })
    }
}

/// The crate's result alias.
pub type Result<T, E = TerminalError> = std::result::Result<T, E>;
