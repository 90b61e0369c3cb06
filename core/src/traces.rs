//! What a runtime records in OpenTelemetry traces (SPEC §23).
//!
//! A run is one `invoke_agent` span (a worker's run too, marked with its id), parented by the host's
//! `traceparent` when it gave one. Under it: `codepilot.checkpoint` (the work dir captured before the turn and
//! before each later step), one `codepilot.step` per step, and in each step the `chat` model call (with the
//! `gen_ai.first_token` event), the `codepilot.block` control block with an `execute_tool` span per tool call
//! (MCP calls add a `tools/call` client span, a worker's run hangs under its `spawn_subagent` call), and
//! `codepilot.save`, the session stored. Prompts, answers, tool arguments and results are recorded only with
//! `observability.log_content: true`.
//!
//! With tracing off there is no [`Traces`], every span is [`Span::none`], and each site costs an `Option` check.

use codepilot_llm::WireMessage;
use codepilot_protocol::Outcome;
use codepilot_telemetry::KeyValue;
use codepilot_telemetry::Span;
use codepilot_telemetry::SpanKind;
use codepilot_telemetry::Telemetry;
use codepilot_telemetry::TraceParent;
use codepilot_telemetry::names;

use crate::config::AgentFile;

/// A runtime's traces: the exporter, and what every run and model call span says about the agent.
pub(crate) struct Traces {
    telemetry: Telemetry,
    agent: String,
    provider: &'static str,
    model: String,
    max_tokens: u32,
    temperature: f32,
    /// `(agent id, parent's agent id)` for a worker.
    worker: Option<(u32, u32)>,
}

impl Traces {
    /// Traces for `agent` when its `observability:` or the environment (read through `env`) asks for them.
    pub(crate) fn new(
        agent: &AgentFile,
        worker: Option<(u32, u32)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> crate::Result<Option<Self>> {
        let Some(telemetry) = Telemetry::with_env(&agent.observability, env)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            telemetry,
            agent: agent.name.clone(),
            provider: provider_name(agent.model.provider),
            model: agent.model.name.clone(),
            max_tokens: agent.model.max_tokens,
            temperature: agent.model.temperature,
            worker,
        }))
    }

    /// Whether prompts, answers, tool arguments and results go into spans.
    pub(crate) fn log_content(&self) -> bool {
        self.telemetry.log_content()
    }

    /// Sends the spans that ended, waiting at most `timeout`.
    pub(crate) fn flush(&self, timeout: std::time::Duration) {
        self.telemetry.flush(timeout);
    }

    /// The span of task `task_number`'s run (turn `turn_id`).
    pub(crate) fn run_span(
        &self,
        session_id: &str,
        (task_number, turn_id): (u64, String),
        task: &str,
        parent: Option<&TraceParent>,
    ) -> Span {
        let mut attributes = vec![
            KeyValue::new(names::GEN_AI_OPERATION_NAME, "invoke_agent"),
            KeyValue::new(names::GEN_AI_AGENT_NAME, self.agent.clone()),
            KeyValue::new(names::GEN_AI_CONVERSATION_ID, session_id.to_owned()),
            KeyValue::new(names::GEN_AI_PROVIDER_NAME, self.provider),
            KeyValue::new(names::GEN_AI_REQUEST_MODEL, self.model.clone()),
            KeyValue::new(names::SESSION_ID, session_id.to_owned()),
            KeyValue::new(names::TURN_ID, turn_id),
            KeyValue::new(names::TASK_NUMBER, saturating_i64(task_number)),
        ];
        if let Some((id, parent)) = self.worker {
            attributes.push(KeyValue::new(names::AGENT_ID, i64::from(id)));
            attributes.push(KeyValue::new(names::PARENT_AGENT_ID, i64::from(parent)));
        }
        if self.log_content() {
            attributes.push(KeyValue::new(
                names::GEN_AI_INPUT_MESSAGES,
                user_messages(task),
            ));
        }
        self.telemetry
            .start_root(format!("invoke_agent {}", self.agent), parent, attributes)
    }

    /// A model call's span under `step`.
    pub(crate) fn model_span(&self, step: &Span, system: &str, messages: &[WireMessage]) -> Span {
        step.child(
            || format!("chat {}", self.model).into(),
            SpanKind::Client,
            || {
                let mut attributes = vec![
                    KeyValue::new(names::GEN_AI_OPERATION_NAME, "chat"),
                    KeyValue::new(names::GEN_AI_PROVIDER_NAME, self.provider),
                    KeyValue::new(names::GEN_AI_REQUEST_MODEL, self.model.clone()),
                    KeyValue::new(names::GEN_AI_REQUEST_MAX_TOKENS, i64::from(self.max_tokens)),
                    KeyValue::new(
                        names::GEN_AI_REQUEST_TEMPERATURE,
                        f64::from(self.temperature),
                    ),
                ];
                if self.log_content() {
                    attributes.push(KeyValue::new(
                        names::GEN_AI_SYSTEM_INSTRUCTIONS,
                        text_parts(system),
                    ));
                    attributes.push(KeyValue::new(
                        names::GEN_AI_INPUT_MESSAGES,
                        chat_messages(messages),
                    ));
                }
                attributes
            },
        )
    }
}

/// Records how a run ended on its span.
pub(crate) fn end_run(span: &Span, outcome: &crate::Result<Outcome>) {
    match outcome {
        Ok(outcome) => {
            span.set(names::OUTCOME, outcome.status());
            span.set(names::STEPS, i64::from(outcome.steps()));
            if let Outcome::InvalidOutput { .. } = outcome {
                span.fail("invalid_output", || {
                    "the completion did not match the output schema".to_owned()
                });
            }
        }
        Err(e) => {
            span.set(names::OUTCOME, "error");
            span.fail("runtime_error", || e.to_string());
        }
    }
    span.end();
}

/// The provider as the GenAI conventions name it (`gen_ai.provider.name`): their well-known values where one
/// applies, this runtime's name otherwise.
fn provider_name(kind: codepilot_llm::ProviderKind) -> &'static str {
    match kind {
        codepilot_llm::ProviderKind::Gemini => "gcp.gemini",
        _ => kind.name(),
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The most text one content attribute carries. Collectors refuse big requests (the OpenTelemetry Collector's
/// OTLP/HTTP receiver takes 20 MiB, gRPC 4 MiB a message) and a batch holds hundreds of spans; a long conversation
/// is kept to its newest messages.
pub(crate) const CONTENT_CAP: usize = 16 * 1024;

/// `text`, or its first [`CONTENT_CAP`] bytes with a note of what was cut.
pub(crate) fn capped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= CONTENT_CAP {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = CONTENT_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}…[{} more bytes not recorded]",
        &text[..end],
        text.len() - end
    ))
}

/// Text as the GenAI conventions' parts: `[{"type":"text","content":…}]`.
fn text_parts(text: &str) -> String {
    serde_json::json!([{ "type": "text", "content": capped(text) }]).to_string()
}

fn user_messages(text: &str) -> String {
    serde_json::json!([{ "role": "user", "parts": [{ "type": "text", "content": capped(text) }] }])
        .to_string()
}

/// Messages as the GenAI conventions' `gen_ai.input.messages`: the newest that fit in [`CONTENT_CAP`] (each one
/// capped), the older ones counted in a first `system` entry.
fn chat_messages(messages: &[WireMessage]) -> String {
    let mut kept: Vec<serde_json::Value> = Vec::new();
    let mut size = 0;
    for m in messages.iter().rev() {
        let content = capped(m.content());
        if !kept.is_empty() && size + content.len() > CONTENT_CAP {
            break;
        }
        size += content.len();
        kept.push(serde_json::json!({
            "role": m.role(),
            "parts": [{ "type": "text", "content": content }],
        }));
    }
    let left_out = messages.len() - kept.len();
    if left_out > 0 {
        kept.push(serde_json::json!({
            "role": "system",
            "parts": [{ "type": "text", "content": format!("[{left_out} earlier messages not recorded]") }],
        }));
    }
    kept.reverse();
    serde_json::Value::Array(kept).to_string()
}

/// The answer as `gen_ai.output.messages`.
pub(crate) fn output_messages(text: &str, finish_reason: Option<&str>) -> String {
    serde_json::json!([{
        "role": "assistant",
        "parts": [{ "type": "text", "content": capped(text) }],
        "finish_reason": finish_reason.unwrap_or("stop"),
    }])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_capped_to_the_newest_messages_and_stays_json() {
        let big = "x".repeat(CONTENT_CAP * 2);
        let messages: Vec<WireMessage> = (0..40)
            .map(|i| {
                WireMessage::new(
                    codepilot_protocol::Role::User,
                    format!("message {i} {}", "y".repeat(1000)),
                )
            })
            .chain([WireMessage::new(
                codepilot_protocol::Role::Assistant,
                big.as_str(),
            )])
            .collect();
        let json: serde_json::Value = serde_json::from_str(&chat_messages(&messages)).unwrap();
        let list = json.as_array().unwrap();
        assert_eq!(list.len(), 2, "the newest message alone fills the cap");
        assert_eq!(
            list[0]["parts"][0]["content"],
            "[40 earlier messages not recorded]"
        );
        let last = list[1]["parts"][0]["content"].as_str().unwrap();
        assert!(last.len() < CONTENT_CAP + 100 && last.ends_with("more bytes not recorded]"));
        let small: Vec<WireMessage> = (0..3)
            .map(|i| WireMessage::new(codepilot_protocol::Role::User, format!("m{i}")))
            .collect();
        let json: serde_json::Value = serde_json::from_str(&chat_messages(&small)).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 3);
        assert!(capped("é".repeat(CONTENT_CAP).as_str()).len() < CONTENT_CAP + 40);
    }
}
