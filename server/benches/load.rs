//! One daemon, many sessions at once, each driven by its own WebSocket client (SPEC §13 load figures).
//!
//! `cargo bench -p codepilot-server --bench load` — 100 sessions (`LOAD_SESSIONS`), each a 40-step task
//! (`LOAD_STEPS`: every answer reads a file; `max_steps` ends the turn) against the scripted model server, all
//! started together. Reports whether every turn ended, whether any client missed or reordered an event, the
//! latency from the engine emitting an event to its client reading it (p50/p99), and the memory of the process
//! (daemon and clients) plus every shell it started: RSS summed, and PSS (shared pages divided among sharers).
//! `LOAD_SANDBOX=off` runs the shells without the sandbox (default: the agent file's default, workspace-write).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::cast_precision_loss)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use codepilot_server::Daemon;
use codepilot_server::DaemonConfig;
use codepilot_server::Listen;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use futures_util::SinkExt;
use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use common::env_usize;
use common::percentile;

const TOKEN: &str = "load-benchmark-token";

/// `(rss_kib, pss_kib)` of `pid` from `/proc/PID/smaps_rollup`.
fn memory(pid: u32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the command, which is in parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        if let Some(kids) = children.get(&all[i]) {
            all.extend(kids);
        }
        i += 1;
    }
    all
}

type Emitted = Arc<Mutex<HashMap<(String, u64), Instant>>>;

/// One client: starts a session and a turn, reads until `turn/completed`. Returns (in order and gap-free,
/// completed, latencies).
async fn client(
    addr: std::net::SocketAddr,
    agent: String,
    emitted: Emitted,
) -> (bool, bool, Vec<Duration>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc?token={TOKEN}"))
        .await
        .expect("connect");
    let mut id = 0;
    // Notifications that arrive while a call waits for its response (the turn's first events), with their time.
    let mut early: Vec<(Value, Instant)> = Vec::new();
    let mut call = async |ws: &mut tokio_tungstenite::WebSocketStream<_>,
                          early: &mut Vec<(Value, Instant)>,
                          method: &str,
                          params: Value|
           -> Value {
        id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        ws.send(Message::text(msg.to_string())).await.expect("send");
        loop {
            let m = ws.next().await.expect("open").expect("frame");
            let at = Instant::now();
            let v: Value = serde_json::from_str(m.to_text().expect("text")).expect("json");
            if v["id"] == json!(id) && v.get("method").is_none() {
                return v["result"].clone();
            }
            early.push((v, at));
        }
    };
    call(
        &mut ws,
        &mut early,
        "initialize",
        json!({"client": {"name": "load"}}),
    )
    .await;
    let session = call(
        &mut ws,
        &mut early,
        "session/start",
        json!({"agent": agent}),
    )
    .await["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    call(
        &mut ws,
        &mut early,
        "turn/start",
        json!({"session_id": session, "text": "read it, again and again"}),
    )
    .await;
    let mut expected = 1;
    let mut ordered = true;
    let mut latencies = Vec::new();
    let mut early = early.into_iter();
    loop {
        let (v, received) = match early.next() {
            Some(e) => e,
            None => {
                let m = ws.next().await.expect("open").expect("frame");
                let received = Instant::now();
                (
                    serde_json::from_str(m.to_text().expect("text")).expect("json"),
                    received,
                )
            }
        };
        match v["method"].as_str() {
            Some("event") => {
                let seq = v["params"]["seq"].as_u64().unwrap_or(0);
                ordered &= seq == expected;
                expected = seq + 1;
                if let Some(at) = emitted
                    .lock()
                    .expect("lock")
                    .remove(&(session.clone(), seq))
                {
                    latencies.push(received.duration_since(at));
                }
            }
            Some("turn/completed") => {
                let status = v["params"]["outcome"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                return (
                    ordered,
                    status == "max_steps" || status == "completed",
                    latencies,
                );
            }
            Some("turn/failed") => return (ordered, false, latencies),
            _ => {}
        }
    }
}

fn main() {
    let sessions = env_usize("LOAD_SESSIONS", 100);
    let steps = env_usize("LOAD_STEPS", 40);
    let sandbox = std::env::var("LOAD_SANDBOX").unwrap_or_else(|_| "workspace-write".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("notes.txt"), "line\n".repeat(40)).expect("write");
        let answer = "Reading.\n```codepilot\nread_file(\"notes.txt\")\n```";
        let model = ScriptedServer::start(vec![Turn::answer(answer); sessions * steps]).await.expect("model");
        model.forget_requests();
        let emitted: Emitted = Arc::default();
        let probe = Arc::clone(&emitted);
        let daemon = Daemon::start(DaemonConfig {
            token: Some(TOKEN.to_owned()),
            event_probe: Some(Arc::new(move |e| {
                probe.lock().expect("lock").insert((e.session_id.clone(), e.seq), Instant::now());
            })),
            ..DaemonConfig::default()
        })
        .await
        .expect("daemon");
        let serving = daemon.clone();
        tokio::spawn(async move { serving.serve(vec![Listen::Ws("127.0.0.1:0".parse().expect("addr"))]).await });
        let addr = daemon.http_addrs().await[0];
        let agent = format!(
            "agent:\n  name: Load\n  model:\n    provider: openai-compatible\n    name: test-model\n    base_url: {}/v1\n    \
             context_window: 128000\n  runtime:\n    work_dir: {}\n    max_steps: {steps}\n    sandbox: {sandbox}\n",
            model.base_url(),
            serde_json::to_string(&dir.path().display().to_string()).expect("json"),
        );
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..sessions {
            tasks.spawn(client(addr, agent.clone(), Arc::clone(&emitted)));
        }
        let mut peak = (0, 0);
        let pid = std::process::id();
        let mut results = Vec::new();
        let mut sampler = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(r) => results.push(r.expect("client")),
                    None => break,
                },
                _ = sampler.tick() => {
                    let (rss, pss) = tree(pid).into_iter().map(memory).fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
                    peak = (peak.0.max(rss), peak.1.max(pss));
                }
            }
        }
        let elapsed = started.elapsed();
        let processes = tree(pid).len();
        let mut by_name: std::collections::BTreeMap<String, (usize, u64, u64)> = std::collections::BTreeMap::new();
        for p in tree(pid) {
            let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_owned();
            let (rss, pss) = memory(p);
            let e = by_name.entry(name).or_default();
            *e = (e.0 + 1, e.1 + rss, e.2 + pss);
        }
        let completed = results.iter().filter(|r| r.1).count();
        let in_order = results.iter().filter(|r| r.0).count();
        let mut latencies: Vec<Duration> = results.into_iter().flat_map(|r| r.2).collect();
        latencies.sort();
        println!("sandbox: {sandbox}");
        println!("{sessions} sessions × {steps} steps in {:.1} s ({} model answers left)", elapsed.as_secs_f64(), model.remaining());
        println!("turns ended: {completed}/{sessions}; clients that saw every event once, in order: {in_order}/{sessions}");
        println!(
            "engine event → WebSocket client: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} events)",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            latencies.len()
        );
        println!(
            "memory, process + shells ({processes} processes at the end): peak RSS sum {:.0} MiB, peak PSS {:.0} MiB",
            peak.0 as f64 / 1024.0,
            peak.1 as f64 / 1024.0
        );
        for (name, (n, rss, pss)) in by_name {
            println!("  {n:>4} × {name:<16} RSS {:>7.1} MiB, PSS {:>7.1} MiB (at the end)", rss as f64 / 1024.0, pss as f64 / 1024.0);
        }
        daemon.shutdown().await;
    });
}
