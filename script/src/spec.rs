//! Tool signatures as the block sees them, and the request/limit types of a run.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// One tool the block may call: its name, parameters (all positional-or-keyword) and doc string.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The Python name the block calls, e.g. `read_file`.
    pub name: String,
    /// Parameters in declared order.
    pub params: Vec<ParamSpec>,
    /// Doc string (shown in the system prompt; also the function's `__doc__`).
    pub doc: String,
}

/// One parameter of a [`ToolSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Parameter name.
    pub name: String,
    /// `None`: required. `Some(Value::Null)`: defaults to `None`. Otherwise the default value.
    pub default: Option<Value>,
}

impl ParamSpec {
    /// A required parameter.
    #[must_use]
    pub fn required(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            default: None,
        }
    }

    /// An optional parameter with a default (`Value::Null` means `None`).
    #[must_use]
    pub fn optional(name: impl Into<String>, default: Value) -> Self {
        Self {
            name: name.into(),
            default: Some(default),
        }
    }
}

impl ToolSpec {
    /// A tool with the given name, parameters and doc string.
    #[must_use]
    pub fn new(name: impl Into<String>, params: Vec<ParamSpec>, doc: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params,
            doc: doc.into(),
        }
    }

    /// The Python signature, e.g. `read_file(path, start_line=1, end_line=None)`.
    #[must_use]
    pub fn signature(&self) -> String {
        let mut out = format!("{}(", self.name);
        for (i, param) in self.params.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&param.name);
            if let Some(default) = &param.default {
                out.push('=');
                out.push_str(&py_literal(default));
            }
        }
        out.push(')');
        out
    }
}

/// Renders a JSON value as the Python literal that denotes it (`None`, `True`, `'text'`, `[1, 2]`, `{'k': 1}`).
#[must_use]
pub fn py_literal(value: &Value) -> String {
    let mut out = String::new();
    write_literal(&mut out, value);
    out
}

fn write_literal(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str_literal(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_literal(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str_literal(out, k);
                out.push_str(": ");
                write_literal(out, v);
            }
            out.push('}');
        }
    }
}

/// Python `repr()` of a str: single quotes unless the text contains `'` and no `"`.
fn write_str_literal(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Limits for one control block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall clock for the whole block, time spent inside tools included. Default 600 s.
    pub wall_clock: Duration,
    /// Maximum tool calls per block; the next call stops the block uncatchably. Default 200.
    pub max_tool_calls: u32,
    /// Maximum Python call depth; deeper recursion raises `RecursionError`. Default 200.
    pub max_recursion_depth: usize,
    /// Memory cap in bytes. Default 256 MiB.
    ///
    /// Without a counting global allocator this rejects any *single* allocation the interpreter can
    /// size up front (`'a' * 10**9`, `[0] * 10**9`, `2 ** 10**10`) with `MemoryError`. It only becomes
    /// a cap on *live* memory when the executable installs `monty-alloc` as its global allocator
    /// (see the crate README). `None` disables both.
    pub max_memory_bytes: Option<usize>,
    /// Maximum bytes the block may `print()`; beyond it `print` raises `MemoryError`. Default 10 MiB.
    pub max_print_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_clock: Duration::from_secs(600),
            max_tool_calls: 200,
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
