//! The agent file as written: YAML parsed into private structs that deny unknown keys, then converted into an
//! [`AgentFile`] with every error located (file and line).

use std::borrow::Cow;
use std::path::Path;
use std::path::PathBuf;

use codepilot_llm::DEFAULT_MAX_TOKENS;
use codepilot_llm::DEFAULT_REQUEST_TIMEOUT_S;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Location;
use serde_saphyr::MessageFormatter;
use serde_saphyr::Spanned;
use serde_saphyr::UserMessageFormatter;

use super::AgentFile;
use super::DEFAULT_CONTEXT_THRESHOLD;
use super::DEFAULT_MAX_STEPS;
use super::DEFAULT_STEP_TIMEOUT_S;
use super::DEFAULT_THINKING_BUDGET;
use super::DEFAULT_WORK_DIR;
use super::MAX_SYSTEM_PROMPT_BYTES;
use super::ModelConfig;
use super::RuntimeConfig;
use super::ThinkingConfig;
use super::ToolEntry;
use super::error::ConfigError;
use super::error::Result;
use super::validate::check_model;
use super::validate::check_runtime;
use super::validate::check_tool_config;
use super::validate::check_tool_name;
use super::validate::closest;
use super::validate::invalid;
use super::validate::missing;
use super::validate::parse_provider;
use super::validate::provider_names;

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
pub(super) struct RawAgent {
    name: Option<Spanned<String>>,
    role: Option<String>,
    system_prompt: Option<Spanned<String>>,
    model: Option<Spanned<RawModel>>,
    runtime: Option<RawRuntime>,
    tools: Option<Vec<Spanned<RawTool>>>,
    mcp_servers: Option<Vec<Spanned<super::mcp::RawMcpServer>>>,
    subagents: Option<Spanned<RawSubagents>>,
    search: Option<Spanned<RawSearch>>,
    observability: Option<Spanned<RawObservability>>,
}

/// `observability:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObservability {
    enabled: Option<bool>,
    endpoint: Option<String>,
    protocol: Option<String>,
    headers: Option<std::collections::BTreeMap<String, String>>,
    service_name: Option<String>,
    log_content: Option<bool>,
}

/// `search:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    enabled: Option<bool>,
    max_file_kb: Option<u64>,
    embeddings: Option<Spanned<RawEmbeddings>>,
}

/// `search.embeddings:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbeddings {
    provider: Option<String>,
    base_url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    batch_size: Option<u32>,
}

/// `subagents:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubagents {
    max_concurrent: Option<u32>,
    max_depth: Option<u32>,
    max_steps: Option<u32>,
    models: Option<std::collections::BTreeMap<String, Spanned<RawModel>>>,
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
    timeout_s: Option<Spanned<u64>>,
    script: Option<String>,
    pricing: Option<Spanned<RawPricing>>,
}

/// `model.pricing`, US dollars per million tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    input_per_mtok: Option<f64>,
    output_per_mtok: Option<f64>,
    cache_read_per_mtok: Option<f64>,
    cache_write_per_mtok: Option<f64>,
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
    sandbox: Option<Spanned<String>>,
    network: Option<bool>,
    instructions_files: Option<Vec<String>>,
    resources: Option<Spanned<RawResources>>,
    context_threshold: Option<Spanned<f64>>,
    checkpoints: Option<Spanned<RawSwitch>>,
    checkpoint_keep: Option<Spanned<u64>>,
    checkpoint_max_file_mb: Option<Spanned<u64>>,
    limits: Option<Spanned<codepilot_protocol::Limits>>,
    session_limits: Option<Spanned<codepilot_protocol::Limits>>,
    output_retries: Option<u32>,
}

/// A word setting that may be `off`, which YAML 1.1 reads as `false`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSwitch {
    Bool(bool),
    Word(String),
}

/// `runtime.resources`: `off`, or a map of limits.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawResources {
    /// YAML 1.1 reads a bare `off` as `false`.
    Bool(bool),
    Word(String),
    Map(std::collections::BTreeMap<String, RawLimit>),
    /// Anything else (a number, a list): refused with a message naming the key.
    Other(serde_json::Value),
}

/// One limit: a number, or `off`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawLimit {
    Number(u64),
    /// `off` (a bare `off` reads as `false`).
    Bool(bool),
    Word(String),
    /// Anything else (a negative number, a fraction, nothing): refused with a message naming the key.
    Other(serde_json::Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: Option<Spanned<String>>,
    enabled: Option<bool>,
    config: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(super) struct Ctx {
    pub(super) file: String,
    pub(super) base: PathBuf,
}

/// Line numbers of values that later checks may complain about.
#[derive(Default)]
pub(super) struct Lines {
    pub(super) model: Option<u64>,
    pub(super) base_url: Option<u64>,
    pub(super) temperature: Option<u64>,
    pub(super) max_tokens: Option<u64>,
    pub(super) context_window: Option<u64>,
    pub(super) budget_tokens: Option<u64>,
    pub(super) timeout_s: Option<u64>,
    pub(super) max_steps: Option<u64>,
    pub(super) step_timeout_s: Option<u64>,
    pub(super) context_threshold: Option<u64>,
}

/// `model.pricing`: the input and output prices are required, the cache prices default to the input price.
fn pricing(raw: Spanned<RawPricing>, ctx: &Ctx) -> Result<codepilot_llm::Pricing> {
    let line = line_of(raw.referenced);
    let p = raw.value;
    let price = |key: &str, v: Option<f64>| match v {
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        Some(v) => Err(invalid(
            &format!("model.pricing.{key}"),
            ctx,
            line,
            format!("must be US dollars per million tokens, 0 or more (got {v})"),
        )),
        None => Ok(None),
    };
    let required = |key: &str, v: Option<f64>| {
        price(key, v)?.ok_or_else(|| {
            missing(
                &format!("model.pricing.{key}"),
                ctx,
                line,
                "give both prices in US dollars per million tokens, e.g. `pricing: {input_per_mtok: 3, output_per_mtok: 15}`",
            )
        })
    };
    let input = required("input_per_mtok", p.input_per_mtok)?;
    Ok(codepilot_llm::Pricing {
        input_per_mtok: input,
        output_per_mtok: required("output_per_mtok", p.output_per_mtok)?,
        cache_read_per_mtok: price("cache_read_per_mtok", p.cache_read_per_mtok)?.unwrap_or(input),
        cache_write_per_mtok: price("cache_write_per_mtok", p.cache_write_per_mtok)?
            .unwrap_or(input),
    })
}

/// `runtime.limits` or `runtime.session_limits` (`key`): checked, and a cost limit only with known prices.
fn limits(
    key: &str,
    raw: Option<Spanned<codepilot_protocol::Limits>>,
    model: &ModelConfig,
    ctx: &Ctx,
) -> Result<codepilot_protocol::Limits> {
    let Some(raw) = raw else {
        return Ok(codepilot_protocol::Limits::default());
    };
    let line = line_of(raw.referenced);
    raw.value
        .validate()
        .map_err(|message| invalid(key, ctx, line, message))?;
    if key == "runtime.session_limits" && raw.value.max_wall_s.is_some() {
        return Err(invalid(
            &format!("{key}.max_wall_s"),
            ctx,
            line,
            "a session's time is not limited; set max_wall_s in runtime.limits (each run)"
                .to_owned(),
        ));
    }
    if raw.value.max_cost_usd.is_some() && model.prices().is_none() {
        return Err(invalid(
            &format!("{key}.max_cost_usd"),
            ctx,
            line,
            format!(
                "the price of model {:?} is not known; add `model.pricing: {{input_per_mtok: …, output_per_mtok: …}}` (US dollars per million tokens)",
                model.name
            ),
        ));
    }
    Ok(raw.value)
}

/// The limits `runtime.resources` asks for: `None` for `off`; keys not given keep their defaults.
fn resources(
    raw: &RawResources,
    ctx: &Ctx,
    line: Option<u64>,
) -> Result<Option<codepilot_sandbox::resources::Limits>> {
    const KEYS: [&str; 5] = [
        "max_processes",
        "max_memory_mb",
        "cpu_weight",
        "max_disk_mb",
        "max_open_files",
    ];
    let map = match raw {
        RawResources::Bool(false) => return Ok(None),
        RawResources::Word(w) if w.trim() == "off" => return Ok(None),
        RawResources::Bool(true) => {
            return Err(invalid(
                "runtime.resources",
                ctx,
                line,
                "the limits are on by default; use off, or a map such as {max_processes: 512}"
                    .to_owned(),
            ));
        }
        RawResources::Word(w) => {
            return Err(invalid(
                "runtime.resources",
                ctx,
                line,
                format!(
                    "'{w}' is not a setting; use off, or a map such as {{max_processes: 512, max_memory_mb: 4096}}"
                ),
            ));
        }
        RawResources::Map(map) => map,
        RawResources::Other(v) => {
            return Err(invalid(
                "runtime.resources",
                ctx,
                line,
                format!(
                    "{v} is not a setting; use off, or a map such as {{max_processes: 512, max_memory_mb: 4096}}"
                ),
            ));
        }
    };
    let mut limits = codepilot_sandbox::resources::Limits::defaults();
    for (key, value) in map {
        let number = match value {
            RawLimit::Number(n) => Some(*n),
            RawLimit::Bool(false) => None,
            RawLimit::Word(w) if w.trim() == "off" => None,
            RawLimit::Bool(true) => {
                return Err(invalid(
                    &format!("runtime.resources.{key}"),
                    ctx,
                    line,
                    "give a whole number, or off for no limit".to_owned(),
                ));
            }
            RawLimit::Other(v) => {
                return Err(invalid(
                    &format!("runtime.resources.{key}"),
                    ctx,
                    line,
                    format!("{v} is not a whole number above 0; give one, or off for no limit"),
                ));
            }
            RawLimit::Word(w) => {
                return Err(invalid(
                    &format!("runtime.resources.{key}"),
                    ctx,
                    line,
                    format!("'{w}' is not a number; give a whole number, or off for no limit"),
                ));
            }
        };
        let key_name = format!("runtime.resources.{key}");
        // Below these a shell cannot start or run a command at all.
        let within = |n: Option<u64>, min: u64, max: u64| -> Result<Option<u64>> {
            match n {
                Some(n) if !(min..=max).contains(&n) => Err(invalid(
                    &key_name,
                    ctx,
                    line,
                    format!("must be from {min} to {max} (or off for no limit), got {n}"),
                )),
                n => Ok(n),
            }
        };
        let small = |n: Option<u64>, min: u64, max: u64| -> Result<Option<u32>> {
            Ok(within(n, min, max)?.and_then(|n| u32::try_from(n).ok()))
        };
        match key.as_str() {
            "max_processes" => limits.max_processes = small(number, 8, 4_194_304)?,
            "max_memory_mb" => limits.max_memory_mb = within(number, 32, u64::MAX >> 20)?,
            "cpu_weight" => limits.cpu_weight = small(number, 1, 10_000)?,
            "max_disk_mb" => limits.max_disk_mb = within(number, 1, u64::MAX >> 20)?,
            "max_open_files" => limits.max_open_files = within(number, 16, 1 << 30)?,
            other => {
                return Err(invalid(
                    "runtime.resources",
                    ctx,
                    line,
                    match super::validate::closest(other, KEYS) {
                        Some(near) => format!("unknown key '{other}'; did you mean '{near}'?"),
                        None => format!("unknown key '{other}'; the keys are {}", KEYS.join(", ")),
                    },
                ));
            }
        }
    }
    Ok(Some(limits))
}

pub(super) fn line_of(loc: Location) -> Option<u64> {
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

pub(super) fn parse_raw(text: &str, ctx: &Ctx) -> Result<RawAgent> {
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

/// `path` resolved against the agent file's directory.
pub(super) fn resolve(ctx: &Ctx, path: &str) -> PathBuf {
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

pub(super) fn convert(raw: RawAgent, ctx: &Ctx) -> Result<AgentFile> {
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
    let (model, mut lines) = model_section(model, "model", ctx)?;

    let runtime = match raw.runtime {
        Some(r) => {
            lines.max_steps = r.max_steps.as_ref().and_then(|s| line_of(s.referenced));
            lines.step_timeout_s = r
                .step_timeout_s
                .as_ref()
                .and_then(|s| line_of(s.referenced));
            lines.context_threshold = r
                .context_threshold
                .as_ref()
                .and_then(|s| line_of(s.referenced));
            let sandbox = match &r.sandbox {
                Some(s) => s
                    .value
                    .parse::<codepilot_sandbox::Mode>()
                    .map_err(|message| {
                        invalid("runtime.sandbox", ctx, line_of(s.referenced), message)
                    })?,
                None => codepilot_sandbox::Mode::WorkspaceWrite,
            };
            let resources = match &r.resources {
                Some(s) => resources(&s.value, ctx, line_of(s.referenced))?,
                None => Some(codepilot_sandbox::resources::Limits::defaults()),
            };
            let checkpoints = match &r.checkpoints {
                Some(s) => match &s.value {
                    RawSwitch::Bool(false) => super::CheckpointMode::Off,
                    RawSwitch::Bool(true) => super::CheckpointMode::Turn,
                    RawSwitch::Word(w) => w.parse().map_err(|message| {
                        invalid("runtime.checkpoints", ctx, line_of(s.referenced), message)
                    })?,
                },
                None => super::CheckpointMode::Turn,
            };
            let at_least_one = |key: &str, v: &Option<Spanned<u64>>| match v {
                Some(s) if s.value == 0 => Err(invalid(
                    key,
                    ctx,
                    line_of(s.referenced),
                    "must be at least 1".to_owned(),
                )),
                _ => Ok(()),
            };
            at_least_one("runtime.checkpoint_keep", &r.checkpoint_keep)?;
            at_least_one("runtime.checkpoint_max_file_mb", &r.checkpoint_max_file_mb)?;
            if let Some(s) = &r.checkpoint_max_file_mb
                && s.value > 1024
            {
                return Err(invalid(
                    "runtime.checkpoint_max_file_mb",
                    ctx,
                    line_of(s.referenced),
                    "must be at most 1024 (1 GiB): larger files are left out of checkpoints"
                        .to_owned(),
                ));
            }
            RuntimeConfig {
                checkpoints,
                checkpoint_keep: r
                    .checkpoint_keep
                    .map_or(codepilot_store::checkpoint::DEFAULT_KEEP, |s| {
                        usize::try_from(s.value).unwrap_or(usize::MAX)
                    }),
                checkpoint_max_file_bytes: r
                    .checkpoint_max_file_mb
                    .map_or(codepilot_store::checkpoint::DEFAULT_MAX_FILE_BYTES, |s| {
                        s.value.saturating_mul(1 << 20)
                    }),
                work_dir: resolve(ctx, r.work_dir.as_deref().unwrap_or(DEFAULT_WORK_DIR)),
                max_steps: r.max_steps.map_or(DEFAULT_MAX_STEPS, |s| s.value),
                unsafe_mode: r.unsafe_mode.unwrap_or(false),
                step_timeout_s: r.step_timeout_s.map_or(DEFAULT_STEP_TIMEOUT_S, |s| s.value),
                sandbox,
                network: r.network.unwrap_or(true),
                instructions_files: r
                    .instructions_files
                    .unwrap_or_default()
                    .iter()
                    .map(|f| resolve(ctx, f))
                    .collect(),
                resources,
                context_threshold: r
                    .context_threshold
                    .map_or(DEFAULT_CONTEXT_THRESHOLD, |s| s.value),
                limits: limits("runtime.limits", r.limits, &model, ctx)?,
                session_limits: limits("runtime.session_limits", r.session_limits, &model, ctx)?,
                output_retries: r.output_retries.unwrap_or(super::DEFAULT_OUTPUT_RETRIES),
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

    let mcp_servers = super::mcp::convert(raw.mcp_servers.unwrap_or_default(), ctx)?;
    let subagents = match raw.subagents {
        Some(s) => subagents(s, ctx)?,
        None => super::SubagentsConfig::default(),
    };
    let search = match raw.search {
        Some(s) => search(s, ctx)?,
        None => super::SearchConfig::default(),
    };
    let observability = match raw.observability {
        Some(o) => observability(o, ctx)?,
        None => codepilot_telemetry::TraceSettings::default(),
    };

    Ok(AgentFile {
        name: name.value,
        role: raw.role,
        system_prompt,
        model,
        runtime,
        tools,
        mcp_servers,
        subagents,
        search,
        observability,
        source: None,
    })
}

/// `observability:` (SPEC §23): where traces go, checked here so a typo fails at load, not at the first span.
fn observability(
    raw: Spanned<RawObservability>,
    ctx: &Ctx,
) -> Result<codepilot_telemetry::TraceSettings> {
    let line = line_of(raw.referenced);
    let r = raw.value;
    let endpoint = r.endpoint.filter(|e| !e.trim().is_empty());
    if let Some(url) = &endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            "observability.endpoint",
            ctx,
            line,
            format!("must start with http:// or https:// (got {url}), e.g. http://localhost:4318"),
        ));
    }
    let protocol = match r.protocol.as_deref() {
        None => None,
        Some(name) => Some(codepilot_telemetry::Protocol::parse(name).ok_or_else(|| {
            invalid(
                "observability.protocol",
                ctx,
                line,
                format!("must be http/protobuf or grpc (got {name})"),
            )
        })?),
    };
    let headers: Vec<(String, String)> = r.headers.unwrap_or_default().into_iter().collect();
    if let Some((name, _)) = headers.iter().find(|(name, _)| {
        name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    }) {
        return Err(invalid(
            "observability.headers",
            ctx,
            line,
            format!("`{name}` is not a header name (letters, digits, `-` and `_`)"),
        ));
    }
    if let Some((name, _)) = headers.iter().find(|(_, value)| {
        value.trim() != value
            || !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    }) {
        return Err(invalid(
            "observability.headers",
            ctx,
            line,
            format!(
                "the value of `{name}` has spaces at an end or characters a header cannot carry (printable ASCII only)"
            ),
        ));
    }
    Ok(codepilot_telemetry::TraceSettings {
        enabled: r.enabled,
        endpoint,
        protocol,
        headers,
        service_name: r.service_name.filter(|s| !s.trim().is_empty()),
        log_content: r.log_content.unwrap_or(false),
    })
}

/// `search:` (SPEC §22): the code index, and the embeddings endpoint when one is named.
fn search(raw: Spanned<RawSearch>, ctx: &Ctx) -> Result<super::SearchConfig> {
    let line = line_of(raw.referenced);
    let r = raw.value;
    let defaults = super::SearchConfig::default();
    let max_file_bytes = match r.max_file_kb {
        Some(kb) if !(1..=65_536).contains(&kb) => {
            return Err(invalid(
                "search.max_file_kb",
                ctx,
                line,
                format!("must be 1 to 65536 (got {kb})"),
            ));
        }
        Some(kb) => kb * 1024,
        None => defaults.max_file_bytes,
    };
    let embeddings = match r.embeddings {
        Some(e) => {
            let line = line_of(e.referenced);
            let e = e.value;
            let provider = e.provider.as_deref().unwrap_or("openai-compatible");
            let base_url = match (provider, e.base_url.filter(|u| !u.trim().is_empty())) {
                (_, Some(url)) => url,
                ("openai", None) => "https://api.openai.com/v1".to_owned(),
                ("openai-compatible", None) => {
                    return Err(invalid(
                        "search.embeddings.base_url",
                        ctx,
                        line,
                        "is required for provider openai-compatible (e.g. http://localhost:11434/v1)".to_owned(),
                    ));
                }
                (other, _) => {
                    return Err(invalid(
                        "search.embeddings.provider",
                        ctx,
                        line,
                        format!("must be openai-compatible or openai (got {other})"),
                    ));
                }
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(invalid(
                    "search.embeddings.base_url",
                    ctx,
                    line,
                    format!("must start with http:// or https:// (got {base_url})"),
                ));
            }
            let Some(model) = e.model.filter(|m| !m.trim().is_empty()) else {
                return Err(invalid(
                    "search.embeddings.model",
                    ctx,
                    line,
                    "is required (e.g. text-embedding-3-small)".to_owned(),
                ));
            };
            let batch_size = match e.batch_size {
                Some(b) if !(1..=2048).contains(&b) => {
                    return Err(invalid(
                        "search.embeddings.batch_size",
                        ctx,
                        line,
                        format!("must be 1 to 2048 (got {b})"),
                    ));
                }
                Some(b) => b,
                None => 64,
            };
            Some(super::EmbeddingsSettings {
                base_url,
                model,
                api_key_env: e.api_key_env.filter(|v| !v.trim().is_empty()),
                batch_size,
            })
        }
        None => None,
    };
    Ok(super::SearchConfig {
        enabled: r.enabled.unwrap_or(defaults.enabled),
        max_file_bytes,
        embeddings,
    })
}

/// A `model:` section (`key` names it in errors: `model`, or `subagents.models.NAME`), checked.
fn model_section(model: Spanned<RawModel>, key: &str, ctx: &Ctx) -> Result<(ModelConfig, Lines)> {
    let model_line = line_of(model.referenced);
    let rm = model.value;
    let Some(provider) = rm.provider else {
        return Err(missing(
            &format!("{key}.provider"),
            ctx,
            model_line,
            &format!(
                "add e.g. `provider: anthropic` (one of: {})",
                provider_names()
            ),
        ));
    };
    let provider = parse_provider(&provider.value, ctx, line_of(provider.referenced))?;
    let Some(model_name) = rm.name else {
        return Err(missing(
            &format!("{key}.name"),
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
        timeout_s: rm.timeout_s.as_ref().and_then(|s| line_of(s.referenced)),
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
        provider,
        name: model_name.value,
        api_key_env: rm.api_key_env.filter(|s| !s.trim().is_empty()),
        base_url: rm.base_url.map(|s| s.value),
        temperature: rm.temperature.map_or(0.0, |s| s.value),
        max_tokens: rm.max_tokens.map_or(DEFAULT_MAX_TOKENS, |s| s.value),
        context_window: rm.context_window.map(|s| s.value),
        thinking,
        stream: rm.stream.unwrap_or(true),
        timeout_s: rm.timeout_s.map_or(DEFAULT_REQUEST_TIMEOUT_S, |s| s.value),
        script: rm.script.map(|s| resolve(ctx, &s)),
        pricing: rm.pricing.map(|p| pricing(p, ctx)).transpose()?,
    };
    check_model(&model, ctx, &lines)?;
    Ok((model, lines))
}

/// `subagents:`: keys left out keep their defaults; each value in its range.
fn subagents(raw: Spanned<RawSubagents>, ctx: &Ctx) -> Result<super::SubagentsConfig> {
    let line = line_of(raw.referenced);
    let defaults = super::SubagentsConfig::default();
    let ranged = |key: &str, value: Option<u32>, min: u32, max: u32, default: u32| match value {
        Some(v) if !(min..=max).contains(&v) => Err(invalid(
            &format!("subagents.{key}"),
            ctx,
            line,
            format!("must be {min} to {max} (got {v})"),
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let r = raw.value;
    let mut models = std::collections::BTreeMap::new();
    for (name, section) in r.models.unwrap_or_default() {
        let (model, _) = model_section(section, &format!("subagents.models.{name}"), ctx)?;
        models.insert(name, model);
    }
    Ok(super::SubagentsConfig {
        models,
        max_concurrent: ranged(
            "max_concurrent",
            r.max_concurrent,
            1,
            64,
            defaults.max_concurrent,
        )?,
        max_depth: ranged("max_depth", r.max_depth, 1, 4, defaults.max_depth)?,
        max_steps: r
            .max_steps
            .map(|v| ranged("max_steps", Some(v), 1, 1000, v))
            .transpose()?,
    })
}
