//! Shared helpers for the integration tests.

mod anthropic;
mod cancel;
mod docs;
mod kinds;
mod openai;
mod retries;
mod scripted;

use std::sync::Arc;
use std::time::Duration;

use codepilot_llm::ChatRequest;
use codepilot_llm::Completion;
use codepilot_llm::LlmError;
use codepilot_llm::Provider;
use codepilot_llm::ProviderConfig;
use codepilot_llm::ProviderKind;
use codepilot_llm::RetryPolicy;
use codepilot_llm::StreamDelta;
use codepilot_llm::WireMessage;
use codepilot_llm::build_provider;
use codepilot_protocol::Message;
use codepilot_testkit::ScriptedServer;

/// An owned copy of a [`StreamDelta`].
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Text(String),
    Thinking(String),
    Retry {
        attempt: u32,
        delay: Duration,
        reason: String,
    },
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
    }
}

pub fn anthropic_cfg(server: &ScriptedServer, stream: bool) -> ProviderConfig {
    let mut cfg = ProviderConfig::new(ProviderKind::Anthropic, "claude-test");
    cfg.api_key = Some("sk-ant-test-key".into());
    cfg.base_url = Some(server.base_url());
    cfg.stream = stream;
    cfg.retry = fast_retry();
    cfg.request_timeout = Duration::from_secs(60);
    cfg
}

pub fn openai_cfg(server: &ScriptedServer, kind: ProviderKind, stream: bool) -> ProviderConfig {
    let mut cfg = ProviderConfig::new(kind, "model-test");
    cfg.base_url = Some(format!("{}/v1", server.base_url()));
    cfg.stream = stream;
    cfg.retry = fast_retry();
    cfg.request_timeout = Duration::from_secs(60);
    cfg
}

pub fn conversation() -> Vec<Message> {
    vec![
        Message::user("<task_1> list files"),
        Message::assistant("```codepilot\nexecute('main', 'ls')\n```"),
        Message::user("[EXECUTION RESULT]\na.txt"),
    ]
}

pub async fn call_with(
    provider: &Arc<dyn Provider>,
    system: &str,
    messages: &[Message],
) -> (Result<Completion, LlmError>, Vec<Seen>) {
    let mut seen = Vec::new();
    let result = provider
        .complete(
            ChatRequest {
                system,
                system_dynamic: "",
                messages: &messages.iter().map(WireMessage::from).collect::<Vec<_>>(),
                cache_marks: None,
            },
            &mut |d| {
                seen.push(match d {
                    StreamDelta::Text(t) => Seen::Text(t.to_owned()),
                    StreamDelta::Thinking(t) => Seen::Thinking(t.to_owned()),
                    StreamDelta::Retry {
                        attempt,
                        delay,
                        reason,
                    } => Seen::Retry {
                        attempt,
                        delay,
                        reason: reason.to_owned(),
                    },
                    other => panic!("unexpected delta {other:?}"),
                });
            },
        )
        .await;
    (result, seen)
}

pub async fn call(cfg: ProviderConfig) -> (Result<Completion, LlmError>, Vec<Seen>) {
    let provider = build_provider(cfg).unwrap();
    call_with(&provider, "You are a test.", &conversation()).await
}

/// The text deltas after the last retry, concatenated.
pub fn final_text(seen: &[Seen]) -> String {
    let start = seen
        .iter()
        .rposition(|s| matches!(s, Seen::Retry { .. }))
        .map_or(0, |i| i + 1);
    seen[start..]
        .iter()
        .filter_map(|s| match s {
            Seen::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

pub fn text_deltas(seen: &[Seen]) -> usize {
    seen.iter().filter(|s| matches!(s, Seen::Text(_))).count()
}

pub fn retries(seen: &[Seen]) -> Vec<(u32, Duration, String)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Retry {
                attempt,
                delay,
                reason,
            } => Some((*attempt, *delay, reason.clone())),
            _ => None,
        })
        .collect()
}
