//! Checkpoint cost per step (2 messages) and resume time, per backend.
//!
//! Run with: `cargo bench -p codepilot-store --bench store`
//! Postgres is measured when `CODEPILOT_TEST_PG_URL` is set (see `.ci/postgres.sh`).
//! `STORE_BENCH_MESSAGES` sets the session size (default 10000).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use codepilot_store::Checkpoint;
use codepilot_store::FileStore;
use codepilot_store::SessionId;
use codepilot_store::SessionStore;
use codepilot_store::StoreConfig;
use codepilot_store::StoreOptions;
use codepilot_store::open_store;

/// Step `i`: an assistant answer (~350 bytes) and an execution result (~650 bytes).
fn step(i: u64) -> [Message; 2] {
    [
        Message::assistant(format!(
            "Step {i}. I will look at the failing test first.\n```python\nresult = terminal.execute(\"main\", \"cargo test -p app -- parse_{i}\")\nprint(result.output[-2000:])\n```\n{}",
            "The parser rejects trailing commas; checking the grammar. ".repeat(4)
        )),
        Message::user(format!(
            "[EXECUTION RESULT]\nrunning 1 test\ntest parse_{i} ... FAILED\n{}",
            "thread 'parse' panicked at src/parse.rs:41:9: assertion `left == right` failed\n"
                .repeat(7)
        )),
    ]
}

fn cp(base: u64, messages: Vec<Message>, n: u64) -> Checkpoint {
    Checkpoint {
        base_len: base,
        messages,
        task_counter: 1,
        usage: Usage {
            input_tokens: n * 1000,
            output_tokens: n * 100,
            calls: n,
            ..Usage::default()
        },
        title: None,
        archives: None,
        answers: Vec::new(),
    }
}

struct Stats {
    median: Duration,
    p95: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let n = v.len();
    Stats {
        median: v[n / 2],
        p95: v[(n * 95 / 100).min(n - 1)],
        mean: v.iter().sum::<Duration>() / u32::try_from(n).unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(name: &str, store: Arc<dyn SessionStore>, total: u64, steps: u64) {
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "bench").await.unwrap();

    // Per step from an empty session.
    let mut early = Vec::new();
    let mut len = 0_u64;
    for i in 0..steps {
        let t = Instant::now();
        store
            .checkpoint(&lease, &cp(len, step(i).to_vec(), i))
            .await
            .unwrap();
        early.push(t.elapsed());
        len += 2;
    }
    // Fill up to `total` messages in bulk.
    let fill = Instant::now();
    let mut i = steps;
    let target = total.saturating_sub(2 * steps);
    while len < target {
        let k = ((target - len) / 2).clamp(1, 500);
        let chunk: Vec<Message> = (0..k).flat_map(|j| step(i + j)).collect();
        let n = chunk.len() as u64;
        store.checkpoint(&lease, &cp(len, chunk, i)).await.unwrap();
        len += n;
        i += k;
    }
    let fill = fill.elapsed();
    // Per step at the full size.
    let mut late = Vec::new();
    while len < total {
        let t = Instant::now();
        store
            .checkpoint(&lease, &cp(len, step(i).to_vec(), i))
            .await
            .unwrap();
        late.push(t.elapsed());
        len += 2;
        i += 1;
    }
    store.release(lease).await.unwrap();

    // Resume: load (read-only) and open (lease + load) of the full session.
    let mut loads = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let rec = store.load(&id).await.unwrap().unwrap();
        loads.push(t.elapsed());
        assert_eq!(rec.messages.len() as u64, total);
    }
    let t = Instant::now();
    let (lease, rec) = store.open(&id, "bench").await.unwrap();
    let open = t.elapsed();
    assert_eq!(rec.meta.message_count, total);
    store.release(lease).await.unwrap();
    let _ = store.delete(&id).await;

    let (e, l, r) = (stats(early), stats(late), stats(loads));
    println!(
        "{name:<22} checkpoint/step at 0..{}: median {} p95 {} mean {} | at ~{total}: median {} p95 {} mean {} | resume load({total}) median {} open {} | bulk fill {}",
        steps * 2,
        ms(e.median),
        ms(e.p95),
        ms(e.mean),
        ms(l.median),
        ms(l.p95),
        ms(l.mean),
        ms(r.median),
        ms(open),
        ms(fill),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u64 = std::env::var("STORE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    println!("session of {total} messages (~1 KB per step of 2 messages)");

    bench(
        "memory",
        open_store(StoreConfig::Memory).await.unwrap(),
        total,
        200,
    )
    .await;

    let url = format!("sqlite:///{}/full.db", dir.path().display());
    bench(
        "sqlite (sync=FULL)",
        open_store(StoreConfig::Sqlite { url }).await.unwrap(),
        total,
        200,
    )
    .await;

    let normal = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
        "sqlite://{}/normal.db",
        dir.path().display()
    ))
    .unwrap()
    .create_if_missing(true)
    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
    .busy_timeout(Duration::from_secs(30));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(normal)
        .await
        .unwrap();
    bench(
        "sqlite (sync=NORMAL)",
        open_store(StoreConfig::SqlitePool(pool)).await.unwrap(),
        total,
        200,
    )
    .await;

    match std::env::var("CODEPILOT_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => {
            bench(
                "postgres",
                open_store(StoreConfig::Postgres { url }).await.unwrap(),
                total,
                200,
            )
            .await;
        }
        _ => println!(
            "postgres               skipped: set CODEPILOT_TEST_PG_URL (bash .ci/postgres.sh)"
        ),
    }

    let file = FileStore::new(dir.path().join("json"), StoreOptions::default()).unwrap();
    bench("json file", Arc::new(file), total, 50).await;
}
