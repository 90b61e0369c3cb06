//! Traces in the daemon (SPEC §23): `turn/start {_meta: {traceparent}}` parents the turn's run span; a value that
//! is not a trace context is refused with the reason.

use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use serde_json::json;

use super::support::DONE;
use super::support::TestDaemon;
use super::support::agent_yaml;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_joins_the_trace_its_client_names() {
    let model = ScriptedServer::start(vec![Turn::answer(DONE)])
        .await
        .unwrap();
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let mut c = d.client().await;
    let work = d.work_dir();
    let extra = format!("  observability:\n    endpoint: {}\n", model.base_url());
    let session = c.start_session(agent_yaml(&model, &work, &extra)).await;

    let err = c
        .call(
            "turn/start",
            json!({"session_id": session, "text": "x", "_meta": {"traceparent": "00-zz"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("_meta.traceparent"),
        "{err}"
    );

    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    c.call(
        "turn/start",
        json!({"session_id": session, "text": "work", "_meta": {"traceparent": traceparent, "other": 1}}),
    )
    .await
    .unwrap();
    c.until_completed().await;
    // Closing the session sends its spans at once.
    c.call("session/close", json!({"session_id": session}))
        .await
        .unwrap();
    let spans = model
        .wait_for_spans(std::time::Duration::from_secs(10), |s| {
            s.iter().any(|s| s.name == "invoke_agent DaemonTest")
        })
        .await;
    let run = spans
        .iter()
        .find(|s| s.name == "invoke_agent DaemonTest")
        .unwrap_or_else(|| panic!("no run span: {spans:#?}"));
    assert_eq!(run.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(run.parent_span_id, "b7ad6b7169203331");
    assert_eq!(
        run.attr("codepilot.session_id").as_deref(),
        Some(session.as_str())
    );
    assert!(
        spans.iter().all(|s| s.trace_id == run.trace_id),
        "{spans:#?}"
    );
}
