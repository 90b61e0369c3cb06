//! `turn/start {limits, output_schema}` (SPEC §21): the turn's limits and schema reach the runtime, and
//! `turn/completed` carries what the turn spent and its structured result.

use codepilot::protocol::Usage;
use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use serde_json::json;

use super::support::TestDaemon;
use super::support::agent_yaml;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_gets_its_limits_and_schema_and_reports_its_spend() {
    let usage = Usage {
        input_tokens: 30_000,
        output_tokens: 100,
        calls: 1,
        ..Usage::default()
    };
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\n{\"ok\": true}\n```").with_usage(usage),
        Turn::answer("```codepilot\nprint(1)\n```").with_usage(usage),
        Turn::answer("```codepilot\nprint(2)\n```").with_usage(usage),
        Turn::answer("```codepilot\nprint(3)\n```").with_usage(usage),
    ])
    .await
    .unwrap();
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let work = d.work_dir();
    let mut c = d.client().await;
    let id = c.start_session(agent_yaml(&server, &work, "")).await;
    let schema =
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
    c.call(
        "turn/start",
        json!({"session_id": id, "text": "check", "output_schema": schema}),
    )
    .await
    .unwrap();
    let done = c.until_completed().await.pop().unwrap();
    assert_eq!(done["method"], "turn/completed", "{done}");
    let params = &done["params"];
    assert_eq!(
        params["outcome"]["structured"],
        json!({"ok": true}),
        "{params}"
    );
    assert_eq!(params["spend"]["tokens"]["input_tokens"], 30_000);
    assert_eq!(params["spend"]["estimated"], false);

    c.call(
        "turn/start",
        json!({"session_id": id, "text": "loop", "limits": {"max_total_tokens": 64000}}),
    )
    .await
    .unwrap();
    let seen = c.until_completed().await;
    let done = seen.last().unwrap();
    assert_eq!(
        done["params"]["outcome"]["status"], "limit_exceeded",
        "{done}"
    );
    assert_eq!(done["params"]["outcome"]["limit"], "max_total_tokens");
    assert_eq!(done["params"]["spend"]["tokens"]["input_tokens"], 60_000);
    assert!(
        seen.iter()
            .any(|m| m["params"]["event"]["type"] == "limit_warning"),
        "the 80 % warning reaches clients"
    );

    let refused = c
        .call(
            "turn/start",
            json!({"session_id": id, "text": "x", "limits": {"max_tokens": 5}}),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("max_tokens"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_events_reach_clients_with_its_agent_id() {
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\na = spawn_subagent(\"list the files\")\nprint(await_subagent(a))\n```",
        ),
        Turn::answer("```codepilot\nprint(find(\"*\", scope=\"files\"))\n```"),
        Turn::answer("```completion\nno files\n```"),
        Turn::answer("```completion\ndelegated\n```"),
    ])
    .await
    .unwrap();
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let work = d.work_dir();
    let mut c = d.client().await;
    let id = c.start_session(agent_yaml(&server, &work, "")).await;
    c.call("turn/start", json!({"session_id": id, "text": "delegate"}))
        .await
        .unwrap();
    let seen = c.until_completed().await;
    let done = seen.last().unwrap();
    assert_eq!(done["params"]["outcome"]["summary"], "delegated", "{done}");
    let worker: Vec<_> = seen
        .iter()
        .filter(|m| m["params"]["agent_id"] == 1)
        .collect();
    assert!(
        worker
            .iter()
            .any(|m| m["params"]["event"]["type"] == "tool_call"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| m["params"]["event"]["type"] == "subagent_finish")
    );
}
