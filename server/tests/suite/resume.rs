//! `session/resume` opens a stored session in a daemon that never had it (lease, workspace, subscription) with the
//! agent the store recorded for it, or the one given, and `session/read` reads a session's history without opening
//! it.

use std::path::Path;

use codepilot::store::snapshot::SnapshotOptions;
use codepilot::store::snapshot::SnapshotStore;
use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::message_texts as texts;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::DONE;
use super::support::TestDaemon;
use super::support::agent_yaml;

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

    // A session the CLI created in the same store: no daemon recorded an agent for it.
    let store = codepilot::store::open_store(codepilot::StoreConfig::sqlite_file(
        dir.path().join("sessions.db"),
    ))
    .await
    .unwrap();
    let (lease, _) = store
        .open(&"from-the-cli".parse().unwrap(), "cli")
        .await
        .unwrap();
    store.release(lease).await.unwrap();

    // Resume needs an agent for it, and a session the store holds.
    let no_agent = c
        .call("session/resume", json!({"session_id": "from-the-cli"}))
        .await
        .unwrap_err();
    assert_eq!(no_agent["code"], -32602, "{no_agent}");
    let message = no_agent["message"].as_str().unwrap();
    assert!(
        message.contains("agent_file") && message.contains("session/read"),
        "says what to do: {message}"
    );
    let unknown = c
        .call("session/resume", json!({"session_id": "never-started"}))
        .await
        .unwrap_err();
    assert_eq!(unknown["code"], 1001, "{unknown}");
    let listed = c.call("session/list", json!({})).await.unwrap();
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        2,
        "a failed resume creates nothing: {listed}"
    );

    // The id alone opens it here with the agent the first daemon recorded: the history, then a turn whose events
    // reach the resuming client.
    let resumed = c
        .call("session/resume", json!({"session_id": "moved"}))
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

/// A model answer that writes `name` holding `text`.
fn write(name: &str, text: &str) -> Turn {
    Turn::answer(format!(
        "Writing.\n```codepilot\nwrite_file(\"{name}\")\n```\n\n```text filename={name}\n{text}\n```"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_uses_the_recorded_agent_unless_one_is_given_and_records_the_one_given() {
    let dir = tempfile::tempdir().unwrap();
    let model = ScriptedServer::start(vec![
        write("a.txt", "A"),
        Turn::answer(DONE),
        write("e.txt", "E"),
        Turn::answer(DONE),
        write("b.txt", "B"),
        Turn::answer(DONE),
        write("c.txt", "C"),
        Turn::answer(DONE),
        write("d.txt", "D"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let work = |name: &str| dir.path().join(name);
    // An agent file with its system prompt in a file next to it (a path relative to the agent file).
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("prompt.md"), "Mind the recorded prompt.\n").unwrap();
    let agent_file = agents.join("agent.yaml");
    std::fs::write(
        &agent_file,
        agent_yaml(&model, &work("ignored"), "  system_prompt: prompt.md\n"),
    )
    .unwrap();
    let daemon = daemon_on(dir.path(), false).await;
    let mut c = daemon.client().await;
    let turn = |text: &'static str| json!({"session_id": "kept", "text": text});
    let close = json!({"session_id": "kept"});

    c.call(
        "session/start",
        json!({"agent_file": agent_file, "work_dir": work("a"), "session_id": "kept"}),
    )
    .await
    .unwrap();
    c.call("turn/start", turn("write a")).await.unwrap();
    c.until_completed().await;
    assert_eq!(std::fs::read_to_string(work("a/a.txt")).unwrap(), "A\n");
    c.call("session/close", close.clone()).await.unwrap();

    // The agent file edited since: resuming by id reads it again (what an edit tightened applies).
    std::fs::write(agents.join("edited.md"), "Mind the edited agent file.\n").unwrap();
    std::fs::write(
        &agent_file,
        agent_yaml(&model, &work("ignored"), "  system_prompt: edited.md\n"),
    )
    .unwrap();
    c.call("session/resume", json!({"session_id": "kept"}))
        .await
        .unwrap();
    c.call("turn/start", turn("write e")).await.unwrap();
    c.until_completed().await;
    let asked = model.requests().last().unwrap().body.to_string();
    assert!(asked.contains("Mind the edited agent file."), "{asked}");
    c.call("session/close", close.clone()).await.unwrap();
    std::fs::write(
        &agent_file,
        agent_yaml(&model, &work("ignored"), "  system_prompt: prompt.md\n"),
    )
    .unwrap();
    c.call("session/resume", json!({"session_id": "kept"}))
        .await
        .unwrap();
    c.call("session/close", close.clone()).await.unwrap();

    // The agent file is gone: the recorded text is what runs, its prompt file still found next to where it was;
    // `work_dir` moves the session.
    std::fs::remove_file(&agent_file).unwrap();
    c.call(
        "session/resume",
        json!({"session_id": "kept", "work_dir": work("b")}),
    )
    .await
    .unwrap();
    c.call("turn/start", turn("write b")).await.unwrap();
    c.until_completed().await;
    assert_eq!(std::fs::read_to_string(work("b/b.txt")).unwrap(), "B\n");
    let asked = model.requests().last().unwrap().body.to_string();
    assert!(asked.contains("Mind the recorded prompt."), "{asked}");
    c.call("session/close", close.clone()).await.unwrap();

    // The id alone: the work directory it last ran in.
    c.call("session/resume", json!({"session_id": "kept"}))
        .await
        .unwrap();
    c.call("turn/start", turn("write c")).await.unwrap();
    c.until_completed().await;
    assert_eq!(std::fs::read_to_string(work("b/c.txt")).unwrap(), "C\n");
    c.call("session/close", close.clone()).await.unwrap();

    // A recorded agent that no longer loads here is a clear error saying what to pass.
    std::fs::remove_file(agents.join("prompt.md")).unwrap();
    let broken = c
        .call("session/resume", json!({"session_id": "kept"}))
        .await
        .unwrap_err();
    assert_eq!(broken["code"], 1004, "{broken}");
    let message = broken["message"].as_str().unwrap();
    assert!(
        message.contains("prompt.md") && message.contains("agent_file"),
        "{message}"
    );

    // An agent given wins, and is recorded in place of the old one.
    c.call(
        "session/resume",
        json!({"session_id": "kept", "agent": agent_yaml(&model, &work("d"), "")}),
    )
    .await
    .unwrap();
    c.call("session/close", close.clone()).await.unwrap();
    c.call("session/resume", json!({"session_id": "kept"}))
        .await
        .unwrap();
    c.call("turn/start", turn("write d")).await.unwrap();
    c.until_completed().await;
    assert_eq!(std::fs::read_to_string(work("d/d.txt")).unwrap(), "D\n");
    let asked = model.requests().last().unwrap().body.to_string();
    assert!(!asked.contains("Mind the recorded prompt."), "{asked}");
}
