//! The agent file (`agent.yaml`, SPEC §3): loading, validation and the programmatic builder.
//!
//! The file is read with `serde-saphyr` under a tight budget (no YAML bomb gets far) and deserialised
//! into private "raw" structs that deny unknown keys. Every error names the file and, when the YAML
//! has one, the line, so `unknown key 'modle' in agent.yaml:3; did you mean 'model'?` is what a typo
//! produces. The keys may sit under `agent:` or at the top level of the document.
//!
//! Relative paths (`system_prompt` files, `runtime.work_dir`, `model.script`) resolve against the
//! directory of the YAML file, or the current directory for text without a file.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Location;
use serde_saphyr::MessageFormatter;
use serde_saphyr::Spanned;
use serde_saphyr::UserMessageFormatter;

/// The starter `agent.yaml` written by `codepilot init`: every key, its default and what it does.
pub const STARTER_AGENT_YAML: &str = include_str!("../templates/agent.starter.yaml");

/// The built-in tools, in the order the default tool set lists them.
pub const BUILTIN_TOOLS: [&str; 8] = [
    "read_file",
    "write_file",
    "find",
    "execute",
    "read_output",
    "send_input",
    "terminate_terminal",
    "ask_user",
];

/// The tools a runtime offers when `tools:` is empty or omitted (all built-ins).
pub const DEFAULT_TOOLS: &[&str] = &BUILTIN_TOOLS;

/// The provider names accepted in `model.provider` (canonical spelling).
pub const PROVIDERS: [&str; 12] = [
    "anthropic",
    "openai",
    "openai-compatible",
    "ollama",
    "vllm",
    "llama-cpp",
    "openrouter",
    "deepseek",
    "groq",
    "together",
    "gemini",
    "scripted",
];

/// Largest agent file [`AgentFile::load`] reads.
pub const MAX_AGENT_FILE_BYTES: u64 = 1024 * 1024;

/// Largest `system_prompt` file read on behalf of an agent file.
pub const MAX_SYSTEM_PROMPT_BYTES: u64 = 4 * 1024 * 1024;

/// Result alias for configuration loading.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Everything that can be wrong with an agent file. Each message names the file (and line when
/// known) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read agent file '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is larger than [`MAX_AGENT_FILE_BYTES`] or the prompt file than [`MAX_SYSTEM_PROMPT_BYTES`].
    #[error("'{}' is {size} bytes; the limit is {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The text is not valid YAML, has the wrong type somewhere, or exceeds the parser's budget.
    #[error("invalid agent file {}: {message}", at(file, *line))]
    Yaml {
        /// The file name as given (or `<agent config>`).
        file: String,
        /// 1-based line, if known.
        line: Option<u64>,
        /// What the parser said.
        message: String,
    },
    /// A key that is not part of the schema (typo or unsupported option).
    #[error("unknown key '{key}' in {}; {}", at(file, *line), suggest(suggestion.as_deref(), valid))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The file name.
        file: String,
        /// 1-based line, if known.
        line: Option<u64>,
        /// The closest valid key, when one is close enough.
        suggestion: Option<String>,
        /// Every key valid at that place.
        valid: Vec<String>,
    },
    /// A required key is absent.
    #[error("missing required key '{key}' in {}: {hint}", at(file, *line))]
    MissingKey {
        /// Dotted key path, e.g. `model.name`.
        key: String,
        /// The file name.
        file: String,
        /// Line of the enclosing section, if known.
        line: Option<u64>,
        /// How to fix it.
        hint: String,
    },
    /// A key has a value that is well-typed but not acceptable.
    #[error("invalid value for '{key}' in {}: {message}", at(file, *line))]
    Invalid {
        /// Dotted key path, e.g. `model.temperature`.
        key: String,
        /// The file name.
        file: String,
        /// 1-based line, if known.
        line: Option<u64>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `system_prompt` names a `.md`/`.txt` file that cannot be read.
    #[error(
        "system_prompt file '{}' (from {}) cannot be read: {source}. Fix the path (it is relative to the agent file) or write the prompt text inline",
        path.display(),
        at(file, *line)
    )]
    SystemPromptFile {
        /// The resolved path.
        path: PathBuf,
        /// The agent file name.
        file: String,
        /// Line of the `system_prompt` key, if known.
        line: Option<u64>,
        /// The I/O error.
        source: io::Error,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, if any.
    #[must_use]
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Read { .. } | Self::TooLarge { .. } => None,
            Self::Yaml { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::MissingKey { line, .. }
            | Self::Invalid { line, .. }
            | Self::SystemPromptFile { line, .. } => *line,
        }
    }
}

fn at(file: &str, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    }
}

fn suggest(suggestion: Option<&str>, valid: &[String]) -> String {
    match suggestion {
        Some(s) => format!("did you mean '{s}'?"),
        None => format!("valid keys here: {}", valid.join(", ")),
    }
}

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
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
}

/// `model:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Canonical provider name, one of [`PROVIDERS`] (aliases are normalised on load).
    pub provider: String,
    /// Model id sent to the provider.
    pub name: String,
    /// Environment variable holding the API key. `None`: the provider's usual variable.
    pub api_key_env: Option<String>,
    /// Base URL of the API (YAML alias: `api_base`). Required for `openai-compatible`.
    pub base_url: Option<String>,
    /// Sampling temperature, 0.0..=2.0. Default 0.0.
    pub temperature: f32,
    /// Maximum output tokens per call. Default 4096.
    pub max_tokens: u32,
    /// Context window in tokens; `None` means the built-in profile or a safe default.
    pub context_window: Option<u64>,
    /// Extended thinking.
    pub thinking: ThinkingConfig,
    /// Stream responses. Default true.
    pub stream: bool,
    /// Answers file of the `scripted` provider (resolved against the YAML file's directory).
    pub script: Option<PathBuf>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Workspace root. From YAML: absolute, resolved against the file's directory. Default `./workspace`.
    pub work_dir: PathBuf,
    /// Steps before the run stops with max-steps. Default 20, must be > 0.
    pub max_steps: u32,
    /// Let file tools leave `work_dir`. Default false.
    pub unsafe_mode: bool,
    /// Wall clock for one control block, in seconds. Default 600, must be > 0.
    pub step_timeout_s: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from(DEFAULT_WORK_DIR),
            max_steps: DEFAULT_MAX_STEPS,
            unsafe_mode: false,
            step_timeout_s: DEFAULT_STEP_TIMEOUT_S,
        }
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
const DEFAULT_STEP_TIMEOUT_S: u64 = 600;
const DEFAULT_MAX_TOKENS: u32 = 4096;
const DEFAULT_THINKING_BUDGET: u32 = 8000;
const NO_FILE: &str = "<agent config>";

impl ModelConfig {
    /// A model section with every default. `provider` is stored as given; [`AgentFileBuilder::build`]
    /// validates and normalises it.
    #[must_use]
    pub fn new(provider: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            name: name.into(),
            api_key_env: None,
            base_url: None,
            temperature: 0.0,
            max_tokens: DEFAULT_MAX_TOKENS,
            context_window: None,
            thinking: ThinkingConfig::default(),
            stream: true,
            script: None,
        }
    }
}

impl AgentFile {
    /// Read and validate an agent file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and line of the first problem.
    pub fn load(path: &Path) -> Result<Self> {
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
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::from_yaml_str(&text, Some(path))
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
        let raw = parse_raw(text, &ctx)?;
        let mut agent = convert(raw, &ctx)?;
        agent.source = origin.map(Path::to_path_buf);
        Ok(agent)
    }

    /// Start a programmatic definition (for hosts that do not use YAML).
    #[must_use]
    pub fn builder(
        name: impl Into<String>,
        provider: impl Into<String>,
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
                None => Some(ToolEntry::new(*name)),
            })
            .collect()
    }

    /// Check every rule the YAML loader checks (provider, ranges, tool names, `base_url`).
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
        canonical_provider(&self.model.provider, &ctx, None)?;
        check_model(&self.model, &ctx, &Lines::default())?;
        check_runtime(&self.runtime, &ctx, &Lines::default())?;
        let mut seen: Vec<&str> = Vec::new();
        for tool in &self.tools {
            check_tool_name(&tool.name, &seen, &ctx, None)?;
            check_tool_config(&tool.name, &tool.config, &ctx, None)?;
            seen.push(&tool.name);
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
    /// Max output tokens. Default 4096.
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
    /// Add a tool override. Default: none (all built-ins on).
    #[must_use]
    pub fn tool(mut self, entry: ToolEntry) -> Self {
        self.agent.tools.push(entry);
        self
    }
    /// Validate and return the agent; the provider name is normalised (e.g. `llamacpp` → `llama-cpp`).
    ///
    /// # Errors
    /// The first rule broken (see [`AgentFile::validate`]).
    pub fn build(mut self) -> Result<AgentFile> {
        self.agent.validate()?;
        let ctx = Ctx {
            file: NO_FILE.to_string(),
            base: PathBuf::from("."),
        };
        self.agent.model.provider = canonical_provider(&self.agent.model.provider, &ctx, None)?;
        Ok(self.agent)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (as written) structures.

#[derive(Deserialize)]
struct Probe {
    agent: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNested {
    agent: RawAgent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Option<Spanned<String>>,
    role: Option<String>,
    system_prompt: Option<Spanned<String>>,
    model: Option<Spanned<RawModel>>,
    runtime: Option<RawRuntime>,
    tools: Option<Vec<Spanned<RawTool>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    provider: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    api_key_env: Option<String>,
    #[serde(alias = "api_base")]
    base_url: Option<Spanned<String>>,
    temperature: Option<Spanned<f32>>,
    max_tokens: Option<Spanned<u32>>,
    context_window: Option<Spanned<u64>>,
    thinking: Option<RawThinking>,
    stream: Option<bool>,
    script: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThinking {
    enabled: Option<bool>,
    budget_tokens: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    work_dir: Option<String>,
    max_steps: Option<Spanned<u32>>,
    unsafe_mode: Option<bool>,
    step_timeout_s: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: Option<Spanned<String>>,
    enabled: Option<bool>,
    config: Option<serde_json::Map<String, serde_json::Value>>,
}

struct Ctx {
    file: String,
    base: PathBuf,
}

/// Line numbers of values that later checks may complain about.
#[derive(Default)]
struct Lines {
    model: Option<u64>,
    base_url: Option<u64>,
    temperature: Option<u64>,
    max_tokens: Option<u64>,
    context_window: Option<u64>,
    budget_tokens: Option<u64>,
    max_steps: Option<u64>,
    step_timeout_s: Option<u64>,
}

fn line_of(loc: Location) -> Option<u64> {
    (loc != Location::UNKNOWN && loc.line() > 0).then(|| loc.line())
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 32,
            max_nodes: 50_000,
            max_total_scalar_bytes: 8 * 1024 * 1024,
            max_merge_keys: 100,
        },
        with_snippet: false,
    }
}

fn parse_raw(text: &str, ctx: &Ctx) -> Result<RawAgent> {
    if text.trim().is_empty() {
        return Err(ConfigError::MissingKey {
            key: "name".to_string(),
            file: ctx.file.clone(),
            line: None,
            hint: "the file is empty; run `codepilot init` for a commented starter file"
                .to_string(),
        });
    }
    let probe: Probe = serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| map_yaml(&e, text, ctx))?;
    if probe.agent.is_some() {
        let nested: RawNested = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| map_yaml(&e, text, ctx))?;
        Ok(nested.agent)
    } else {
        serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| map_yaml(&e, text, ctx))
    }
}

fn map_yaml(err: &serde_saphyr::Error, text: &str, ctx: &Ctx) -> ConfigError {
    let mut inner = err.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let line = inner
        .location()
        .or_else(|| err.location())
        .and_then(line_of);
    match inner {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let suggestion = closest(field, expected.iter().copied()).map(str::to_string);
            ConfigError::UnknownKey {
                key: field.clone(),
                file: ctx.file.clone(),
                line,
                suggestion,
                valid: expected.iter().map(|s| (*s).to_string()).collect(),
            }
        }
        serde_saphyr::Error::InvalidScalar { ty, .. } => {
            let expected = match *ty {
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
                "f32" | "f64" | "floating point" => "a number",
                "bool" | "boolean" => "true or false",
                "string scalar" => "text",
                other => other,
            };
            ConfigError::Yaml {
                file: ctx.file.clone(),
                line,
                message: with_source_line(format!("expected {expected}"), text, line),
            }
        }
        other => {
            let raw: Cow<'_, str> = UserMessageFormatter.format_message(other);
            // Plain words for the parser's most common type complaints.
            let message = match raw.as_ref() {
                "expected sequence start" => {
                    "expected a list (`- item` lines or `[a, b]`)".to_string()
                }
                "expected mapping start" => {
                    "expected a mapping (`key: value` lines or `{key: value}`)".to_string()
                }
                "expected string scalar" => "expected text".to_string(),
                "expected floating point" => "expected a number".to_string(),
                "expected boolean" => "expected true or false".to_string(),
                other => printable(other),
            };
            ConfigError::Yaml {
                file: ctx.file.clone(),
                line,
                message: with_source_line(message, text, line),
            }
        }
    }
}

/// `text` with control characters escaped, so a message stays on one line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `message`, followed by the offending source line when there is one, e.g. "expected a number: `x: y`".
fn with_source_line(message: String, text: &str, line: Option<u64>) -> String {
    let source = line
        .and_then(|l| usize::try_from(l).ok())
        .and_then(|l| text.lines().nth(l.saturating_sub(1)))
        .map(str::trim)
        .filter(|l| !l.is_empty());
    match source {
        Some(src) => {
            let src: String = src.chars().take(120).collect();
            format!("{message}: `{}`", printable(&src))
        }
        None => message,
    }
}

/// The candidate closest to `word`, if it is plausibly a misspelling of it.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), c))
        .filter(|(score, c)| *score >= 0.5 || (word.len() >= 3 && c.starts_with(word)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn canonical_provider(name: &str, ctx: &Ctx, line: Option<u64>) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    let canonical = match lower.as_str() {
        "openai_compatible" => "openai-compatible",
        "llamacpp" | "llama.cpp" | "llama_cpp" => "llama-cpp",
        other => other,
    };
    if PROVIDERS.contains(&canonical) {
        return Ok(canonical.to_string());
    }
    let hint = closest(&lower, PROVIDERS)
        .map(|c| format!("did you mean '{c}'? "))
        .unwrap_or_default();
    Err(ConfigError::Invalid {
        key: "model.provider".to_string(),
        file: ctx.file.clone(),
        line,
        message: format!(
            "unknown provider '{name}'; {hint}supported: {}",
            PROVIDERS.join(", ")
        ),
    })
}

fn invalid(key: &str, ctx: &Ctx, line: Option<u64>, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        file: ctx.file.clone(),
        line,
        message,
    }
}

fn missing(key: &str, ctx: &Ctx, line: Option<u64>, hint: &str) -> ConfigError {
    ConfigError::MissingKey {
        key: key.to_string(),
        file: ctx.file.clone(),
        line,
        hint: hint.to_string(),
    }
}

fn check_model(model: &ModelConfig, ctx: &Ctx, lines: &Lines) -> Result<()> {
    if model.name.trim().is_empty() {
        return Err(invalid(
            "model.name",
            ctx,
            lines.model,
            "must not be empty; write the provider's model id, e.g. `name: claude-sonnet-4-5`"
                .to_string(),
        ));
    }
    let needs_base_url = model.provider == "openai-compatible";
    match model.base_url.as_deref().map(str::trim) {
        None if needs_base_url => {
            return Err(missing(
                "model.base_url",
                ctx,
                lines.model,
                "provider 'openai-compatible' needs the server's URL, e.g. `base_url: http://localhost:8000/v1`",
            ));
        }
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            return Err(invalid(
                "model.base_url",
                ctx,
                lines.base_url,
                format!("'{url}' is not an http(s) URL; e.g. `base_url: http://localhost:8000/v1`"),
            ));
        }
        _ => {}
    }
    if !(0.0..=2.0).contains(&model.temperature) {
        return Err(invalid(
            "model.temperature",
            ctx,
            lines.temperature,
            format!(
                "{} is out of range; use a number from 0.0 to 2.0",
                model.temperature
            ),
        ));
    }
    if model.max_tokens == 0 {
        return Err(invalid(
            "model.max_tokens",
            ctx,
            lines.max_tokens,
            "must be greater than 0 (default 4096)".to_string(),
        ));
    }
    if model.context_window == Some(0) {
        return Err(invalid(
            "model.context_window",
            ctx,
            lines.context_window,
            "must be greater than 0, or null for the model's profile".to_string(),
        ));
    }
    if model.thinking.budget_tokens == 0 {
        return Err(invalid(
            "model.thinking.budget_tokens",
            ctx,
            lines.budget_tokens,
            "must be greater than 0 (default 8000)".to_string(),
        ));
    }
    Ok(())
}

fn check_runtime(runtime: &RuntimeConfig, ctx: &Ctx, lines: &Lines) -> Result<()> {
    if runtime.max_steps == 0 {
        return Err(invalid(
            "runtime.max_steps",
            ctx,
            lines.max_steps,
            "must be greater than 0 (default 20)".to_string(),
        ));
    }
    if runtime.step_timeout_s == 0 {
        return Err(invalid(
            "runtime.step_timeout_s",
            ctx,
            lines.step_timeout_s,
            "must be greater than 0 seconds (default 600)".to_string(),
        ));
    }
    Ok(())
}

fn check_tool_name(name: &str, seen: &[&str], ctx: &Ctx, line: Option<u64>) -> Result<()> {
    if !BUILTIN_TOOLS.contains(&name) {
        let hint = closest(name, BUILTIN_TOOLS)
            .map(|c| format!("did you mean '{c}'? "))
            .unwrap_or_default();
        return Err(invalid(
            "tools.name",
            ctx,
            line,
            format!(
                "unknown tool '{name}'; {hint}built-in tools: {}",
                BUILTIN_TOOLS.join(", ")
            ),
        ));
    }
    if seen.contains(&name) {
        return Err(invalid(
            "tools.name",
            ctx,
            line,
            format!("tool '{name}' is listed twice; merge the two entries into one"),
        ));
    }
    Ok(())
}

/// The `config:` keys each built-in reads. A misspelt key must not silently turn a safety setting off.
fn tool_config_keys(tool: &str) -> &'static [&'static str] {
    match tool {
        "execute" | "read_output" | "send_input" => &["require_permission", "max_output_chars"],
        _ => &["require_permission"],
    }
}

fn check_tool_config(
    tool: &str,
    config: &serde_json::Map<String, serde_json::Value>,
    ctx: &Ctx,
    line: Option<u64>,
) -> Result<()> {
    let valid = tool_config_keys(tool);
    for (key, value) in config {
        if !valid.contains(&key.as_str()) {
            let hint = closest(key, valid.iter().copied())
                .map(|c| format!("did you mean '{c}'? "))
                .unwrap_or_default();
            return Err(invalid(
                "tools.config",
                ctx,
                line,
                format!(
                    "unknown config key '{key}' for tool '{tool}'; {hint}valid keys: {}",
                    valid.join(", ")
                ),
            ));
        }
        let ok = match key.as_str() {
            "require_permission" => value.is_boolean(),
            "max_output_chars" => value.as_u64().is_some_and(|n| n >= 512),
            _ => true,
        };
        if !ok {
            let expected = if key == "require_permission" {
                "true or false"
            } else {
                "a whole number of at least 512"
            };
            return Err(invalid(
                "tools.config",
                ctx,
                line,
                format!("tool '{tool}': `{key}` must be {expected}, got {value}"),
            ));
        }
    }
    Ok(())
}

fn resolve(ctx: &Ctx, path: &str) -> PathBuf {
    let joined = ctx.base.join(path);
    std::path::absolute(&joined).unwrap_or(joined)
}

fn is_prompt_path(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty()
        && !t.contains('\n')
        && Path::new(t)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("txt"))
}

fn read_prompt(ctx: &Ctx, text: &str, line: Option<u64>) -> Result<String> {
    let path = resolve(ctx, text.trim());
    let fail = |source| ConfigError::SystemPromptFile {
        path: path.clone(),
        file: ctx.file.clone(),
        line,
        source,
    };
    let size = std::fs::metadata(&path).map_err(fail)?.len();
    if size > MAX_SYSTEM_PROMPT_BYTES {
        return Err(ConfigError::TooLarge {
            path,
            size,
            limit: MAX_SYSTEM_PROMPT_BYTES,
        });
    }
    std::fs::read_to_string(&path).map_err(fail)
}

fn convert(raw: RawAgent, ctx: &Ctx) -> Result<AgentFile> {
    let Some(name) = raw.name else {
        return Err(missing(
            "name",
            ctx,
            None,
            "give the agent a name, e.g. `name: CodePilot`",
        ));
    };
    if name.value.trim().is_empty() {
        return Err(invalid(
            "name",
            ctx,
            line_of(name.referenced),
            "must not be empty".to_string(),
        ));
    }
    let Some(model) = raw.model else {
        return Err(missing(
            "model",
            ctx,
            None,
            "add a `model:` section with at least `provider:` and `name:`",
        ));
    };
    let model_line = line_of(model.referenced);
    let rm = model.value;
    let Some(provider) = rm.provider else {
        return Err(missing(
            "model.provider",
            ctx,
            model_line,
            &format!(
                "add e.g. `provider: anthropic` (one of: {})",
                PROVIDERS.join(", ")
            ),
        ));
    };
    let provider_name = canonical_provider(&provider.value, ctx, line_of(provider.referenced))?;
    let Some(model_name) = rm.name else {
        return Err(missing(
            "model.name",
            ctx,
            model_line,
            "add the provider's model id, e.g. `name: claude-sonnet-4-5`",
        ));
    };
    let mut lines = Lines {
        model: model_line,
        base_url: rm.base_url.as_ref().and_then(|s| line_of(s.referenced)),
        temperature: rm.temperature.as_ref().and_then(|s| line_of(s.referenced)),
        max_tokens: rm.max_tokens.as_ref().and_then(|s| line_of(s.referenced)),
        context_window: rm
            .context_window
            .as_ref()
            .and_then(|s| line_of(s.referenced)),
        ..Lines::default()
    };
    if model_name.value.trim().is_empty() {
        lines.model = line_of(model_name.referenced);
    }
    let thinking = rm.thinking.map_or_else(ThinkingConfig::default, |t| {
        lines.budget_tokens = t.budget_tokens.as_ref().and_then(|s| line_of(s.referenced));
        ThinkingConfig {
            enabled: t.enabled.unwrap_or(false),
            budget_tokens: t.budget_tokens.map_or(DEFAULT_THINKING_BUDGET, |s| s.value),
        }
    });
    let model = ModelConfig {
        provider: provider_name,
        name: model_name.value,
        api_key_env: rm.api_key_env.filter(|s| !s.trim().is_empty()),
        base_url: rm.base_url.map(|s| s.value),
        temperature: rm.temperature.map_or(0.0, |s| s.value),
        max_tokens: rm.max_tokens.map_or(DEFAULT_MAX_TOKENS, |s| s.value),
        context_window: rm.context_window.map(|s| s.value),
        thinking,
        stream: rm.stream.unwrap_or(true),
        script: rm.script.map(|s| resolve(ctx, &s)),
    };
    check_model(&model, ctx, &lines)?;

    let runtime = match raw.runtime {
        Some(r) => {
            lines.max_steps = r.max_steps.as_ref().and_then(|s| line_of(s.referenced));
            lines.step_timeout_s = r
                .step_timeout_s
                .as_ref()
                .and_then(|s| line_of(s.referenced));
            RuntimeConfig {
                work_dir: resolve(ctx, r.work_dir.as_deref().unwrap_or(DEFAULT_WORK_DIR)),
                max_steps: r.max_steps.map_or(DEFAULT_MAX_STEPS, |s| s.value),
                unsafe_mode: r.unsafe_mode.unwrap_or(false),
                step_timeout_s: r.step_timeout_s.map_or(DEFAULT_STEP_TIMEOUT_S, |s| s.value),
            }
        }
        None => RuntimeConfig {
            work_dir: resolve(ctx, DEFAULT_WORK_DIR),
            ..RuntimeConfig::default()
        },
    };
    check_runtime(&runtime, ctx, &lines)?;

    let mut tools: Vec<ToolEntry> = Vec::new();
    for entry in raw.tools.unwrap_or_default() {
        let entry_line = line_of(entry.referenced);
        let Some(tool_name) = entry.value.name else {
            return Err(missing(
                "tools.name",
                ctx,
                entry_line,
                "every tool entry needs `name:`, e.g. `- {name: execute, enabled: true}`",
            ));
        };
        let seen: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        check_tool_name(
            &tool_name.value,
            &seen,
            ctx,
            line_of(tool_name.referenced).or(entry_line),
        )?;
        let config = entry.value.config.unwrap_or_default();
        check_tool_config(&tool_name.value, &config, ctx, entry_line)?;
        tools.push(ToolEntry {
            name: tool_name.value,
            enabled: entry.value.enabled.unwrap_or(true),
            config,
        });
    }

    let system_prompt = match raw.system_prompt {
        Some(s) if is_prompt_path(&s.value) => read_prompt(ctx, &s.value, line_of(s.referenced))?,
        Some(s) => s.value,
        None => String::new(),
    };

    Ok(AgentFile {
        name: name.value,
        role: raw.role,
        system_prompt,
        model,
        runtime,
        tools,
        source: None,
    })
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.name)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
