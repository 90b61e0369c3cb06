//! Resource limits through the binary (SPEC §24): bounded storms against low limits. A command that runs into a
//! limit is stopped or killed, its observation names the limit and its value, a `resource_limit` event says the
//! same, and the terminal, the runtime and the rest of the turn go on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use codepilot::sandbox::resources::Mechanism;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::support::stderr;

/// The pids hierarchy's base where session cgroups go, or `None` (the test is skipped) without one.
fn pids_base() -> Option<std::path::PathBuf> {
    match Mechanism::detect() {
        Mechanism::CgroupV1 {
            pids: Some(base), ..
        }
        | Mechanism::CgroupV2 { base } => Some(base),
        other => {
            codepilot_testkit::service::cgroups_missing(&other.describe());
            None
        }
    }
}

fn write_agent(dir: &Path, server: &ScriptedServer, resources: &str) {
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "agent:\n  name: Limits\n  model:\n    provider: openai-compatible\n    name: m\n    context_window: 64000\n    \
             base_url: {}/v1\n  runtime:\n    work_dir: work\n    max_steps: 4\n    resources: {resources}\n",
            server.base_url()
        ),
    )
    .unwrap();
}

/// Runs `codepilot run --json TASK` in `dir`; meanwhile, the highest `pids.peak` of the session cgroups that
/// process makes under `pids_base`.
async fn run_watching(dir: &Path, pids_base: &Path) -> (std::process::Output, u64) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir)
        .args([
            "run",
            "--session",
            "memory",
            "--json",
            "run into the limits",
        ])
        .env("CODEPILOT_HOME", dir.join("home"))
        .env_remove("CODEPILOT_CGROUP")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    super::support::detach_from_terminal(&mut cmd);
    let child = cmd.spawn().unwrap();
    let prefix = format!("codepilot-{}-", child.id());
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let prefix = prefix.clone();
        let (peak, done, base) = (
            Arc::clone(&peak),
            Arc::clone(&done),
            pids_base.to_path_buf(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&prefix) {
                        let read = |f: &str| {
                            std::fs::read_to_string(entry.path().join(f))
                                .ok()
                                .and_then(|s| s.trim().parse::<u64>().ok())
                        };
                        if let Some(n) = read("pids.peak").or_else(|| read("pids.current")) {
                            peak.fetch_max(n, Ordering::SeqCst);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let leftovers: Vec<String> = std::fs::read_dir(pids_base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(leftovers.is_empty(), "cgroups left behind: {leftovers:?}");
    (out, peak.load(Ordering::SeqCst))
}

/// Tool results and `resource_limit` events of a `--json` run, in order.
fn results_and_limits(out: &std::process::Output) -> (Vec<String>, Vec<serde_json::Value>) {
    let events = super::support::events(&super::support::json_lines(out));
    let results = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .map(|e| e["result"].as_str().unwrap_or_default().to_owned())
        .collect();
    let limits = events
        .iter()
        .filter(|e| e["type"] == "resource_limit")
        .cloned()
        .collect();
    (results, limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_storm_and_a_huge_allocation_are_stopped_and_named() {
    let Some(base) = pids_base() else { return };
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\n\
             execute(\"main\", \"for i in $(seq 2000); do sleep 30 & done; echo looped\", timeout=120)\n\
             read_output(\"main\")\n\
             execute(\"main\", \"echo after=ok\")\n\
             execute(\"main\", \"python3 -c \\\"x = b'x' * (600 << 20); print('allocated', len(x))\\\"\")\n\
             execute(\"main\", \"python3 -c \\\"fs = [open('/dev/null') for _ in range(100)]\\\"\")\n\
             execute(\"main\", \"echo alive\")\n\
             ```",
        ),
        Turn::answer("```completion\nsurvived\n```"),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_agent(
        dir.path(),
        &server,
        "{max_processes: 64, max_memory_mb: 256, max_open_files: 32}",
    );
    let started = std::time::Instant::now();
    let (out, peak) = run_watching(dir.path(), &base).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (results, limits) = results_and_limits(&out);
    assert_eq!(results.len(), 6, "{results:#?}");
    // Reading the finished storm again shows its output, not the limit a second time (nor a second event).
    assert!(!results[1].contains("[stopped:"), "{}", results[1]);
    let results: Vec<String> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| (i != 1).then_some(r))
        .collect();
    assert!(peak <= 64, "{peak} processes existed at once");
    assert!(peak >= 32, "the storm never got going ({peak} processes)");

    let storm = &results[0];
    assert!(
        storm.contains("[stopped: process limit 64 reached (runtime.resources.max_processes)"),
        "{storm}"
    );
    assert!(
        !storm.contains("\nlooped\n"),
        "the storm ran to its end: {storm}"
    );
    assert!(results[1].contains("\nafter=ok\n"), "{}", results[1]);
    let alloc = &results[2];
    assert!(
        alloc.contains("[killed: memory limit 256 MiB reached (runtime.resources.max_memory_mb)"),
        "{alloc}"
    );
    assert!(alloc.contains("return_code: 137"), "{alloc}");
    assert!(!alloc.contains("\nallocated "), "{alloc}");
    assert!(
        results[3].contains("Too many open files")
            && results[3]
                .contains("[open files limit 32 reached (runtime.resources.max_open_files)"),
        "{}",
        results[3]
    );
    assert!(results[4].contains("\nalive\n"), "{}", results[4]);
    let kinds: Vec<(&str, u64, &str)> = limits
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["limit"].as_u64().unwrap(),
                e["terminal"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("processes", 64, "main"),
            ("memory", 256, "main"),
            ("open_files", 32, "main")
        ]
    );
    // Stopped at the first refused fork, not after bash's retries (15 s per fork) for 2,000 of them.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_is_stopped_at_the_disk_cap_and_the_file_tools_refuse_until_space_is_freed() {
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\n\
             execute(\"main\", \"yes > big.log\")\n\
             execute(\"main\", \"head -c 30M /dev/zero > more.bin\")\n\
             try:\n    write_file(\"notes.txt\")\nexcept OSError as e:\n    print(\"refused\")\n\
             execute(\"main\", \"rm big.log more.bin && echo freed\")\n\
             write_file(\"notes.txt\")\n\
             ```\n\n```text filename=notes.txt\nfirst\n```\n\n```text filename=notes.txt\nsecond\n```\n",
        ),
        Turn::answer("```completion\nwritten\n```"),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_agent(dir.path(), &server, "{max_disk_mb: 50}");
    let out = super::support::codepilot(
        dir.path(),
        &["run", "--session", "memory", "--json", "fill the disk"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (results, limits) = results_and_limits(&out);
    let writer = &results[0];
    assert!(writer.contains("return_code: 153"), "{writer}");
    assert!(
        writer.contains("disk limit 50 MiB reached")
            || writer.contains("file size limit 50 MiB reached"),
        "{writer}"
    );
    let size = std::fs::metadata(dir.path().join("work/big.log")).map_or(0, |m| m.len());
    assert!(size <= 50 << 20, "big.log grew to {size} bytes");
    let over = "[stopped: disk limit 50 MiB reached (runtime.resources.max_disk_mb): the work directory holds";
    assert!(results[1].contains(over), "{}", results[1]);
    assert!(
        results[2].starts_with("[write_file] ERROR: 'notes.txt' was not written: ")
            && results[2].contains(over),
        "{}",
        results[2]
    );
    assert!(results[3].contains("\nfreed\n"), "{}", results[3]);
    assert!(results[4].contains("'notes.txt' written"), "{}", results[4]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("work/notes.txt")).unwrap(),
        "second\n"
    );
    assert!(
        limits
            .iter()
            .any(|e| e["kind"] == "disk" && e["limit"] == 50 && e["terminal"].is_null()),
        "the refused write is an event too: {limits:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cgroup_of_a_killed_runtime_is_removed_by_the_next_start() {
    let Some(base) = pids_base() else { return };
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nexecute(\"main\", \"sleep 60\", timeout=120)\n```"),
        Turn::answer("```completion\nquick\n```"),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_agent(dir.path(), &server, "{max_processes: 64}");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir.path())
        .args(["run", "--session", "memory", "sleep"])
        .env("CODEPILOT_HOME", dir.path().join("home"))
        .env_remove("CODEPILOT_CGROUP")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    super::support::detach_from_terminal(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let prefix = format!("codepilot-{}-", child.id());
    let find = || {
        std::fs::read_dir(&base)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let cgroup = loop {
        let sleeping = |dir: &std::path::Path| {
            std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .any(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
                })
        };
        if let Some(dir) = find()
            && sleeping(&dir)
        {
            break dir;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the shell never ran `sleep`"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // The shell and its `sleep` die with the runtime; the cgroup stays behind, empty.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(cgroup.join("pids.current")).is_ok_and(|n| n.trim() != "0") {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed runtime's shell lives on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Still there, unless another test's runtime, starting meanwhile, swept it already (every start sweeps the
    // cgroups of dead runtimes): either way the next start must not find it.
    let out = super::support::codepilot(dir.path(), &["run", "--session", "memory", "again"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !cgroup.exists(),
        "the next start left {} behind",
        cgroup.display()
    );
}

/// Without a writable cgroup (an unprivileged user here), the process limit is `RLIMIT_NPROC` in each sandboxed
/// shell's user namespace: the storm is held to it, stopped when bash says it retries a refused fork, and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_the_rlimit_floor_holds_and_stops_a_storm_per_shell() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return; // needs root to become the unprivileged user; CI runs as root
    }
    if let Err(why) = &codepilot::sandbox::probe().namespaces {
        codepilot_testkit::service::sandbox_missing(why);
        return;
    }
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\n\
             execute(\"main\", \"for i in $(seq 500); do sleep 30 & done; echo looped\", timeout=120)\n\
             execute(\"main\", \"echo after=ok\")\n\
             ```",
        ),
        Turn::answer("```completion\nheld\n```"),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_agent(dir.path(), &server, "{max_processes: 32}");
    for d in [dir.path().to_path_buf(), dir.path().join("work")] {
        super::sandbox::open_to_all(&d);
    }
    let mut cmd = super::sandbox::as_user(Some("65534"), env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir.path())
        .args(["run", "--session", "memory", "--json", "storm"])
        .env("CODEPILOT_HOME", dir.path().join("home"))
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null());
    super::support::detach_from_terminal(&mut cmd);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (results, limits) = results_and_limits(&out);
    assert!(
        results[0].contains("[stopped: process limit 32 reached (runtime.resources.max_processes)"),
        "{}",
        results[0]
    );
    // Stopped at bash's first fork retry: left alone, bash gives up on that fork after 15 s and the loop goes on to
    // print `looped`.
    assert!(!results[0].contains("\nlooped\n"), "{}", results[0]);
    assert!(results[1].contains("\nafter=ok\n"), "{}", results[1]);
    assert_eq!(limits.len(), 1, "{limits:#?}");
}
