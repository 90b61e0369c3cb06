use codepilot_protocol::Usage;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

const ANSWER: &str = "Héllo wörld 🦀! ```codepilot\nprint('x')\n```";

fn usage() -> Usage {
    Usage {
        input_tokens: 70,
        output_tokens: 12,
        cache_read_tokens: 30,
        cache_write_tokens: 0,
        reasoning_tokens: 5,
        calls: 0,
    }
}

#[tokio::test]
async fn streamed_answer_with_key_and_usage() {
    let server = ScriptedServer::start(vec![
        Turn::answer(ANSWER).with_usage(usage()).with_chunk_bytes(3),
    ])
    .await
    .unwrap();
    let mut cfg = openai_cfg(&server, ProviderKind::OpenAi, true);
    cfg.api_key = Some("sk-openai-test".into());
    let (result, seen) = call(cfg).await;
    let done = result.unwrap();
    assert_eq!(done.text, ANSWER);
    assert_eq!(final_text(&seen), ANSWER);
    assert!(text_deltas(&seen) > 3, "{seen:?}");
    assert_eq!(
        done.usage,
        Usage {
            calls: 1,
            ..usage()
        }
    );
    assert_eq!(done.stop_reason.as_deref(), Some("stop"));

    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer sk-openai-test"));
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(req.header("accept"), Some("text/event-stream"));
    assert_eq!(
        req.body,
        json!({
            "model": "model-test",
            "temperature": 0.0,
            "max_completion_tokens": 4096,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "You are a test."},
                {"role": "user", "content": "<task_1> list files"},
                {"role": "assistant", "content": "```codepilot\nexecute('main', 'ls')\n```"},
                {"role": "user", "content": "[EXECUTION RESULT]\na.txt"},
            ],
        })
    );
}

#[tokio::test]
async fn local_servers_get_no_authorization_header() {
    for kind in [
        ProviderKind::Ollama,
        ProviderKind::Vllm,
        ProviderKind::LlamaCpp,
        ProviderKind::OpenAiCompatible,
    ] {
        let server = ScriptedServer::start(vec![Turn::answer(ANSWER)])
            .await
            .unwrap();
        let (result, _) = call(openai_cfg(&server, kind, true)).await;
        assert_eq!(result.unwrap().text, ANSWER, "{kind}");
        let req = &server.requests()[0];
        assert_eq!(req.header("authorization"), None, "{kind}");
        assert_eq!(req.body["max_tokens"], json!(4096), "{kind}");
    }
}

#[tokio::test]
async fn whole_answer_without_streaming() {
    let server = ScriptedServer::start(vec![Turn::answer(ANSWER).with_usage(usage())])
        .await
        .unwrap();
    let (result, seen) =
        call(openai_cfg(&server, ProviderKind::Groq, false).clone_with_key()).await;
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
    assert_eq!(req.body.get("stream_options"), None);
    assert_eq!(req.header("authorization"), Some("Bearer gsk-test"));
}

trait WithKey {
    fn clone_with_key(self) -> Self;
}

impl WithKey for ProviderConfig {
    fn clone_with_key(mut self) -> Self {
        self.api_key = Some("gsk-test".into());
        self
    }
}

#[tokio::test]
async fn reasoning_content_becomes_thinking() {
    for stream in [true, false] {
        let server = ScriptedServer::start(vec![Turn::answer("answer").with_thinking("because")])
            .await
            .unwrap();
        let (result, seen) = call(openai_cfg(&server, ProviderKind::Vllm, stream)).await;
        assert_eq!(result.unwrap().text, "answer");
        let thinking: String = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Thinking(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(thinking, "because");
    }
}

#[tokio::test]
async fn a_stream_without_done_but_with_finish_reason_is_complete() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                : keep-alive\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n";
    let server = ScriptedServer::start(vec![Turn::raw(200, "text/event-stream", body)])
        .await
        .unwrap();
    let (result, seen) = call(openai_cfg(&server, ProviderKind::LlamaCpp, true)).await;
    let done = result.unwrap();
    assert_eq!(done.text, "Hello");
    assert_eq!(done.stop_reason.as_deref(), Some("length"));
    assert_eq!(
        done.usage,
        Usage {
            calls: 1,
            ..Usage::default()
        }
    );
    assert_eq!(retries(&seen), vec![]);
}

#[tokio::test]
async fn without_include_usage_the_stream_still_completes() {
    // A server that ignores stream_options: no usage chunk at all.
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n\
                data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let server = ScriptedServer::start(vec![Turn::raw(200, "text/event-stream", body)])
        .await
        .unwrap();
    let (result, _) = call(openai_cfg(&server, ProviderKind::Ollama, true)).await;
    assert_eq!(result.unwrap().text, "x");
}

#[tokio::test]
async fn openai_compatible_needs_a_base_url() {
    let cfg = ProviderConfig::new(ProviderKind::OpenAiCompatible, "m");
    let err = build_provider(cfg).err().unwrap();
    insta::assert_snapshot!("compatible_without_base_url", err.to_string());
    let mut cfg = ProviderConfig::new(ProviderKind::OpenAiCompatible, "m");
    cfg.base_url = Some("localhost:8000".into());
    let err = build_provider(cfg).err().unwrap();
    assert!(matches!(err, LlmError::InvalidConfig(_)), "{err}");
}

#[tokio::test]
async fn a_non_json_body_is_a_decode_error() {
    let server = ScriptedServer::start(vec![Turn::raw(
        200,
        "text/html",
        "<html>proxy login</html>",
    )])
    .await
    .unwrap();
    let (result, _) = call(openai_cfg(&server, ProviderKind::Ollama, false)).await;
    let err = result.unwrap_err();
    assert!(matches!(err, LlmError::Decode(_)), "{err}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("<html>proxy login</html>"),
        "{err}"
    );
}
