//! What a user reads: the human output (stdout and stderr) and the `--json` stream, snapshot-tested.

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::codepilot;
use super::support::stderr;
use super::support::stdout;
use super::support::write_agent;

const NO_TERMINALS: &str = "  tools:\n    - {name: execute, enabled: false}\n    - {name: read_output, enabled: false}\n    - {name: send_input, enabled: false}\n    - {name: terminate_terminal, enabled: false}\n";

/// Writes the agent file with a known context window, so no warning about the model's profile is printed.
fn agent(dir: &std::path::Path, server: &ScriptedServer) {
    let path = write_agent(dir, server, Wire::OpenAi, false, NO_TERMINALS);
    let yaml = std::fs::read_to_string(&path).unwrap().replace(
        "    name: test-model\n",
        "    name: test-model\n    context_window: 32000\n",
    );
    std::fs::write(path, yaml).unwrap();
}

/// A read with a print, an exception, a completion; plus a max-steps run.
fn script() -> Vec<Turn> {
    vec![
        Turn::answer("Let me look.\n\n```codepilot\nread_file(\"a.txt\")\nprint(\"ok\")\n```"),
        Turn::answer("```codepilot\nnot_a_tool()\n```"),
        Turn::answer("Done.\n\n```completion\nRead a.txt.\n```"),
    ]
}

async fn run(json: bool) -> (String, String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(script()).await.unwrap();
    agent(dir.path(), &server);
    std::fs::write(dir.path().join("work/a.txt"), "hello\n").unwrap();
    let mut args = vec!["run", "--session", "memory", "--session-id", "snap-1"];
    if json {
        args.push("--json");
    }
    args.push("read a.txt");
    let out = codepilot(dir.path(), &args).await;
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let redact = |s: String| s.replace(&root.display().to_string(), "<DIR>");
    (
        redact(stdout(&out)),
        redact(stderr(&out)),
        out.status.code(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_output() {
    let (out, err, code) = run(false).await;
    assert_eq!(code, Some(0), "{err}");
    insta::assert_snapshot!("human_stdout", out);
    insta::assert_snapshot!("human_stderr", err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output() {
    let (out, err, code) = run(true).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "", "--json keeps stderr quiet on success");
    insta::assert_snapshot!("json_stdout", out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_steps_output() {
    let dir = tempfile::tempdir().unwrap();
    let turns = (0..8)
        .map(|_| Turn::answer("```codepilot\nprint('again')\n```"))
        .collect();
    let server = ScriptedServer::start(turns).await.unwrap();
    agent(dir.path(), &server);
    let out = codepilot(
        dir.path(),
        &[
            "run",
            "--session",
            "memory",
            "--session-id",
            "snap-2",
            "loop",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let err = stderr(&out).replace(&root.display().to_string(), "<DIR>");
    insta::assert_snapshot!("human_max_steps_stderr", err);
    assert_eq!(stdout(&out), "");
}
