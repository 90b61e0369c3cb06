//! Checkpoints and rewind through the binary (SPEC §19): what a shell command did is undone exactly, the
//! conversation is cut back in the store, a rewind can be rewound, and a rewind that cannot write changes nothing.

use std::path::Path;
use std::process::Output;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::tree_contents;
use pretty_assertions::assert_eq;

use super::support::codepilot;
use super::support::events;
use super::support::json_lines;
use super::support::stderr;
use super::support::stdout;

/// What a turn's shell does to the work directory: a folder deleted, files created, an edit with `sed -i`, a mode
/// and a link changed, plus an ignored file (which a rewind leaves alone).
const CHANGE: &str = "set -e\nrm -rf src\nmkdir -p gen\necho generated > gen/out.txt\necho new > new.txt\n\
sed -i 's/old/NEW/' notes.txt\nchmod 600 run.sh\nln -sfn notes.txt link\necho built > target/app\n";

fn write_agent(dir: &Path, server: &ScriptedServer, runtime: &str) {
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "agent:\n  name: Rewind\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: {}/v1\n  \
             runtime:\n    work_dir: work\n    max_steps: 8\n{runtime}",
            server.base_url()
        ),
    )
    .unwrap();
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A project with a real git repository, ignored files, a link and an executable.
fn project(work: &Path) {
    let write = |rel: &str, text: &str| {
        let path = work.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("src/main.rs", "fn main() {}\n");
    write("src/util/mod.rs", "pub fn util() {}\n");
    write("notes.txt", "old notes\n");
    write("run.sh", "#!/bin/sh\necho run\n");
    write(".gitignore", "target/\n*.log\n");
    write("target/app", "old build\n");
    write("debug.log", "log\n");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/main.rs", work.join("link")).unwrap();
    git(work, &["init", "-q"]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-qm", "init"]);
}

/// Everything a checkpoint covers: not `.git`, not ignored files.
fn covered(work: &Path) -> std::collections::BTreeMap<String, (String, u32)> {
    let mut all = tree_contents(work);
    all.retain(|k, _| {
        !(k == ".git" || k.starts_with(".git/") || k.starts_with("target") || k.ends_with(".log"))
    });
    all
}

fn ignored_and_git(work: &Path) -> std::collections::BTreeMap<String, (String, u32)> {
    let covered = covered(work);
    let mut all = tree_contents(work);
    all.retain(|k, _| !covered.contains_key(k));
    all
}

fn run_args<'a>(session: &'a str, task: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--json",
        "-y",
        "--session",
        "file",
        "--session-id",
        session,
        task,
    ]
}

fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}{}",
        stdout(out),
        stderr(out)
    );
}

/// The `rewound` event of a `rewind --json`.
fn rewound(out: &Output) -> serde_json::Value {
    let all = events(&json_lines(out));
    let found: Vec<_> = all.iter().filter(|e| e["type"] == "rewound").collect();
    assert_eq!(found.len(), 1, "{all:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_turn_is_rewound_exactly_and_the_rewind_can_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    project(&work);
    std::fs::write(dir.path().join("change.sh"), CHANGE).unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nr = execute(\"main\", \"sh ../change.sh\")\nprint(r[\"exit_code\"])\n```"),
        Turn::answer("```completion\nchanged\n```"),
        Turn::answer("```completion\nsecond\n```"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, "");
    let before = covered(&work);
    let out = codepilot(dir.path(), &run_args("rw", "change things")).await;
    ok(&out, "turn 1");
    let changed = covered(&work);
    assert!(
        changed.contains_key("gen/out.txt") && !changed.contains_key("src"),
        "{changed:?}"
    );
    let other = ignored_and_git(&work);
    let out = codepilot(dir.path(), &run_args("rw", "second task")).await;
    ok(&out, "turn 2");

    let list = codepilot(dir.path(), &["checkpoints", "list", "rw", "--json"]).await;
    ok(&list, "list");
    let ids: Vec<String> = json_lines(&list)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "2"]);

    // A preview changes nothing and says what a rewind would.
    let preview = codepilot(
        dir.path(),
        &[
            "rewind",
            "rw",
            "1",
            "--files",
            "--dry-run",
            "--session",
            "file",
            "--json",
        ],
    )
    .await;
    ok(&preview, "preview");
    let said: serde_json::Value =
        serde_json::from_str(stdout(&preview).lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            said["files_restored"].as_u64(),
            said["files_deleted"].as_u64()
        ),
        (Some(5), Some(2)),
        "{said}"
    );
    assert_eq!(covered(&work), changed);

    let out = codepilot(
        dir.path(),
        &[
            "rewind",
            "rw",
            "1",
            "--files",
            "--session",
            "file",
            "--json",
        ],
    )
    .await;
    ok(&out, "rewind");
    let event = rewound(&out);
    assert_eq!(event["checkpoint"], "1");
    assert_eq!(event["scope"], "files");
    assert_eq!(
        event["files_restored"], 5,
        "main.rs, util/mod.rs, notes.txt, run.sh's mode, link"
    );
    assert_eq!(event["files_deleted"], 2, "gen/out.txt, new.txt");
    assert_eq!(event["saved_as"], "rewind-1");
    assert_eq!(
        covered(&work),
        before,
        "content, modes and links as before turn 1"
    );
    assert_eq!(
        ignored_and_git(&work),
        other,
        "ignored files and .git untouched"
    );

    // The rewind of the rewind brings the turn's changes back.
    let human = codepilot(
        dir.path(),
        &["rewind", "rw", "rewind-1", "--files", "--session", "file"],
    )
    .await;
    ok(&human, "undo");
    assert!(
        stderr(&human).contains("rewound to checkpoint rewind-1 (files)"),
        "{}",
        stderr(&human)
    );
    assert!(
        stderr(&human).contains("undo with: codepilot rewind rw rewind-2"),
        "{}",
        stderr(&human)
    );
    assert_eq!(covered(&work), changed);
    assert_eq!(ignored_and_git(&work), other);

    // Unknown checkpoints name the ones there are.
    let bad = codepilot(dir.path(), &["rewind", "rw", "9", "--session", "file"]).await;
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        stderr(&bad).contains("has no checkpoint \"9\"; it has 1, 2, rewind-1, rewind-2"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversation_is_cut_back_and_the_next_turn_sees_exactly_that() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\nwrite_file(\"one.txt\")\n```\n\n```text filename=one.txt\n1\n```",
        ),
        Turn::answer("```completion\nfirst done\n```"),
        Turn::answer("```completion\nsecond done\n```"),
        Turn::answer("```completion\nthird done\n```"),
        Turn::answer("```completion\nfourth done\n```"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, "");
    for task in ["first task", "second task"] {
        ok(&codepilot(dir.path(), &run_args("conv", task)).await, task);
    }
    let history_after_1 = server.requests()[2].body["messages"].clone();

    let out = codepilot(
        dir.path(),
        &[
            "rewind",
            "conv",
            "2",
            "--conversation",
            "--session",
            "file",
            "--json",
        ],
    )
    .await;
    ok(&out, "rewind");
    let event = rewound(&out);
    assert_eq!(
        (event["scope"].as_str(), event["files_restored"].as_u64()),
        (Some("conversation"), Some(0))
    );
    assert_eq!(
        event["messages"], 4,
        "task 1: its message, two answers, one observation"
    );
    assert!(
        dir.path().join("work/one.txt").exists(),
        "files are not touched"
    );

    ok(
        &codepilot(dir.path(), &run_args("conv", "third task")).await,
        "third",
    );
    let reqs = server.requests();
    let sent = reqs[3].body["messages"].as_array().unwrap().clone();
    let before: Vec<_> = history_after_1
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .cloned()
        .collect();
    let now: Vec<_> = sent
        .iter()
        .filter(|m| m["role"] != "system")
        .cloned()
        .collect();
    // Task 1's request held its task message; the third task's holds task 1 whole, then the new task.
    let text = |m: &serde_json::Value| m["content"].as_str().unwrap_or_default().to_owned();
    assert_eq!(text(&before[0]), text(&now[0]));
    assert_eq!(now.len(), 5, "{now:#?}");
    assert!(
        !now.iter().any(|m| text(m).contains("second task")),
        "{now:#?}"
    );
    assert!(
        text(&now[4]).contains("[Task 3]") && text(&now[4]).contains("third task"),
        "turn numbers go on: {now:#?}"
    );

    // Both, back to before turn 1: files and conversation.
    let out = codepilot(
        dir.path(),
        &["rewind", "conv", "1", "--session", "file", "--json"],
    )
    .await;
    ok(&out, "rewind both");
    assert_eq!(rewound(&out)["messages"], 0);
    assert!(!dir.path().join("work/one.txt").exists());
    let shown = codepilot(
        dir.path(),
        &["sessions", "show", "conv", "--session", "file", "--json"],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&shown)).unwrap(),
        serde_json::json!([])
    );
    // And that rewind undone: the conversation of three turns is back.
    ok(
        &codepilot(
            dir.path(),
            &["rewind", "conv", "rewind-2", "--session", "file"],
        )
        .await,
        "undo",
    );
    let shown = codepilot(
        dir.path(),
        &["sessions", "show", "conv", "--session", "file", "--json"],
    )
    .await;
    let messages: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(messages.as_array().unwrap().len(), 6);
    assert!(dir.path().join("work/one.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_checkpoints_rewind_to_step_three_of_five() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let mut turns: Vec<Turn> = (1..=4)
        .map(|i| {
            Turn::answer(format!(
                "```codepilot\nwrite_file(\"s{i}.txt\")\n```\n\n```text filename=s{i}.txt\n{i}\n```"
            ))
        })
        .collect();
    turns.push(Turn::answer("```completion\nfive steps\n```"));
    let server = ScriptedServer::start(turns).await.unwrap();
    write_agent(dir.path(), &server, "    checkpoints: step\n");
    ok(
        &codepilot(dir.path(), &run_args("steps", "five steps")).await,
        "turn",
    );
    let list = codepilot(dir.path(), &["checkpoints", "list", "steps", "--json"]).await;
    let ids: Vec<String> = json_lines(&list)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "1.2", "1.3", "1.4", "1.5"], "{}", stdout(&list));

    let out = codepilot(
        dir.path(),
        &["rewind", "steps", "1.3", "--session", "file", "--json"],
    )
    .await;
    ok(&out, "rewind");
    let event = rewound(&out);
    assert_eq!(
        event["files_deleted"],
        2,
        "s3.txt and s4.txt: {}",
        stdout(&list)
    );
    assert_eq!(
        event["messages"], 5,
        "the task, then two steps of answer and observation"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("work"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["s1.txt", "s2.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_that_cannot_write_a_file_changes_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("big.bin"), codepilot_testkit::noise(1 << 20, 7)).unwrap();
    std::fs::write(work.join("keep.txt"), "keep").unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\nexecute(\"main\", \"rm big.bin && echo made > made.txt\")\n```",
        ),
        Turn::answer("```completion\ngone\n```"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, "");
    ok(
        &codepilot(dir.path(), &run_args("full", "delete it")).await,
        "turn",
    );
    let after_turn = covered(&work);

    // Writing big.bin back fails (files over 256 KiB cannot be written, as on a full disk): root cannot
    // override this limit, unlike file permissions.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir.path())
        .args(["rewind", "full", "1", "--session", "file", "--json"])
        .env("CODEPILOT_HOME", dir.path().join("home"))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 256 << 10,
                rlim_max: 256 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nothing was changed: cannot write") && err.contains("big.bin"),
        "{err}"
    );
    assert!(
        !stdout(&out).contains("\"rewound\""),
        "no rewind reported: {}",
        stdout(&out)
    );
    assert_eq!(covered(&work), after_turn, "nothing half-done");
    let leftovers: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with(".codepilot"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Without the limit it goes through.
    ok(
        &codepilot(dir.path(), &["rewind", "full", "1", "--session", "file"]).await,
        "rewind",
    );
    assert_eq!(
        std::fs::read(work.join("big.bin")).unwrap(),
        codepilot_testkit::noise(1 << 20, 7)
    );
    assert!(!work.join("made.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_mid_turn_the_resumed_session_still_rewinds() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("keep.txt"), "keep").unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```"),
        Turn::delay(120_000, Turn::answer("never delivered")),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, "");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"))
        .current_dir(dir.path())
        .args(["run", "--json", "--session-id", "killed", "write a"])
        .env("CODEPILOT_HOME", dir.path().join("home"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.requests().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached step 2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: nothing flushed, the lease left behind
    child.wait().unwrap();
    assert!(work.join("a.txt").exists());

    // The SQLite session resumes (the dead holder's lease is taken over) and rewinds to before the turn.
    let out = codepilot(dir.path(), &["rewind", "killed", "1", "--json"]).await;
    ok(&out, "rewind after the kill");
    let event = rewound(&out);
    assert_eq!(
        (event["files_deleted"].as_u64(), event["messages"].as_u64()),
        (Some(1), Some(0)),
        "{event}"
    );
    assert!(!work.join("a.txt").exists() && work.join("keep.txt").exists());
    let list = codepilot(dir.path(), &["checkpoints", "list", "killed"]).await;
    ok(&list, "list");
    let table = stdout(&list);
    assert!(
        table.starts_with("ID ") && table.contains("\n1 ") && table.contains("\nrewind-1 "),
        "{table}"
    );
}
