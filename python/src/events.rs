//! Runtime events as the original's hooks receive them: an `EventType` value and keyword arguments named as in
//! `codepilot-ai` (`text`, `tool`, `args`, `label`, `result`, `summary`, …), plus this runtime's extra fields.

use codepilot::Event;
use codepilot::events::StreamKind;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

/// The hook an event goes to and its keyword arguments; `None` for events the bridge delivers another way
/// (permission requests and questions are answered by the hooks of those names, see `bridge`).
pub(crate) fn hook_call(event: &Event) -> Option<(&'static str, Map<String, Value>)> {
    let (name, kwargs) = match event {
        Event::Start(e) => (
            "start",
            json!({"task": e.task, "session_id": e.session_id, "task_number": e.task_number}),
        ),
        Event::Step(e) => ("step", json!({"step": e.step, "max_steps": e.max_steps})),
        Event::Stream(e) => match e.kind {
            StreamKind::Text => ("stream", json!({"text": e.text})),
            StreamKind::Thinking => ("thinking_stream", json!({"thinking": e.text})),
        },
        Event::ToolCall(e) => (
            "tool_call",
            json!({"tool": e.tool, "args": e.args, "label": e.label, "call_id": e.call_id}),
        ),
        Event::ToolResult(e) => (
            "tool_result",
            json!({"tool": e.tool, "result": e.result, "ok": e.ok, "call_id": e.call_id}),
        ),
        Event::AskUser(_) | Event::PermissionRequest(_) => return None,
        Event::UserMessageQueued(e) => ("user_message_queued", json!({"message": e.text})),
        Event::UserMessageInjected(e) => ("user_message_injected", json!({"message": e.text})),
        Event::RuntimeError(e) => ("runtime_error", json!({"error": e.message, "kind": e.kind})),
        Event::ModelRetry(e) => (
            "model_retry",
            json!({"attempt": e.attempt, "delay_ms": e.delay_ms, "reason": e.reason}),
        ),
        Event::Usage(e) => ("usage", json!({"call": e.call, "total": e.total})),
        Event::Finish(e) => ("finish", json!({"summary": e.summary, "reason": e.reason})),
        Event::MaxSteps(e) => ("max_steps", json!({"steps": e.steps})),
        Event::Aborted(e) => ("aborted", json!({"step": e.step})),
        Event::SessionReset(e) => ("session_reset", json!({"session_id": e.session_id})),
        Event::ContextMaintenance(e) => (
            "context_maintenance_start",
            json!({
                "stress_pct": e.stress_pct,
                "history_tokens": e.context_tokens,
                "safe_budget": e.budget,
                "candidates": e.candidates,
            }),
        ),
        Event::ContextDrop(e) => (
            "context_drop",
            json!({
                "before_pct": pct(e.before_tokens, e.budget),
                "after_pct": pct(e.after_tokens, e.budget),
                "tokens_saved": e.before_tokens.saturating_sub(e.after_tokens),
                "tasks_archived": e.tasks,
                "kind": e.kind,
                "before_tokens": e.before_tokens,
                "after_tokens": e.after_tokens,
                "budget": e.budget,
            }),
        ),
        Event::WorkspaceSaved(e) => (
            "workspace_saved",
            json!({
                "key": e.key,
                "files": e.files,
                "content_bytes": e.content_bytes,
                "size": e.size,
                "elapsed_ms": e.elapsed_ms,
            }),
        ),
        other => {
            tracing::debug!("event {:?} has no Python hook", other.kind());
            return None;
        }
    };
    match kwargs {
        Value::Object(map) => Some((name, map)),
        _ => None,
    }
}

/// `part` as a whole percentage of `whole`.
fn pct(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}
