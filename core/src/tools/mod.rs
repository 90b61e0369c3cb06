//! Tools: the registry, the custom-tool API, and the built-ins.
//!
//! Every tool returns a structured value to the control block **and** appends its formatted result to the step's
//! observation (SPEC §6). Custom tools registered by the host get the same treatment: their result is rendered as
//! `[name] <result>` so the model sees it without having to `print` it.

pub(crate) mod builtin;
pub(crate) mod find;
pub(crate) mod fs;
pub(crate) mod workspace;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use codepilot_script::ParamSpec;
use codepilot_script::ToolSpec;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::handlers::BoxFuture;

/// The Python exception a failing tool raises in the control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolErrorKind {
    /// Bad argument value.
    ValueError,
    /// Bad argument type.
    TypeError,
    /// Not allowed (outside the workspace, permission denied).
    PermissionError,
    /// Missing file or terminal.
    FileNotFoundError,
    /// Anything else.
    RuntimeError,
}

/// A tool failure: the model sees `[tool] ERROR: message`, and the control block gets an exception it can catch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// Exception type raised in the block.
    pub kind: ToolErrorKind,
    /// What went wrong and what to do.
    pub message: String,
}

impl ToolError {
    /// A `ValueError`.
    pub fn value(message: impl Into<String>) -> Self {
        Self {
            kind: ToolErrorKind::ValueError,
            message: message.into(),
        }
    }

    /// A `RuntimeError`.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            kind: ToolErrorKind::RuntimeError,
            message: message.into(),
        }
    }

    /// A `PermissionError`.
    pub fn permission(message: impl Into<String>) -> Self {
        Self {
            kind: ToolErrorKind::PermissionError,
            message: message.into(),
        }
    }
}

/// What a custom tool returns: the value for the control block and, optionally, the text the model reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Appended to the observation. Custom tools that leave it `None` get `[name] <value>`.
    pub observation: Option<String>,
    /// Returned to the control block.
    pub value: serde_json::Value,
}

impl ToolOutput {
    /// A value, rendered into the observation automatically.
    pub fn value(value: serde_json::Value) -> Self {
        Self {
            observation: None,
            value,
        }
    }
}

/// A tool the host registers from Rust. Usually built with [`FnTool`].
pub trait Tool: Send + Sync {
    /// Name (a Python identifier), parameters and doc string, as shown to the model.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool with arguments already bound to [`Tool::spec`]'s parameters (defaults filled in).
    fn call(
        &self,
        args: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'_, Result<ToolOutput, ToolError>>;

    /// Whether each call must be approved by the host's permission handler first. Default: no.
    fn requires_permission(&self) -> bool {
        false
    }
}

type ErasedHandler = Arc<
    dyn Fn(
            serde_json::Map<String, serde_json::Value>,
        ) -> BoxFuture<'static, Result<ToolOutput, ToolError>>
        + Send
        + Sync,
>;

/// A custom tool made from an async function with a typed argument struct.
///
/// ```
/// use codepilot::FnTool;
/// use codepilot::ToolError;
///
/// #[derive(serde::Deserialize)]
/// struct Args { name: String, times: u32 }
///
/// let tool = FnTool::new("greet", "Greets `name`, `times` times. Returns the greeting.")
///     .param("name")
///     .param_default("times", 1)
///     .handler(|a: Args| async move { Ok::<_, ToolError>("hi ".repeat(a.times as usize) + &a.name) });
/// ```
pub struct FnTool {
    spec: ToolSpec,
    handler: Option<ErasedHandler>,
    require_permission: bool,
}

impl FnTool {
    /// A tool named `name` (a Python identifier) documented by `doc`.
    pub fn new(name: impl Into<String>, doc: impl Into<String>) -> Self {
        Self {
            spec: ToolSpec {
                name: name.into(),
                params: Vec::new(),
                doc: doc.into(),
            },
            handler: None,
            require_permission: false,
        }
    }

    /// Every call must be approved by the host's permission handler first. Default: no.
    #[must_use]
    pub fn require_permission(mut self, yes: bool) -> Self {
        self.require_permission = yes;
        self
    }

    /// Adds a required parameter.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>) -> Self {
        self.spec.params.push(ParamSpec {
            name: name.into(),
            default: None,
        });
        self
    }

    /// Adds an optional parameter with a default value (`serde_json::Value::Null` is Python's `None`).
    #[must_use]
    pub fn param_default(
        mut self,
        name: impl Into<String>,
        default: impl Into<serde_json::Value>,
    ) -> Self {
        self.spec.params.push(ParamSpec {
            name: name.into(),
            default: Some(default.into()),
        });
        self
    }

    /// Sets the function. Its argument is deserialized from the bound parameters (a mismatch raises `TypeError` in
    /// the block); its result is serialized as the value returned to the block.
    #[must_use]
    pub fn handler<A, R, F, Fut>(mut self, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let name = self.spec.name.clone();
        self.handler = Some(Arc::new(move |args| {
            let f = Arc::clone(&f);
            let name = name.clone();
            Box::pin(async move {
                let args: A =
                    serde_json::from_value(serde_json::Value::Object(args)).map_err(|e| {
                        ToolError {
                            kind: ToolErrorKind::TypeError,
                            message: format!("{name}(): bad arguments: {e}"),
                        }
                    })?;
                let out = f(args).await?;
                let value = serde_json::to_value(out).map_err(|e| {
                    ToolError::runtime(format!("{name}(): could not convert its result: {e}"))
                })?;
                Ok(ToolOutput::value(value))
            })
        }));
        self
    }
}

impl Tool for FnTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn requires_permission(&self) -> bool {
        self.require_permission
    }

    fn call(
        &self,
        args: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'_, Result<ToolOutput, ToolError>> {
        match &self.handler {
            Some(h) => h(args),
            None => {
                let name = self.spec.name.clone();
                Box::pin(
                    async move { Err(ToolError::runtime(format!("{name}() has no handler set"))) },
                )
            }
        }
    }
}

/// Per-tool settings from the agent file (`tools[].config`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ToolSettings {
    pub(crate) require_permission: bool,
    pub(crate) max_output_chars: Option<usize>,
}

impl ToolSettings {
    /// Settings of a custom tool.
    pub(crate) fn for_custom(tool: &dyn Tool) -> Self {
        Self {
            require_permission: tool.requires_permission(),
            max_output_chars: None,
        }
    }

    pub(crate) fn from_config(config: &serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            require_permission: config
                .get("require_permission")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            max_output_chars: config
                .get("max_output_chars")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| usize::try_from(n).ok()),
        }
    }
}

/// A registered tool.
#[derive(Clone)]
pub(crate) enum Registered {
    Builtin(builtin::Builtin, ToolSettings),
    Custom(Arc<dyn Tool>, ToolSettings),
}

/// The tools one runtime offers, by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    tools: BTreeMap<String, Registered>,
    specs: Vec<ToolSpec>,
}

/// Why a tool could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The name is not a Python identifier.
    #[error(
        "tool name `{0}` is not usable: use a Python identifier (letters, digits, underscores, not starting with a \
         digit) that is not a Python builtin such as `print` or `len`"
    )]
    BadName(String),
    /// The name is taken.
    #[error("a tool named `{0}` is already registered; pick another name")]
    Duplicate(String),
    /// A parameter name is invalid or repeated, or a required one follows an optional one.
    #[error("tool `{tool}`: {reason}")]
    BadParams {
        /// The tool.
        tool: String,
        /// What is wrong.
        reason: String,
    },
}

/// Names the interpreter resolves itself, so a tool with one of them could never be called.
const PYTHON_BUILTINS: &[&str] = &[
    "WORK_DIR",
    "True",
    "False",
    "None",
    "abs",
    "all",
    "any",
    "bin",
    "bool",
    "callable",
    "chr",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "getattr",
    "hasattr",
    "hash",
    "hex",
    "id",
    "input",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "open",
    "ord",
    "pow",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "setattr",
    "slice",
    "sorted",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "zip",
    "json",
    "re",
];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Registry {
    pub(crate) fn insert(&mut self, spec: ToolSpec, tool: Registered) -> Result<(), RegisterError> {
        if !is_identifier(&spec.name) || PYTHON_BUILTINS.contains(&spec.name.as_str()) {
            return Err(RegisterError::BadName(spec.name));
        }
        if self.tools.contains_key(&spec.name) {
            return Err(RegisterError::Duplicate(spec.name));
        }
        let mut seen_optional = false;
        let mut names = std::collections::HashSet::new();
        for p in &spec.params {
            if !is_identifier(&p.name) || !names.insert(p.name.as_str()) {
                return Err(RegisterError::BadParams {
                    tool: spec.name.clone(),
                    reason: format!("parameter `{}` is not a valid, unique identifier", p.name),
                });
            }
            if p.default.is_some() {
                seen_optional = true;
            } else if seen_optional {
                return Err(RegisterError::BadParams {
                    tool: spec.name.clone(),
                    reason: format!("required parameter `{}` follows an optional one", p.name),
                });
            }
        }
        self.tools.insert(spec.name.clone(), tool);
        self.specs.push(spec);
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered> {
        self.tools.get(name)
    }

    pub(crate) fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }
}
