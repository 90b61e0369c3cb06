//! OpenAI Chat Completions (and compatible servers): request bodies, stream chunks and whole responses.
//!
//! Parsing is deliberately lenient about the quirks of compatible servers: `finish_reason: ""`, `usage: {}`,
//! missing fields, keep-alive comments, non-JSON data lines and a missing `[DONE]` after a finish reason.

use reqwest::header::HeaderMap;
use serde_json::Value;
use serde_json::json;

use crate::ChatRequest;
use crate::Completion;
use crate::StreamDelta;
use crate::config::ProviderConfig;
use crate::config::ProviderKind;
use crate::dialect::Accumulator;
use crate::dialect::Dialect;
use crate::dialect::secret_header;
use crate::error::LlmError;
use crate::error::Result;

/// The OpenAI Chat Completions dialect, spoken by OpenAI and every compatible server.
pub(crate) struct OpenAiChat;

impl Dialect for OpenAiChat {
    fn url(&self, base: &str) -> String {
        format!("{base}/chat/completions")
    }

    fn add_headers(&self, headers: &mut HeaderMap, key: Option<&str>) -> Result<()> {
        if let Some(key) = key {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                secret_header(&format!("Bearer {key}"))?,
            );
        }
        Ok(())
    }

    fn request_body(&self, cfg: &ProviderConfig, req: &ChatRequest<'_>) -> Result<Vec<u8>> {
        request_body(cfg, req)
    }

    fn parse_response(
        &self,
        v: &Value,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<Completion> {
        parse_response(v, on_delta)
    }

    /// Chat Completions streams carry no event names; only the data matters.
    fn on_event(
        &self,
        acc: &mut Accumulator,
        _event: &str,
        data: &str,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<()> {
        on_event(acc, data, on_delta)
    }
}

/// The JSON body of a Chat Completions request.
pub(crate) fn request_body(cfg: &ProviderConfig, req: &ChatRequest<'_>) -> Result<Vec<u8>> {
    let system = match (req.system.is_empty(), req.system_dynamic.is_empty()) {
        (true, true) => String::new(),
        (false, true) => req.system.to_owned(),
        (true, false) => req.system_dynamic.to_owned(),
        (false, false) => format!("{}\n{}", req.system, req.system_dynamic),
    };
    let first = (!system.is_empty()).then(|| {
        format!(
            "{{\"role\":\"system\",\"content\":{}}}",
            crate::wire::json_string(&system)
        )
    });
    crate::wire::assemble(&head(cfg), first.as_deref(), req.messages, &[])
}

/// Everything of the body but the messages.
fn head(cfg: &ProviderConfig) -> Value {
    let mut body = json!({
        "model": cfg.model,
        "temperature": cfg.temperature,
    });
    // OpenAI itself deprecated `max_tokens` (reasoning models reject it); compatible servers only know it.
    let max_key = if cfg.kind == ProviderKind::OpenAi {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    body[max_key] = json!(cfg.max_tokens);
    if cfg.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn read_usage(acc: &mut Accumulator, usage: &Value) {
    let prompt = usage.get("prompt_tokens").and_then(Value::as_u64);
    let completion = usage.get("completion_tokens").and_then(Value::as_u64);
    if prompt.is_none() && completion.is_none() {
        return; // `usage: {}` or `usage: null`
    }
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .or_else(|| usage.get("prompt_cache_hit_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let prompt = prompt.unwrap_or(0);
    acc.usage.input_tokens = prompt.saturating_sub(cached);
    acc.usage.cache_read_tokens = cached.min(prompt);
    acc.usage.output_tokens = completion.unwrap_or(0);
    acc.usage.reasoning_tokens = usage
        .pointer("/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
}

fn api_error(err: &Value) -> LlmError {
    let kind = err
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| err.get("code").and_then(Value::as_str))
        .unwrap_or("error")
        .to_owned();
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| err.to_string(), str::to_owned);
    LlmError::Api { kind, message }
}

/// Text of a `content` field: a string, or an array of `{type: text, text}` parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Reasoning text under the names compatible servers use (`reasoning_content`, `reasoning`).
fn reasoning(v: &Value) -> Option<&str> {
    v.get("reasoning_content")
        .or_else(|| v.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Handles one SSE data line of a Chat Completions stream.
pub(crate) fn on_event(
    acc: &mut Accumulator,
    data: &str,
    on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
) -> Result<()> {
    let data = data.trim();
    if data == "[DONE]" {
        acc.done = true;
        return Ok(());
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        tracing::debug!("ignoring a stream line that is not JSON");
        return Ok(());
    };
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(api_error(err));
    }
    if let Some(choice) = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        if let Some(delta) = choice.get("delta") {
            if let Some(t) = reasoning(delta) {
                on_delta(StreamDelta::Thinking(t));
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                acc.push_text(text, on_delta);
            }
        }
        if let Some(reason) = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            acc.stop_reason = Some(reason.to_owned());
            acc.finished = true;
        }
    }
    if let Some(usage) = v.get("usage") {
        read_usage(acc, usage);
    }
    Ok(())
}

/// Parses a whole (non-streamed) Chat Completions response.
pub(crate) fn parse_response(
    v: &Value,
    on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
) -> Result<Completion> {
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(api_error(err));
    }
    let Some(choice) = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Err(LlmError::Decode(format!(
            "a chat completion without `choices`: {}",
            crate::http::excerpt(&v.to_string())
        )));
    };
    let message = choice.get("message").unwrap_or(&Value::Null);
    if let Some(t) = reasoning(message) {
        on_delta(StreamDelta::Thinking(t));
    }
    let mut acc = Accumulator::default();
    acc.push_text(&content_text(message.get("content")), on_delta);
    acc.stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if let Some(usage) = v.get("usage") {
        read_usage(&mut acc, usage);
    }
    Ok(acc.into_completion())
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
