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
