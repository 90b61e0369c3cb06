//! Runtime events as the original's hooks receive them: an `EventType` value and keyword arguments named as in
//! `codepilot-ai` (`text`, `tool`, `args`, `label`, `result`, `summary`, …), plus this runtime's extra fields.

use std::fmt;

use codepilot::Event;
use codepilot::events::StreamKind;
use serde::Deserialize as _;
use serde::de::value::MapDeserializer;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

/// The Python hooks each engine event reaches, by the event's `type` tag: [`hook_call`] sends these names, and the
/// bridge asks the `permission_request` and `ask_user` hooks. `codepilot._native.event_hooks()` returns this table,
/// and the package's tests check it against [`event_types`] and Python's `EventType`, so an event added on one side
/// only fails them.
pub(crate) const EVENT_HOOKS: [(&str, &[&str]); 25] = [
    ("start", &["start"]),
    ("step", &["step"]),
    ("stream", &["stream", "thinking_stream"]),
    ("tool_call", &["tool_call"]),
    ("tool_result", &["tool_result"]),
    ("ask_user", &["ask_user"]),
    ("permission_request", &["permission_request"]),
    ("user_message_queued", &["user_message_queued"]),
    ("user_message_injected", &["user_message_injected"]),
    ("runtime_error", &["runtime_error"]),
    ("model_retry", &["model_retry"]),
    ("usage", &["usage"]),
    ("finish", &["finish"]),
    ("max_steps", &["max_steps"]),
    ("aborted", &["aborted"]),
    ("session_reset", &["session_reset"]),
    ("context_maintenance", &["context_maintenance_start"]),
    ("context_drop", &["context_drop"]),
    ("workspace_saved", &["workspace_saved"]),
    ("resource_limit", &["resource_limit"]),
    ("rewound", &["rewound"]),
    ("limit_warning", &["limit_warning"]),
    ("subagent_spawn", &["subagent_spawn"]),
    ("subagent_message", &["subagent_message"]),
    ("subagent_finish", &["subagent_finish"]),
];

/// The `type` tag of every variant of the engine's [`Event`] enum, in declaration order.
///
/// Read from the enum's own `Deserialize`: an unknown tag makes it report every tag it knows through
/// [`serde::de::Error::unknown_variant`], which [`KnownTags`] keeps. Empty only if serde stopped reporting them,
/// which the package's tests would notice.
pub(crate) fn event_types() -> &'static [&'static str] {
    let probe = MapDeserializer::<_, KnownTags>::new(std::iter::once(("type", "")));
    match Event::deserialize(probe) {
        Err(KnownTags(tags)) => tags,
        Ok(_) => &[],
    }
}

/// The error [`event_types`] deserializes with: the variant names serde lists for an unknown tag.
#[derive(Debug)]
struct KnownTags(&'static [&'static str]);

impl fmt::Display for KnownTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event types: {}", self.0.join(", "))
    }
}

impl std::error::Error for KnownTags {}

impl serde::de::Error for KnownTags {
    fn custom<T: fmt::Display>(_: T) -> Self {
        KnownTags(&[])
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        KnownTags(expected)
    }
}

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
        Event::Usage(e) => (
            "usage",
            json!({
                "call": e.call,
                "total": e.total,
                "cost_usd": e.cost_usd,
                "total_cost_usd": e.total_cost_usd,
                "estimated": e.estimated,
                "run": e.run,
            }),
        ),
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
        Event::ResourceLimit(e) => (
            "resource_limit",
            json!({
                "kind": e.kind,
                "limit": e.limit,
                "terminal": e.terminal,
                "message": e.message,
            }),
        ),
        Event::Rewound(e) => (
            "rewound",
            json!({
                "checkpoint": e.checkpoint,
                "scope": e.scope,
                "files_restored": e.files_restored,
                "files_deleted": e.files_deleted,
                "files_left": e.files_left,
                "messages": e.messages,
                "saved_as": e.saved_as,
            }),
        ),
        Event::SubagentSpawn(e) => (
            "subagent_spawn",
            json!({
                "agent_id": e.agent_id,
                "task_summary": e.task_summary,
                "model": e.model,
                "tools": e.tools,
            }),
        ),
        Event::SubagentMessage(e) => (
            "subagent_message",
            json!({"agent_id": e.agent_id, "message": e.message}),
        ),
        Event::SubagentFinish(e) => (
            "subagent_finish",
            json!({
                "agent_id": e.agent_id,
                "status": e.status,
                "summary": e.summary,
                "files_written": e.files_written,
                "elapsed_seconds": e.elapsed_seconds,
                "error": e.error,
            }),
        ),
        Event::LimitWarning(e) => (
            "limit_warning",
            json!({
                "limit": e.limit,
                "scope": e.scope,
                "max": e.max,
                "spent": e.spent,
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
