//! Terminal tools through the model, with real PTYs.

use std::time::Duration;

use codepilot_testkit::temp_workspace;

use super::support::Wire;
use super::support::last_user_text;
use super::support::start;

const TERMINAL_TOOLS: &str = "  tools: []\n";
const DONE: &str = "```completion\ndone\n```";

#[tokio::test]
async fn execute_runs_in_main_and_state_persists_across_steps() {
    let dir = temp_workspace(&[]);
    let s1 = "```codepilot\nr = execute(\"main\", \"mkdir -p sub && cd sub && echo hi > f.txt && false\")\nprint(\"exit\", r[\"exit_code\"], r[\"status\"])\n```";
    let s2 = "```codepilot\nr = execute(\"main\", \"pwd; cat f.txt\")\nprint(r[\"output\"].strip().splitlines()[-1])\n```";
    let (server, rt, _rec) = start(&[s1, s2, DONE], Wire::OpenAi, dir.path(), TERMINAL_TOOLS).await;
    rt.run("shell").await.unwrap();
    let obs1 = last_user_text(&server.requests()[1].body);
    assert!(obs1.contains("[terminal:main:cmd"), "{obs1}");
    assert!(obs1.contains("exit 1 completed"), "{obs1}");
    let obs2 = last_user_text(&server.requests()[2].body);
    assert!(obs2.contains("/sub"), "cwd persists: {obs2}");
    assert!(obs2.contains("\nhi"), "{obs2}");
    rt.close().await.unwrap();
}

#[tokio::test]
async fn a_server_in_a_second_terminal_is_started_polled_and_stopped() {
    let dir = temp_workspace(&[]);
    let start_server = "```codepilot\nr = execute(\"server\", \"for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo tick $i; sleep 0.2; done; sleep 100\", timeout=1, new_terminal=True)\nprint(\"status\", r[\"status\"])\n```";
    let poll = "```codepilot\nr = read_output(\"server\", timeout=1)\nprint(\"status\", r[\"status\"])\n```";
    let stop = "```codepilot\nr = send_input(\"server\", \"\\x03\", timeout=5)\nprint(\"after\", r[\"status\"], r[\"exit_code\"])\n```";
    let (server, rt, _rec) = start(
        &[start_server, poll, stop, DONE],
        Wire::OpenAi,
        dir.path(),
        TERMINAL_TOOLS,
    )
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), rt.run("serve"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome, codepilot::Outcome::Completed { .. }),
        "{outcome:?}"
    );
    let reqs = server.requests();
    let o1 = last_user_text(&reqs[1].body);
    assert!(o1.contains("status running"), "{o1}");
    assert!(o1.contains("tick 1"), "{o1}");
    let o2 = last_user_text(&reqs[2].body);
    assert!(o2.contains("status running"), "{o2}");
    assert!(o2.contains("tick"), "{o2}");
    let o3 = last_user_text(&reqs[3].body);
    assert!(o3.contains("after completed 130"), "{o3}");
    // The system prompt lists the live terminals.
    let system = super::support::system_text(&reqs[2].body);
    assert!(system.contains("- server"), "{system}");
    rt.close().await.unwrap();
}

#[tokio::test]
async fn a_command_a_person_types_in_main_reaches_the_model_as_a_user_message() {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;

    let dir = temp_workspace(&[]);
    let (server, rt, _rec) = start(&["noted"], Wire::OpenAi, dir.path(), TERMINAL_TOOLS).await;
    let terminals = rt.terminals().unwrap();
    let mut conn =
        codepilot::terminal::client::connect(terminals.socket_dir(), "main", terminals.token())
            .await
            .unwrap();
    conn.writer
        .write_all(b"echo typed-by-a-human\r")
        .await
        .unwrap();
    // Wait until the shell has run it (its output comes back on the shared terminal).
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while String::from_utf8_lossy(&seen)
        .matches("typed-by-a-human")
        .count()
        < 2
    {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, conn.reader.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no output; saw {:?}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "terminal closed");
        seen.extend_from_slice(&buf[..n]);
    }
    // Its output can arrive before the shell reports the command done; wait for the record.
    while terminals.pending_human_input() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.run("anything new?").await.unwrap();
    let first = last_user_text(&server.requests()[0].body);
    assert!(first.contains("[USER MESSAGE]"), "{first}");
    assert!(first.contains("$ echo typed-by-a-human"), "{first}");
    rt.close().await.unwrap();
}

#[tokio::test]
async fn closing_the_runtime_removes_its_sockets_and_kills_its_shells() {
    let dir = temp_workspace(&[]);
    let (_server, rt, _rec) = start(&["x"], Wire::OpenAi, dir.path(), TERMINAL_TOOLS).await;
    let terminals = rt.terminals().unwrap();
    let socket_dir = terminals.socket_dir().to_path_buf();
    let pid = terminals.get("main").unwrap().pid();
    assert!(socket_dir.exists());
    rt.close().await.unwrap();
    assert!(!socket_dir.exists(), "socket dir left behind");
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "bash {pid} still running");
}

#[tokio::test]
async fn terminals_survive_across_runs_and_the_model_can_terminate_one() {
    let dir = temp_workspace(&[]);
    let s1 =
        "```codepilot\nexecute(\"side\", \"export MARK=kept; cd /tmp\", new_terminal=True)\n```";
    let s2 = "```codepilot\nr = execute(\"side\", \"echo $MARK; pwd\")\nprint(r[\"output\"])\nprint(terminate_terminal(\"side\"))\n```";
    let (server, rt, _rec) = start(
        &[s1, DONE, s2, DONE],
        Wire::OpenAi,
        dir.path(),
        TERMINAL_TOOLS,
    )
    .await;
    rt.run("first run").await.unwrap();
    let pid = rt.terminals().unwrap().get("side").unwrap().pid();
    rt.run("second run").await.unwrap();
    let obs = last_user_text(&server.requests()[3].body);
    assert!(
        obs.contains("kept\n/tmp"),
        "the terminal kept its state across runs: {obs}"
    );
    assert!(obs.contains("[terminal:side] Terminal destroyed"), "{obs}");
    assert!(rt.terminals().unwrap().get("side").is_none());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "shell {pid} still alive: {stat}"
    );
    rt.close().await.unwrap();
}

#[tokio::test]
async fn a_gated_execute_is_denied_without_a_handler_and_nothing_runs() {
    let dir = temp_workspace(&[]);
    let gated = "  tools:\n    - {name: execute, config: {require_permission: true}}\n";
    let s1 = "```codepilot\nexecute(\"main\", \"touch ran.txt\")\n```";
    let (server, rt, rec) = start(&[s1, DONE], Wire::OpenAi, dir.path(), gated).await;
    rt.run("gated").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("[execute] Permission denied"), "{obs}");
    assert!(!dir.path().join("ran.txt").exists());
    assert!(rec.events().iter().any(|e| matches!(
        e,
        codepilot::Event::PermissionRequest(p) if p.description == "Execute in main: touch ran.txt"
    )));
    rt.close().await.unwrap();
}

#[tokio::test]
async fn abort_during_a_terminal_wait_is_prompt() {
    let dir = temp_workspace(&[]);
    let wait = "```codepilot\nexecute(\"main\", \"sleep 30\", timeout=60)\n```";
    let (_server, rt, _rec) = start(&[wait], Wire::OpenAi, dir.path(), TERMINAL_TOOLS).await;
    // Abort once `sleep 30` runs in main.
    let (tx, ready) = tokio::sync::oneshot::channel();
    let terminals = rt.clone();
    tokio::spawn(async move {
        let main = terminals.terminals().unwrap().get("main").unwrap();
        while !matches!(
            main.info().state,
            codepilot::terminal::TerminalState::Running { .. }
        ) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(());
    });
    let outcome = super::support::run_then_abort(&rt, "wait", ready).await;
    assert_eq!(outcome, codepilot::Outcome::Aborted { steps: 1 });
    // The command the aborted step was waiting on was interrupted: main is free again.
    let main = rt.terminals().unwrap().get("main").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while main.info().state != codepilot::terminal::TerminalState::Idle {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sleep 30 was not interrupted: {:?}",
            main.info()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = main
        .execute("echo free", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(r.output, "free");
    rt.close().await.unwrap();
}
