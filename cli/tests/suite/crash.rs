//! Crash safety through the real binary: SIGKILL mid-run, resume with every finished step once; two processes on
//! one session.

use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::support::Wire;
use super::support::codepilot;
use super::support::stderr;
use super::support::write_agent;

const NO_TERMINALS: &str = "  tools:\n    - {name: execute, enabled: false}\n    - {name: read_output, enabled: false}\n    - {name: send_input, enabled: false}\n    - {name: terminate_terminal, enabled: false}\n";

/// The session flags for each backend that is available. Postgres needs `CODEPILOT_TEST_PG_URL`; under CI its
/// absence is a failure, never a silent skip.
fn backends() -> Vec<(&'static str, Vec<String>)> {
    let mut v = vec![
        ("sqlite", vec!["--session".to_owned(), "db".to_owned()]),
        ("file", vec!["--session".to_owned(), "file".to_owned()]),
    ];
    if let Some(url) = super::support::pg_url() {
        v.push((
            "postgres",
            vec![
                "--session".to_owned(),
                "db".to_owned(),
                "--db-url".to_owned(),
                url,
            ],
        ));
    }
    v
}

fn spawn(dir: &Path, args: &[String]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"))
        .current_dir(dir)
        .args(args)
        .env("CODEPILOT_HOME", dir.join("home"))
        .env_remove("CODEPILOT_DB_URL")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_for_requests(server: &ScriptedServer, n: usize) {
    let t0 = Instant::now();
    while server.requests().len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the run never reached request {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn args(base: &[String], extra: &[&str]) -> Vec<String> {
    let mut v = vec!["run".to_owned(), "--json".to_owned()];
    v.extend(base.iter().cloned());
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_resume_keeps_every_finished_step_once() {
    for (name, flags) in backends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        std::fs::write(dir.path().join("work/a.txt"), "alpha\n").unwrap();
        let session = format!("crash-{name}-{}", std::process::id());
        let server = ScriptedServer::start(vec![
            Turn::answer("step one\n\n```codepilot\nread_file(\"a.txt\")\n```"),
            Turn::answer("step two\n\n```codepilot\nprint(\"two\")\n```"),
            Turn::delay(120_000, Turn::answer("never delivered")),
        ])
        .await
        .unwrap();
        write_agent(dir.path(), &server, Wire::OpenAi, true, NO_TERMINALS);

        let mut child = spawn(
            dir.path(),
            &args(&flags, &["--session-id", &session, "first task"]),
        );
        wait_for_requests(&server, 3).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        server.push(Turn::answer("```completion\nresumed\n```"));
        let resume: Vec<String> = args(&flags, &["--session-id", &session, "continue"]);
        let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
        let out = codepilot(dir.path(), &resume).await;
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));

        let reqs = server.requests();
        assert_eq!(reqs.len(), 4, "{name}");
        let msgs: Vec<String> = reqs[3].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect();
        let all = msgs.join("\n---\n");
        assert_eq!(
            all.matches("[Task 1][USER INPUT]").count(),
            1,
            "{name}: {all}"
        );
        assert_eq!(all.matches("step one").count(), 1, "{name}: {all}");
        assert_eq!(all.matches("step two").count(), 1, "{name}: {all}");
        assert_eq!(
            all.matches("[read_file] 'a.txt'").count(),
            1,
            "{name}: {all}"
        );
        assert_eq!(
            all.matches("[EXECUTION RESULT]\ntwo").count(),
            1,
            "{name}: {all}"
        );
        assert!(
            all.ends_with("[Task 2][USER INPUT]\ncontinue"),
            "{name}: {all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_session_is_refused_until_the_first_dies() {
    for (name, flags) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let session = format!("lease-{name}-{}", std::process::id());
        let server = ScriptedServer::start(vec![Turn::delay(120_000, Turn::answer("slow"))])
            .await
            .unwrap();
        write_agent(dir.path(), &server, Wire::OpenAi, true, NO_TERMINALS);
        let mut first = spawn(
            dir.path(),
            &args(&flags, &["--session-id", &session, "hold it"]),
        );
        wait_for_requests(&server, 1).await;

        let second: Vec<String> = args(&flags, &["--session-id", &session, "me too"]);
        let second: Vec<&str> = second.iter().map(String::as_str).collect();
        let out = codepilot(dir.path(), &second).await;
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("pid {}", first.id())),
            "{name}: the holder must be named: {err}"
        );

        first.kill().unwrap();
        first.wait().unwrap();
        server.push(Turn::answer("now it is mine"));
        let out = codepilot(dir.path(), &second).await;
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    }
}

/// Every process below `pid`, from `/proc`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
        parent_of.insert(p, ppid);
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parent_of {
            if *parent == p {
                found.push(*child);
                frontier.push(*child);
            }
        }
    }
    found
}

/// Whether `pid` is gone (a zombie counts as gone: it runs nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => true,
    }
}

async fn all_gone(pids: &[u32]) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if pids.iter().all(|p| gone(*p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A run with a background command in a second terminal, stuck waiting for its second model answer.
async fn stuck_run(dir: &Path, session: &str) -> (ScriptedServer, std::process::Child) {
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "step one\n\n```codepilot\nexecute(\"bg\", \"sleep 300\", timeout=1, new_terminal=True)\n```",
        ),
        Turn::delay(120_000, Turn::answer("never")),
    ])
    .await
    .unwrap();
    write_agent(dir, &server, Wire::OpenAi, true, "");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir)
        .args(["run", "--json", "--session-id", session, "interrupt me"])
        .env("CODEPILOT_HOME", dir.join("home"))
        .env_remove("CODEPILOT_DB_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    super::support::detach_from_terminal(&mut cmd);
    let child = cmd.spawn().unwrap();
    wait_for_requests(&server, 2).await;
    (server, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_sigterm_and_sighup_abort_the_task_and_exit_4_with_the_step_stored() {
    for (signal, name) in [
        (libc::SIGINT, "sigint"),
        (libc::SIGTERM, "sigterm"),
        (libc::SIGHUP, "sighup"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (_server, child) = stuck_run(dir.path(), name).await;
        let below = descendants(child.id());
        assert!(
            below.len() >= 3,
            "{name}: two shells and a sleep expected: {below:?}"
        );
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(i32::try_from(child.id()).unwrap(), signal);
        }
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{name}: {}", stderr(&out));
        let lines = super::support::json_lines(&out);
        assert!(
            super::support::events(&lines)
                .iter()
                .any(|e| e["type"] == "aborted"),
            "{name}: {lines:?}"
        );
        assert_eq!(
            lines.last().unwrap()["outcome"]["status"],
            "aborted",
            "{name}"
        );
        assert!(
            all_gone(&below).await,
            "{name}: processes outlived the runtime: {below:?}"
        );
        // The finished step was stored: the session shows it.
        let show = codepilot(dir.path(), &["sessions", "show", name]).await;
        assert!(
            super::support::stdout(&show).contains("step one"),
            "{name}: {}",
            stderr(&show)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_shell_outlives_a_killed_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut child) = stuck_run(dir.path(), "sigkill").await;
    let below = descendants(child.id());
    assert!(
        below.len() >= 3,
        "two shells and a sleep expected: {below:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        all_gone(&below).await,
        "processes outlived the killed runtime: {below:?}"
    );
}

/// The names in `dir` that start with `prefix`, sorted.
fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_removes_the_runtime_folders_a_killed_process_left() {
    let dir = tempfile::tempdir().unwrap();
    let (sockets, temp) = (dir.path().join("xdg"), dir.path().join("tmp"));
    std::fs::create_dir_all(&sockets).unwrap();
    std::fs::create_dir_all(&temp).unwrap();
    // What is not a dead owner's stays: a folder whose lock is held (by this test, under a PID that exists in no
    // namespace here — liveness is the lock, not the PID), one without a lock, other shapes.
    let live = "codepilot-999999999-0000abcd".to_owned();
    for keep in [
        live.as_str(),
        "codepilot-1-0000beef",
        "codepilot-demo-1234",
        "codepilot-99-notahex",
    ] {
        std::fs::create_dir(sockets.join(keep)).unwrap();
    }
    let held = std::fs::File::create(sockets.join(&live).join(".lock")).unwrap();
    held.lock().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::delay(120_000, Turn::answer("never")),
        Turn::answer("Done.\n```completion\nok\n```"),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, Wire::OpenAi, true, "");
    let run = |task: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
        cmd.current_dir(dir.path())
            .args(["run", "--session", "memory", task])
            .env("CODEPILOT_HOME", dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", &sockets)
            .env("TMPDIR", &temp)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };

    let mut killed = run("hang").spawn().unwrap();
    let pid = killed.id();
    wait_for_requests(&server, 1).await;
    let socket_dirs = names(&sockets, &format!("codepilot-{pid}-"));
    let shell_dirs = names(&temp, &format!("codepilot-shell-{pid}-"));
    assert_eq!((socket_dirs.len(), shell_dirs.len()), (1, 1));
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(names(&sockets, &format!("codepilot-{pid}-")), socket_dirs);

    let mut next = run("finish");
    let out = tokio::task::spawn_blocking(move || next.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The sweep runs in the background of the next start: wait for it (bounded), then check what stayed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(names(&sockets, &format!("codepilot-{pid}-")).is_empty()
        && names(&temp, "codepilot-shell-").is_empty())
    {
        assert!(Instant::now() < deadline, "the killed run's folders stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut kept = vec![
        live,
        "codepilot-1-0000beef".to_owned(),
        "codepilot-99-notahex".to_owned(),
        "codepilot-demo-1234".to_owned(),
    ];
    kept.sort();
    assert_eq!(
        names(&sockets, "codepilot-"),
        kept,
        "the killed process's socket folder is gone, the others stay"
    );
    assert_eq!(names(&temp, "codepilot-shell-"), Vec::<String>::new());
    drop(held);
}
