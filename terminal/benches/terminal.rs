//! Terminal benchmarks (plain `main`, no criterion).
//!
//! Run with: `cargo bench -p codepilot-terminal`
//!
//! Measures: construction until `main` answers its first command; `execute("true")` round
//! trips (median, p99 over 1000 runs), without and with the sandbox (workspace-write, no network);
//! 10,000 consecutive `echo` commands checked for exactly their own output; multiplexer throughput
//! to 4 attached clients; RSS; the cost of a session's resource limits (a cgroup per session where this host has
//! one): making them, a shell start and a command round trip with and without them, and with a disk cap.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use std::time::Instant;

use codepilot_terminal::TerminalConfig;
use codepilot_terminal::TerminalManager;
use codepilot_terminal::client;
use tokio::io::AsyncReadExt as _;

const T: Duration = Duration::from_secs(120);

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// 50 warm-up commands, then 1000 timed `true` round trips.
async fn round_trips(label: &str, handle: &codepilot_terminal::TerminalHandle) {
    for _ in 0..50 {
        handle.execute("true", T).await.unwrap();
    }
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t0 = Instant::now();
        let r = handle.execute("true", T).await.unwrap();
        times.push(t0.elapsed());
        assert_eq!(r.exit_code, Some(0));
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / 1000;
    println!(
        "{label}: median {:.3} ms, p99 {:.3} ms, mean {:.3} ms, max {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}

async fn run() {
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let m = TerminalManager::new(TerminalConfig::new(work.path()))
        .await
        .unwrap();
    let main = m.create("main").await.unwrap();
    main.execute("true", T).await.unwrap();
    println!(
        "construction with main ready (first command answered): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    println!("RSS after construction: {} KiB", rss_kib());

    round_trips("execute(\"true\") x1000", &main).await;

    if codepilot_sandbox::probe().available() {
        let boxed_work = tempfile::tempdir().unwrap();
        let mut cfg = TerminalConfig::new(boxed_work.path());
        cfg.sandbox = Some(codepilot_sandbox::Policy::new(
            codepilot_sandbox::Mode::WorkspaceWrite,
            false,
            vec![boxed_work.path().to_path_buf()],
        ));
        let started = Instant::now();
        let boxed = TerminalManager::new(cfg).await.unwrap();
        let boxed_main = boxed.create("main").await.unwrap();
        boxed_main.execute("true", T).await.unwrap();
        println!(
            "sandboxed: construction with main ready: {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        round_trips("sandboxed: execute(\"true\") x1000", &boxed_main).await;
        round_trips("again without: execute(\"true\") x1000", &main).await;
        boxed.shutdown().await;
    } else {
        println!("sandbox not available here: no sandboxed figures");
    }

    resource_limits().await;

    let (mut wrong, mut hung) = (0, 0);
    let t0 = Instant::now();
    for i in 0..10_000 {
        let r = main.execute(&format!("echo r{i}"), T).await.unwrap();
        if r.exit_code.is_none() {
            hung += 1;
        } else if r.output != format!("r{i}") {
            wrong += 1;
        }
    }
    println!(
        "10000 consecutive echo commands: {wrong} wrong outputs, {hung} hangs ({:.3} ms each)",
        t0.elapsed().as_secs_f64() * 1e3 / 10_000.0
    );

    let bytes: u64 = 100_000_000;
    let cmd = format!(
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq | head -c {bytes}"
    );
    let t0 = Instant::now();
    main.execute(&cmd, T).await.unwrap();
    let solo = t0.elapsed();
    println!(
        "100 MB through the agent side, no clients: {:.0} MB/s",
        bytes as f64 / 1e6 / solo.as_secs_f64()
    );
    println!("RSS after 100 MB of output: {} KiB", rss_kib());

    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut conn = client::connect(m.socket_dir(), "main", m.token())
            .await
            .unwrap();
        // Skip the scrollback replay.
        let mut skip = vec![0u8; 1 << 20];
        let _ = tokio::time::timeout(Duration::from_millis(200), conn.reader.read(&mut skip)).await;
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            let mut last = Instant::now();
            loop {
                match tokio::time::timeout(Duration::from_secs(3), conn.reader.read(&mut buf)).await
                {
                    Ok(Ok(0) | Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => {
                        total += n as u64;
                        last = Instant::now();
                    }
                }
            }
            (total, last)
        }));
    }
    let t0 = Instant::now();
    main.execute(&cmd, T).await.unwrap();
    let agent_done = t0.elapsed();
    let mut received = Vec::new();
    for r in readers {
        let (total, last) = r.await.unwrap();
        received.push((total, last.duration_since(t0)));
    }
    let slowest = received.iter().map(|r| r.1).max().unwrap_or(agent_done);
    let sum: u64 = received.iter().map(|r| r.0).sum();
    println!(
        "multiplexer, 100 MB command with 4 clients: agent done in {:.2} s; clients got {:?} bytes; aggregate {:.0} MB/s to clients ({:.0} MB/s per client)",
        agent_done.as_secs_f64(),
        received.iter().map(|r| r.0).collect::<Vec<_>>(),
        sum as f64 / 1e6 / slowest.as_secs_f64(),
        sum as f64 / 4.0 / 1e6 / slowest.as_secs_f64(),
    );
    m.shutdown().await;
}

/// Median time for a new terminal to answer its first command, over 40 starts (after 5 untimed).
async fn shell_starts(label: &str, m: &TerminalManager) {
    let mut times = Vec::with_capacity(40);
    for i in 0..45 {
        let name = format!("s{i}");
        let t0 = Instant::now();
        let t = m.create(&name).await.unwrap();
        t.execute("true", T).await.unwrap();
        if i >= 5 {
            times.push(t0.elapsed());
        }
        m.terminate(&name).await.unwrap();
    }
    times.sort();
    println!(
        "{label}: shell start to first answer, median {:.2} ms, p90 {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3
    );
}

/// Shell starts and round trips without limits and with the default limits (512 processes, half the memory) as
/// this host enforces them, alternated; round trips with a disk cap on a small work directory too; and what making
/// a session's limits costs.
async fn resource_limits() {
    use codepilot_sandbox::resources::Limits;
    use codepilot_sandbox::resources::SessionLimits;
    let limits = Limits::defaults();
    let work = tempfile::tempdir().unwrap();
    let mut made = Vec::with_capacity(100);
    for _ in 0..100 {
        let t0 = Instant::now();
        let l = SessionLimits::new(limits, work.path()).unwrap();
        made.push(t0.elapsed());
        drop(l);
    }
    made.sort();
    let session = SessionLimits::new(limits, work.path()).unwrap();
    println!(
        "resource limits ({}): a session's limits made and removed in median {:.3} ms",
        session.mechanism().describe(),
        percentile(&made, 0.5).as_secs_f64() * 1e3
    );
    let manager = |limits: Option<std::sync::Arc<SessionLimits>>| {
        let mut cfg = TerminalConfig::new(work.path());
        cfg.limits = limits;
        TerminalManager::new(cfg)
    };
    let plain = manager(None).await.unwrap();
    let limited = manager(Some(session)).await.unwrap();
    let capped_limits = Limits {
        max_disk_mb: Some(10 * 1024),
        ..limits
    };
    let capped = manager(Some(
        SessionLimits::new(capped_limits, work.path()).unwrap(),
    ))
    .await
    .unwrap();
    shell_starts("without limits", &plain).await;
    shell_starts("with limits", &limited).await;
    shell_starts("without limits, again", &plain).await;
    let (a, b, c) = (
        plain.create("main").await.unwrap(),
        limited.create("main").await.unwrap(),
        capped.create("main").await.unwrap(),
    );
    // Alternated, so the machine's drift shows in both columns.
    for round in 1..=3 {
        round_trips(
            &format!("without limits ({round}): execute(\"true\") x1000"),
            &a,
        )
        .await;
        round_trips(
            &format!("with limits ({round}): execute(\"true\") x1000"),
            &b,
        )
        .await;
    }
    round_trips("with limits and a disk cap: execute(\"true\") x1000", &c).await;
    plain.shutdown().await;
    limited.shutdown().await;
    capped.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
