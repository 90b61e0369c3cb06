//! Long sessions through the binary: `codepilot run` against the scripted model server (OpenAI wire format,
//! streaming), one fresh process per run, memory session. Prints the runtime's own CPU time (user + sys of the
//! `codepilot` process, from `wait4`) for runs of 20, 200 and 1,000 steps and the slopes between them, then the
//! largest request of a 1,000-step run in an 8k context window against its budget.
//!
//! `cargo bench -p codepilot-cli --bench long_session` (add `-- --runs N` for more runs per size; the median is
//! reported). `CODEPILOT_BIN=/path/to/codepilot` measures another build of the binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::zombie_processes
)]

use std::path::Path;
use std::process::Command;
use std::process::Stdio;

mod common;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use serde_json::Value;

/// Runs `codepilot run` for `steps` steps; returns (CPU seconds of the process, recorded requests).
fn run(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    steps: usize,
    model_extra: &str,
) -> (f64, Vec<codepilot_testkit::RecordedRequest>) {
    let mut turns: Vec<Turn> = (1..steps)
        .map(|i| {
            Turn::answer(format!(
                "Step {i}.\n```codepilot\nread_file(\"a.txt\")\n```"
            ))
        })
        .collect();
    turns.push(Turn::answer("```completion\ndone\n```"));
    let server = rt.block_on(ScriptedServer::start(turns)).unwrap();
    let yaml = format!(
        "agent:\n  name: Bench\n  model:\n    provider: openai-compatible\n    name: bench-model\n    base_url: {}/v1\n{model_extra}  runtime:\n    work_dir: {}\n    max_steps: {steps}\n  tools:\n    - {{name: execute, enabled: false}}\n    - {{name: read_output, enabled: false}}\n    - {{name: send_input, enabled: false}}\n    - {{name: terminate_terminal, enabled: false}}\n",
        server.base_url(),
        serde_json::to_string(&dir.display().to_string()).unwrap(),
    );
    let agent = dir.join("agent.yaml");
    std::fs::write(&agent, yaml).unwrap();
    let bin =
        std::env::var_os("CODEPILOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into());
    let child = Command::new(bin)
        .args(["run", "--session", "memory", "-c"])
        .arg(&agent)
        .arg("read a.txt again and again")
        .env("CODEPILOT_HOME", dir.join("home"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cpu = common::wait(&child).cpu;
    let requests = server.requests();
    assert_eq!(requests.len(), steps, "every step asked the model once");
    (cpu, requests)
}

fn text_of(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}

fn main() {
    let runs = common::runs(3);
    let rt = common::server_runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.txt"),
        "0123456789 abcdefghij klmnopqrstuvwxyz ABCDEFGHIJ\n".repeat(12),
    )
    .unwrap();

    println!(
        "CPU of the codepilot process (user+sys), median of {runs} runs, default context window:"
    );
    let mut cpu = Vec::new();
    for steps in [20, 200, 1000] {
        let samples: Vec<f64> = (0..runs)
            .map(|_| run(&rt, dir.path(), steps, "").0)
            .collect();
        let m = common::median(samples);
        println!("  {steps:>5} steps: {:8.1} ms", m * 1e3);
        cpu.push(m);
    }
    let slope_a = (cpu[1] - cpu[0]) / 180.0 * 1e3;
    let slope_b = (cpu[2] - cpu[1]) / 800.0 * 1e3;
    println!("  per step, 20→200:   {slope_a:.3} ms");
    println!(
        "  per step, 200→1000: {slope_b:.3} ms  ({:.2}× the 20→200 slope)",
        slope_b / slope_a
    );

    let (_, requests) = run(
        &rt,
        dir.path(),
        1000,
        "    context_window: 8000\n    max_tokens: 1024\n",
    );
    let counter = codepilot::llm::TokenCounter::Estimate;
    let tokens = |r: &codepilot_testkit::RecordedRequest| -> u64 {
        r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| counter.count(&text_of(m)) + 4)
            .sum()
    };
    let largest = requests.iter().map(tokens).max().unwrap_or(0);
    let largest_bytes = requests
        .iter()
        .map(|r| serde_json::to_vec(&r.body).map_or(0, |b| b.len()))
        .max()
        .unwrap_or(0);
    println!(
        "1,000 steps, 8k window: largest request {largest} tokens ({} kB), budget 6720 tokens",
        largest_bytes / 1000
    );
}
