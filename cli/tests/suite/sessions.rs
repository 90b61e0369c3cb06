//! Sessions through the CLI: the default SQLite store, resume by id, list/show/rm.

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::support::Wire;
use super::support::codepilot;
use super::support::json_lines;
use super::support::last_user_text;
use super::support::stderr;
use super::support::stdout;
use super::support::write_agent;

const NO_TERMINALS: &str = "  tools:\n    - {name: execute, enabled: false}\n    - {name: read_output, enabled: false}\n    - {name: send_input, enabled: false}\n    - {name: terminate_terminal, enabled: false}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_by_id_in_the_default_database() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("first answer"),
        Turn::answer("second answer"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, NO_TERMINALS);
    let out = codepilot(
        dir.path(),
        &["run", "--json", "--session-id", "s-1", "first task"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("home/sessions.db").exists());
    assert_eq!(json_lines(&out).last().unwrap()["session_id"], "s-1");

    let out = codepilot(
        dir.path(),
        &["run", "--json", "--session-id", "s-1", "second task"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let second = &server.requests()[1].body;
    assert_eq!(last_user_text(second), "[Task 2][USER INPUT]\nsecond task");
    assert!(second["messages"].to_string().contains("first answer"));

    let list = codepilot(dir.path(), &["sessions", "list", "--json"]).await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let rows = json_lines(&list);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], "s-1");
    assert_eq!(rows[0]["tasks"], 2);
    assert_eq!(rows[0]["title"], "first task");

    let show = codepilot(dir.path(), &["sessions", "show", "s-1"]).await;
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    assert!(stdout(&show).contains("second answer"));

    let rm = codepilot(dir.path(), &["sessions", "rm", "s-1"]).await;
    assert_eq!(rm.status.code(), Some(0), "{}", stderr(&rm));
    let gone = codepilot(dir.path(), &["sessions", "show", "s-1"]).await;
    assert_eq!(gone.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_session_resumes_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![Turn::answer("one"), Turn::answer("two")])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, false, NO_TERMINALS);
    for task in ["a", "b"] {
        let out = codepilot(
            dir.path(),
            &["run", "--session", "file", "--session-id", "f-1", task],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert!(dir.path().join("home/sessions/f-1.json").exists());
    assert_eq!(
        last_user_text(&server.requests()[1].body),
        "[Task 2][USER INPUT]\nb"
    );
}
