//! Sub-agents through the binary (SPEC §20): a worker's activity indented under the parent's, its events in
//! `--json` with its `agent_id`, and its conversation in `sessions show`.

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::codepilot;
use super::support::events;
use super::support::json_lines;
use super::support::stderr;
use super::support::stdout;
use super::support::write_agent;

fn script() -> Vec<Turn> {
    vec![
        Turn::answer(
            "```codepilot\na = spawn_subagent(\"list the files\")\nprint(await_subagent(a))\n```",
        ),
        Turn::answer("```codepilot\nprint(find(\"*\", scope=\"files\"))\n```"),
        Turn::answer("```completion\nno files\n```"),
        Turn::answer("```completion\ndone\n```"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shows_indented_and_in_json_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(script()).await.unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, true, "");
    let out = codepilot(
        dir.path(),
        &[
            "run",
            "--session",
            "file",
            "--session-id",
            "tree",
            "delegate",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("⇢ sub-agent #1 (test-model): list the files"),
        "{err}"
    );
    assert!(err.contains("    [#1] ▸ "), "{err}");
    assert!(err.contains("⇠ sub-agent #1 completed in"), "{err}");

    let out = codepilot(
        dir.path(),
        &["sessions", "show", "--session", "file", "tree"],
    )
    .await;
    let shown = stdout(&out);
    assert!(
        shown.contains("══ sub-agent #1 (session tree.sub-1)"),
        "{shown}"
    );
    assert!(shown.contains("list the files"), "{shown}");

    let server = ScriptedServer::start(script()).await.unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, true, "");
    let out = codepilot(dir.path(), &["run", "--json", "delegate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let worker: Vec<_> = lines
        .iter()
        .filter(|l| l["type"] == "event" && l["agent_id"] == 1)
        .collect();
    assert!(
        worker.iter().any(|l| l["event"]["type"] == "tool_call"),
        "{lines:?}"
    );
    assert!(worker.iter().all(|l| l["parent"] == 0));
    let kinds: Vec<_> = events(&lines).iter().map(|e| e["type"].clone()).collect();
    assert!(kinds.contains(&"subagent_spawn".into()) && kinds.contains(&"subagent_finish".into()));
}
