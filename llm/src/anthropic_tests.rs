use codepilot_protocol::Role;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::config::ProviderKind;

fn convo(spec: &[(&str, &str)]) -> Vec<WireMessage> {
    spec.iter()
        .map(|(role, text)| match *role {
            "u" => WireMessage::new(Role::User, *text),
            _ => WireMessage::new(Role::Assistant, *text),
        })
        .collect()
}

fn json_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn task_markers() {
    assert!(starts_task("<task_1> do it"));
    assert!(starts_task("[Task 12]\nfix"));
    assert!(!starts_task("<task_> x"));
    assert!(!starts_task("[Task x]"));
    assert!(!starts_task("task_1"));
}

#[test]
fn breakpoints_follow_the_python_selection() {
    assert_eq!(breakpoints(&[]), Vec::<usize>::new());
    assert_eq!(
        breakpoints(&convo(&[("u", "<task_1> a")])),
        Vec::<usize>::new()
    );
    // Last assistant (3), then the last assistant before the current task (1).
    let m = convo(&[
        ("u", "<task_1> a"),
        ("a", "x"),
        ("u", "<task_2> b"),
        ("a", "y"),
        ("u", "obs"),
    ]);
    assert_eq!(breakpoints(&m), vec![3, 1]);
    // No task marker: only the last assistant.
    let m = convo(&[("u", "hi"), ("a", "x"), ("u", "obs"), ("a", "y")]);
    assert_eq!(breakpoints(&m), vec![3]);
    // Six assistant messages in the task and none before: last, then index (6/5)*5-1 = 4th of the task.
    let mut spec = vec![("u", "<task_1> go")];
    for _ in 0..6 {
        spec.push(("a", "step"));
        spec.push(("u", "obs"));
    }
    let m = convo(&spec);
    assert_eq!(breakpoints(&m), vec![11, 9]);
}

#[test]
fn body_has_cached_system_breakpoints_and_thinking() {
    let mut cfg = ProviderConfig::new(ProviderKind::Anthropic, "claude-x");
    cfg.thinking = Some(2000);
    cfg.max_tokens = 1000;
    cfg.temperature = 0.2;
    let m = convo(&[("u", "<task_1> a"), ("a", "x"), ("u", "obs")]);
    let body = json_body(
        &request_body(
            &cfg,
            &ChatRequest {
                system_dynamic: "",
                system: "SYS",
                messages: &m,
                cache_marks: None,
            },
        )
        .unwrap(),
    );
    assert_eq!(
        body,
        json!({
            "model": "claude-x",
            "max_tokens": 3000,
            "temperature": 1.0,
            "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "system": [{"type": "text", "text": "SYS", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "<task_1> a"},
                {"role": "assistant", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": "obs"},
            ],
        })
    );
    cfg.thinking = None;
    cfg.stream = false;
    let body = json_body(
        &request_body(
            &cfg,
            &ChatRequest {
                system_dynamic: "",
                system: "",
                messages: &m,
                cache_marks: Some(&[0, 1, 2]),
            },
        )
        .unwrap(),
    );
    assert!(body["messages"][0]["content"][0]["cache_control"].is_object());
    assert!(
        body["messages"][2]["content"].is_string(),
        "at most two message breakpoints"
    );
    assert!(body.get("system").is_none());
    assert!(body.get("stream").is_none());
    assert!(body.get("thinking").is_none());
    assert_eq!(body["max_tokens"], json!(1000));
}

#[test]
fn error_event_is_an_api_error() {
    let mut acc = Accumulator::default();
    let err = on_event(
        &mut acc,
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "the model server reported `overloaded_error`: Overloaded"
    );
}
