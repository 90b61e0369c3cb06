//! The agent file (`agent.yaml`, SPEC §3): loading, validation and the programmatic builder.
//!
//! The file is read with `serde-saphyr` under a tight budget (no YAML bomb gets far) and deserialised
//! into private "raw" structs that deny unknown keys. Every error names the file and, when the YAML
//! has one, the line, so `unknown key 'modle' in agent.yaml:3; did you mean 'model'?` is what a typo
//! produces. The keys may sit under `agent:` or at the top level of the document.
//!
//! Relative paths (`system_prompt` files, `runtime.work_dir`, `model.script`) resolve against the
//! directory of the YAML file, or the current directory for text without a file.

mod error;
mod mcp;
mod raw;
mod validate;

use std::fmt;
use std::path::Path;
use std::path::PathBuf;

use codepilot_llm::DEFAULT_MAX_TOKENS;
use codepilot_llm::DEFAULT_REQUEST_TIMEOUT_S;
use codepilot_llm::ProviderKind;
pub use error::ConfigError;
pub use error::Result;
pub use mcp::DEFAULT_MCP_TIMEOUT_S;
pub use mcp::Elicitation;
pub use mcp::McpServerConfig;
pub use mcp::McpTransport;
pub use mcp::OAuthConfig;
pub use mcp::Sampling;
use raw::Ctx;
use raw::Lines;
use validate::check_model;
use validate::check_runtime;
use validate::check_tool_config;
use validate::check_tool_name;

use crate::tools::builtin::Builtin;

/// The starter `agent.yaml` written by `codepilot init`: every key, its default and what it does.
pub const STARTER_AGENT_YAML: &str = include_str!("../../templates/agent.starter.yaml");

/// The built-in tools, in the order the default tool set lists them.
pub const BUILTIN_TOOLS: [&str; Builtin::ALL.len()] = builtin_names();

const fn builtin_names() -> [&'static str; Builtin::ALL.len()] {
    let mut names = [""; Builtin::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Builtin::ALL[i].name();
        i += 1;
    }
    names
}

/// Largest agent file [`AgentFile::load`] reads.
pub const MAX_AGENT_FILE_BYTES: u64 = 1024 * 1024;

/// Largest `system_prompt` file read on behalf of an agent file.
pub const MAX_SYSTEM_PROMPT_BYTES: u64 = 4 * 1024 * 1024;

/// A loaded, validated agent definition.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFile {
    /// Agent name (required).
    pub name: String,
    /// One-line role description used in the system prompt.
    pub role: Option<String>,
    /// The host's system prompt text (already read from the file if the YAML named one).
    pub system_prompt: String,
    /// The model.
    pub model: ModelConfig,
    /// Loop limits and the workspace.
    pub runtime: RuntimeConfig,
    /// Tool overrides as written. Empty means the default set; see [`AgentFile::effective_tools`].
    pub tools: Vec<ToolEntry>,
    /// MCP servers whose tools the block can call (SPEC §18).
    pub mcp_servers: Vec<McpServerConfig>,
    /// Workers the block may start with `spawn_subagent` (SPEC §20).
    pub subagents: SubagentsConfig,
    /// The code index behind the search tools (SPEC §22).
    pub search: SearchConfig,
    /// `observability:` (SPEC §23): OpenTelemetry traces; the standard `OTEL_*` variables override it.
    pub observability: codepilot_telemetry::TraceSettings,
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
}

/// `search:` section (SPEC §22): the code index behind `semantic_search`, `definition`, `references` and
/// `repo_map`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Whether the index is built (in the background, when the runtime starts). Default true; with false the
    /// search tools answer that the index is off.
    pub enabled: bool,
    /// Files larger than this are not indexed. Default [`codepilot_search::DEFAULT_MAX_FILE_BYTES`] (1 MiB).
    pub max_file_bytes: u64,
    /// An embeddings endpoint whose vectors join the ranking; `None`: lexical and structural search only.
    pub embeddings: Option<EmbeddingsSettings>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_file_bytes: codepilot_search::DEFAULT_MAX_FILE_BYTES,
            embeddings: None,
        }
    }
}

/// `search.embeddings:`: an OpenAI-compatible `/embeddings` endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsSettings {
    /// The API base, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The embedding model.
    pub model: String,
    /// The variable holding the key (hidden from the agent's shell like the model's); `None`: no key sent.
    pub api_key_env: Option<String>,
    /// Chunks per request. Default 64.
    pub batch_size: u32,
}

/// `subagents:` section (SPEC §20): how many workers the block may run, how deep, for how long, on what models.
#[derive(Debug, Clone, PartialEq)]
pub struct SubagentsConfig {
    /// Models a worker may be given by name (`spawn_subagent(model="fast")`): whole `model:` sections, any
    /// provider. A `model` that names none of them is a model id for the parent's provider.
    pub models: std::collections::BTreeMap<String, ModelConfig>,
    /// Workers running at once; `spawn_subagent` past it raises in the block. Default 4, 1 to 64.
    pub max_concurrent: u32,
    /// How deep workers may spawn workers: 1 lets the session's agent spawn and no worker. Default 1, at most 4.
    pub max_depth: u32,
    /// A worker's step limit; `None`: the agent's `runtime.max_steps`.
    pub max_steps: Option<u32>,
}

impl Default for SubagentsConfig {
    fn default() -> Self {
        Self {
            models: std::collections::BTreeMap::new(),
            max_concurrent: 4,
            max_depth: 1,
            max_steps: None,
        }
    }
}

/// `model:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The provider, parsed once when the file is loaded (any alias `ProviderKind` accepts, e.g. `claude`).
    pub provider: ProviderKind,
    /// Model id sent to the provider.
    pub name: String,
    /// Environment variable holding the API key. `None`: the provider's usual variable.
    pub api_key_env: Option<String>,
    /// Base URL of the API (YAML alias: `api_base`). Required for `openai-compatible`.
    pub base_url: Option<String>,
    /// Sampling temperature, 0.0..=2.0. Default 0.0.
    pub temperature: f32,
    /// Maximum output tokens per call. Default [`DEFAULT_MAX_TOKENS`] (4096).
    pub max_tokens: u32,
    /// Context window in tokens; `None` means the built-in profile or a safe default.
    pub context_window: Option<u64>,
    /// Extended thinking.
    pub thinking: ThinkingConfig,
    /// Stream responses. Default true.
    pub stream: bool,
    /// Seconds to wait for the model server: for the whole answer when not streaming, else for the response
    /// headers and for each pause between two pieces of the stream. Default [`DEFAULT_REQUEST_TIMEOUT_S`] (600),
    /// must be > 0.
    pub timeout_s: u64,
    /// Answers file of the `scripted` provider (resolved against the YAML file's directory).
    pub script: Option<PathBuf>,
    /// `model.pricing`: the model's prices, overriding the built-in table ([`ModelConfig::prices`]).
    pub pricing: Option<codepilot_llm::Pricing>,
}

/// `model.thinking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkingConfig {
    /// Enable extended thinking. Default false.
    pub enabled: bool,
    /// Thinking budget in tokens. Default 8000.
    pub budget_tokens: u32,
}

impl Default for ThinkingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            budget_tokens: DEFAULT_THINKING_BUDGET,
        }
    }
}

/// `runtime:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Workspace root. From YAML: absolute, resolved against the file's directory. Default `./workspace`.
    pub work_dir: PathBuf,
    /// Steps before the run stops with max-steps. Default 20, must be > 0.
    pub max_steps: u32,
    /// Let file tools leave `work_dir`. Default false.
    pub unsafe_mode: bool,
    /// Wall clock for one control block, in seconds. Default 600, must be > 0.
    pub step_timeout_s: u64,
    /// The sandbox the agent's shells (and file tools) run in. Default `workspace-write`; where the kernel
    /// cannot provide it, the runtime says so at the first shell and runs the shells without it (the file tools keep
    /// their write rules).
    pub sandbox: codepilot_sandbox::Mode,
    /// Whether sandboxed shells have the network. Default true.
    pub network: bool,
    /// More files whose text goes into the system prompt after the repository's `AGENTS.md` files (SPEC §21),
    /// resolved against the agent file's directory. Default none.
    pub instructions_files: Vec<PathBuf>,
    /// What one session's shells may use together (SPEC §24); `None` is `resources: off`. Default
    /// [`Limits::defaults`](codepilot_sandbox::resources::Limits::defaults): 512 processes, half the machine's
    /// memory.
    pub resources: Option<codepilot_sandbox::resources::Limits>,
    /// Context stress (request tokens / budget) from which a maintenance step asks the model to archive finished
    /// tasks (SPEC §16). Default 0.8; more than 0 and at most 1.
    pub context_threshold: f64,
    /// When checkpoints of the work directory and conversation are taken (SPEC §19). Default
    /// [`CheckpointMode::Turn`].
    pub checkpoints: CheckpointMode,
    /// Checkpoints kept per session (`runtime.checkpoint_keep`). Default 50.
    pub checkpoint_keep: usize,
    /// Files larger than this are left out of checkpoints (`runtime.checkpoint_max_file_mb`). Default 16 MiB.
    pub checkpoint_max_file_bytes: u64,
    /// What each run may spend (`runtime.limits`, SPEC §21); a run's own limits replace these one by one.
    /// Default none.
    pub limits: codepilot_protocol::Limits,
    /// What the session may spend over its whole life (`runtime.session_limits`). Default none.
    pub session_limits: codepilot_protocol::Limits,
    /// Completions refused for not matching a run's output schema before it ends as `invalid_output`
    /// (`runtime.output_retries`). Default 3.
    pub output_retries: u32,
}

/// Default of [`RuntimeConfig::output_retries`].
pub const DEFAULT_OUTPUT_RETRIES: u32 = 3;

/// When checkpoints are taken (`runtime.checkpoints`, SPEC §19).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Before each turn's first step.
    #[default]
    Turn,
    /// Before every step.
    Step,
    /// Never: `rewind` has nothing to go back to.
    Off,
}

impl std::str::FromStr for CheckpointMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "turn" => Ok(Self::Turn),
            "step" => Ok(Self::Step),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "unknown checkpoint mode {other:?}; use turn (before each turn, the default), step (before every step) or off"
            )),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from(DEFAULT_WORK_DIR),
            max_steps: DEFAULT_MAX_STEPS,
            unsafe_mode: false,
            step_timeout_s: DEFAULT_STEP_TIMEOUT_S,
            sandbox: codepilot_sandbox::Mode::WorkspaceWrite,
            network: true,
            instructions_files: Vec::new(),
            resources: Some(codepilot_sandbox::resources::Limits::defaults()),
            context_threshold: DEFAULT_CONTEXT_THRESHOLD,
            checkpoints: CheckpointMode::Turn,
            checkpoint_keep: codepilot_store::checkpoint::DEFAULT_KEEP,
            checkpoint_max_file_bytes: codepilot_store::checkpoint::DEFAULT_MAX_FILE_BYTES,
            limits: codepilot_protocol::Limits::default(),
            session_limits: codepilot_protocol::Limits::default(),
            output_retries: DEFAULT_OUTPUT_RETRIES,
        }
    }
}

/// The token budget of one request (SPEC §16): what is left of the context window after the answer
/// (`max_tokens`), the thinking budget and a safety margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBudget {
    /// The model's context window: configured, known for the model, or [`codepilot_llm::DEFAULT_CONTEXT_WINDOW`].
    pub window: u64,
    /// Tokens kept free for counting errors: 2% of the window, at least 256.
    pub margin: u64,
    /// Tokens a request may hold.
    pub budget: u64,
}

impl ModelConfig {
    /// The prices used for cost: `model.pricing`, else the built-in table's for the model
    /// ([`codepilot_llm::known_pricing`]); `None` when neither knows it.
    #[must_use]
    pub fn prices(&self) -> Option<codepilot_llm::Pricing> {
        self.pricing
            .or_else(|| codepilot_llm::known_pricing(&self.name))
    }

    /// The most output tokens one call can produce: `max_tokens`, plus the thinking budget when thinking is on.
    #[must_use]
    pub fn max_output_tokens(&self) -> u64 {
        u64::from(self.max_tokens)
            + if self.thinking.enabled {
                u64::from(self.thinking.budget_tokens)
            } else {
                0
            }
    }

    /// The context window used: `context_window`, the model's known window, or the default.
    #[must_use]
    pub fn effective_context_window(&self) -> u64 {
        self.context_window
            .or_else(|| codepilot_llm::known_context_window(&self.name))
            .unwrap_or(codepilot_llm::DEFAULT_CONTEXT_WINDOW)
    }

    /// The request budget: window − `max_tokens` − thinking budget (when enabled) − margin.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the keys when nothing is left for the conversation.
    pub fn context_budget(&self) -> Result<ContextBudget> {
        let window = self.effective_context_window();
        let margin = (window / 50).max(256);
        let thinking = if self.thinking.enabled {
            u64::from(self.thinking.budget_tokens)
        } else {
            0
        };
        let reserved = u64::from(self.max_tokens) + thinking + margin;
        let budget = window.saturating_sub(reserved);
        // Less than this cannot hold the system prompt and a task.
        if budget < MIN_CONTEXT_BUDGET {
            let thinking_part = if self.thinking.enabled {
                format!(" − model.thinking.budget_tokens ({thinking})")
            } else {
                String::new()
            };
            return Err(ConfigError::Invalid {
                key: "model.context_window".into(),
                file: NO_FILE.into(),
                line: None,
                message: format!(
                    "model.context_window ({window}) − model.max_tokens ({}){thinking_part} − a margin of \
                     {margin} leaves {budget} tokens for the conversation; at least {MIN_CONTEXT_BUDGET} are \
                     needed. Raise model.context_window or lower model.max_tokens",
                    self.max_tokens
                ),
            });
        }
        Ok(ContextBudget {
            window,
            margin,
            budget,
        })
    }
}

/// One entry of `tools:`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolEntry {
    /// Built-in tool name, one of [`BUILTIN_TOOLS`].
    pub name: String,
    /// Default true; false switches the tool off.
    pub enabled: bool,
    /// Tool-specific settings, e.g. `require_permission`, `max_output_chars`.
    pub config: serde_json::Map<String, serde_json::Value>,
}

impl ToolEntry {
    /// An enabled entry with no config.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enabled: true,
            config: serde_json::Map::new(),
        }
    }
}

const DEFAULT_WORK_DIR: &str = "./workspace";
const DEFAULT_MAX_STEPS: u32 = 20;
const DEFAULT_STEP_TIMEOUT_S: u64 = codepilot_script::DEFAULT_WALL_CLOCK.as_secs();
const DEFAULT_THINKING_BUDGET: u32 = 8000;
const NO_FILE: &str = "<agent config>";
const DEFAULT_CONTEXT_THRESHOLD: f64 = 0.8;
/// The smallest request budget accepted: room for the system prompt and a task.
const MIN_CONTEXT_BUDGET: u64 = 2048;

impl ModelConfig {
    /// A model section with every default.
    #[must_use]
    pub fn new(provider: ProviderKind, name: impl Into<String>) -> Self {
        Self {
            provider,
            name: name.into(),
            api_key_env: None,
            base_url: None,
            temperature: 0.0,
            max_tokens: DEFAULT_MAX_TOKENS,
            context_window: None,
            thinking: ThinkingConfig::default(),
            stream: true,
            timeout_s: DEFAULT_REQUEST_TIMEOUT_S,
            script: None,
            pricing: None,
        }
    }
}

impl AgentFile {
    /// Read and validate an agent file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and line of the first problem.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_yaml_str(&Self::read_text(path)?, Some(path))
    }

    /// An agent file's text, read as [`AgentFile::load`] reads it (at most [`MAX_AGENT_FILE_BYTES`]), for a host
    /// that keeps the text: `from_yaml_str(&text, Some(path))` then gives what `load` would.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::TooLarge`] naming the file.
    pub fn read_text(path: &Path) -> Result<String> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_AGENT_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                size,
                limit: MAX_AGENT_FILE_BYTES,
            });
        }
        std::fs::read_to_string(path).map_err(read_err)
    }

    /// Parse and validate agent-file text. `origin` is the file it came from: it names the file in
    /// messages and is the base for relative paths (`None`: the current directory).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and line of the first problem.
    pub fn from_yaml_str(text: &str, origin: Option<&Path>) -> Result<Self> {
        let file = origin.map_or_else(|| NO_FILE.to_string(), |p| p.display().to_string());
        let base = match origin.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let ctx = Ctx { file, base };
        let raw = raw::parse_raw(text, &ctx)?;
        let mut agent = raw::convert(raw, &ctx)?;
        agent.source = origin.map(Path::to_path_buf);
        Ok(agent)
    }

    /// Start a programmatic definition (for hosts that do not use YAML). A provider name from a user becomes a
    /// [`ProviderKind`] with `str::parse`, whose error lists the valid names.
    #[must_use]
    pub fn builder(
        name: impl Into<String>,
        provider: ProviderKind,
        model_name: impl Into<String>,
    ) -> AgentFileBuilder {
        AgentFileBuilder {
            agent: Self {
                name: name.into(),
                role: None,
                system_prompt: String::new(),
                model: ModelConfig::new(provider, model_name),
                runtime: RuntimeConfig::default(),
                tools: Vec::new(),
                mcp_servers: Vec::new(),
                subagents: SubagentsConfig::default(),
                search: SearchConfig::default(),
                observability: codepilot_telemetry::TraceSettings::default(),
                source: None,
            },
        }
    }

    /// The tools to register: every built-in, in [`BUILTIN_TOOLS`] order, with the listed entry's
    /// config where one exists, minus those listed with `enabled: false`. A `tools:` list thus
    /// overrides the default set instead of replacing it.
    #[must_use]
    pub fn effective_tools(&self) -> Vec<ToolEntry> {
        BUILTIN_TOOLS
            .iter()
            .filter_map(|name| match self.tools.iter().find(|t| t.name == *name) {
                Some(entry) => entry.enabled.then(|| entry.clone()),
                // Only a worker asks a main agent: it is on for workers alone (SPEC §20).
                None if *name == "ask_main_agent" => None,
                None => Some(ToolEntry::new(*name)),
            })
            .collect()
    }

    /// Check every rule the YAML loader checks (ranges, tool names, `base_url`).
    ///
    /// # Errors
    /// The first rule broken, without line numbers.
    pub fn validate(&self) -> Result<()> {
        let ctx = Ctx {
            file: self
                .source
                .as_ref()
                .map_or_else(|| NO_FILE.to_string(), |p| p.display().to_string()),
            base: PathBuf::from("."),
        };
        check_model(&self.model, &ctx, &Lines::default())?;
        check_runtime(&self.runtime, &ctx, &Lines::default())?;
        self.model.context_budget()?;
        let mut seen: Vec<&str> = Vec::new();
        for tool in &self.tools {
            check_tool_name(&tool.name, &seen, &ctx, None)?;
            check_tool_config(&tool.name, &tool.config, &ctx, None)?;
            seen.push(&tool.name);
        }
        for (i, server) in self.mcp_servers.iter().enumerate() {
            mcp::check_server(server, &self.mcp_servers[..i], &ctx, None, None)?;
        }
        Ok(())
    }
}

/// Builds an [`AgentFile`] in code. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct AgentFileBuilder {
    agent: AgentFile,
}

impl AgentFileBuilder {
    /// Role line for the system prompt. Default: none.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.agent.role = Some(role.into());
        self
    }
    /// System prompt text (not a path). Default: empty.
    #[must_use]
    pub fn system_prompt(mut self, text: impl Into<String>) -> Self {
        self.agent.system_prompt = text.into();
        self
    }
    /// API key variable. Default: the provider's usual variable.
    #[must_use]
    pub fn api_key_env(mut self, var: impl Into<String>) -> Self {
        self.agent.model.api_key_env = Some(var.into());
        self
    }
    /// Base URL. Default: the provider's; required for `openai-compatible`.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.agent.model.base_url = Some(url.into());
        self
    }
    /// Temperature in 0.0..=2.0. Default 0.0.
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.agent.model.temperature = t;
        self
    }
    /// Max output tokens (> 0). Default [`DEFAULT_MAX_TOKENS`] (4096).
    #[must_use]
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.agent.model.max_tokens = n;
        self
    }
    /// Context window in tokens. Default: the model's profile.
    #[must_use]
    pub fn context_window(mut self, n: u64) -> Self {
        self.agent.model.context_window = Some(n);
        self
    }
    /// Extended thinking. Default off, budget 8000.
    #[must_use]
    pub fn thinking(mut self, thinking: ThinkingConfig) -> Self {
        self.agent.model.thinking = thinking;
        self
    }
    /// Stream responses. Default true.
    #[must_use]
    pub fn stream(mut self, stream: bool) -> Self {
        self.agent.model.stream = stream;
        self
    }
    /// Seconds to wait for the model server (> 0; see [`ModelConfig::timeout_s`]). Default
    /// [`DEFAULT_REQUEST_TIMEOUT_S`] (600).
    #[must_use]
    pub fn timeout_s(mut self, s: u64) -> Self {
        self.agent.model.timeout_s = s;
        self
    }
    /// Answers file for the `scripted` provider. Default: none.
    #[must_use]
    pub fn script(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent.model.script = Some(path.into());
        self
    }
    /// Workspace root, used as given. Default `./workspace`.
    #[must_use]
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.agent.runtime.work_dir = dir.into();
        self
    }
    /// Step limit (> 0). Default 20.
    #[must_use]
    pub fn max_steps(mut self, n: u32) -> Self {
        self.agent.runtime.max_steps = n;
        self
    }
    /// Let file tools leave the workspace. Default false.
    #[must_use]
    pub fn unsafe_mode(mut self, on: bool) -> Self {
        self.agent.runtime.unsafe_mode = on;
        self
    }
    /// Control-block wall clock in seconds (> 0). Default 600.
    #[must_use]
    pub fn step_timeout_s(mut self, s: u64) -> Self {
        self.agent.runtime.step_timeout_s = s;
        self
    }
    /// The sandbox of the agent's shells and file tools. Default `workspace-write`.
    #[must_use]
    pub fn sandbox(mut self, mode: codepilot_sandbox::Mode) -> Self {
        self.agent.runtime.sandbox = mode;
        self
    }
    /// What one session's shells may use together; `None` lifts every limit. Default
    /// [`Limits::defaults`](codepilot_sandbox::resources::Limits::defaults).
    #[must_use]
    pub fn resources(mut self, limits: Option<codepilot_sandbox::resources::Limits>) -> Self {
        self.agent.runtime.resources = limits;
        self
    }
    /// Whether sandboxed shells have the network. Default true.
    #[must_use]
    pub fn network(mut self, on: bool) -> Self {
        self.agent.runtime.network = on;
        self
    }
    /// Add a tool override. Default: none (all built-ins on).
    #[must_use]
    pub fn tool(mut self, entry: ToolEntry) -> Self {
        self.agent.tools.push(entry);
        self
    }
    /// Add an MCP server (SPEC §18). Default: none.
    #[must_use]
    pub fn mcp_server(mut self, server: McpServerConfig) -> Self {
        self.agent.mcp_servers.push(server);
        self
    }
    /// Validate and return the agent.
    ///
    /// # Errors
    /// The first rule broken (see [`AgentFile::validate`]).
    pub fn build(self) -> Result<AgentFile> {
        self.agent.validate()?;
        Ok(self.agent)
    }
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.name)
    }
}

#[cfg(test)]
mod tests;
