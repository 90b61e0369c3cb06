use std::time::Duration;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::*;

/// Dropping the future aborts the HTTP request: the server sees the client go away during its delay.
#[tokio::test]
async fn dropping_the_future_aborts_the_request() {
    for anthropic in [true, false] {
        let server = ScriptedServer::start(vec![Turn::delay(60_000, Turn::answer("too late"))])
            .await
            .unwrap();
        let cfg = if anthropic {
            anthropic_cfg(&server, true)
        } else {
            openai_cfg(&server, ProviderKind::Ollama, false)
        };
        let provider = build_provider(cfg).unwrap();
        let messages: Vec<WireMessage> = conversation().iter().map(WireMessage::from).collect();
        let outcome = tokio::time::timeout(Duration::from_millis(300), async {
            provider
                .complete(
                    ChatRequest {
                        system_dynamic: "",
                        system: "s",
                        messages: &messages,
                        cache_marks: None,
                    },
                    &mut |_| {},
                )
                .await
        })
        .await;
        assert!(
            outcome.is_err(),
            "the call cannot finish before the server's delay"
        );
        // The request reached the server, and the server noticed the disconnect long before its 60 s delay.
        let mut waited = Duration::ZERO;
        while server.cancelled() == 0 && waited < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        assert_eq!(server.requests().len(), 1);
        assert_eq!(server.cancelled(), 1);
    }
}
