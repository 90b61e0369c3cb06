//! Runs CodePilot control blocks: a Python subset executed by an embedded interpreter (monty,
//! pinned), where the only callables besides safe builtins are the host's tools.
//!
//! Each tool call suspends the interpreter, which runs on its own big-stack thread, and is served
//! on the caller's tokio runtime through [`ToolHost`]. Limits: wall clock (tool time included),
//! tool-call cap, recursion depth, allocation size; cancellation through a
//! [`tokio_util::sync::CancellationToken`].
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use codepilot_script::ParamSpec;
//! use codepilot_script::RunRequest;
//! use codepilot_script::ToolError;
//! use codepilot_script::ToolHost;
//! use codepilot_script::ToolSpec;
//! use serde_json::Map;
//! use serde_json::Value;
//! use serde_json::json;
//!
//! struct Host;
//!
//! #[async_trait::async_trait]
//! impl ToolHost for Host {
//!     async fn call_tool(&self, name: &str, args: Map<String, Value>) -> Result<Value, ToolError> {
//!         Ok(json!({"tool": name, "args": args, "exit_code": 0}))
//!     }
//!     fn print(&self, text: &str) {
//!         let _ = text;
//!     }
//! }
//!
//! # async fn demo() -> Result<(), codepilot_script::ScriptFailure> {
//! let tools: Arc<[ToolSpec]> = Arc::new([ToolSpec::new(
//!     "execute",
//!     vec![ParamSpec::required("terminal"), ParamSpec::required("command"), ParamSpec::optional("timeout", json!(10))],
//!     "Run a shell command.",
//! )]);
//! let req = RunRequest::new("r = execute('main', 'pytest -q')\nif r['exit_code'] != 0:\n    print('failed')", tools);
//! let report = codepilot_script::run_block(req, Arc::new(Host), Default::default()).await?;
//! assert_eq!(report.tool_calls, 1);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod alloc;
mod bind;
mod error;
mod interp;
mod pool;
mod runner;
mod spec;

pub use alloc::CountingAllocator;
pub use alloc::counting as counting_allocator_installed;
pub use codepilot_protocol::ExcKind;
pub use codepilot_protocol::ParamSpec;
pub use codepilot_protocol::ToolError;
pub use codepilot_protocol::ToolSpec;
pub use codepilot_protocol::py_literal;
pub use error::FailureKind;
pub use error::Result;
pub use error::ScriptFailure;
pub use runner::ToolHost;
pub use runner::run_block;
pub use spec::DEFAULT_MAX_TOOL_CALLS;
pub use spec::DEFAULT_WALL_CLOCK;
pub use spec::Limits;
pub use spec::RunReport;
pub use spec::RunRequest;
