//! `session/resume` opens a stored session in a daemon that never had it (lease, workspace, subscription), and
//! `session/read` reads a session's history without opening it.

use std::path::Path;

use codepilot::store::snapshot::SnapshotOptions;
use codepilot::store::snapshot::SnapshotStore;
use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::support::DONE;
use super::support::TestDaemon;
use super::support::agent_yaml;

/// The contents of `messages` (a `messages` array), one per line.
fn texts(messages: &Value) -> String {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A daemon on the SQLite database in `dir` (and, with `snapshots`, a snapshot store there too).
async fn daemon_on(dir: &Path, snapshots: bool) -> TestDaemon {
    let snapshots = snapshots.then(|| {
        let options = SnapshotOptions {
            state_dir: Some(dir.join("snapshot-state")),
            ..SnapshotOptions::default()
        };
        SnapshotStore::open(
            &format!("file://{}", dir.join("objects").display()),
            options,
        )
        .unwrap()
    });
    TestDaemon::start(DaemonConfig {
        store: codepilot::StoreConfig::sqlite_file(dir.join("sessions.db")),
        snapshots,
        ..DaemonConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_opens_a_stored_session_in_a_fresh_daemon_and_read_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = ScriptedServer::start(vec![Turn::answer(DONE), Turn::answer(DONE)])
        .await
        .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let agent = agent_yaml(&model, &work, "");

    let first = daemon_on(dir.path(), false).await;
    let mut c = first.client().await;
    c.call(
        "session/start",
        json!({"agent": agent, "session_id": "moved"}),
    )
    .await
    .unwrap();
    c.call("turn/start", json!({"session_id": "moved", "text": "one"}))
        .await
        .unwrap();
    c.until_completed().await;
    drop(c);
    first.daemon.shutdown().await;

    // A new daemon on the same database: read shows the history and opens nothing.
    let second = daemon_on(dir.path(), false).await;
    let mut c = second.client().await;
    let read = c
        .call("session/read", json!({"session_id": "moved"}))
        .await
        .unwrap();
    assert_eq!(read["session_id"], "moved");
    assert!(texts(&read["messages"]).contains("one"), "{read}");
    let not_open = c
        .call("turn/start", json!({"session_id": "moved", "text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(not_open["code"], 1001, "{not_open}");
    assert!(
        not_open["message"]
            .as_str()
            .unwrap()
            .contains("session/resume"),
        "{not_open}"
    );
    let list = c.call("session/list", json!({})).await.unwrap();
    assert_eq!(list["sessions"][0]["status"], "stored", "{list}");

    // Resume needs the agent to run the session with, and a session the store holds.
    let no_agent = c
        .call("session/resume", json!({"session_id": "moved"}))
        .await
        .unwrap_err();
    assert_eq!(no_agent["code"], -32602, "{no_agent}");
    let message = no_agent["message"].as_str().unwrap();
    assert!(
        message.contains("agent_file") && message.contains("session/read"),
        "says what to do: {message}"
    );
    let unknown = c
        .call(
            "session/resume",
            json!({"session_id": "never-started", "agent": agent}),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown["code"], 1001, "{unknown}");
    let listed = c.call("session/list", json!({})).await.unwrap();
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        1,
        "a failed resume creates nothing: {listed}"
    );

    // Resume opens it here: the history, then a turn whose events reach the resuming client.
    let resumed = c
        .call(
            "session/resume",
            json!({"session_id": "moved", "agent": agent}),
        )
        .await
        .unwrap();
    assert_eq!(resumed["session_id"], "moved");
    assert_eq!(resumed["messages"], read["messages"]);
    assert_eq!(
        resumed.get("restored"),
        None,
        "this daemon keeps no snapshots"
    );
    let listed = c.call("session/list", json!({})).await.unwrap();
    assert_eq!(listed["sessions"][0]["status"], "idle", "{listed}");
    c.call("turn/start", json!({"session_id": "moved", "text": "two"}))
        .await
        .unwrap();
    let seen = c.until_completed().await;
    let done = seen.last().unwrap();
    assert_eq!(done["method"], "turn/completed", "{done}");
    assert_eq!(done["params"]["outcome"]["status"], "completed", "{done}");
    assert!(
        seen.iter().any(|m| m["method"] == "event"),
        "the resuming client is subscribed: {seen:?}"
    );

    // Another client resumes the open session without an agent: it is subscribed and sees the whole history.
    let mut other = second.client().await;
    let again = other
        .call("session/resume", json!({"session_id": "moved"}))
        .await
        .unwrap();
    let history = texts(&again["messages"]);
    assert!(
        history.contains("one") && history.contains("two"),
        "{history}"
    );
    let read = other
        .call("session/read", json!({"session_id": "moved"}))
        .await
        .unwrap();
    assert_eq!(read["messages"], again["messages"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_restores_the_workspace_a_daemon_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let model = ScriptedServer::start(vec![
        Turn::answer(
            "Writing.\n```codepilot\nwrite_file(\"notes.txt\")\n```\n\n```text filename=notes.txt\nthe plan\n```",
        ),
        Turn::answer(DONE),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let first_work = dir.path().join("first");
    std::fs::create_dir_all(&first_work).unwrap();

    let first = daemon_on(dir.path(), true).await;
    let mut c = first.client().await;
    c.call(
        "session/start",
        json!({"agent": agent_yaml(&model, &first_work, ""), "session_id": "carried"}),
    )
    .await
    .unwrap();
    c.call(
        "turn/start",
        json!({"session_id": "carried", "text": "write the notes"}),
    )
    .await
    .unwrap();
    let seen = c.until_completed().await;
    assert!(
        seen.iter()
            .any(|m| m["params"]["event"]["type"] == "workspace_saved"),
        "{seen:?}"
    );
    drop(c);
    first.daemon.shutdown().await;

    // Another daemon, whose work directory for the session does not exist yet.
    let second = daemon_on(dir.path(), true).await;
    let second_work = dir.path().join("second");
    let mut c = second.client().await;
    let resumed = c
        .call(
            "session/resume",
            json!({"session_id": "carried", "agent": agent_yaml(&model, &second_work, "")}),
        )
        .await
        .unwrap();
    assert!(
        resumed["restored"]["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("carried/"),
        "{resumed}"
    );
    assert_eq!(
        std::fs::read_to_string(second_work.join("notes.txt")).unwrap(),
        "the plan\n"
    );
    assert!(texts(&resumed["messages"]).contains("write the notes"));
    c.call(
        "turn/start",
        json!({"session_id": "carried", "text": "go on"}),
    )
    .await
    .unwrap();
    let done = c.until_completed().await;
    assert_eq!(
        done.last().unwrap()["params"]["outcome"]["status"],
        "completed"
    );
}
