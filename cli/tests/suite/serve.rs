//! `codepilot serve` and `codepilot run --connect`: the same task, the same output and exit codes, through a
//! daemon; the stdio transport.

use std::io::BufRead;
use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::support::Wire;
use super::support::codepilot;
use super::support::detach_from_terminal;
use super::support::events;
use super::support::json_lines;
use super::support::stderr;
use super::support::stdout;
use super::support::turns;
use super::support::write_agent;

const DONE: &str = "Finished.\n```completion\nall good\n```";

/// `codepilot serve --listen unix://…` in `dir`, killed on drop.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let socket = dir.join("s").join("rt.sock");
    let url = format!("unix://{}", socket.display());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir)
        .args(["serve", "--listen", &url])
        .env("CODEPILOT_HOME", dir.join("home"))
        .env_remove("CODEPILOT_DB_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    detach_from_terminal(&mut cmd);
    let child = cmd.spawn().unwrap();
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(socket.exists(), "the daemon did not start");
    Served { child, url }
}

fn short_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cpd")
        .tempdir_in("/tmp")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_connect_gives_the_same_output_and_exit_codes_as_a_local_run() {
    let dir = short_dir();
    let daemon = serve(dir.path());
    let answer = "Looking.\n```codepilot\nprint(6 * 7)\n```";
    let server = ScriptedServer::start(vec![Turn::answer(answer), Turn::answer(DONE)])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    let remote = codepilot(
        dir.path(),
        &["run", "--connect", &daemon.url, "--json", "add them"],
    )
    .await;
    assert_eq!(remote.status.code(), Some(0), "{}", stderr(&remote));
    let lines = json_lines(&remote);
    let kinds: Vec<Value> = events(&lines).iter().map(|e| e["type"].clone()).collect();
    assert_eq!(kinds.first(), Some(&json!("start")));
    assert!(kinds.contains(&json!("tool_result")) || kinds.contains(&json!("step")));
    let turn = turns(&lines);
    assert_eq!(turn.len(), 1);
    assert_eq!(
        turn[0]["outcome"],
        json!({"status": "completed", "summary": "all good", "steps": 2})
    );

    // The same task in-process prints the same kinds of events.
    let server = ScriptedServer::start(vec![Turn::answer(answer), Turn::answer(DONE)])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    let local = codepilot(
        dir.path(),
        &["run", "--session", "memory", "--json", "add them"],
    )
    .await;
    let local_kinds: Vec<Value> = events(&json_lines(&local))
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(kinds, local_kinds);

    // Human output: the summary on stdout.
    let server = ScriptedServer::start(vec![Turn::answer(DONE)])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    let human = codepilot(dir.path(), &["run", "--connect", &daemon.url, "finish"]).await;
    assert_eq!(human.status.code(), Some(0));
    assert_eq!(stdout(&human).trim(), "all good");

    // The step limit is exit 3 through the daemon too.
    let server = ScriptedServer::start(vec![Turn::answer(answer), Turn::answer(answer)])
        .await
        .unwrap();
    let agent = write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    let capped = std::fs::read_to_string(&agent)
        .unwrap()
        .replace("max_steps: 8", "max_steps: 2");
    std::fs::write(&agent, capped).unwrap();
    let limited = codepilot(dir.path(), &["run", "--connect", &daemon.url, "loop"]).await;
    assert_eq!(limited.status.code(), Some(3), "{}", stderr(&limited));

    // A bad agent file is a usage error (2) naming the key.
    std::fs::write(dir.path().join("bad.yaml"), "agent:\n  name: x\n  model:\n    provider: anthropic\n    name: m\n  runtime:\n    max_step: 3\n").unwrap();
    let bad = codepilot(
        dir.path(),
        &["run", "--connect", &daemon.url, "-c", "bad.yaml", "x"],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("max_step"), "{}", stderr(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_commands_are_asked_of_the_connected_cli() {
    let dir = short_dir();
    let daemon = serve(dir.path());
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nexecute(\"main\", \"echo hi > made.txt\")\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    write_agent(
        dir.path(),
        &server,
        Wire::OpenAi,
        true,
        "  tools:\n    - {name: execute, config: {require_permission: true}}\n",
    );
    let out = codepilot(
        dir.path(),
        &["run", "--connect", &daemon.url, "--yes", "make it"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("work/made.txt")).unwrap(),
        "hi\n"
    );
}

#[test]
fn the_stdio_transport_serves_one_client_until_stdin_closes() {
    let dir = short_dir();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir.path())
        .args(["serve", "--listen", "stdio://"])
        .env("CODEPILOT_HOME", dir.path().join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    detach_from_terminal(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"client":{{"name":"t"}}}}}}"#
    )
    .unwrap();
    let init: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(init["result"]["protocol"], 1);
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"session/list","params":{{}}}}"#
    )
    .unwrap();
    let list: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(list["result"]["sessions"], json!([]));
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}
