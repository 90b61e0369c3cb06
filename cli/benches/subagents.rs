//! Sub-agents (SPEC §20) against scripted model servers over HTTP: how long a worker takes from `spawn_subagent` to
//! its first model request, what an idle worker costs in memory, and 8 workers × 50 steps beside one agent doing
//! the 400 steps alone.
//!
//! `cargo bench -p codepilot-cli --bench subagents` (`-- --runs N`, default 10; medians are reported).
//!
//! Each worker talks to a scripted server of its own (`subagents.models` names one per worker), so every server
//! answers its worker in order: 49 blocks (`print`) and a completion.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::Event;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

const STEP: &str = "```codepilot\nprint(1)\n```";
const DONE: &str = "```completion\ndone\n```";

fn agent(server: &ScriptedServer, work: &Path, models: &str, max_steps: u32) -> AgentFile {
    let yaml = format!(
        "agent:\n  name: Bench\n  model:\n    provider: openai-compatible\n    name: bench\n    base_url: {}/v1\n    \
         context_window: 200000\n  runtime:\n    work_dir: {}\n    max_steps: {max_steps}\n    checkpoints: off\n    \
         sandbox: off\n  tools:\n    - {{name: execute, enabled: false}}\n    - {{name: read_output, enabled: false}}\n    \
         - {{name: send_input, enabled: false}}\n    - {{name: terminate_terminal, enabled: false}}\n  subagents:\n    \
         max_concurrent: 8\n    max_steps: {max_steps}\n{models}",
        server.base_url(),
        serde_json::to_string(&work.display().to_string()).unwrap()
    );
    AgentFile::from_yaml_str(&yaml, Some(&work.join("agent.yaml"))).unwrap()
}

async fn runtime(agent: AgentFile) -> AsyncRuntime {
    AsyncRuntime::builder(agent).build().await.unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Milliseconds from the `subagent_spawn` event to the worker's first model request leaving (its `step 1`), for a
/// worker given `tools` (a Python list, or `None` for the default set, whose terminal tools start a shell).
async fn spawn_latency(work: &Path, tools: &str) -> f64 {
    let parent = ScriptedServer::start(vec![
        Turn::answer(format!(
            "```codepilot\na = spawn_subagent(\"x\", tools={tools})\nprint(await_subagent(a))\n```"
        )),
        Turn::answer(DONE),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let rt = runtime(agent(&parent, work, "", 10)).await;
    let marks: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
    let seen = Arc::clone(&marks);
    rt.on_envelope(move |e| {
        let mut m = seen.lock().unwrap();
        match (&e.event, e.agent_id) {
            (Event::SubagentSpawn(_), None) => m.0 = Some(Instant::now()),
            (Event::Step(_), Some(_)) if m.1.is_none() => m.1 = Some(Instant::now()),
            _ => {}
        }
    });
    rt.run("go").await.unwrap();
    rt.close().await.unwrap();
    let m = marks.lock().unwrap();
    (m.1.unwrap() - m.0.unwrap()).as_secs_f64() * 1000.0
}

/// KiB of this process per worker waiting on its model (8 workers, their servers slow to answer).
async fn idle_worker_kib(work: &Path) -> f64 {
    let workers = servers(8, || vec![Turn::delay(3_000, Turn::answer(DONE))]).await;
    let (_parent, rt) = fan_out(work, &workers, 10).await;
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&waiting);
    rt.on_envelope(move |e| {
        if e.agent_id.is_some() && matches!(e.event, Event::Step(_)) {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let before = rss_kib();
    let run = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run("go").await })
    };
    while waiting.load(std::sync::atomic::Ordering::SeqCst) < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = rss_kib();
    run.await.unwrap().unwrap();
    rt.close().await.unwrap();
    during.saturating_sub(before) as f64 / 8.0
}

/// A parent whose first block starts one worker per server in `workers` (on it, through `subagents.models`) and
/// awaits them all, with `max_steps` each; its server is returned to keep it up.
async fn fan_out(
    work: &Path,
    workers: &[ScriptedServer],
    max_steps: u32,
) -> (ScriptedServer, AsyncRuntime) {
    let spawn: String = (0..workers.len())
        .map(|i| format!("w{i} = spawn_subagent(\"work\", model=\"w{i}\")\n"))
        .collect();
    let all: Vec<String> = (0..workers.len()).map(|i| format!("w{i}")).collect();
    let parent = ScriptedServer::start(vec![
        Turn::answer(format!(
            "```codepilot\n{spawn}for w in [{}]:\n    await_subagent(w)\n```",
            all.join(", ")
        )),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let rt = runtime(agent(&parent, work, &models(workers), max_steps)).await;
    (parent, rt)
}

/// `n` scripted servers, each with the turns `turns` gives.
async fn servers(n: usize, turns: impl Fn() -> Vec<Turn>) -> Vec<ScriptedServer> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(ScriptedServer::start(turns()).await.unwrap());
    }
    out
}

/// `subagents.models` naming one model `wN` per server.
fn models(servers: &[ScriptedServer]) -> String {
    let entries: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "      w{i}: {{provider: openai-compatible, name: w{i}, base_url: \"{}/v1\", context_window: 200000}}\n",
                s.base_url()
            )
        })
        .collect();
    format!("    models:\n{entries}")
}

fn worker_turns() -> Vec<Turn> {
    let mut turns: Vec<Turn> = (0..49).map(|_| Turn::answer(STEP)).collect();
    turns.push(Turn::answer(DONE));
    turns
}

/// Seconds for 8 workers × 50 steps, each on its own server.
async fn eight_workers(work: &Path) -> f64 {
    let workers = servers(8, worker_turns).await;
    let (_parent, rt) = fan_out(work, &workers, 60).await;
    let started = Instant::now();
    rt.run("go").await.unwrap();
    let took = started.elapsed().as_secs_f64();
    rt.close().await.unwrap();
    took
}

/// Seconds for one agent doing the 400 steps alone.
async fn one_agent(work: &Path) -> f64 {
    let mut turns: Vec<Turn> = (0..399).map(|_| Turn::answer(STEP)).collect();
    turns.push(Turn::answer(DONE));
    let server = ScriptedServer::start(turns).await.unwrap();
    let rt = runtime(agent(&server, work, "", 410)).await;
    let started = Instant::now();
    rt.run("go").await.unwrap();
    let took = started.elapsed().as_secs_f64();
    rt.close().await.unwrap();
    took
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let work = tempfile::tempdir().unwrap();
    let mut spawn = Vec::new();
    let mut spawn_no_shell = Vec::new();
    for _ in 0..runs {
        spawn.push(spawn_latency(work.path(), "None").await);
        spawn_no_shell.push(spawn_latency(work.path(), "[\"read_file\", \"find\"]").await);
    }
    let idle = idle_worker_kib(work.path()).await;
    let mut eight = Vec::new();
    let mut alone = Vec::new();
    for _ in 0..runs.min(5) {
        eight.push(eight_workers(work.path()).await);
        alone.push(one_agent(work.path()).await);
    }
    println!("sub-agents, {runs} runs (medians)");
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| spawn_subagent → the worker's first model request leaves (default tools: its shell starts first) | {:.2} ms |",
        median(spawn)
    );
    println!(
        "| the same for a worker without terminal tools (`tools=[\"read_file\", \"find\"]`) | {:.2} ms |",
        median(spawn_no_shell)
    );
    println!(
        "| memory per worker waiting on its model (this process; its shell, if any, is a process of its own) | {idle:.0} KiB |"
    );
    println!(
        "| 8 workers × 50 steps, in parallel | {:.2} s |",
        median(eight)
    );
    println!("| one agent, 400 steps alone | {:.2} s |", median(alone));
}
