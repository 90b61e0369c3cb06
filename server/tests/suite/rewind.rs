//! `session/checkpoints` and `session/rewind` (SPEC §19): listing, a preview that changes nothing, the refusal
//! while a turn runs, the `rewound` event every subscriber gets, and errors a client can act on.

use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use serde_json::json;

use super::support::DONE;
use super::support::TestDaemon;
use super::support::agent_yaml;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_lists_previews_and_rewinds_and_every_subscriber_hears_it() {
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```"),
        Turn::answer(DONE),
        Turn::delay(1500, Turn::answer(DONE)),
    ])
    .await
    .unwrap();
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let work = d.work_dir();
    let mut c = d.client().await;
    let id = c.start_session(agent_yaml(&server, &work, "")).await;
    let mut watcher = d.client().await;
    watcher
        .call("session/subscribe", json!({"session_id": id}))
        .await
        .unwrap();
    c.call("turn/start", json!({"session_id": id, "text": "write a"}))
        .await
        .unwrap();
    c.until_completed().await;
    assert!(work.join("a.txt").exists());

    let listed = c
        .call("session/checkpoints", json!({"session_id": id}))
        .await
        .unwrap();
    let checkpoints = listed["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 1, "{listed}");
    assert_eq!(checkpoints[0]["id"], "1");
    assert_eq!(checkpoints[0]["kind"], "turn");

    let preview = c
        .call(
            "session/rewind",
            json!({"session_id": id, "checkpoint": "1", "dry_run": true}),
        )
        .await
        .unwrap();
    assert_eq!(preview["files_deleted"], 1, "{preview}");
    assert_eq!(preview["messages"], 0);
    assert_eq!(preview["saved_as"], "");
    assert!(work.join("a.txt").exists(), "a preview changes nothing");

    // Refused while a turn runs.
    c.call("turn/start", json!({"session_id": id, "text": "slow"}))
        .await
        .unwrap();
    let busy = c
        .call(
            "session/rewind",
            json!({"session_id": id, "checkpoint": "1"}),
        )
        .await
        .unwrap_err();
    assert_eq!(busy["code"], 1002, "{busy}");
    c.until_completed().await;

    let unknown = c
        .call(
            "session/rewind",
            json!({"session_id": id, "checkpoint": "7"}),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown["code"], 1006, "{unknown}");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("no checkpoint \"7\"; it has 1, 2"),
        "{unknown}"
    );
    let bad_scope = c
        .call(
            "session/rewind",
            json!({"session_id": id, "checkpoint": "1", "scope": "all"}),
        )
        .await
        .unwrap_err();
    assert_eq!(bad_scope["code"], -32602, "{bad_scope}");

    let done = c
        .call(
            "session/rewind",
            json!({"session_id": id, "checkpoint": "1"}),
        )
        .await
        .unwrap();
    assert_eq!(done["scope"], "both");
    assert_eq!(done["files_deleted"], 1);
    assert_eq!(done["saved_as"], "rewind-1");
    assert!(!work.join("a.txt").exists());
    let read = c
        .call("session/read", json!({"session_id": id}))
        .await
        .unwrap();
    assert_eq!(read["messages"], json!([]), "{read}");

    // The other client hears the rewind as an event between turns.
    let heard = loop {
        let msg = watcher.next().await;
        if msg["method"] == "event" && msg["params"]["event"]["type"] == "rewound" {
            break msg;
        }
    };
    assert_eq!(heard["params"]["turn_id"], json!(null));
    assert_eq!(heard["params"]["event"]["saved_as"], "rewind-1");
    assert_eq!(heard["params"]["event"]["files_deleted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_exports_the_session_as_a_trajectory() {
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let work = d.work_dir();
    let mut c = d.client().await;
    let id = c.start_session(agent_yaml(&server, &work, "")).await;
    c.call("turn/start", json!({"session_id": id, "text": "write a"}))
        .await
        .unwrap();
    c.until_completed().await;
    let exported = c
        .call("session/export", json!({"session_id": id}))
        .await
        .unwrap();
    assert_eq!(exported["messages"], 4, "{exported}");
    assert!(
        exported["events"].as_u64().unwrap() > 0,
        "the daemon stores events: {exported}"
    );
    let lines: Vec<serde_json::Value> = exported["jsonl"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "header");
    assert!(
        lines[0]["agent_yaml"].as_str().is_some(),
        "the daemon records its agent"
    );
    assert_eq!(lines.last().unwrap()["type"], "end");
    let answer = lines.iter().find(|l| l["role"] == "assistant").unwrap();
    assert!(
        answer["raw"]
            .as_str()
            .unwrap()
            .contains("filename=a.txt\nA\n"),
        "{answer}"
    );
    assert!(lines.iter().any(|l| l["type"] == "event"));
    let unknown = c
        .call("session/export", json!({"session_id": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(unknown["code"], 1001, "{unknown}");
}
