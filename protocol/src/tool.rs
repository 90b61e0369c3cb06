//! Tools as the control block sees them: their signatures, and the Python exception a failing call raises.
//!
//! A [`ToolSpec`] is what the model reads in the system prompt and what the interpreter binds arguments
//! against. A [`ToolError`] is the one error type of a tool call, from the tool that fails to the `except`
//! clause in the block that catches it.

use std::fmt;
use std::fmt::Write as _;

use serde_json::Value;

/// One tool the block may call: its name, parameters (positional-or-keyword, then an optional `**name` that takes
/// every other keyword) and doc string.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The Python name the block calls, e.g. `read_file`.
    pub name: String,
    /// Parameters in declared order.
    pub params: Vec<ParamSpec>,
    /// Doc string (shown in the system prompt; also the function's `__doc__`).
    pub doc: String,
    /// The return type as written in Python (`str`, `list[str]`), shown after `->` in the signature.
    pub returns: Option<String>,
    /// `Some(name)`: keywords that name no parameter are collected into a dict bound to `name` (`**name`).
    pub var_keyword: Option<String>,
}

/// One parameter of a [`ToolSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Parameter name.
    pub name: String,
    /// `None`: required. `Some(Value::Null)`: defaults to `None`. Otherwise the default value.
    pub default: Option<Value>,
    /// The type as written in Python (`int`, `Optional[str]`), shown in the signature.
    pub annotation: Option<String>,
}

impl ParamSpec {
    /// A required parameter.
    #[must_use]
    pub fn required(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            default: None,
            annotation: None,
        }
    }

    /// An optional parameter with a default (`Value::Null` means `None`).
    #[must_use]
    pub fn optional(name: impl Into<String>, default: Value) -> Self {
        Self {
            name: name.into(),
            default: Some(default),
            annotation: None,
        }
    }

    /// The same parameter with a Python type annotation (`int`, `list[str]`).
    #[must_use]
    pub fn annotated(mut self, annotation: impl Into<String>) -> Self {
        self.annotation = Some(annotation.into());
        self
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
            returns: None,
            var_keyword: None,
        }
    }

    /// The same tool taking every other keyword as a dict bound to `name` (`**name`).
    #[must_use]
    pub fn with_var_keyword(mut self, name: impl Into<String>) -> Self {
        self.var_keyword = Some(name.into());
        self
    }

    /// The Python signature, e.g. `read_file(path, start_line=1, end_line=None)`, with annotations where given:
    /// `greet(name: str, times: int = 1) -> str`.
    #[must_use]
    pub fn signature(&self) -> String {
        let mut out = format!("{}(", self.name);
        for (i, param) in self.params.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&param.name);
            if let Some(annotation) = &param.annotation {
                out.push_str(": ");
                out.push_str(annotation);
            }
            if let Some(default) = &param.default {
                out.push_str(if param.annotation.is_some() {
                    " = "
                } else {
                    "="
                });
                out.push_str(&py_literal(default));
            }
        }
        if let Some(rest) = &self.var_keyword {
            if !self.params.is_empty() {
                out.push_str(", ");
            }
            out.push_str("**");
            out.push_str(rest);
        }
        out.push(')');
        if let Some(returns) = &self.returns {
            out.push_str(" -> ");
            out.push_str(returns);
        }
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

/// A Python exception type a tool may raise into the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A failed tool call: the block gets an exception of type `kind` it can catch, and the model reads
/// `[tool] ERROR: message` in the observation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// The Python exception raised in the block.
    pub kind: ExcKind,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ToolError {
    /// A `kind` exception with `message`.
    #[must_use]
    pub fn new(kind: ExcKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A `ValueError`: an argument has the right type but a bad value.
    #[must_use]
    pub fn value(message: impl Into<String>) -> Self {
        Self::new(ExcKind::ValueError, message)
    }

    /// A `TypeError`: an argument has the wrong type.
    #[must_use]
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(ExcKind::TypeError, message)
    }

    /// A `RuntimeError`: anything else.
    #[must_use]
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ExcKind::RuntimeError, message)
    }

    /// A `PermissionError`: outside the workspace, or denied.
    #[must_use]
    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(ExcKind::PermissionError, message)
    }

    /// A `FileNotFoundError`: a missing file or terminal.
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ExcKind::FileNotFoundError, message)
    }

    /// The same error with ` suffix` appended to the message.
    #[must_use]
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        self.message.push(' ');
        self.message.push_str(suffix);
        self
    }
}
