//! The request and limit types of a run.

use std::sync::Arc;
use std::time::Duration;

use codepilot_protocol::ToolSpec;
use serde_json::Value;

/// Default wall clock of one control block ([`Limits::wall_clock`]; an agent file's `runtime.step_timeout_s`).
pub const DEFAULT_WALL_CLOCK: Duration = Duration::from_secs(600);

/// Default cap on tool calls in one control block ([`Limits::max_tool_calls`]).
pub const DEFAULT_MAX_TOOL_CALLS: u32 = 200;

/// Limits for one control block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall clock for the whole block, time spent inside tools included. Default [`DEFAULT_WALL_CLOCK`].
    pub wall_clock: Duration,
    /// Maximum tool calls per block; the next call stops the block uncatchably. Default [`DEFAULT_MAX_TOOL_CALLS`].
    pub max_tool_calls: u32,
    /// Maximum Python call depth; deeper recursion raises `RecursionError`. Default 200.
    pub max_recursion_depth: usize,
    /// Memory cap in bytes. Default 256 MiB.
    ///
    /// Without a counting global allocator this rejects any *single* allocation the interpreter can
    /// size up front (`'a' * 10**9`, `[0] * 10**9`, `2 ** 10**10`) with `MemoryError`. It becomes a cap on
    /// the memory a block adds when the executable installs [`crate::CountingAllocator`] as its global
    /// allocator (the `codepilot` binary does). `None` disables both.
    pub max_memory_bytes: Option<usize>,
    /// Maximum bytes the block may `print()`; beyond it `print` raises `MemoryError`. Default 10 MiB.
    pub max_print_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_clock: DEFAULT_WALL_CLOCK,
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            max_recursion_depth: 200,
            max_memory_bytes: Some(256 * 1024 * 1024),
            max_print_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Everything needed to run one control block.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The block's source code.
    pub code: String,
    /// Read-only globals visible to the block, e.g. `("WORK_DIR", "/repo")`.
    ///
    /// A tool with the same name shadows a global.
    pub globals: Vec<(String, Value)>,
    /// The tools the block may call; every other name that is not a safe builtin raises `NameError`.
    pub tools: Arc<[ToolSpec]>,
    /// Limits for this block.
    pub limits: Limits,
}

impl RunRequest {
    /// A request with default limits and no globals.
    #[must_use]
    pub fn new(code: impl Into<String>, tools: Arc<[ToolSpec]>) -> Self {
        Self {
            code: code.into(),
            globals: Vec::new(),
            tools,
            limits: Limits::default(),
        }
    }
}

/// What a block that ran to completion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Tool calls delivered to the host.
    pub tool_calls: u32,
    /// Wall-clock time of the whole block, tool time included.
    pub elapsed: Duration,
}
