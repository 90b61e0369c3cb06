//! The runtime's budgets (SPEC §12) through the real binary: `codepilot run` against the scripted model server, one
//! fresh process per run, figures from `wait4` (CPU time and peak RSS of the `codepilot` process) and the wall clock.
//! Per-step figures are slopes between a short and a long task (every step reads a file), so process start and
//! exit cancel.
//!
//! `cargo bench -p codepilot-cli --bench perf` (`-- --runs N` for more runs of each kind, median reported;
//! `CODEPILOT_BIN=/path/to/codepilot` measures another build). `scripts/bench.sh` runs it with the Python package's
//! figures beside it. Prints a Markdown table (docs/benchmarks.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::zombie_processes,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::time::Instant;

mod common;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

/// What one `codepilot run` cost.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Spawn to exit, seconds.
    wall: f64,
    /// The wall clock less the scripted server's time serving the run's requests (arrival to the end of each
    /// answer), seconds: what the runtime itself adds.
    overhead: f64,
    /// User + system CPU of the process, seconds.
    cpu: f64,
    /// Peak resident set, MiB.
    rss_mib: f64,
}

/// How the model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// One JSON body.
    Whole,
    /// Server-sent events in chunks of this many bytes.
    Stream(usize),
}

/// Where the session is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Memory,
    /// The default: SQLite under `CODEPILOT_HOME`.
    Sqlite,
}

struct Bench {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    bin: std::ffi::OsString,
}

impl Bench {
    fn new() -> Self {
        let rt = common::server_runtime();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        std::fs::write(
            dir.path().join("work/a.txt"),
            "0123456789 abcdefghij klmnopqrstuvwxyz ABCDEFGHIJ\n".repeat(12),
        )
        .unwrap();
        let bin = std::env::var_os("CODEPILOT_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into());
        Self { rt, dir, bin }
    }

    /// A task of `steps` steps (each reads a file; the last completes), run once.
    fn run(&self, steps: usize, wire: Wire, session: Session, sandbox: bool) -> Sample {
        let chunk = |t: Turn| match wire {
            Wire::Stream(n) => t.with_chunk_bytes(n),
            Wire::Whole => t,
        };
        let mut turns: Vec<Turn> = (1..steps)
            .map(|i| {
                chunk(Turn::answer(format!(
                    "Step {i}: reading it again.\n```codepilot\nread_file(\"a.txt\")\n```"
                )))
            })
            .collect();
        turns.push(chunk(Turn::answer("Done.\n```completion\ndone\n```")));
        let server = self.rt.block_on(ScriptedServer::start(turns)).unwrap();
        let dir = self.dir.path();
        let yaml = format!(
            "agent:\n  name: Bench\n  model:\n    provider: openai-compatible\n    name: bench-model\n    base_url: \
             {}/v1\n    stream: {}\n    context_window: 200000\n  runtime:\n    work_dir: work\n    max_steps: {}\n    \
             sandbox: {}\n",
            server.base_url(),
            matches!(wire, Wire::Stream(_)),
            steps + 1,
            if sandbox { "workspace-write" } else { "off" },
        );
        let agent = dir.join("agent.yaml");
        std::fs::write(&agent, yaml).unwrap();
        let home = dir.join("home");
        if session == Session::Sqlite {
            let _ = std::fs::remove_dir_all(&home);
        }
        let started = Instant::now();
        let child = Command::new(&self.bin)
            .args([
                "run",
                "--session",
                match session {
                    Session::Memory => "memory",
                    Session::Sqlite => "db",
                },
                "-c",
            ])
            .arg(&agent)
            .arg("read a.txt again and again")
            .env("CODEPILOT_HOME", &home)
            .env_remove("CODEPILOT_DB_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let common::Cost { cpu, rss_mib } = common::wait(&child);
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(
            server.requests().len(),
            steps,
            "every step asked the model once"
        );
        let overhead = wall - server.busy().as_secs_f64();
        Sample {
            wall,
            overhead,
            cpu,
            rss_mib,
        }
    }

    /// The median of `runs` runs of each figure.
    fn median(
        &self,
        runs: usize,
        steps: usize,
        wire: Wire,
        session: Session,
        sandbox: bool,
    ) -> Sample {
        let samples: Vec<Sample> = (0..runs)
            .map(|_| self.run(steps, wire, session, sandbox))
            .collect();
        Sample {
            wall: common::median(samples.iter().map(|s| s.wall).collect()),
            overhead: common::median(samples.iter().map(|s| s.overhead).collect()),
            cpu: common::median(samples.iter().map(|s| s.cpu).collect()),
            rss_mib: common::median(samples.iter().map(|s| s.rss_mib).collect()),
        }
    }

    /// Per-step (overhead, CPU) in ms between `short` and `long` steps.
    fn slope(
        &self,
        runs: usize,
        short: usize,
        long: usize,
        wire: Wire,
        session: Session,
    ) -> (f64, f64) {
        let a = self.median(runs, short, wire, session, true);
        let b = self.median(runs, long, wire, session, true);
        let steps = (long - short) as f64;
        (
            (b.overhead - a.overhead) / steps * 1e3,
            (b.cpu - a.cpu) / steps * 1e3,
        )
    }
}

/// `codepilot --version`, spawn to exit, seconds.
fn version(bin: &std::ffi::OsStr) -> f64 {
    let started = Instant::now();
    let status = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed().as_secs_f64()
}

fn main() {
    let runs = common::runs(5);
    let bench = Bench::new();
    let path = Path::new(&bench.bin);
    println!(
        "`codepilot run` ({}), median of {runs} runs (start: {} runs)",
        path.display(),
        runs * 6
    );
    println!();
    println!("| figure | measured | budget |");
    println!("|---|---|---|");

    let starts = runs * 6;
    let version_ms = common::median((0..starts).map(|_| version(path.as_os_str())).collect()) * 1e3;
    let start = bench.median(starts, 1, Wire::Whole, Session::Memory, true);
    let start_off = bench.median(starts, 1, Wire::Whole, Session::Memory, false);
    println!(
        "| spawn → exit, completion-only run, memory session | {:.1} ms ({:.1} with `sandbox: off`; `--version` {version_ms:.1} ms) | ≤ 5 ms |",
        start.wall * 1e3,
        start_off.wall * 1e3
    );
    println!(
        "| peak RSS, completion-only run | {:.1} MiB | |",
        start.rss_mib
    );
    let forty = bench.median(runs, 40, Wire::Whole, Session::Memory, true);
    println!(
        "| peak RSS, 40-step run | {:.1} MiB | ≤ 12 MiB |",
        forty.rss_mib
    );

    let (over_whole, cpu_whole) = bench.slope(runs, 20, 200, Wire::Whole, Session::Memory);
    let (over_stream, cpu_stream) = bench.slope(runs, 20, 200, Wire::Stream(24), Session::Memory);
    let (over_fine, cpu_fine) = bench.slope(runs, 20, 200, Wire::Stream(4), Session::Memory);
    println!(
        "| overhead per step (wall − server time), nonstream / stream (24-byte chunks) / stream (4-byte chunks), slope 20→200 | {over_whole:.3} / {over_stream:.3} / {over_fine:.3} ms | ≤ 0.2 / ≤ 0.25 ms; 4-byte ≤ nonstream + 0.1 |"
    );
    println!(
        "| process CPU per step, nonstream / stream (24 B) / stream (4 B), slope 20→200 | {cpu_whole:.3} / {cpu_stream:.3} / {cpu_fine:.3} ms | ≤ 0.2 / ≤ 0.3 ms |"
    );
    let (over_db, cpu_db) = bench.slope(runs, 20, 200, Wire::Whole, Session::Sqlite);
    println!(
        "| default SQLite session, extra CPU per step (nonstream) | +{:.3} ms (CPU {cpu_db:.3}, overhead {over_db:.3} ms a step) | ≤ +0.2 ms |",
        cpu_db - cpu_whole
    );
    let long = bench.median(runs, 1000, Wire::Whole, Session::Memory, true);
    let mid = bench.median(runs, 200, Wire::Whole, Session::Memory, true);
    let late = (long.cpu - mid.cpu) / 800.0 * 1e3;
    println!(
        "| CPU per step 200→1,000 vs 20→200 (nonstream) | ×{:.2} ({late:.3} vs {cpu_whole:.3} ms) | ≤ ×1.2 |",
        late / cpu_whole
    );
}
