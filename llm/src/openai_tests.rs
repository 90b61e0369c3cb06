use crate::WireMessage;
use codepilot_protocol::Role;
use codepilot_protocol::Usage;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

#[test]
fn body_shape_per_kind() {
    let m = [
        WireMessage::new(Role::User, "hi"),
        WireMessage::new(Role::Assistant, "yo"),
    ];
    let json_body = |b: Result<Vec<u8>>| serde_json::from_slice::<Value>(&b.unwrap()).unwrap();
    let cfg = ProviderConfig::new(ProviderKind::OpenAi, "gpt-4o");
    let body = json_body(request_body(
        &cfg,
        &ChatRequest {
            system_dynamic: "",
            system: "SYS",
            messages: &m,
            cache_marks: Some(&[1]),
        },
    ));
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o",
            "temperature": 0.0,
            "max_completion_tokens": 4096,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "SYS"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
            ],
        })
    );
    let mut cfg = ProviderConfig::new(ProviderKind::Vllm, "qwen");
    cfg.stream = false;
    let body = json_body(request_body(
        &cfg,
        &ChatRequest {
            system_dynamic: "",
            system: "",
            messages: &m,
            cache_marks: None,
        },
    ));
    assert_eq!(body["max_tokens"], json!(4096));
    assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn quirks_are_tolerated() {
    let mut acc = Accumulator::default();
    let mut seen = Vec::new();
    let mut sink = |d: StreamDelta<'_>| seen.push(format!("{d:?}"));
    for line in [
        r#"{"choices":[{"delta":{"role":"assistant"},"finish_reason":null}],"usage":{}}"#,
        "not json at all",
        r#"{"choices":[{"delta":{"reasoning_content":"hmm"},"finish_reason":""}]}"#,
        r#"{"choices":[{"delta":{"content":"Hel"},"finish_reason":""}],"usage":null}"#,
        r#"{"choices":[{"delta":{"content":"lo"}}]}"#,
        r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":7,"prompt_cache_hit_tokens":60}}"#,
    ] {
        on_event(&mut acc, line, &mut sink).unwrap();
    }
    assert!(acc.finished && !acc.done);
    on_event(&mut acc, " [DONE] ", &mut sink).unwrap();
    assert!(acc.done);
    assert_eq!(
        seen,
        vec![r#"Thinking("hmm")"#, r#"Text("Hel")"#, r#"Text("lo")"#]
    );
    let c = acc.into_completion();
    assert_eq!(c.text, "Hello");
    assert_eq!(c.stop_reason.as_deref(), Some("stop"));
    assert_eq!(
        c.usage,
        Usage {
            reasoning_tokens: 0,
            input_tokens: 40,
            output_tokens: 7,
            cache_read_tokens: 60,
            cache_write_tokens: 0,
            calls: 1
        }
    );
}

#[test]
fn error_objects_become_api_errors() {
    let mut acc = Accumulator::default();
    let err = on_event(
        &mut acc,
        r#"{"error":{"message":"boom","type":"server_error"}}"#,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.is_retryable());
    let err = parse_response(
        &json!({"error": {"message": "bad model", "code": "model_not_found"}}),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "the model server reported `model_not_found`: bad model"
    );
    let err = parse_response(&json!({"weird": true}), &mut |_| {}).unwrap_err();
    assert!(matches!(err, LlmError::Decode(_)));
}

#[test]
fn whole_response_with_content_parts() {
    let mut texts = Vec::new();
    let c = parse_response(
        &json!({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "finish_reason": ""}]}),
        &mut |d| texts.push(format!("{d:?}")),
    )
    .unwrap();
    assert_eq!(c.text, "ab");
    assert_eq!(c.stop_reason, None);
    assert_eq!(
        c.usage,
        Usage {
            calls: 1,
            ..Usage::default()
        }
    );
    assert_eq!(texts, vec![r#"Text("ab")"#]);
}
