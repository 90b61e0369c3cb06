//! The seam between the runner and a concrete interpreter.
//!
//! [`ControlInterpreter`] runs one block synchronously on the calling thread (the runner gives it a
//! dedicated big-stack thread) and talks to the outside world only through a [`Bridge`]. Nothing in
//! this module names monty; [`monty_impl`] is the one implementation.

pub(crate) mod monty_impl;

use std::time::Duration;
use std::time::Instant;

use serde_json::Map;
use serde_json::Value;

use crate::error::FailureKind;
use crate::error::ScriptFailure;
use crate::spec::Limits;
use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolSpec;

/// One block to run.
pub(crate) struct Program<'a> {
    /// Source code.
    pub code: &'a str,
    /// Globals the block may read.
    pub globals: &'a [(String, Value)],
    /// Callable tools.
    pub tools: &'a [ToolSpec],
    /// Limits.
    pub limits: &'a Limits,
    /// Absolute wall-clock deadline for the block.
    pub deadline: Instant,
}

/// Why the interpreter must stop the block uncatchably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The cancellation token fired.
    Cancelled,
    /// The wall-clock deadline passed.
    Timeout,
    /// Too many tool calls.
    ToolCallLimit,
}

impl StopReason {
    /// The failure kind this stop is reported as.
    pub(crate) fn kind(&self) -> FailureKind {
        match self {
            Self::Cancelled => FailureKind::Cancelled,
            Self::Timeout => FailureKind::Timeout,
            Self::ToolCallLimit => FailureKind::ToolCallLimit,
        }
    }

    /// The Python exception type name and the message this stop is reported with.
    pub(crate) fn describe(&self, limits: &Limits) -> (&'static str, String) {
        match self {
            Self::Cancelled => (
                "KeyboardInterrupt",
                "the control block was cancelled".to_owned(),
            ),
            Self::Timeout => (
                "TimeoutError",
                format!(
                    "the control block exceeded its wall-clock limit of {} s (time spent inside \
                     tools counts); do less per block, or start long-running work in the \
                     background and check on it in a later step",
                    format_secs(limits.wall_clock)
                ),
            ),
            Self::ToolCallLimit => (
                "RuntimeError",
                format!(
                    "the control block made more than {} tool calls; do the work in fewer calls \
                     or spread it over several steps",
                    limits.max_tool_calls
                ),
            ),
        }
    }
}

/// `600`, `0.5`, `1.25`: seconds without trailing zeros.
fn format_secs(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The host's answer to a tool call.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The tool's result.
    Value(Value),
    /// Raise a catchable exception at the call site.
    Raise { exc: ExcKind, message: String },
    /// Stop the block at the call site.
    Stop(StopReason),
}

/// What an interpreter needs from the runner while a block runs. Called on the interpreter thread.
pub(crate) trait Bridge {
    /// Buffers printed text (delivered in order before the next tool call, or on [`Bridge::poll`]).
    fn print(&mut self, text: &str);
    /// Runs a tool (arguments already bound); blocks the interpreter thread until it answers.
    fn call_tool(&mut self, name: &str, args: Map<String, Value>) -> Reply;
    /// Called periodically while the block computes: flushes prints that waited long enough and
    /// reports whether the block must stop now.
    fn poll(&mut self) -> Option<StopReason>;
    /// Delivers everything still buffered.
    fn flush(&mut self);
    /// Tool calls delivered so far.
    fn tool_calls(&self) -> u32;
}

/// An interpreter for control blocks.
pub(crate) trait ControlInterpreter: Send + Sync {
    /// Runs `program` to completion on the current thread.
    fn run(&self, program: &Program<'_>, bridge: &mut dyn Bridge) -> Result<(), ScriptFailure>;
}
