use codepilot_protocol::Usage;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

const ANSWER: &str = "I will look around.\n```codepilot\nr = execute('main', 'ls -la')\nprint(r['exit_code'])\n```\n";

fn usage() -> Usage {
    Usage {
        input_tokens: 120,
        output_tokens: 33,
        cache_read_tokens: 1000,
        cache_write_tokens: 50,
        reasoning_tokens: 0,
        calls: 0,
    }
}

#[tokio::test]
async fn streamed_answer_is_reassembled_with_usage() {
    let server = ScriptedServer::start(vec![Turn::answer(ANSWER).with_usage(usage())])
        .await
        .unwrap();
    let (result, seen) = call(anthropic_cfg(&server, true)).await;
    let done = result.unwrap();
    assert_eq!(done.text, ANSWER);
    assert_eq!(final_text(&seen), ANSWER);
    assert!(
        text_deltas(&seen) > 5,
        "expected several deltas, got {seen:?}"
    );
    assert_eq!(
        done.usage,
        Usage {
            calls: 1,
            ..usage()
        }
    );
    assert_eq!(done.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(done.attempts, 1);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("sk-ant-test-key"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.body,
        json!({
            "model": "claude-test",
            "max_tokens": 4096,
            "temperature": 0.0,
            "stream": true,
            "system": [{"type": "text", "text": "You are a test.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "<task_1> list files"},
                {"role": "assistant", "content": [{"type": "text", "text": "```codepilot\nexecute('main', 'ls')\n```", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": "[EXECUTION RESULT]\na.txt"},
            ],
        })
    );
}

#[tokio::test]
async fn whole_answer_without_streaming() {
    let server = ScriptedServer::start(vec![Turn::answer(ANSWER).with_usage(usage())])
        .await
        .unwrap();
    let (result, seen) = call(anthropic_cfg(&server, false)).await;
    let done = result.unwrap();
    assert_eq!(done.text, ANSWER);
    assert_eq!(seen, vec![Seen::Text(ANSWER.to_owned())]);
    assert_eq!(
        done.usage,
        Usage {
            calls: 1,
            ..usage()
        }
    );
    let req = &server.requests()[0];
    assert_eq!(req.body.get("stream"), None);
    assert_ne!(req.header("accept"), Some("text/event-stream"));
}

#[tokio::test]
async fn thinking_is_requested_and_streamed_separately() {
    for stream in [true, false] {
        let server = ScriptedServer::start(vec![
            Turn::answer("done").with_thinking("Let me think about it carefully."),
        ])
        .await
        .unwrap();
        let mut cfg = anthropic_cfg(&server, stream);
        cfg.thinking = Some(4000);
        cfg.max_tokens = 2000;
        cfg.temperature = 0.3;
        let (result, seen) = call(cfg).await;
        assert_eq!(result.unwrap().text, "done");
        let thinking: String = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Thinking(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(thinking, "Let me think about it carefully.");
        let body = &server.requests()[0].body;
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 4000})
        );
        assert_eq!(body["temperature"], json!(1.0));
        assert_eq!(body["max_tokens"], json!(6000));
    }
}

#[tokio::test]
async fn a_small_thinking_budget_is_rejected_up_front() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let mut cfg = anthropic_cfg(&server, true);
    cfg.thinking = Some(100);
    let err = build_provider(cfg).err().unwrap();
    assert!(matches!(err, LlmError::InvalidConfig(_)));
    insta::assert_snapshot!("thinking_budget_too_small", err.to_string());
}

#[tokio::test]
async fn an_overloaded_error_event_is_retried() {
    let overloaded = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}\n\n\
                      event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let server = ScriptedServer::start(vec![
        Turn::raw(200, "text/event-stream", overloaded),
        Turn::answer("ok"),
    ])
    .await
    .unwrap();
    let (result, seen) = call(anthropic_cfg(&server, true)).await;
    let done = result.unwrap();
    assert_eq!(done.text, "ok");
    assert_eq!(done.attempts, 2);
    let r = retries(&seen);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].2,
        "the model server reported `overloaded_error`: Overloaded"
    );
}
