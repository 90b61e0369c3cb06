//! Workspace snapshots (SPEC §17) of a 2,000-file workspace: save, unchanged save and restore, in-process on a
//! local directory and on moto's S3 server, then what a user pays through `codepilot run`.
//!
//! `cargo bench -p codepilot-cli --bench snapshots` (`-- --runs N`, default 5; the median is reported). The S3 rows
//! need moto (`bash scripts/moto.sh` prints the path to export as `CODEPILOT_TEST_MOTO`). For reference, the same
//! tree through `tar | zstd -3` (GNU tar excluding `target/`, zstd's CLI, one thread) when both are installed.
//!
//! The workspace: 1,980 source-like text files (1–12 KB) in 60 folders, 20 incompressible 200 KB assets, a small
//! `.git`, and a `.gitignore`d `target/` of 3,000 files that snapshots leave out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use codepilot::store::MemoryStore;
use codepilot::store::SessionId;
use codepilot::store::SessionStore;
use codepilot::store::StoreOptions;
use codepilot::store::snapshot::Prepared;
use codepilot::store::snapshot::RestoreMode;
use codepilot::store::snapshot::Saved;
use codepilot::store::snapshot::SnapshotOptions;
use codepilot::store::snapshot::SnapshotStore;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::moto::MotoServer;
use codepilot_testkit::noise;

fn workspace(root: &Path) -> (usize, u64) {
    let mut bytes = 0_u64;
    for i in 0..1980_usize {
        let dir = root.join(format!("src/module_{}", i % 60));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = 30 + (i * 37) % 270;
        let text: String = (0..lines)
            .map(|l| {
                format!(
                    "    let value_{l} = compute_{i}({l}, \"item {}\"); // step {l}\n",
                    l * i % 997
                )
            })
            .collect();
        bytes += text.len() as u64;
        std::fs::write(dir.join(format!("file_{i}.rs")), text).unwrap();
    }
    std::fs::create_dir_all(root.join("assets")).unwrap();
    for i in 0..20 {
        let data = noise(200 << 10, i + 1);
        bytes += data.len() as u64;
        std::fs::write(root.join(format!("assets/blob_{i}.bin")), data).unwrap();
    }
    std::fs::create_dir_all(root.join(".git/refs/heads")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(root.join(".gitignore"), "target/\n").unwrap();
    for i in 0..3000 {
        let dir = root.join(format!("target/debug/deps/{}", i % 30));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("artifact_{i}.o")),
            noise(4096, i as u64 + 99),
        )
        .unwrap();
    }
    (2000, bytes)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
}

/// Saves (after touching one file, so every save has work), saves unchanged, restores into an empty directory.
fn measure(
    rt: &tokio::runtime::Runtime,
    label: &str,
    store: &SnapshotStore,
    work: &Path,
    scratch: &Path,
    runs: usize,
) {
    let sessions: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreOptions::default()));
    let id = SessionId::generate();
    let (lease, _) = rt.block_on(sessions.open(&id, "bench")).unwrap();
    let (mut save, mut unchanged, mut restore) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    let mut files = 0;
    let mut recorded: Option<String> = None;
    for run in 0..runs {
        std::fs::write(
            work.join("src/module_0/file_0.rs"),
            format!("// run {run}\n"),
        )
        .unwrap();
        let started = Instant::now();
        match rt
            .block_on(store.save(&*sessions, &lease, work, recorded.as_deref()))
            .unwrap()
        {
            Saved::Stored { info, files: f, .. } => {
                size = info.size;
                files = f;
                recorded = Some(info.key);
            }
            Saved::Unchanged { .. } => panic!("a changed workspace was not saved"),
        }
        save.push(started.elapsed());
        let started = Instant::now();
        assert!(matches!(
            rt.block_on(store.save(&*sessions, &lease, work, recorded.as_deref()))
                .unwrap(),
            Saved::Unchanged { .. }
        ));
        unchanged.push(started.elapsed());
        let record = rt.block_on(sessions.load(&id)).unwrap().unwrap();
        let target = scratch.join(format!("restore-{label}-{run}"));
        let started = Instant::now();
        let prepared = rt
            .block_on(store.prepare(&record, &target, RestoreMode::IfEmpty))
            .unwrap();
        restore.push(started.elapsed());
        // Kept until the end: on ext4, creating files right after deleting many costs far more (the inode
        // allocator skips recently freed inodes), which would charge this benchmark's own cleanup to the restore.
        assert!(matches!(prepared, Prepared::Restored { files: f, .. } if f == files));
    }
    println!(
        "| {label} | {} | {} | {} | {files} files, {} archive |",
        ms(median(save)),
        ms(median(unchanged)),
        ms(median(restore)),
        mib(size)
    );
}

/// `codepilot run` with a two-step task (one file written) in `work`; returns the wall time and stderr.
fn cli_run(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    work: &Path,
    extra: &[&str],
) -> (Duration, String) {
    let server = rt
        .block_on(ScriptedServer::start(vec![
            Turn::answer("```codepilot\nwrite_file(\"NOTES.md\")\n```\n\n```text filename=NOTES.md\nnote\n```"),
            Turn::answer("```completion\ndone\n```"),
        ]))
        .unwrap();
    let agent = dir.join("agent.yaml");
    std::fs::write(
        &agent,
        format!(
            "agent:\n  name: Bench\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: {}/v1\n  \
             runtime:\n    work_dir: {}\n",
            server.base_url(),
            work.display()
        ),
    )
    .unwrap();
    let bin =
        std::env::var_os("CODEPILOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into());
    let started = Instant::now();
    let out = Command::new(bin)
        .current_dir(dir)
        .args(["run", "-c", agent.to_str().unwrap()])
        .args(extra)
        .arg("note it")
        .env("CODEPILOT_HOME", dir.join("home"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (elapsed, stderr)
}

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_usize);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let work = root.join("work");
    let (files, bytes) = workspace(&work);
    println!(
        "workspace: {files} files, {} (+ a .gitignored target/ of 3,000 files, 11.7 MiB)",
        mib(bytes)
    );
    println!();
    println!(
        "| store | save (archive + upload) | save, nothing changed | restore into an empty dir | snapshot |"
    );
    println!("|---|---|---|---|---|");
    let local = SnapshotStore::open(
        &format!("file://{}", root.join("objects").display()),
        SnapshotOptions {
            state_dir: Some(root.join("state")),
            ..SnapshotOptions::default()
        },
    )
    .unwrap();
    measure(&rt, "file://", &local, &work, root, runs);
    match MotoServer::start("codepilot-bench").unwrap() {
        Some(moto) => {
            let s3 = SnapshotStore::open(
                &moto.url("bench"),
                SnapshotOptions {
                    state_dir: Some(root.join("state-s3")),
                    env: Some(moto.env()),
                    ..SnapshotOptions::default()
                },
            )
            .unwrap();
            measure(&rt, "s3:// (moto, loopback)", &s3, &work, root, runs);
        }
        None => println!("| s3:// | skipped: moto_server not found (bash scripts/moto.sh) | | | |"),
    }

    let tar = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && tar --exclude=./target -cf - . | zstd -3 -q -T1 > {}",
            work.display(),
            root.join("reference.tar.zst").display()
        ))
        .status();
    if tar.is_ok_and(|s| s.success()) {
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "cd {} && tar --exclude=./target -cf - . | zstd -3 -q -T1 > {}",
                    work.display(),
                    root.join("reference.tar.zst").display()
                ))
                .status()
                .unwrap();
            times.push(started.elapsed());
        }
        let size = std::fs::metadata(root.join("reference.tar.zst"))
            .unwrap()
            .len();
        println!(
            "| reference: `tar --exclude=./target \\| zstd -3` to a local file | {} | | | {} archive |",
            ms(median(times)),
            mib(size)
        );
    }

    println!();
    println!(
        "Through `codepilot run` (a two-step task that writes one file; wall time, median of {runs}):"
    );
    let objects = format!("file://{}", root.join("cli-objects").display());
    let db = format!("sqlite:///{}", root.join("cli.db").display());
    let mut plain = Vec::new();
    let mut with = Vec::new();
    let mut resumed = Vec::new();
    for run in 0..runs {
        plain.push(cli_run(&rt, root, &work, &["--session", "memory"]).0);
        let session = format!("bench-{run}");
        let args = [
            "--db-url",
            db.as_str(),
            "--session-id",
            session.as_str(),
            "--snapshots",
            objects.as_str(),
        ];
        let (t, err) = cli_run(&rt, root, &work, &args);
        assert!(err.contains("workspace saved"), "{err}");
        with.push(t);
        // Another runner: a fresh checkout directory and home; the workspace is restored before the task.
        let other = root.join(format!("runner-{run}"));
        std::fs::create_dir_all(&other).unwrap();
        let (t, err) = cli_run(&rt, &other, &other.join("checkout"), &args);
        assert!(err.contains("restored the workspace"), "{err}");
        resumed.push(t);
    }
    println!("| run | wall time |");
    println!("|---|---|");
    println!("| no snapshots | {} |", ms(median(plain)));
    println!(
        "| `--snapshots file://…` (saved after the step and at the end) | {} |",
        ms(median(with))
    );
    println!(
        "| the same session on another runner (restore first, then the task) | {} |",
        ms(median(resumed))
    );
}
