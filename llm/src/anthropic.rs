//! Anthropic Messages API: request bodies, prompt-cache breakpoints, stream events and whole responses.

use codepilot_protocol::Role;
use reqwest::header::HeaderMap;
use reqwest::header::HeaderValue;
use serde_json::Value;
use serde_json::json;

use crate::ChatRequest;
use crate::Completion;
use crate::StreamDelta;
use crate::config::ProviderConfig;
use crate::dialect::Accumulator;
use crate::dialect::Dialect;
use crate::dialect::secret_header;
use crate::error::LlmError;
use crate::error::Result;
use crate::wire::WireMessage;

/// The `anthropic-version` header value.
const API_VERSION: &str = "2023-06-01";

/// Anthropic allows 4 cache breakpoints per request; the system block takes one, and we keep a spare.
pub(crate) const MAX_MESSAGE_BREAKPOINTS: usize = 2;

/// Smallest thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u32 = 1024;

/// The Anthropic Messages dialect.
pub(crate) struct Anthropic;

impl Dialect for Anthropic {
    fn check(&self, cfg: &ProviderConfig) -> Result<()> {
        match cfg.thinking {
            Some(budget) if budget < MIN_THINKING_BUDGET => Err(LlmError::InvalidConfig(format!(
                "the thinking budget must be at least {MIN_THINKING_BUDGET} tokens, got {budget}"
            ))),
            _ => Ok(()),
        }
    }

    fn url(&self, base: &str) -> String {
        if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        }
    }

    fn add_headers(&self, headers: &mut HeaderMap, key: Option<&str>) -> Result<()> {
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = key {
            headers.insert("x-api-key", secret_header(key)?);
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

    fn on_event(
        &self,
        acc: &mut Accumulator,
        event: &str,
        data: &str,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<()> {
        on_event(acc, event, data, on_delta)
    }
}

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// Whether `content` opens a task: `<task_N>` or `[Task N]`.
fn starts_task(content: &str) -> bool {
    let digits_then = |rest: &str, close: char| {
        let n = rest.chars().take_while(char::is_ascii_digit).count();
        n > 0 && rest[n..].starts_with(close)
    };
    let c = content.trim_start();
    if let Some(rest) = c.strip_prefix("<task_") {
        digits_then(rest, '>')
    } else if let Some(rest) = c.strip_prefix("[Task ") {
        digits_then(rest, ']')
    } else {
        false
    }
}

/// Indices of the messages that get a rolling cache breakpoint, in priority order (the Python original's
/// selection): the last assistant message; the last assistant message before the current task; among the
/// current task's assistant messages, if there are at least 5, the one at `(count/5)*5 - 1`. At most
/// [`MAX_MESSAGE_BREAKPOINTS`] are kept.
/// Used when the caller gives no [`ChatRequest::cache_marks`].
pub(crate) fn breakpoints(messages: &[WireMessage]) -> Vec<usize> {
    let task_start = messages
        .iter()
        .rposition(|m| m.role() == Role::User && starts_task(m.content()))
        .unwrap_or(0);
    let assistant = |range: std::ops::Range<usize>| {
        range
            .filter(|&i| messages[i].role() == Role::Assistant)
            .collect::<Vec<_>>()
    };
    let task_assistants = assistant(task_start..messages.len());
    let mut picks = Vec::new();
    let mut add = |i: Option<usize>| {
        if let Some(i) = i
            && !picks.contains(&i)
        {
            picks.push(i);
        }
    };
    add(messages.iter().rposition(|m| m.role() == Role::Assistant));
    add(assistant(0..task_start).last().copied());
    let count = task_assistants.len();
    if count >= 5 {
        add(task_assistants.get((count / 5) * 5 - 1).copied());
    }
    picks.truncate(MAX_MESSAGE_BREAKPOINTS);
    picks
}

/// The JSON body of a Messages request.
pub(crate) fn request_body(cfg: &ProviderConfig, req: &ChatRequest<'_>) -> Result<Vec<u8>> {
    let computed;
    let marks = match req.cache_marks {
        Some(marks) => marks
            .get(..marks.len().min(MAX_MESSAGE_BREAKPOINTS))
            .unwrap_or(marks),
        None => {
            computed = breakpoints(req.messages);
            &computed
        }
    };
    crate::wire::assemble(&head(cfg, req), None, req.messages, marks)
}

/// Everything of the body but the messages.
fn head(cfg: &ProviderConfig, req: &ChatRequest<'_>) -> Value {
    let mut body = json!({
        "model": cfg.model,
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
    });
    if !req.system.is_empty() || !req.system_dynamic.is_empty() {
        let mut blocks = Vec::new();
        if !req.system.is_empty() {
            blocks.push(json!({"type": "text", "text": req.system, "cache_control": ephemeral()}));
        }
        if !req.system_dynamic.is_empty() {
            blocks.push(json!({"type": "text", "text": req.system_dynamic}));
        }
        body["system"] = serde_json::Value::Array(blocks);
    }
    if let Some(budget) = cfg.thinking {
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        body["temperature"] = json!(1.0);
        if cfg.max_tokens <= budget {
            body["max_tokens"] = json!(budget.saturating_add(cfg.max_tokens));
        }
    }
    if cfg.stream {
        body["stream"] = json!(true);
    }
    body
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn read_usage(acc: &mut Accumulator, usage: &Value) {
    if let Some(n) = u64_at(usage, "input_tokens") {
        acc.usage.input_tokens = n;
    }
    if let Some(n) = u64_at(usage, "output_tokens") {
        acc.usage.output_tokens = n;
    }
    if let Some(n) = u64_at(usage, "cache_read_input_tokens") {
        acc.usage.cache_read_tokens = n;
    }
    if let Some(n) = u64_at(usage, "cache_creation_input_tokens") {
        acc.usage.cache_write_tokens = n;
    }
}

fn api_error(v: &Value) -> LlmError {
    let err = v.get("error").unwrap_or(v);
    LlmError::Api {
        kind: err
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned(),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_owned(),
    }
}

/// Handles one SSE event of a Messages stream.
pub(crate) fn on_event(
    acc: &mut Accumulator,
    event: &str,
    data: &str,
    on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
) -> Result<()> {
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        tracing::debug!(event, "ignoring an event whose data is not JSON");
        return Ok(());
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or(event);
    match kind {
        "message_start" => {
            if let Some(usage) = v.pointer("/message/usage") {
                read_usage(acc, usage);
            }
        }
        "content_block_start" => {
            let block = v.get("content_block").unwrap_or(&Value::Null);
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    acc.push_text(text, on_delta);
                }
                Some("thinking") => {
                    let t = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                    if !t.is_empty() {
                        on_delta(StreamDelta::Thinking(t));
                    }
                }
                _ => {}
            }
        }
        "content_block_delta" => {
            let delta = v.get("delta").unwrap_or(&Value::Null);
            match delta.get("type").and_then(Value::as_str) {
                Some("text_delta") => {
                    let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                    acc.push_text(text, on_delta);
                }
                Some("thinking_delta") => {
                    let t = delta.get("thinking").and_then(Value::as_str).unwrap_or("");
                    if !t.is_empty() {
                        on_delta(StreamDelta::Thinking(t));
                    }
                }
                _ => {}
            }
        }
        "message_delta" => {
            if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                acc.stop_reason = Some(reason.to_owned());
                acc.finished = true;
            }
            if let Some(usage) = v.get("usage") {
                read_usage(acc, usage);
            }
        }
        "message_stop" => acc.done = true,
        "error" => return Err(api_error(&v)),
        _ => {}
    }
    Ok(())
}

/// Parses a whole (non-streamed) Messages response, reporting thinking and text as one delta each.
pub(crate) fn parse_response(
    v: &Value,
    on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
) -> Result<Completion> {
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(api_error(v));
    }
    let Some(content) = v.get("content").and_then(Value::as_array) else {
        return Err(LlmError::Decode(format!(
            "a Messages response without `content`: {}",
            crate::http::excerpt(&v.to_string())
        )));
    };
    let mut acc = Accumulator::default();
    let mut text = String::new();
    let mut thinking = String::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                thinking.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
            }
            _ => {}
        }
    }
    if !thinking.is_empty() {
        on_delta(StreamDelta::Thinking(&thinking));
    }
    acc.push_text(&text, on_delta);
    acc.stop_reason = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(usage) = v.get("usage") {
        read_usage(&mut acc, usage);
    }
    Ok(acc.into_completion())
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
