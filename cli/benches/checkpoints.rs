//! Checkpoints and rewind (SPEC §19) on a 10,000-file, ~100 MB workspace where a shell command changes 100 files:
//! capture, capture with nothing changed, rewind of those 100 files, and what a checkpoint stores; beside them the
//! same operations with a shadow git repository (`git add -A && git commit` in a separate `GIT_DIR`, the way Cline
//! keeps its checkpoints); then what a user pays through `codepilot run` and `codepilot rewind`.
//!
//! `cargo bench -p codepilot-cli --bench checkpoints` (`-- --runs N`, default 20; p50 and p95 are reported).
//!
//! The workspace: 10,000 files in 100 folders — 9,000 source-like text files (about 10 KB each) and 1,000
//! incompressible 18 KB assets — a `.gitignore`, and a `.gitignore`d `target/` of 2,000 files that checkpoints
//! leave out. Each round, `sed -i` rewrites 100 of the text files (a different 100 each time).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use codepilot::CheckpointKind;
use codepilot::store::SessionId;
use codepilot::store::checkpoint::CheckpointOptions;
use codepilot::store::checkpoint::FilePlan;
use codepilot::store::checkpoint::HistoryDigest;
use codepilot::store::checkpoint::Position;
use codepilot::store::checkpoint::SessionCheckpoints;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::noise;

const FILES: usize = 10_000;
const CHANGED: usize = 100;

/// Writes the workspace; returns its size in bytes (what checkpoints cover).
fn workspace(root: &Path) -> u64 {
    let mut bytes = 0_u64;
    for i in 0..FILES {
        let dir = root.join(format!("src/module_{:03}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        let data = if i % 10 == 9 {
            noise(18 << 10, i as u64 + 1)
        } else {
            (0..140)
                .map(|l| {
                    format!(
                        "    let value_{l} = compute_{i}({l}, \"item {}\"); // step {l}\n",
                        l * i % 997
                    )
                })
                .collect::<String>()
                .into_bytes()
        };
        bytes += data.len() as u64;
        std::fs::write(dir.join(format!("file_{i:05}.rs")), data).unwrap();
    }
    std::fs::write(root.join(".gitignore"), "target/\n").unwrap();
    for i in 0..2000 {
        let dir = root.join(format!("target/debug/{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("artifact_{i}.o")), noise(4096, i + 7)).unwrap();
    }
    bytes
}

/// The text files round `round` changes.
fn changed_files(round: usize) -> Vec<String> {
    (0..CHANGED)
        .map(|k| {
            let i = ((round * CHANGED + k) * 10 + round % 9) % FILES;
            let i = if i % 10 == 9 { i - 1 } else { i };
            format!("src/module_{:03}/file_{i:05}.rs", i % 100)
        })
        .collect()
}

/// What an agent's shell does: `sed -i` over 100 files.
fn change(work: &Path, round: usize) {
    let status = Command::new("sed")
        .current_dir(work)
        .arg("-i")
        .arg(format!("s/step 1$/step 1 (round {round})/"))
        .args(changed_files(round))
        .status()
        .unwrap();
    assert!(status.success());
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn kib(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", n as f64 / 1024.0)
    }
}

/// p50 and p95.
fn pcts(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p95 = ((v.len() * 95).div_ceil(100)).saturating_sub(1);
    (v[v.len() / 2], v[p95])
}

fn position(turn: u64, kind: CheckpointKind) -> Position {
    Position {
        kind,
        turn,
        step: None,
        messages: 0,
        digest: HistoryDigest::of(&[]),
        archives: Vec::new(),
        cut: None,
    }
}

/// Bytes under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            du(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

struct Row {
    capture: Vec<Duration>,
    /// Nothing changed, right after a capture of changes (shadow git: none, the same as `unchanged`).
    racy: Vec<Duration>,
    unchanged: Vec<Duration>,
    rewind: Vec<Duration>,
    stored: Vec<u64>,
}

fn print(label: &str, row: Row, changed_compressed: u64) {
    let (c50, c95) = pcts(row.capture);
    let (u50, u95) = pcts(row.unchanged);
    let racy = if row.racy.is_empty() {
        "—".to_owned()
    } else {
        let (r50, r95) = pcts(row.racy);
        format!("{} / {}", ms(r50), ms(r95))
    };
    let (r50, r95) = pcts(row.rewind);
    let stored = row.stored.iter().sum::<u64>() / row.stored.len() as u64;
    println!(
        "| {label} | {} / **{}** | {} / **{}** | {racy} | {} / **{}** | {} (changed content zstd -3: {}) |",
        ms(c50),
        ms(c95),
        ms(u50),
        ms(u95),
        ms(r50),
        ms(r95),
        kib(stored),
        kib(changed_compressed)
    );
}

/// What a rewind of the files does: record the state it replaces, plan, write.
fn rewind_to(cps: &mut SessionCheckpoints, work: &Path, id: &str, turn: u64) -> FilePlan {
    let target = cps.find(id).unwrap().clone();
    let saved = cps
        .capture(work, &position(turn, CheckpointKind::Rewind))
        .unwrap();
    let now = cps.find(&saved.info.id).unwrap().clone();
    let plan = cps.file_plan(&target, &now, work).unwrap();
    cps.apply_files(work, &plan, &saved.info.id).unwrap();
    plan
}

/// In-process: `SessionCheckpoints`, what the runtime calls before each turn and for a rewind.
fn checkpoints(work: &Path, home: &Path, runs: usize) -> Row {
    let session = SessionId::generate();
    let mut cps = SessionCheckpoints::open(
        &session,
        CheckpointOptions {
            dir: Some(home.to_path_buf()),
            ..CheckpointOptions::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let first = cps
        .capture(work, &position(1, CheckpointKind::Turn))
        .unwrap();
    println!(
        "first capture (every file read, hashed, compressed and stored): {} for {} files, {} stored",
        ms(started.elapsed()),
        first.info.files,
        kib(first.info.stored_bytes)
    );
    let mut row = Row {
        capture: Vec::new(),
        racy: Vec::new(),
        unchanged: Vec::new(),
        rewind: Vec::new(),
        stored: Vec::new(),
    };
    let mut before = first.info.id;
    for round in 0..runs {
        let turn = round as u64 + 2;
        change(work, round);
        let t = Instant::now();
        let c = cps
            .capture(work, &position(turn, CheckpointKind::Turn))
            .unwrap();
        row.capture.push(t.elapsed());
        row.stored.push(c.info.stored_bytes);
        if c.pruned {
            cps.collect_garbage().unwrap();
        }
        // Right after, the files just changed are read again (a coarse clock could hide a second change);
        // between turns (seconds apart) nothing is read.
        let t = Instant::now();
        cps.capture(work, &position(turn, CheckpointKind::Turn))
            .unwrap();
        row.racy.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        cps.capture(work, &position(turn, CheckpointKind::Turn))
            .unwrap();
        row.unchanged.push(t.elapsed());
        // Rewind the 100 files to before the change: the rewind's own checkpoint, the plan, the writes.
        let t = Instant::now();
        let plan = rewind_to(&mut cps, work, &before, turn);
        row.rewind.push(t.elapsed());
        assert_eq!(plan.files_restored(), CHANGED as u64);
        // Forward again, so the next round starts from the changed tree.
        rewind_to(&mut cps, work, &c.info.id, turn);
        before = c.info.id;
    }
    row
}

fn git(work: &Path, git_dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(work)
        .env("GIT_DIR", git_dir)
        .env("GIT_WORK_TREE", work)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A shadow git repository: `git add -A && git commit` to capture, `git reset --hard` + `git clean -fd` to rewind.
fn shadow_git(work: &Path, git_dir: &Path, runs: usize) -> Row {
    git(work, git_dir, &["init", "-q"]);
    let commit = |message: &str| {
        git(work, git_dir, &["add", "-A"]);
        git(
            work,
            git_dir,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
    };
    let started = Instant::now();
    commit("first");
    println!(
        "first shadow-git commit: {} ({} in the repository)",
        ms(started.elapsed()),
        kib(du(git_dir))
    );
    let mut row = Row {
        capture: Vec::new(),
        racy: Vec::new(),
        unchanged: Vec::new(),
        rewind: Vec::new(),
        stored: Vec::new(),
    };
    for round in 0..runs {
        change(work, round + 1000);
        let size = du(git_dir);
        let t = Instant::now();
        commit("turn");
        row.capture.push(t.elapsed());
        row.stored.push(du(git_dir) - size);
        let t = Instant::now();
        commit("unchanged");
        row.unchanged.push(t.elapsed());
        let t = Instant::now();
        git(work, git_dir, &["reset", "-q", "--hard", "HEAD~2"]);
        git(work, git_dir, &["clean", "-q", "-fd"]);
        row.rewind.push(t.elapsed());
        git(work, git_dir, &["reset", "-q", "--hard", "HEAD@{1}"]);
    }
    row
}

/// `codepilot run` of a two-step task whose shell `sed`s 100 files, with `checkpoints` as given; the wall time.
fn cli_run(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    work: &Path,
    checkpoints: &str,
    session: &str,
    round: usize,
) -> Duration {
    let files = changed_files(round).join(" ");
    let server = rt
        .block_on(ScriptedServer::start(vec![
            Turn::answer(format!(
                "```codepilot\nexecute(\"main\", \"sed -i 's/step 2$/step 2 ({round})/' {files}\")\n```"
            )),
            Turn::answer("```completion\ndone\n```"),
        ]))
        .unwrap();
    let agent = dir.join("agent.yaml");
    std::fs::write(
        &agent,
        format!(
            "agent:\n  name: Bench\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: {}/v1\n  \
             runtime:\n    work_dir: {}\n    checkpoints: {checkpoints}\n",
            server.base_url(),
            work.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(bin())
        .current_dir(dir)
        .args([
            "run",
            "-y",
            "-c",
            agent.to_str().unwrap(),
            "--session",
            "file",
            "--session-id",
            session,
        ])
        .arg("change 100 files")
        .env("CODEPILOT_HOME", dir.join("home"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn bin() -> std::ffi::OsString {
    std::env::var_os("CODEPILOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into())
}

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_usize);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let work = root.join("work");
    let bytes = workspace(&work);
    println!(
        "workspace: {FILES} files, {} (+ a .gitignored target/ of 2,000 files); {CHANGED} files changed by `sed -i` per round, {runs} rounds",
        kib(bytes)
    );
    // What the changed content compresses to: the floor of what a checkpoint must store.
    let mut changed_compressed = 0;
    for rel in changed_files(0) {
        let data = std::fs::read(work.join(rel)).unwrap();
        changed_compressed += zstd::bulk::compress(&data, 3).unwrap().len() as u64;
    }
    println!();
    let ours = checkpoints(&work, &root.join("checkpoints"), runs);
    let git_row = shadow_git(&work, &root.join("shadow.git"), runs);
    println!();
    println!(
        "| in-process | capture p50 / p95 | nothing changed p50 / p95 | nothing changed, right after p50 / p95 | rewind of 100 files p50 / p95 | stored per checkpoint |"
    );
    println!("|---|---|---|---|---|---|");
    print("CodePilot checkpoints", ours, changed_compressed);
    print(
        "shadow git (`add -A && commit`, `reset --hard && clean -fd`)",
        git_row,
        changed_compressed,
    );

    // What a user pays: a turn through the CLI with and without checkpoints, and `codepilot rewind`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cli_runs = runs.min(9);
    // A first turn in each session, not measured: its checkpoint reads the whole tree once.
    let started = Instant::now();
    cli_run(&rt, root, &work, "turn", "on", 4000);
    let first_turn = started.elapsed();
    cli_run(&rt, root, &work, "off", "off", 4001);
    let (mut on, mut off, mut rewind) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cli_runs {
        off.push(cli_run(&rt, root, &work, "off", "off", round + 2000));
        on.push(cli_run(&rt, root, &work, "turn", "on", round + 3000));
        // Undo that turn's 100 changes: back to the checkpoint taken before it.
        let turn = (round + 2).to_string();
        let started = Instant::now();
        let out = Command::new(bin())
            .current_dir(root)
            .args([
                "rewind",
                "-c",
                "agent.yaml",
                "--session",
                "file",
                "on",
                &turn,
                "--files",
            ])
            .env("CODEPILOT_HOME", root.join("home"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        rewind.push(started.elapsed());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains(&format!("{CHANGED} file(s) restored")),
            "{said}"
        );
    }
    // A new session on the same work directory: its first checkpoint starts from the last session's.
    let mut borrowed = Vec::new();
    for round in 0..cli_runs {
        borrowed.push(cli_run(
            &rt,
            root,
            &work,
            "turn",
            &format!("new-{round}"),
            round + 5000,
        ));
    }
    let (off50, _) = pcts(off);
    let (on50, _) = pcts(on);
    let (rw50, _) = pcts(rewind);
    let (new50, _) = pcts(borrowed);
    println!();
    println!(
        "Through the CLI (release binary, wall time, p50 of {cli_runs}; one session each, after a first turn):"
    );
    println!();
    println!("| command | wall time |");
    println!("|---|---|");
    println!(
        "| `codepilot run` (shell `sed -i` on 100 files, then done), `checkpoints: off` | {} |",
        ms(off50)
    );
    println!(
        "| the same with `checkpoints: turn` (the default) | {} |",
        ms(on50)
    );
    println!(
        "| `codepilot rewind SESSION N --files` (opens the session, rewinds those 100 files, closes) | {} |",
        ms(rw50)
    );
    println!(
        "| a session's first turn with checkpoints (its checkpoint reads and stores the whole tree) | {} |",
        ms(first_turn)
    );
    println!(
        "| a new session's first turn on that work directory (its checkpoint starts from the last session's) | {} |",
        ms(new50)
    );
}
