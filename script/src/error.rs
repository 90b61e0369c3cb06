//! Errors: how a control block failed ([`ScriptFailure`]) and how a tool fails ([`ToolError`]).

use std::fmt;

/// Result alias for this crate: a control block either ran or failed with a [`ScriptFailure`].
pub type Result<T, E = ScriptFailure> = std::result::Result<T, E>;

/// What kind of failure ended a control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The block did not compile; nothing ran.
    Syntax,
    /// A Python exception escaped the block (including `RecursionError`, `MemoryError`, a tool's
    /// [`ToolError::Raise`] that was not caught, `NameError`, `PermissionError`, …).
    Exception,
    /// The block ran past its wall-clock limit (time spent inside tools counts).
    Timeout,
    /// The block tried to make more tool calls than [`crate::Limits::max_tool_calls`].
    ToolCallLimit,
    /// A tool returned [`ToolError::Abort`]; the block was stopped at that call.
    ToolAborted,
    /// The cancellation token was cancelled.
    Cancelled,
    /// The interpreter panicked (a bug in the interpreter, caught before it reached the host).
    InterpreterCrash,
}

impl FailureKind {
    /// A short snake_case name, stable for logs and wire formats.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Exception => "exception",
            Self::Timeout => "timeout",
            Self::ToolCallLimit => "tool_call_limit",
            Self::ToolAborted => "tool_aborted",
            Self::Cancelled => "cancelled",
            Self::InterpreterCrash => "interpreter_crash",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a control block did not run to completion.
///
/// `Display` gives `ExcType: message`; [`ScriptFailure::traceback`] has the Python-style traceback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{exc_type}: {message}")]
pub struct ScriptFailure {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// The Python exception type name, e.g. `NameError`, `SyntaxError`, `TimeoutError`.
    pub exc_type: String,
    /// The exception message (without the type), written for the model to act on.
    pub message: String,
    /// The 1-based line inside the block where the exception was raised, when known.
    pub line: Option<usize>,
    /// The source text of [`Self::line`].
    pub line_text: Option<String>,
    /// A CPython-style traceback, when the interpreter produced one.
    pub traceback: Option<String>,
    /// Tool calls that were delivered to the host before the failure.
    pub tool_calls: u32,
}

impl ScriptFailure {
    /// `true` when nothing in the block ran (it failed to compile).
    #[must_use]
    pub fn nothing_ran(&self) -> bool {
        self.kind == FailureKind::Syntax
    }

    /// `ExcType: message`, as Python prints the last line of a traceback.
    #[must_use]
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

/// A Python exception type a tool may raise into the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExcKind {
    /// `TypeError`
    TypeError,
    /// `ValueError`
    ValueError,
    /// `KeyError`
    KeyError,
    /// `IndexError`
    IndexError,
    /// `RuntimeError`
    RuntimeError,
    /// `NotImplementedError`
    NotImplementedError,
    /// `OSError`
    OsError,
    /// `PermissionError`
    PermissionError,
    /// `FileNotFoundError`
    FileNotFoundError,
    /// `FileExistsError`
    FileExistsError,
    /// `IsADirectoryError`
    IsADirectoryError,
    /// `NotADirectoryError`
    NotADirectoryError,
    /// `TimeoutError`
    TimeoutError,
    /// `AssertionError`
    AssertionError,
}

impl ExcKind {
    /// The Python name of the exception type.
    #[must_use]
    pub fn python_name(self) -> &'static str {
        match self {
            Self::TypeError => "TypeError",
            Self::ValueError => "ValueError",
            Self::KeyError => "KeyError",
            Self::IndexError => "IndexError",
            Self::RuntimeError => "RuntimeError",
            Self::NotImplementedError => "NotImplementedError",
            Self::OsError => "OSError",
            Self::PermissionError => "PermissionError",
            Self::FileNotFoundError => "FileNotFoundError",
            Self::FileExistsError => "FileExistsError",
            Self::IsADirectoryError => "IsADirectoryError",
            Self::NotADirectoryError => "NotADirectoryError",
            Self::TimeoutError => "TimeoutError",
            Self::AssertionError => "AssertionError",
        }
    }
}

impl fmt::Display for ExcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.python_name())
    }
}

/// How a tool call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// Raise a Python exception at the call site; the block may catch it with `try`/`except`.
    #[error("{exc}: {message}")]
    Raise {
        /// The exception type.
        exc: ExcKind,
        /// The exception message.
        message: String,
    },
    /// Stop the block at the call site; `try`/`except` cannot catch it.
    #[error("{message}")]
    Abort {
        /// Why the block was stopped (shown to the model).
        message: String,
    },
}

impl ToolError {
    /// Shorthand for [`ToolError::Raise`].
    #[must_use]
    pub fn raise(exc: ExcKind, message: impl Into<String>) -> Self {
        Self::Raise {
            exc,
            message: message.into(),
        }
    }

    /// Shorthand for [`ToolError::Abort`].
    #[must_use]
    pub fn abort(message: impl Into<String>) -> Self {
        Self::Abort {
            message: message.into(),
        }
    }
}
