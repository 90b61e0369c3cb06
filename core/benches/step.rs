//! Runtime overhead per step: a scripted model (in-process, no network) whose every answer is one `read_file`,
//! in a workspace of 2 files and of 2,000 files. What is measured is everything the runtime does per step: prompt
//! rendering, parsing, running the control block on the interpreter thread, the tool, the observation, the
//! in-memory checkpoint.
//!
//! The 2-file case is measured again with OpenTelemetry traces on, exported over OTLP/HTTP to an in-process
//! receiver (the testkit's), in runs interleaved with runs that trace nothing, so both see the same machine.
//!
//! Run with: `cargo bench -p codepilot --bench step` (prints medians; see docs/benchmarks.md).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark harness: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::Outcome;
use codepilot::llm::ScriptedProvider;

const STEPS: u32 = 200;
const RUNS: usize = 15;

fn workspace(files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..files {
        let sub = dir.path().join(format!("pkg{}", i % 50));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let body: String = (0..40)
            .map(|l| format!("fn f{l}() -> u32 {{ {l} }}\n"))
            .collect();
        std::fs::write(sub.join(format!("file{i}.rs")), body).expect("write");
    }
    dir
}

/// One run of `STEPS` steps; with `traces`, spans go to that OTLP endpoint (`log_content` when the flag says so).
async fn one_run(work: &std::path::Path, traces: Option<(&str, bool)>) -> Duration {
    let observability = traces.map_or_else(String::new, |(endpoint, content)| {
        format!("observability: {{endpoint: {endpoint}, log_content: {content}}}\n")
    });
    let yaml = format!(
        "name: bench\nmodel: {{provider: scripted, name: bench}}\nruntime: {{work_dir: {}, max_steps: {}}}\n\
         tools: [{{name: execute, enabled: false}}, {{name: read_output, enabled: false}}, \
         {{name: send_input, enabled: false}}, {{name: terminate_terminal, enabled: false}}]\n{observability}",
        serde_json::to_string(&work.display().to_string()).expect("json"),
        STEPS + 1
    );
    let agent = AgentFile::from_yaml_str(&yaml, None).expect("agent");
    let mut answers: Vec<String> = (0..STEPS)
        .map(|_| {
            "Reading.\n\n```codepilot\nread_file(\"pkg0/file0.rs\", end_line=20)\n```\n".to_owned()
        })
        .collect();
    answers.push("```completion\ndone\n```".to_owned());
    let rt = AsyncRuntime::builder(agent)
        .provider(Arc::new(ScriptedProvider::new(answers)))
        .build()
        .await
        .expect("runtime");
    let t0 = Instant::now();
    let outcome = rt.run("bench").await.expect("run");
    let elapsed = t0.elapsed();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    rt.close().await.expect("close");
    elapsed / (STEPS + 1)
}

/// Builds a runtime with the default tools (terminal `main` declared; its shell starts on first use), and closes it.
async fn construct(work: &std::path::Path) -> Duration {
    let yaml = format!(
        "name: bench\nmodel: {{provider: scripted, name: bench}}\nruntime: {{work_dir: {}}}\n",
        serde_json::to_string(&work.display().to_string()).expect("json"),
    );
    let agent = AgentFile::from_yaml_str(&yaml, None).expect("agent");
    let t0 = Instant::now();
    let rt = AsyncRuntime::builder(agent)
        .provider(Arc::new(ScriptedProvider::new(Vec::new())))
        .build()
        .await
        .expect("runtime");
    let elapsed = t0.elapsed();
    rt.close().await.expect("close");
    elapsed
}

/// Resident set size of this process, from /proc.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let at_start = rss_mib();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let dir = workspace(2);
    let builds: Vec<Duration> = (0..20)
        .map(|_| rt.block_on(construct(dir.path())))
        .collect();
    println!(
        "construction (terminal main declared, started on first use): median {:.1} ms (20 runs)",
        median(builds).as_secs_f64() * 1e3
    );
    let idle = rt.block_on(async {
        let yaml = format!(
            "name: bench\nmodel: {{provider: scripted, name: bench}}\nruntime: {{work_dir: {}}}\n",
            serde_json::to_string(&dir.path().display().to_string()).expect("json"),
        );
        AsyncRuntime::builder(AgentFile::from_yaml_str(&yaml, None).expect("agent"))
            .provider(Arc::new(ScriptedProvider::new(Vec::new())))
            .build()
            .await
            .expect("runtime")
    });
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "process RSS with one idle runtime: {:.1} MiB ({at_start:.1} MiB at process start; bash is a separate process)",
        rss_mib()
    );
    rt.block_on(idle.close()).expect("close");

    for files in [2usize, 2000] {
        let dir = workspace(files);
        let per_step: Vec<Duration> = (0..RUNS)
            .map(|_| rt.block_on(one_run(dir.path(), None)))
            .collect();
        let med = median(per_step.clone());
        let min = per_step.iter().min().copied().unwrap_or_default();
        println!(
            "step overhead, {files:>4} files: median {:.3} ms/step (min {:.3}, {RUNS} runs × {} steps)",
            med.as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            STEPS + 1
        );
    }

    let receiver = rt
        .block_on(codepilot_testkit::ScriptedServer::start(Vec::new()))
        .expect("OTLP receiver");
    let endpoint = receiver.base_url();
    let dir = workspace(2);
    let (mut off, mut on, mut content) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        off.push(rt.block_on(one_run(dir.path(), None)));
        on.push(rt.block_on(one_run(dir.path(), Some((&endpoint, false)))));
        content.push(rt.block_on(one_run(dir.path(), Some((&endpoint, true)))));
    }
    let spans = receiver.spans().len();
    for (what, runs) in [
        ("traces off", off),
        ("traces on", on),
        ("traces on, log_content", content),
    ] {
        println!(
            "step overhead,    2 files, {what}: median {:.3} ms/step ({RUNS} interleaved runs × {} steps)",
            median(runs).as_secs_f64() * 1e3,
            STEPS + 1
        );
    }
    println!("spans received by the OTLP receiver: {spans}");
}
