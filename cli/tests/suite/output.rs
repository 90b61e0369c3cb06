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
    let redact = |s: String| redact_wall(&s.replace(&root.display().to_string(), "<DIR>"));
    (
        redact(stdout(&out)),
        redact(stderr(&out)),
        out.status.code(),
    )
}

/// The run's wall time, the one figure of its output that changes from run to run: `· 0.1 s` at the end of the
/// spend line, `"wall_s":0.0123` in JSON.
fn redact_wall(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with("spent ")
                && let Some(at) = line.rfind(" · ")
            {
                return format!("{} · <WALL> s", &line[..at]);
            }
            match line.find("\"wall_s\":") {
                Some(at) => {
                    let rest = &line[at + 9..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
                        .unwrap_or(rest.len());
                    format!("{}\"wall_s\":<WALL>{}", &line[..at], &rest[end..])
                }
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    let err = redact_wall(&stderr(&out).replace(&root.display().to_string(), "<DIR>"));
    insta::assert_snapshot!("human_max_steps_stderr", err);
    assert_eq!(stdout(&out), "");
}
