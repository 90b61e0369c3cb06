//! Tools: one [`Tool`] trait for the built-ins and the host's own tools, and the registry.
//!
//! Every tool returns a structured value to the control block **and** appends its formatted result to the step's
//! observation (SPEC §6). A tool that gives no text of its own (most host tools) is shown as `[name] <value>`; a
//! failing tool raises its [`ToolError`]'s Python exception in the block, and the model reads
//! `[name] ERROR: message`.

pub(crate) mod builtin;
mod code_search;
mod context_tools;
pub(crate) mod find;
pub(crate) mod fs;
pub(crate) mod workspace;

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot_protocol::ExcKind;
use codepilot_protocol::ParamSpec;
use codepilot_protocol::Payload;
use codepilot_protocol::ToolError;
use codepilot_protocol::ToolSpec;
use codepilot_terminal::TerminalManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Map;
use serde_json::Value;

use crate::events::EventBus;
use crate::handlers::AskUserHandler;
use crate::handlers::BoxFuture;

/// What a tool returns: the value for the control block and, optionally, the text the model reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Appended to the observation. `None`: the runtime shows `[name] <value>`.
    pub observation: Option<String>,
    /// Returned to the control block.
    pub value: Value,
}

impl ToolOutput {
    /// A value, rendered into the observation automatically.
    #[must_use]
    pub fn value(value: Value) -> Self {
        Self {
            observation: None,
            value,
        }
    }

    /// A value with the text the model reads instead of the automatic rendering.
    #[must_use]
    pub fn with_observation(observation: impl Into<String>, value: Value) -> Self {
        Self {
            observation: Some(observation.into()),
            value,
        }
    }

    /// A status message, shown to the model and returned to the block alike.
    #[must_use]
    pub fn message(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            value: Value::String(message.clone()),
            observation: Some(message),
        }
    }
}

/// One call of a tool: its arguments, bound to the tool's parameters with defaults filled in.
pub struct ToolCall<'a> {
    /// Arguments by parameter name.
    pub args: Map<String, Value>,
    /// Pairs the call with its `ToolCall` and `ToolResult` events.
    pub call_id: &'a str,
    /// What the built-ins reach while a block runs; `None` for a call made outside a step.
    pub(crate) step: Option<&'a StepContext>,
    /// The call's `execute_tool` span, parent of what the tool traces itself (MCP calls, workers).
    pub(crate) span: codepilot_telemetry::Span,
}

impl<'a> ToolCall<'a> {
    /// A call with `args`, e.g. to test a tool on its own.
    #[must_use]
    pub fn new(args: Map<String, Value>, call_id: &'a str) -> Self {
        Self {
            args,
            call_id,
            step: None,
            span: codepilot_telemetry::Span::none(),
        }
    }
}

/// A tool the block can call: a built-in, or one the host registers (usually built with [`FnTool`]).
///
/// The runtime binds the block's arguments against [`Tool::spec`] before [`Tool::call`] (a wrong argument is a
/// `TypeError` in the block and the tool never runs), asks the host's permission handler first when
/// [`Tool::requires_permission`] or the agent file says so, and turns the result into an observation entry.
pub trait Tool: Send + Sync {
    /// Name (a Python identifier), parameters and doc string, as shown to the model.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool.
    ///
    /// # Errors
    /// A [`ToolError`]: its exception is raised in the block at the call site (the block may catch it).
    fn call<'a>(&'a self, call: ToolCall<'a>) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;

    /// Whether each call must be approved by the host's permission handler first. Default: no.
    fn requires_permission(&self) -> bool {
        false
    }

    /// A short label for a UI, e.g. "Reading src/lib.rs". Default: `None`, shown as "Calling NAME".
    fn label(&self, args: &Map<String, Value>) -> Option<String> {
        let _ = args;
        None
    }

    /// What a permission prompt says about a call, e.g. "Execute in main: cargo test". Default: `None`, shown as
    /// "Call NAME".
    fn describe_call(&self, args: &Map<String, Value>) -> Option<String> {
        let _ = args;
        None
    }
}

/// What the sub-agent tools ask of the runtime's workers (SPEC §20; the runtime's `Workers`).
pub(crate) trait Delegate: Send + Sync {
    /// Starts a worker; its id, or why not. `trace` parents the worker's run span (the `spawn_subagent` call's).
    fn spawn(
        &self,
        task: &str,
        context: &str,
        tools: Option<Vec<String>>,
        model: Option<String>,
        trace: Option<String>,
    ) -> Result<u32, String>;
    /// What `await_subagent` returns once worker `id` ended, or after `timeout`.
    fn wait(&self, id: u32, timeout: std::time::Duration) -> BoxFuture<'_, String>;
    /// Answers worker `id`'s `ask_main_agent`.
    fn reply(&self, id: u32, message: String) -> Result<(), String>;
    /// The workers so far, as `list_subagents` returns them.
    fn list(&self) -> Vec<Value>;
    /// Aborts every running worker.
    fn abort_all(&self);
}

/// The resources of one runtime that built-in tools use.
pub(crate) struct ToolEnv {
    pub(crate) workspace: Arc<workspace::Workspace>,
    pub(crate) ledger: Arc<fs::ReadLedger>,
    pub(crate) terminals: Option<TerminalManager>,
    pub(crate) ask_user: Option<Arc<dyn AskUserHandler>>,
    pub(crate) events: Arc<EventBus>,
    /// The workers the block may start (`None` when `spawn_subagent` is off).
    pub(crate) workers: Option<Arc<dyn Delegate>>,
    /// When this runtime is a worker: its tie to the parent, for `ask_main_agent`.
    pub(crate) worker: Option<Arc<crate::state::WorkerLink>>,
    /// The code index behind the search tools (`None` when `search.enabled` is false).
    pub(crate) search: Option<Arc<crate::code_index::CodeSearch>>,
    /// Whether this runtime's model was told how search ranks (once).
    pub(crate) search_note_given: std::sync::atomic::AtomicBool,
}

/// What built-in tools reach during one control block: the runtime's resources and the answer's payloads.
pub(crate) struct StepContext {
    pub(crate) env: Arc<ToolEnv>,
    /// Payload blocks not yet consumed by `write_file`, in order.
    pub(crate) payloads: Mutex<VecDeque<Payload>>,
    /// The session's context, for the context tools.
    pub(crate) context: Arc<Mutex<crate::context::ContextBook>>,
}

type ErasedHandler = Arc<
    dyn Fn(Map<String, Value>) -> BoxFuture<'static, Result<ToolOutput, ToolError>> + Send + Sync,
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
            spec: ToolSpec::new(name, Vec::new(), doc),
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
        self.spec.params.push(ParamSpec::required(name));
        self
    }

    /// Adds an optional parameter with a default value (`serde_json::Value::Null` is Python's `None`).
    #[must_use]
    pub fn param_default(mut self, name: impl Into<String>, default: impl Into<Value>) -> Self {
        self.spec
            .params
            .push(ParamSpec::optional(name, default.into()));
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
                let args: A = serde_json::from_value(Value::Object(args)).map_err(|e| {
                    ToolError::new(ExcKind::TypeError, format!("{name}(): bad arguments: {e}"))
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

    fn call<'a>(&'a self, call: ToolCall<'a>) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        match &self.handler {
            Some(h) => h(call.args),
            None => {
                let name = self.spec.name.clone();
                Box::pin(
                    async move { Err(ToolError::runtime(format!("{name}() has no handler set"))) },
                )
            }
        }
    }
}

/// Per-tool settings: the agent file's `tools[].config` for a built-in, the tool's own for a host tool.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ToolSettings {
    pub(crate) require_permission: bool,
    pub(crate) max_output_chars: Option<usize>,
}

impl ToolSettings {
    pub(crate) fn from_config(config: &Map<String, Value>) -> Self {
        Self {
            require_permission: config
                .get("require_permission")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            max_output_chars: config
                .get("max_output_chars")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok()),
        }
    }
}

/// A registered tool and its settings.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) tool: Arc<dyn Tool>,
    pub(crate) settings: ToolSettings,
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
    /// Adds `tool`; a host tool's settings come from the tool itself.
    pub(crate) fn insert_host(&mut self, tool: Arc<dyn Tool>) -> Result<(), RegisterError> {
        let settings = ToolSettings {
            require_permission: tool.requires_permission(),
            max_output_chars: None,
        };
        self.insert(tool, settings)
    }

    pub(crate) fn insert(
        &mut self,
        tool: Arc<dyn Tool>,
        settings: ToolSettings,
    ) -> Result<(), RegisterError> {
        let spec = tool.spec();
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
        self.tools
            .insert(spec.name.clone(), Registered { tool, settings });
        self.specs.push(spec);
        Ok(())
    }

    /// Removes the tool `name`; whether there was one.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.specs.retain(|s| s.name != name);
        self.tools.remove(name).is_some()
    }

    /// Removes every tool whose name `unwanted` accepts.
    pub(crate) fn remove_where(&mut self, unwanted: impl Fn(&str) -> bool) {
        self.specs.retain(|s| !unwanted(&s.name));
        self.tools.retain(|name, _| !unwanted(name));
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered> {
        self.tools.get(name)
    }

    pub(crate) fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }
}
