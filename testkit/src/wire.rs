//! The two wire formats the [`ScriptedServer`](crate::ScriptedServer) answers in: Anthropic Messages and OpenAI
//! Chat Completions, streamed (SSE) or as one JSON body.

use codepilot_protocol::Usage;
use serde_json::Value;
use serde_json::json;

use crate::turn::Answer;

/// Which wire format a request speaks, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// `/v1/messages`.
    Anthropic,
    /// `/v1/chat/completions`.
    OpenAi,
}

/// Splits `text` into pieces of `n` characters.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn sse(out: &mut String, event: Option<&str>, data: &Value) {
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// Renders an answer as (content type, body).
pub(crate) fn render(
    wire: Wire,
    a: &Answer,
    stream: bool,
    include_usage: bool,
) -> (String, String) {
    match (wire, stream) {
        (Wire::Anthropic, true) => ("text/event-stream".into(), anthropic_sse(a)),
        (Wire::Anthropic, false) => ("application/json".into(), anthropic_json(a).to_string()),
        (Wire::OpenAi, true) => ("text/event-stream".into(), openai_sse(a, include_usage)),
        (Wire::OpenAi, false) => ("application/json".into(), openai_json(a).to_string()),
    }
}

fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    })
}

fn anthropic_sse(a: &Answer) -> String {
    let stop = a.stop_reason.as_deref().unwrap_or("end_turn");
    let mut out = String::new();
    let mut start_usage = anthropic_usage(&a.usage);
    start_usage["output_tokens"] = json!(1);
    sse(
        &mut out,
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": "scripted",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    );
    let mut index = 0;
    if let Some(thinking) = &a.thinking {
        sse(
            &mut out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}}),
        );
        for p in pieces(thinking, a.piece_chars) {
            sse(
                &mut out,
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": p}}),
            );
        }
        sse(
            &mut out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}}),
        );
        sse(
            &mut out,
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    sse(
        &mut out,
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
    );
    sse(&mut out, Some("ping"), &json!({"type": "ping"}));
    for p in pieces(&a.text, a.piece_chars) {
        sse(
            &mut out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}),
        );
    }
    sse(
        &mut out,
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": index}),
    );
    sse(
        &mut out,
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": a.usage.output_tokens}}),
    );
    sse(
        &mut out,
        Some("message_stop"),
        &json!({"type": "message_stop"}),
    );
    out
}

fn anthropic_json(a: &Answer) -> Value {
    let mut content = Vec::new();
    if let Some(thinking) = &a.thinking {
        content
            .push(json!({"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"}));
    }
    content.push(json!({"type": "text", "text": a.text}));
    json!({
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": "scripted",
        "content": content,
        "stop_reason": a.stop_reason.as_deref().unwrap_or("end_turn"),
        "stop_sequence": null,
        "usage": anthropic_usage(&a.usage),
    })
}

fn openai_usage(u: &Usage) -> Value {
    let prompt = u.input_tokens.saturating_add(u.cache_read_tokens);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt.saturating_add(u.output_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

fn openai_chunk(delta: &Value, finish_reason: &Value, usage: &Value) -> Value {
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

/// An OpenAI stream with the quirks of compatible servers: `usage: {}` on the first chunk,
/// `finish_reason: ""` on content chunks and a `: keep-alive` comment.
fn openai_sse(a: &Answer, include_usage: bool) -> String {
    let stop = a.stop_reason.as_deref().unwrap_or("stop");
    let mut out = String::new();
    sse(
        &mut out,
        None,
        &openai_chunk(
            &json!({"role": "assistant", "content": ""}),
            &Value::Null,
            &json!({}),
        ),
    );
    out.push_str(": keep-alive\n\n");
    if let Some(thinking) = &a.thinking {
        for p in pieces(thinking, a.piece_chars) {
            sse(
                &mut out,
                None,
                &openai_chunk(&json!({"reasoning_content": p}), &Value::Null, &Value::Null),
            );
        }
    }
    for p in pieces(&a.text, a.piece_chars) {
        sse(
            &mut out,
            None,
            &openai_chunk(&json!({"content": p}), &json!(""), &Value::Null),
        );
    }
    sse(
        &mut out,
        None,
        &openai_chunk(&json!({}), &json!(stop), &Value::Null),
    );
    if include_usage {
        sse(
            &mut out,
            None,
            &json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                    "model": "scripted", "choices": [], "usage": openai_usage(&a.usage)}),
        );
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn openai_json(a: &Answer) -> Value {
    let mut message = json!({"role": "assistant", "content": a.text});
    if let Some(thinking) = &a.thinking {
        message["reasoning_content"] = json!(thinking);
    }
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": a.stop_reason.as_deref().unwrap_or("stop")}],
        "usage": openai_usage(&a.usage),
    })
}
