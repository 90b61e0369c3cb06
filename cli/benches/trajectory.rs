//! Trajectories (SPEC §23) of a 1,000-step session: how long `codepilot sessions export` and `codepilot replay` take,
//! and the same two in process (`export_trajectory`, `Trajectory::parse` + `replay_trajectory`).
//!
//! The session: a scripted model (no network) whose every answer writes a file (one of 50) from a payload block and
//! reads it back, every 50th also runs `ls | wc -l` in the terminal; a workspace of 100 files; the SQLite store the
//! CLI uses by default.
//!
//! `cargo bench -p codepilot-cli --bench trajectory` (`-- --runs N`, default 5; medians are reported).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

const STEPS: usize = 1_000;

fn binary() -> std::ffi::OsString {
    std::env::var_os("CODEPILOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into())
}

fn codepilot(dir: &Path, args: &[&str]) -> Duration {
    let t0 = Instant::now();
    let out = Command::new(binary())
        .current_dir(dir)
        .args(args)
        .env("CODEPILOT_HOME", dir.join("home"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("codepilot");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "codepilot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn project(dir: &Path) {
    let work = dir.join("work");
    for i in 0..100 {
        let sub = work.join(format!("pkg{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let body: String = (0..40)
            .map(|l| format!("fn f{l}() -> u32 {{ {l} }}\n"))
            .collect();
        std::fs::write(sub.join(format!("file{i}.rs")), body).unwrap();
    }
    let mut answers: Vec<String> = (1..=STEPS)
        .map(|i| {
            let shell = if i % 50 == 0 {
                "\nexecute(\"main\", \"ls | wc -l\")"
            } else {
                ""
            };
            format!(
                "Step {i}.\n```codepilot\nwrite_file(\"out/n{0}.txt\")\nprint(read_file(\"out/n{0}.txt\")){shell}\n```\n```text filename=out/n{0}.txt\nstep {i}\n```",
                i % 50
            )
        })
        .collect();
    answers.push("```completion\ndone\n```".to_owned());
    std::fs::write(
        dir.join("answers.txt"),
        answers.join("\n--- next answer ---\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "name: Long\nmodel:\n  provider: scripted\n  name: scripted\n  script: answers.txt\n  context_window: 10000000\n\
             runtime:\n  work_dir: work\n  max_steps: {}\n",
            STEPS + 10
        ),
    )
    .unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    project(root);
    let recorded = codepilot(root, &["run", "--session-id", "long", "write the files"]);
    println!(
        "recording: `codepilot run` of {STEPS} steps took {:.2} s",
        recorded.as_secs_f64()
    );

    let exports: Vec<Duration> = (0..runs)
        .map(|_| codepilot(root, &["sessions", "export", "long", "-o", "t.jsonl"]))
        .collect();
    let size = std::fs::metadata(root.join("t.jsonl")).unwrap().len();
    let text = std::fs::read_to_string(root.join("t.jsonl")).unwrap();
    println!(
        "`codepilot sessions export`: median {:.0} ms ({runs} runs; {} lines, {:.1} MB)",
        ms(median(exports)),
        text.lines().count(),
        size as f64 / 1e6
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(codepilot::store::open_store(
            codepilot::StoreConfig::sqlite_file(root.join("home/sessions.db")),
        ))
        .unwrap();
    let id: codepilot::store::SessionId = "long".parse().unwrap();
    let options = codepilot::trajectory::ExportOptions {
        checkpoint_dir: Some(root.join("home/checkpoints")),
        ..codepilot::trajectory::ExportOptions::default()
    };
    let in_process: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut out = Vec::new();
            let t0 = Instant::now();
            rt.block_on(codepilot::trajectory::export_trajectory(
                &*store, &id, &options, &mut out,
            ))
            .unwrap();
            let took = t0.elapsed();
            assert_eq!(out.len() as u64, size, "the same trajectory as the CLI's");
            took
        })
        .collect();
    println!(
        "export_trajectory in process: median {:.0} ms",
        ms(median(in_process))
    );

    let replays: Vec<Duration> = (0..runs)
        .map(|_| codepilot(root, &["replay", "t.jsonl"]))
        .collect();
    println!(
        "`codepilot replay` (identical): median {:.2} s ({runs} runs; {:.2} ms a step)",
        median(replays.clone()).as_secs_f64(),
        ms(median(replays)) / STEPS as f64
    );
    let in_process: Vec<Duration> = (0..runs)
        .map(|i| {
            let t0 = Instant::now();
            let trajectory = codepilot::trajectory::Trajectory::parse(&text).unwrap();
            let report = rt
                .block_on(codepilot::trajectory::replay_trajectory(
                    &trajectory,
                    &root.join(format!("replay-{i}")),
                    &codepilot::trajectory::ReplayOptions::default(),
                ))
                .unwrap();
            let took = t0.elapsed();
            assert!(report.identical(), "{:?}", report.first_difference);
            took
        })
        .collect();
    println!(
        "parse + replay_trajectory in process: median {:.2} s",
        median(in_process).as_secs_f64()
    );
}
