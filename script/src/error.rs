//! How a control block failed ([`ScriptFailure`]). A tool fails with [`codepilot_protocol::ToolError`].

use std::fmt;

/// Result alias for this crate: a control block either ran or failed with a [`ScriptFailure`].
pub type Result<T, E = ScriptFailure> = std::result::Result<T, E>;

/// What kind of failure ended a control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The block did not compile; nothing ran.
    Syntax,
    /// A Python exception escaped the block (including `RecursionError`, `MemoryError`, a tool's
    /// [`codepilot_protocol::ToolError`] that was not caught, `NameError`, `PermissionError`, …).
    Exception,
    /// The block ran past its wall-clock limit (time spent inside tools counts).
    Timeout,
    /// The block tried to make more tool calls than [`crate::Limits::max_tool_calls`].
    ToolCallLimit,
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
