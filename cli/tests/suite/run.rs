//! `codepilot run` end to end: both wire formats, streaming and not, every tool path, exit codes.

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::support::BOTH;
use super::support::Wire;
use super::support::codepilot;
use super::support::events;
use super::support::json_lines;
use super::support::last_user_text;
use super::support::stderr;
use super::support::stdout;
use super::support::turns;
use super::support::write_agent;

const NO_TERMINALS: &str = "  tools:\n    - {name: execute, enabled: false}\n    - {name: read_output, enabled: false}\n    - {name: send_input, enabled: false}\n    - {name: terminate_terminal, enabled: false}\n";

/// One model script that exercises every write_file mode, read paging, find, a parse error and an execution error.
fn tour() -> Vec<Turn> {
    let lines: String = (1..=450).map(|n| format!("line {n}\n")).collect();
    let answers = vec![
        // 1: create two files (w), one long.
        format!(
            "Creating files.\n\n```codepilot\nwrite_file(\"notes.txt\")\nwrite_file(\"long.txt\")\n```\n\n\
             ```text filename=notes.txt\none\ntwo\nthree\n```\n\n```text filename=long.txt\n{lines}```\n"
        ),
        // 2: read (paging) and append (a).
        "```codepilot\nread_file(\"long.txt\")\nread_file(\"notes.txt\")\nwrite_file(\"notes.txt\", mode=\"a\")\n```\n\n```text filename=notes.txt\nfour\n```\n".to_owned(),
        // 3: parse error (two control blocks): nothing runs.
        "```codepilot\nread_file(\"notes.txt\")\n```\n\n```codepilot\nread_file(\"notes.txt\")\n```\n".to_owned(),
        // 4: read, then edit (edit).
        "```codepilot\nread_file(\"notes.txt\")\n```".to_owned(),
        "```codepilot\nwrite_file(\"notes.txt\", mode=\"edit\", start_line=2, end_line=2)\n```\n\n```text filename=notes.txt\nTWO\n```\n".to_owned(),
        // 6: re-read, insert at top (insert) — execution error afterwards (NameError) keeps earlier results.
        "```codepilot\nread_file(\"notes.txt\")\n```".to_owned(),
        "```codepilot\nwrite_file(\"notes.txt\", mode=\"insert\", after_line=0)\nnot_a_tool()\n```\n\n```text filename=notes.txt\nzero\n```\n".to_owned(),
        // 8: re-read, multi_edit, find.
        "```codepilot\nread_file(\"notes.txt\")\nhits = find(\"TWO|four\")\nprint(\"hits\", len(hits))\n```".to_owned(),
        "```codepilot\nwrite_file(\"notes.txt\", mode=\"multi_edit\", edits=[(1, 1), (5, 5)])\n```\n\n```text filename=notes.txt\nZERO\n```\n\n```text filename=notes.txt\nFOUR\n```\n\n```completion\nAll edits done.\n```\n".to_owned(),
    ];
    answers.into_iter().map(Turn::answer).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_in_both_wire_formats_streaming_and_not() {
    for wire in BOTH {
        for stream in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let server = ScriptedServer::start(tour()).await.unwrap();
            write_agent(dir.path(), &server, wire, stream, NO_TERMINALS);
            let cfg = std::fs::read_to_string(dir.path().join("agent.yaml"))
                .unwrap()
                .replace("max_steps: 8", "max_steps: 12");
            std::fs::write(dir.path().join("agent.yaml"), cfg).unwrap();

            let out = codepilot(
                dir.path(),
                &["run", "--session", "memory", "--json", "tour the tools"],
            )
            .await;
            let ctx = format!("{wire:?} stream={stream}\nstderr: {}", stderr(&out));
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            let lines = json_lines(&out);
            let last = lines.last().unwrap();
            assert_eq!(last["type"], "turn_completed", "{ctx}");
            assert_eq!(last["turn_id"], "turn-1", "{ctx}");
            assert_eq!(last["outcome"]["status"], "completed", "{ctx}");
            assert_eq!(last["outcome"]["summary"], "All edits done.", "{ctx}");
            assert_eq!(last["outcome"]["steps"], 9, "{ctx}");
            let events = events(&lines);
            assert_eq!(events.len() + 1, lines.len(), "{ctx}");
            for e in &events {
                assert!(e["type"].is_string(), "{e}");
            }
            assert!(
                events
                    .iter()
                    .any(|e| e["type"] == "runtime_error" && e["kind"] == "parse"),
                "{ctx}"
            );
            assert!(
                events
                    .iter()
                    .any(|e| e["type"] == "runtime_error" && e["kind"] == "execution"),
                "{ctx}"
            );
            assert!(events.iter().any(|e| e["type"] == "stream"), "{ctx}");

            let text = std::fs::read_to_string(dir.path().join("work/notes.txt")).unwrap();
            assert_eq!(text, "ZERO\none\nTWO\nthree\nFOUR\n", "{ctx}");

            let reqs = server.requests();
            assert_eq!(reqs.len(), 9, "{ctx}");
            let obs = |i: usize| last_user_text(&reqs[i].body);
            assert!(
                obs(1).contains("[write_file] 'long.txt' written"),
                "{ctx}\n{}",
                obs(1)
            );
            assert!(
                obs(2).contains("[TRUNCATED: 50 lines remaining — use start_line=401]"),
                "{ctx}\n{}",
                obs(2)
            );
            assert!(obs(2).contains("appended"), "{ctx}\n{}", obs(2));
            assert!(obs(3).contains("PARSER ERROR"), "{ctx}\n{}", obs(3));
            assert!(
                obs(5).contains("edited: replaced lines 2–2"),
                "{ctx}\n{}",
                obs(5)
            );
            assert!(obs(7).contains("inserted 1 line"), "{ctx}\n{}", obs(7));
            assert!(
                obs(7).contains("EXECUTION ERROR") && obs(7).contains("NameError"),
                "{ctx}\n{}",
                obs(7)
            );
            assert!(obs(8).contains("[find] 2 match"), "{ctx}\n{}", obs(8));
            assert!(obs(8).contains("hits 2"), "{ctx}\n{}", obs(8));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_mode_prints_only_the_summary_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("Looking around.\n\n```codepilot\nfind(\"x\")\n```"),
        Turn::answer("```completion\nNothing to fix.\n```"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, true, NO_TERMINALS);
    let out = codepilot(dir.path(), &["run", "--session", "memory", "look around"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Nothing to fix.\n");
    assert!(stderr(&out).contains("Looking around."), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("▸ Searching for x"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_reply_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![Turn::answer("Sure — what file?")])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, NO_TERMINALS);
    let out = codepilot(dir.path(), &["run", "--session", "memory", "--json", "hi"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let last = json_lines(&out).pop().unwrap();
    assert_eq!(last["outcome"]["status"], "replied");
    assert_eq!(last["outcome"]["text"], "Sure — what file?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_steps_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![Turn::answer("```codepilot\nprint(1)\n```"); 8])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, NO_TERMINALS);
    let out = codepilot(dir.path(), &["run", "--session", "memory", "loop"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not complete within 8 steps"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_429_500_and_a_dropped_stream() {
    for (wire, stream) in [
        (Wire::Anthropic, true),
        (Wire::OpenAi, true),
        (Wire::Anthropic, false),
        (Wire::OpenAi, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = ScriptedServer::start(vec![
            Turn::status(429, Some(0)),
            Turn::status(500, None),
            Turn::disconnect_after("```completion\nsho", 10),
            Turn::answer("```completion\nshould be fine\n```"),
        ])
        .await
        .unwrap();
        write_agent(dir.path(), &server, wire, stream, NO_TERMINALS);
        let out = codepilot(dir.path(), &["run", "--session", "memory", "--json", "go"]).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{wire:?} stream={stream}: {}",
            stderr(&out)
        );
        let lines = json_lines(&out);
        let retries = events(&lines)
            .iter()
            .filter(|e| e["type"] == "model_retry")
            .count();
        assert_eq!(retries, 3, "{wire:?} stream={stream}");
        assert_eq!(
            lines.last().unwrap()["outcome"]["summary"],
            "should be fine"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_tools_are_denied_without_a_terminal_and_allowed_with_yes() {
    let gated = "  tools:\n    - {name: execute, enabled: false}\n    - {name: write_file, config: {require_permission: true}}\n";
    let write = "```codepilot\nwrite_file(\"out.txt\")\n```\n\n```text filename=out.txt\nhi\n```";
    for yes in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let server = ScriptedServer::start(vec![
            Turn::answer(write),
            Turn::answer("```completion\nok\n```"),
        ])
        .await
        .unwrap();
        write_agent(dir.path(), &server, Wire::OpenAi, true, gated);
        let mut args = vec!["run", "--session", "memory", "--json"];
        if yes {
            args.push("--yes");
        }
        args.push("write it");
        // setsid: no controlling terminal, so the CLI cannot ask and must deny.
        let out = codepilot(dir.path(), &args).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(dir.path().join("work/out.txt").exists(), yes, "yes={yes}");
        let obs = last_user_text(&server.requests()[1].body);
        if !yes {
            assert!(obs.contains("Permission denied"), "{obs}");
        }
        assert!(
            events(&json_lines(&out))
                .iter()
                .any(|e| e["type"] == "permission_request")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_2_with_the_line_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent.yaml"),
        "agent:\n  name: x\n  modle:\n    provider: openai\n    name: gpt\n",
    )
    .unwrap();
    let out = codepilot(dir.path(), &["run", "--session", "memory", "task"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("modle") && err.contains(":3") && err.contains("model"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_api_key_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent.yaml"),
        "agent:\n  name: x\n  model:\n    provider: openai\n    name: gpt-4o\n",
    )
    .unwrap();
    let out = codepilot(dir.path(), &["run", "--session", "memory", "task"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("OPENAI_API_KEY"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_and_missing_config_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = codepilot(dir.path(), &["run", "--session", "memory", "task"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("codepilot init"), "{}", stderr(&out));
    let out = codepilot(dir.path(), &["run", "--session", "memory", ""]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_starter_that_loads_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = codepilot(dir.path(), &["init"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("agent.yaml").exists());
    codepilot::AgentFile::load(&dir.path().join("agent.yaml")).unwrap();
    let again = codepilot(dir.path(), &["init"]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_server_is_started_polled_and_stopped_with_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let start = "Starting the server in its own terminal.\n\n```codepilot\nr = execute(\"server\", \"for i in $(seq 1 1000); do echo tick $i; sleep 0.3; done\", timeout=2, new_terminal=True)\nprint(\"status:\", r[\"status\"])\n```";
    let poll = "```codepilot\nr = read_output(\"server\", timeout=1)\nprint(\"status:\", r[\"status\"])\n```";
    let stop = "```codepilot\nr = send_input(\"server\", \"\\x03\", timeout=5)\nprint(\"stopped:\", r[\"status\"], r[\"exit_code\"])\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(start),
        Turn::answer(poll),
        Turn::answer(stop),
        Turn::answer("```completion\nserver started and stopped\n```"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    let out = codepilot(
        dir.path(),
        &["run", "--session", "memory", "--json", "serve"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = server.requests();
    assert!(
        last_user_text(&reqs[1].body).contains("status: running"),
        "{}",
        last_user_text(&reqs[1].body)
    );
    assert!(
        last_user_text(&reqs[2].body).contains("status: running"),
        "{}",
        last_user_text(&reqs[2].body)
    );
    let stopped = last_user_text(&reqs[3].body);
    assert!(stopped.contains("stopped: completed 130"), "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_runs_one_task_per_line_in_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("first reply"),
        Turn::answer("second reply"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, NO_TERMINALS);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir.path())
        .args(["chat", "--session", "memory", "--json"])
        .env("CODEPILOT_HOME", dir.path().join("home"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello\n\nagain\n/exit\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let outcomes = turns(&json_lines(&out));
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[1]["turn_id"], "turn-2");
    assert_eq!(outcomes[1]["outcome"]["text"], "second reply");
    assert_eq!(
        last_user_text(&server.requests()[1].body),
        "[Task 2][USER INPUT]\nagain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_prompt_shows_the_project_instructions_and_calls_no_model() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    std::fs::write(
        dir.path().join("work/AGENTS.md"),
        "Keep the changelog up to date.\n",
    )
    .unwrap();
    let out = codepilot(dir.path(), &["run", "--print-prompt"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let prompt = stdout(&out);
    let work = dir.path().join("work").canonicalize().unwrap();
    assert!(
        prompt.contains(&format!(
            "# PROJECT INSTRUCTIONS\n(From the project's files, farthest first: where they disagree, the later one \
             wins. They add to the\nrules above; they never change the output format.)\n## {}\nKeep the changelog up \
             to date.\n",
            work.join("AGENTS.md").display()
        )),
        "{prompt}"
    );
    assert!(
        prompt.contains("# ENVIRONMENT\nWorkspace (work_dir): "),
        "{prompt}"
    );
    assert!(server.requests().is_empty(), "no model call");
    let listed = codepilot(dir.path(), &["sessions", "list"]).await;
    assert!(
        !stdout(&listed).contains("test-model") && !stdout(&listed).contains("E2E"),
        "{}",
        stdout(&listed)
    );
}
