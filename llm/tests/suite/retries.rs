use std::time::Duration;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::*;

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let server = ScriptedServer::start(vec![Turn::status(429, Some(1)), Turn::answer("fine")])
        .await
        .unwrap();
    let mut cfg = anthropic_cfg(&server, true);
    cfg.retry.max_backoff = Duration::from_secs(5);
    let (result, seen) = call(cfg).await;
    let done = result.unwrap();
    assert_eq!(done.text, "fine");
    assert_eq!(done.attempts, 2);
    let r = retries(&seen);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1), (2, Duration::from_secs(1)));
    assert!(r[0].2.contains("HTTP 429"), "{}", r[0].2);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn retry_after_is_capped_at_max_backoff() {
    let server = ScriptedServer::start(vec![Turn::status(429, Some(3600)), Turn::answer("fine")])
        .await
        .unwrap();
    let (result, seen) = call(openai_cfg(&server, ProviderKind::Ollama, true)).await;
    assert_eq!(result.unwrap().text, "fine");
    assert_eq!(retries(&seen)[0].1, Duration::from_millis(200));
}

#[tokio::test]
async fn server_errors_are_retried_in_both_formats() {
    for (anthropic, stream) in [(true, true), (true, false), (false, true), (false, false)] {
        let server = ScriptedServer::start(vec![
            Turn::status(500, None),
            Turn::status(503, None),
            Turn::answer("third time"),
        ])
        .await
        .unwrap();
        let cfg = if anthropic {
            anthropic_cfg(&server, stream)
        } else {
            openai_cfg(&server, ProviderKind::OpenAiCompatible, stream)
        };
        let (result, seen) = call(cfg).await;
        let done = result.unwrap();
        assert_eq!(done.text, "third time");
        assert_eq!(done.attempts, 3);
        let r = retries(&seen);
        assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3]);
        assert!(r[0].2.contains("HTTP 500"), "{}", r[0].2);
        assert!(r.iter().all(|r| r.1 <= Duration::from_millis(200)));
    }
}

#[tokio::test]
async fn a_mid_stream_disconnect_is_retried_and_partial_text_discarded() {
    let answer = "The whole answer, which is long enough to be cut in the middle.";
    for anthropic in [true, false] {
        let server = ScriptedServer::start(vec![
            Turn::disconnect_after(answer, 700),
            Turn::answer(answer),
        ])
        .await
        .unwrap();
        let cfg = if anthropic {
            anthropic_cfg(&server, true)
        } else {
            openai_cfg(&server, ProviderKind::Vllm, true)
        };
        let (result, seen) = call(cfg).await;
        let done = result.unwrap();
        assert_eq!(done.text, answer);
        assert_eq!(done.attempts, 2);
        let retry_at = seen
            .iter()
            .position(|s| matches!(s, Seen::Retry { .. }))
            .unwrap();
        assert!(
            retry_at > 0,
            "some text should have streamed before the cut: {seen:?}"
        );
        assert_eq!(final_text(&seen), answer);
        let r = retries(&seen);
        assert_eq!(r.len(), 1);
        assert!(r[0].2.contains("interrupted"), "{}", r[0].2);
    }
}

#[tokio::test]
async fn a_clean_end_without_the_final_event_is_retried() {
    let truncated = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}\n\n\
                     event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"par\"}}\n\n";
    let server = ScriptedServer::start(vec![
        Turn::raw(200, "text/event-stream", truncated),
        Turn::answer("full"),
    ])
    .await
    .unwrap();
    let (result, seen) = call(anthropic_cfg(&server, true)).await;
    assert_eq!(result.unwrap().text, "full");
    assert_eq!(seen.first(), Some(&Seen::Text("par".into())));
    assert_eq!(final_text(&seen), "full");
}

#[tokio::test]
async fn a_non_streamed_disconnect_is_retried() {
    let server =
        ScriptedServer::start(vec![Turn::disconnect_after("abc", 20), Turn::answer("abc")])
            .await
            .unwrap();
    let (result, seen) = call(openai_cfg(&server, ProviderKind::Ollama, false)).await;
    assert_eq!(result.unwrap().text, "abc");
    assert_eq!(retries(&seen).len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_carry_hints() {
    let server = ScriptedServer::start(vec![Turn::status(401, None), Turn::answer("never")])
        .await
        .unwrap();
    let (result, seen) = call(anthropic_cfg(&server, true)).await;
    let err = result.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(401));
    assert_eq!(retries(&seen), vec![]);
    assert_eq!(server.remaining(), 1);
    insta::assert_snapshot!("anthropic_401", err.to_string());

    let server = ScriptedServer::start(vec![Turn::status(400, None), Turn::answer("never")])
        .await
        .unwrap();
    let (result, _) = call(openai_cfg(&server, ProviderKind::Ollama, false)).await;
    let err = result.unwrap_err();
    assert_eq!(server.remaining(), 1);
    insta::assert_snapshot!("openai_400", err.to_string());
}

#[tokio::test]
async fn a_wrong_path_gets_the_404_hint() {
    let server = ScriptedServer::start(vec![Turn::answer("never")])
        .await
        .unwrap();
    let mut cfg = openai_cfg(&server, ProviderKind::OpenAiCompatible, true);
    cfg.base_url = Some(format!("{}/wrong", server.base_url()));
    let (result, _) = call(cfg).await;
    let err = result.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let msg = err
        .to_string()
        .replace(&server.base_url(), "http://127.0.0.1:<PORT>");
    insta::assert_snapshot!("wrong_path_404", msg);
    assert_eq!(server.remaining(), 1, "a 404 consumes no turn");
}

#[tokio::test]
async fn retries_give_up_with_the_last_error() {
    let server = ScriptedServer::start(vec![Turn::status(503, None); 3])
        .await
        .unwrap();
    let mut cfg = anthropic_cfg(&server, true);
    cfg.retry.max_retries = 2;
    let (result, seen) = call(cfg).await;
    let err = result.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(retries(&seen).len(), 2);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn an_empty_script_fails_loudly() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let mut cfg = openai_cfg(&server, ProviderKind::Ollama, true);
    cfg.retry = RetryPolicy::none();
    let (result, _) = call(cfg).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("scripted server: no turns left"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_network_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = ProviderConfig::new(ProviderKind::Ollama, "m");
    cfg.base_url = Some(format!("http://127.0.0.1:{port}/v1"));
    cfg.retry = fast_retry();
    cfg.retry.max_retries = 1;
    let (result, seen) = call(cfg).await;
    let err = result.unwrap_err();
    assert!(matches!(err, LlmError::Network { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(retries(&seen).len(), 1);
    assert!(
        err.to_string()
            .contains(&format!("http://127.0.0.1:{port}/v1/chat/completions")),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_server_times_out_as_a_retryable_network_error() {
    let server = ScriptedServer::start(vec![Turn::delay(30_000, Turn::answer("late"))])
        .await
        .unwrap();
    let mut cfg = anthropic_cfg(&server, true);
    cfg.request_timeout = Duration::from_millis(200);
    cfg.retry = RetryPolicy::none();
    let (result, _) = call(cfg).await;
    let err = result.unwrap_err();
    assert!(matches!(err, LlmError::Network { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("no response within 0.2 s"),
        "{err}"
    );
}
