//! Two daemons on one Postgres (SPEC §17 figures).
//!
//! `CODEPILOT_TEST_PG_URL=… cargo bench -p codepilot-server --bench hosted` — two daemons in this process, each with
//! its own Postgres pool and node name (as two machines would have), each serving `HOSTED_SESSIONS` sessions (50)
//! over WebSockets; every session runs one `HOSTED_STEPS`-step turn (20: every answer reads a file; `max_steps`
//! ends the turn) against the scripted model server, all at once. Every step is one checkpoint transaction (plus
//! the batched event rows), so steps per second across both daemons are checkpoints per second. The latency
//! reported is what a step waits for its checkpoint: from the engine emitting a step's last tool result to it
//! emitting the next step's start (the checkpoint is awaited in between; nothing else there touches the network).
//!
//! `HOSTED_SNAPSHOTS=file:///DIR` (or `s3://…` with `AWS_*`) also keeps workspace snapshots: each step then also
//! starts a background save, which for these unchanged workspaces is one directory scan.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::cast_precision_loss)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use codepilot::StoreConfig;
use codepilot::store::StoreOptions;
use codepilot::store::snapshot::SnapshotOptions;
use codepilot::store::snapshot::SnapshotStore;
use codepilot_protocol::Event;
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

const TOKEN: &str = "hosted-benchmark-token";

/// Per session: when its last tool result was emitted, and the waits measured so far.
#[derive(Default)]
struct Waits {
    last_result: HashMap<String, Instant>,
    waits: Vec<Duration>,
}

/// One client: starts a session on the daemon at `addr` and a turn; reads until `turn/completed`. Returns whether
/// the turn ended as expected.
async fn client(addr: std::net::SocketAddr, agent: String) -> bool {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc?token={TOKEN}"))
        .await
        .expect("connect");
    let mut id = 0;
    let mut call =
        async |ws: &mut tokio_tungstenite::WebSocketStream<_>, method: &str, params: Value| {
            id += 1;
            let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            ws.send(Message::text(msg.to_string())).await.expect("send");
            loop {
                let m = ws.next().await.expect("open").expect("frame");
                let v: Value = serde_json::from_str(m.to_text().expect("text")).expect("json");
                if v["id"] == json!(id) && v.get("method").is_none() {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
                if v["method"] == "turn/completed" {
                    return v;
                }
            }
        };
    call(&mut ws, "initialize", json!({"client": {"name": "hosted"}})).await;
    let session = call(&mut ws, "session/start", json!({"agent": agent})).await["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    call(
        &mut ws,
        "turn/start",
        json!({"session_id": session, "text": "read it, again and again"}),
    )
    .await;
    loop {
        let m = ws.next().await.expect("open").expect("frame");
        let v: Value = serde_json::from_str(m.to_text().expect("text")).expect("json");
        match v["method"].as_str() {
            Some("turn/completed") => {
                let status = v["params"]["outcome"]["status"].as_str().unwrap_or("");
                return status == "max_steps" || status == "completed";
            }
            Some("turn/failed") => return false,
            _ => {}
        }
    }
}

async fn daemon(
    node: &str,
    pg: &str,
    waits: Arc<Mutex<Waits>>,
    snapshots: Option<SnapshotStore>,
) -> (Daemon, std::net::SocketAddr) {
    let daemon = Daemon::start(DaemonConfig {
        store: StoreConfig::Postgres { url: pg.to_owned() },
        store_options: StoreOptions::new().holder_identity(std::process::id(), node),
        token: Some(TOKEN.to_owned()),
        snapshots,
        event_probe: Some(Arc::new(move |e| {
            let now = Instant::now();
            let mut w = waits.lock().expect("lock");
            match &e.event {
                Event::ToolResult(_) => {
                    w.last_result.insert(e.session_id.clone(), now);
                }
                Event::Step(s) if s.step > 1 => {
                    if let Some(at) = w.last_result.remove(&e.session_id) {
                        w.waits.push(now.duration_since(at));
                    }
                }
                _ => {}
            }
        })),
        ..DaemonConfig::default()
    })
    .await
    .expect("daemon");
    let serving = daemon.clone();
    tokio::spawn(async move {
        serving
            .serve(vec![Listen::Ws("127.0.0.1:0".parse().expect("addr"))])
            .await
    });
    let addr = daemon.http_addrs().await[0];
    (daemon, addr)
}

fn main() {
    let Ok(pg) = std::env::var("CODEPILOT_TEST_PG_URL") else {
        println!("skipped: set CODEPILOT_TEST_PG_URL (bash .ci/postgres.sh prints one)");
        return;
    };
    let sessions = env_usize("HOSTED_SESSIONS", 50);
    let steps = env_usize("HOSTED_STEPS", 20);
    let snapshots_url = std::env::var("HOSTED_SNAPSHOTS").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("notes.txt"), "line\n".repeat(40)).expect("write");
        let answer = "Reading.\n```codepilot\nread_file(\"notes.txt\")\n```";
        let model = ScriptedServer::start(vec![Turn::answer(answer); 2 * sessions * steps]).await.expect("model");
        model.forget_requests();
        let snapshots = snapshots_url.as_deref().map(|url| {
            SnapshotStore::open(
                url,
                SnapshotOptions {
                    state_dir: Some(dir.path().join("snapshot-state")),
                    ..SnapshotOptions::default()
                },
            )
            .expect("snapshot store")
        });
        let waits: Arc<Mutex<Waits>> = Arc::default();
        let (a, addr_a) = daemon("node-a", &pg, Arc::clone(&waits), snapshots.clone()).await;
        let (b, addr_b) = daemon("node-b", &pg, Arc::clone(&waits), snapshots).await;
        let agent = |work: &str| {
            let work = dir.path().join(work);
            std::fs::create_dir_all(&work).expect("work dir");
            std::fs::copy(dir.path().join("notes.txt"), work.join("notes.txt")).expect("copy");
            format!(
                "agent:\n  name: Hosted\n  model:\n    provider: openai-compatible\n    name: test-model\n    base_url: {}/v1\n    \
                 context_window: 128000\n  runtime:\n    work_dir: {}\n    max_steps: {steps}\n",
                model.base_url(),
                serde_json::to_string(&work.display().to_string()).expect("json"),
            )
        };
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..sessions {
            tasks.spawn(client(addr_a, agent(&format!("a{i}"))));
            tasks.spawn(client(addr_b, agent(&format!("b{i}"))));
        }
        let mut ended = 0;
        while let Some(r) = tasks.join_next().await {
            ended += usize::from(r.expect("client"));
        }
        let elapsed = started.elapsed();
        let mut w = std::mem::take(&mut waits.lock().expect("lock").waits);
        w.sort();
        let checkpoints = 2 * sessions * steps;
        println!(
            "2 daemons × {sessions} sessions × {steps} steps on one Postgres{}: {:.1} s, turns ended {ended}/{}",
            snapshots_url.as_deref().map(|u| format!(", snapshots in {u}")).unwrap_or_default(),
            elapsed.as_secs_f64(),
            2 * sessions
        );
        println!(
            "checkpoints: {:.0}/s across both daemons ({checkpoints} in all)",
            checkpoints as f64 / elapsed.as_secs_f64()
        );
        println!(
            "a step's wait for its checkpoint: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} steps)",
            percentile(&w, 0.50).as_secs_f64() * 1e3,
            percentile(&w, 0.99).as_secs_f64() * 1e3,
            w.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            w.len()
        );
        a.shutdown().await;
        b.shutdown().await;
    });
}
