//! The daemon's JSON-RPC contract (SPEC §13) over a Unix socket.

use std::time::Duration;

use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::Client;
use super::support::DONE;
use super::support::TestDaemon;
use super::support::agent_yaml;
use super::support::seqs;

const GATED: &str = "  tools:\n    - {name: execute, config: {require_permission: true}}\n";

/// A model that runs one gated command (`echo hi > made.txt`), then completes.
async fn gated_model() -> ScriptedServer {
    ScriptedServer::start(vec![
        Turn::answer(answer("execute(\"main\", \"echo hi > made.txt\")")),
        Turn::answer(DONE),
    ])
    .await
    .unwrap()
}

fn answer(code: &str) -> String {
    format!("Working.\n```codepilot\n{code}\n```")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_streams_numbered_events_and_completes() {
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let model = ScriptedServer::start(vec![
        Turn::answer(answer("print(1 + 1)")),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let mut c = d.client().await;
    let session = c.start_session(agent_yaml(&model, &d.work_dir(), "")).await;
    let turn = c
        .call("turn/start", json!({"session_id": session, "text": "add"}))
        .await
        .unwrap();
    assert_eq!(turn["turn_id"], "turn-1");
    let seen = c.until_completed().await;
    let seqs = seqs(&seen);
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "numbered from 1 without gaps"
    );
    assert_eq!(seen[0]["params"]["event"]["type"], "start");
    assert!(seen.iter().all(|m| m["jsonrpc"] == "2.0"));
    let done = seen.last().unwrap();
    assert_eq!(done["method"], "turn/completed");
    assert_eq!(done["params"]["turn_id"], "turn-1");
    assert_eq!(
        done["params"]["outcome"],
        json!({"status": "completed", "summary": "done", "steps": 2})
    );
    let observed = seen.iter().any(|m| {
        m["params"]["event"]["type"] == "tool_result" || m["params"]["event"]["type"] == "step"
    });
    assert!(observed);

    let list = c.call("session/list", json!({})).await.unwrap();
    assert_eq!(list["sessions"][0]["session_id"], session.as_str());
    assert_eq!(list["sessions"][0]["status"], "idle");
    assert_eq!(list["sessions"][0]["title"], "add");
    let terminals = c
        .call("terminal/list", json!({"session_id": session}))
        .await
        .unwrap();
    assert_eq!(terminals["terminals"][0]["name"], "main");
    assert!(terminals["terminals"][0]["cols"].as_u64().unwrap() > 0);
    let attach = &terminals["terminals"][0]["attach"];
    assert!(
        attach["socket"].as_str().unwrap().ends_with("main.sock"),
        "{attach}"
    );
    assert!(
        !attach["token"].as_str().unwrap().is_empty(),
        "local clients may attach directly"
    );
    let resumed = c
        .call("session/resume", json!({"session_id": session}))
        .await
        .unwrap();
    assert_eq!(resumed["messages"].as_array().unwrap().len(), 4);
    c.call("session/close", json!({"session_id": session}))
        .await
        .unwrap();
    let gone = c
        .call("turn/start", json!({"session_id": session, "text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(gone["code"], 1001);
    let stored = c.call("session/list", json!({})).await.unwrap();
    assert_eq!(stored["sessions"][0]["status"], "stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_and_the_connection_goes_on() {
    let d = TestDaemon::start(DaemonConfig {
        max_message_bytes: 4096,
        ..DaemonConfig::default()
    })
    .await;
    let mut c = Client::connect(&d.socket).await;
    let early = c.call("session/list", json!({})).await.unwrap_err();
    assert_eq!(early["code"], -32002);
    c.send_raw("{not json").await;
    assert_eq!(c.read().await["error"]["code"], -32700);
    c.send_raw(r#"{"jsonrpc":"1.0","id":9,"method":"initialize"}"#)
        .await;
    assert_eq!(c.read().await["error"]["code"], -32600);
    c.send_raw(&"x".repeat(10_000)).await;
    assert_eq!(c.read().await["error"]["code"], -32003);
    c.call("initialize", json!({"client": {"name": "t"}}))
        .await
        .unwrap();
    let unknown = c.call("session/destroy", json!({})).await.unwrap_err();
    assert_eq!(unknown["code"], -32601);
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("session/start")
    );
    let bad = c
        .call("turn/start", json!({"session_id": "s"}))
        .await
        .unwrap_err();
    assert_eq!(bad["code"], -32602);
    let config = c
        .call(
            "session/start",
            json!({"agent": "agent:\n  name: x\n  model:\n    provider: nope\n    name: m\n"}),
        )
        .await
        .unwrap_err();
    assert_eq!(config["code"], 1004);
    assert!(
        config["message"].as_str().unwrap().contains("nope"),
        "{config}"
    );
    let missing = c
        .call("session/subscribe", json!({"session_id": "absent"}))
        .await
        .unwrap_err();
    assert_eq!(missing["code"], 1001);
    // Another client was never disturbed.
    let mut other = d.client().await;
    other.call("session/list", json!({})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_after_seq_misses_nothing() {
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let slow = |t: String| Turn::delay(150, Turn::answer(t));
    let model = ScriptedServer::start(vec![
        slow(answer("print('a')")),
        slow(answer("print('b')")),
        slow(answer("print('c')")),
        slow(DONE.to_owned()),
    ])
    .await
    .unwrap();
    let mut first = d.client().await;
    let session = first
        .start_session(agent_yaml(&model, &d.work_dir(), ""))
        .await;
    first
        .call("turn/start", json!({"session_id": session, "text": "go"}))
        .await
        .unwrap();
    let mut before = Vec::new();
    while seqs(&before).len() < 5 {
        before.push(first.next().await);
    }
    let last_seen = *seqs(&before).last().unwrap();
    drop(first);

    let mut second = d.client().await;
    let sub = second
        .call(
            "session/subscribe",
            json!({"session_id": session, "after_seq": last_seen}),
        )
        .await
        .unwrap();
    assert!(sub["last_seq"].as_u64().unwrap() >= last_seen);
    let after = second.until_completed().await;
    let mut all = seqs(&before);
    all.extend(seqs(&after));
    assert_eq!(
        all,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    assert_eq!(
        after.last().unwrap()["params"]["outcome"]["status"],
        "completed"
    );

    // A late client replays the whole session from the start.
    let mut late = d.client().await;
    late.call(
        "session/subscribe",
        json!({"session_id": session, "after_seq": 0}),
    )
    .await
    .unwrap();
    let replay = late.until_completed().await;
    assert_eq!(seqs(&replay), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_requests_go_to_every_subscriber_and_the_first_answer_wins() {
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let work = d.work_dir();
    let model = gated_model().await;
    let mut a = d.client().await;
    let session = a.start_session(agent_yaml(&model, &work, GATED)).await;
    let mut b = d.client().await;
    b.call("session/subscribe", json!({"session_id": session}))
        .await
        .unwrap();
    a.call(
        "turn/start",
        json!({"session_id": session, "text": "make it"}),
    )
    .await
    .unwrap();

    let request = loop {
        let m = b.next().await;
        if m["method"] == "permission/request" {
            break m;
        }
    };
    assert_eq!(request["params"]["tool"], "execute");
    assert_eq!(request["params"]["turn_id"], "turn-1");
    assert_eq!(
        request["params"]["description"],
        "Execute in main: echo hi > made.txt"
    );
    b.respond(&request["id"], json!({"decision": "allow"}))
        .await;

    let seen_by_a = a.until_completed().await;
    assert!(
        seen_by_a
            .iter()
            .any(|m| m["method"] == "permission/request" && m["id"] == request["id"])
    );
    assert!(
        seen_by_a
            .iter()
            .any(|m| m["method"] == "serverRequest/resolved"
                && m["params"]["request_id"] == request["id"]),
        "the other client is told to drop its prompt"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("made.txt")).unwrap(),
        "hi\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_denies_after_the_timeout() {
    let d = TestDaemon::start(DaemonConfig {
        request_timeout: Duration::from_millis(200),
        ..DaemonConfig::default()
    })
    .await;
    let work = d.work_dir();
    let model = gated_model().await;
    let mut c = d.client().await;
    let session = c.start_session(agent_yaml(&model, &work, GATED)).await;
    c.call(
        "turn/start",
        json!({"session_id": session, "text": "make it"}),
    )
    .await
    .unwrap();
    let seen = c.until_completed().await;
    assert!(seen.iter().any(|m| m["method"] == "permission/request"));
    assert!(!work.join("made.txt").exists());
    let body = &model.requests()[1].body;
    assert!(
        body.to_string()
            .contains("no connected client answered in time")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_does_not_slow_the_others() {
    let d = TestDaemon::start(DaemonConfig {
        queue: 4,
        stall_timeout: Duration::from_millis(300),
        ..DaemonConfig::default()
    })
    .await;
    // A long streamed answer: hundreds of events.
    let long = format!("{}\n{DONE}", "word ".repeat(3000));
    let model = ScriptedServer::start(vec![Turn::answer(long).with_piece_chars(3)])
        .await
        .unwrap();
    let mut fast = d.client().await;
    let session = fast
        .start_session(agent_yaml(&model, &d.work_dir(), ""))
        .await;
    let mut stuck = d.client().await;
    stuck
        .call("session/subscribe", json!({"session_id": session}))
        .await
        .unwrap();
    // `stuck` never reads from here on.
    fast.call("turn/start", json!({"session_id": session, "text": "talk"}))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), fast.until_completed())
        .await
        .expect("the turn finished");
    assert!(seqs(&seen).len() > 500, "{}", seqs(&seen).len());
    // The stuck client is told, once it reads, that its subscription ended: give the daemon ten times its stall
    // timeout to notice (the bound is generous on purpose; how soon it notices is not what this test checks).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lagged = false;
    for _ in 0..2000 {
        let m = stuck.next().await;
        if m["method"] == "subscription/lagged" {
            assert!(m["params"]["last_sent_seq"].as_u64().unwrap() < seqs(&seen).len() as u64);
            lagged = true;
            break;
        }
    }
    assert!(lagged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_turn_at_a_time_and_steering_reaches_the_model() {
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let model = ScriptedServer::start(vec![
        Turn::delay(300, Turn::answer(answer("print('x')"))),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let mut c = d.client().await;
    let session = c.start_session(agent_yaml(&model, &d.work_dir(), "")).await;
    c.call("turn/start", json!({"session_id": session, "text": "go"}))
        .await
        .unwrap();
    let busy = c
        .call(
            "turn/start",
            json!({"session_id": session, "text": "again"}),
        )
        .await
        .unwrap_err();
    assert_eq!(busy["code"], 1002);
    c.call(
        "turn/steer",
        json!({"session_id": session, "text": "use tabs"}),
    )
    .await
    .unwrap();
    c.until_completed().await;
    assert!(model.requests()[1].body.to_string().contains("use tabs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_with_the_session_and_replayed_after_a_restart() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("sessions.db");
    let config = || DaemonConfig {
        store: codepilot::StoreConfig::sqlite_file(&db),
        ..DaemonConfig::default()
    };
    let model = ScriptedServer::start(vec![
        Turn::answer(answer("print(1)")),
        Turn::answer(DONE),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let work = db_dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let agent = agent_yaml(&model, &work, "");

    let first = TestDaemon::start(config()).await;
    let mut c = first.client().await;
    c.call(
        "session/start",
        json!({"agent": agent, "session_id": "kept"}),
    )
    .await
    .unwrap();
    c.call("turn/start", json!({"session_id": "kept", "text": "one"}))
        .await
        .unwrap();
    let before = seqs(&c.until_completed().await);
    drop(c);
    first.daemon.shutdown().await;

    let second = TestDaemon::start(config()).await;
    let mut c = second.client().await;
    c.call(
        "session/start",
        json!({"agent": agent, "session_id": "kept"}),
    )
    .await
    .unwrap();
    let sub = c
        .call(
            "session/subscribe",
            json!({"session_id": "kept", "after_seq": 0}),
        )
        .await
        .unwrap();
    assert_eq!(sub["last_seq"], json!(before.len()));
    let mut replayed = Vec::new();
    while replayed.len() < before.len() {
        let m = c.next().await;
        if m["method"] == "event" {
            replayed.push(m["params"]["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(
        replayed, before,
        "the first daemon's events, from the store"
    );
    c.call("turn/start", json!({"session_id": "kept", "text": "two"}))
        .await
        .unwrap();
    let after = seqs(&c.until_completed().await);
    assert_eq!(
        after.first().copied(),
        Some(before.len() as u64 + 1),
        "numbering goes on"
    );
}
