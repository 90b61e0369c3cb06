//! The rules an agent definition must follow, shared by the YAML loader and the programmatic builder.

use codepilot_llm::DEFAULT_MAX_TOKENS;
use codepilot_llm::DEFAULT_REQUEST_TIMEOUT_S;
use codepilot_llm::ProviderKind;

use super::BUILTIN_TOOLS;
use super::DEFAULT_THINKING_BUDGET;
use super::ModelConfig;
use super::RuntimeConfig;
use super::error::ConfigError;
use super::error::Result;
use super::raw::Ctx;
use super::raw::Lines;
use crate::tools::builtin::Builtin;

/// The candidate closest to `word`, if it is plausibly a misspelling of it.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), c))
        .filter(|(score, c)| *score >= 0.5 || (word.len() >= 3 && c.starts_with(word)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The canonical names of every provider, comma-separated, for messages.
pub(super) fn provider_names() -> String {
    ProviderKind::all()
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The provider a name or alias stands for (`claude` → `anthropic`), as `codepilot-llm` parses it; an unknown
/// name is an error that lists the valid ones.
pub(super) fn parse_provider(name: &str, ctx: &Ctx, line: Option<u64>) -> Result<ProviderKind> {
    if let Ok(kind) = name.parse::<ProviderKind>() {
        return Ok(kind);
    }
    let lower = name.trim().to_ascii_lowercase();
    let hint = closest(&lower, ProviderKind::all().iter().map(|k| k.name()))
        .map(|c| format!("did you mean '{c}'? "))
        .unwrap_or_default();
    Err(ConfigError::Invalid {
        key: "model.provider".to_string(),
        file: ctx.file.clone(),
        line,
        message: format!(
            "unknown provider '{name}'; {hint}supported: {}",
            provider_names()
        ),
    })
}

pub(super) fn invalid(key: &str, ctx: &Ctx, line: Option<u64>, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        file: ctx.file.clone(),
        line,
        message,
    }
}

pub(super) fn missing(key: &str, ctx: &Ctx, line: Option<u64>, hint: &str) -> ConfigError {
    ConfigError::MissingKey {
        key: key.to_string(),
        file: ctx.file.clone(),
        line,
        hint: hint.to_string(),
    }
}

pub(super) fn check_model(model: &ModelConfig, ctx: &Ctx, lines: &Lines) -> Result<()> {
    if model.name.trim().is_empty() {
        return Err(invalid(
            "model.name",
            ctx,
            lines.model,
            "must not be empty; write the provider's model id, e.g. `name: claude-sonnet-4-5`"
                .to_string(),
        ));
    }
    let needs_base_url = model.provider == ProviderKind::OpenAiCompatible;
    match model.base_url.as_deref().map(str::trim) {
        None if needs_base_url => {
            return Err(missing(
                "model.base_url",
                ctx,
                lines.model,
                &format!(
                    "provider '{}' needs the server's URL, e.g. `base_url: http://localhost:8000/v1`",
                    model.provider
                ),
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
            format!("must be greater than 0 (default {DEFAULT_MAX_TOKENS})"),
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
            format!("must be greater than 0 (default {DEFAULT_THINKING_BUDGET})"),
        ));
    }
    if model.timeout_s == 0 {
        return Err(invalid(
            "model.timeout_s",
            ctx,
            lines.timeout_s,
            format!(
                "must be greater than 0 seconds (default {DEFAULT_REQUEST_TIMEOUT_S}); it is how long to wait \
                 for the model server"
            ),
        ));
    }
    if let Err(ConfigError::Invalid { message, .. }) = model.context_budget() {
        return Err(invalid(
            "model.context_window",
            ctx,
            lines.context_window.or(lines.max_tokens),
            message,
        ));
    }
    Ok(())
}

pub(super) fn check_runtime(runtime: &RuntimeConfig, ctx: &Ctx, lines: &Lines) -> Result<()> {
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
            format!(
                "must be greater than 0 seconds (default {})",
                super::DEFAULT_STEP_TIMEOUT_S
            ),
        ));
    }
    if !(runtime.context_threshold > 0.0 && runtime.context_threshold <= 1.0) {
        return Err(invalid(
            "runtime.context_threshold",
            ctx,
            lines.context_threshold,
            format!(
                "must be more than 0 and at most 1 (default 0.8), got {}",
                runtime.context_threshold
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_tool_name(
    name: &str,
    seen: &[&str],
    ctx: &Ctx,
    line: Option<u64>,
) -> Result<()> {
    if Builtin::from_name(name).is_none() {
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

/// Bounds of a tool's `max_output_chars`.
const MIN_OUTPUT_CHARS: u64 = 512;
const MAX_OUTPUT_CHARS: u64 = 1_000_000;

pub(super) fn check_tool_config(
    tool: &str,
    config: &serde_json::Map<String, serde_json::Value>,
    ctx: &Ctx,
    line: Option<u64>,
) -> Result<()> {
    let valid = Builtin::from_name(tool).map_or(&[][..], Builtin::config_keys);
    for (key, value) in config {
        if tool == "semantic_search"
            && matches!(
                key.as_str(),
                "provider" | "model" | "api_key_env" | "endpoint" | "base_url"
            )
        {
            return Err(invalid(
                "tools.config",
                ctx,
                line,
                format!(
                    "semantic_search's '{key}' belongs in the search section now (codepilot-ai 0.9.41 kept it on \
                     the tool): search: {{embeddings: {{base_url: ..., model: ..., api_key_env: ...}}}}"
                ),
            ));
        }
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
            "max_output_chars" => value
                .as_u64()
                .is_some_and(|n| (MIN_OUTPUT_CHARS..=MAX_OUTPUT_CHARS).contains(&n)),
            _ => true,
        };
        if !ok {
            let expected = if key == "require_permission" {
                "true or false"
            } else {
                "a whole number from 512 to 1000000 (the observation itself is capped at 60000)"
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
