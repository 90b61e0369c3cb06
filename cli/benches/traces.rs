//! What OpenTelemetry traces (SPEC §23) cost a user of `codepilot run`: per-step wall and CPU time with traces off,
//! on (OTLP/HTTP to a receiver in this process: the testkit's scripted server, which is also the model), and on with
//! `log_content`, from the slope between a 10-step and a 110-step task (every step one `read_file` of a 40-line
//! file, the model streamed over HTTP). Runs of the three kinds alternate, so they share the machine's state.
//!
//! `cargo bench -p codepilot-cli --bench traces` (`-- --runs N`, default 7; medians are reported).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

fn bin() -> std::ffi::OsString {
    std::env::var_os("CODEPILOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into())
}

#[derive(Clone, Copy)]
enum Traces {
    Off,
    On,
    Content,
}

/// CPU time (user + system) of the children waited for so far.
fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One `codepilot run` of `steps` steps; its wall and CPU time.
fn run(server: &ScriptedServer, dir: &Path, steps: usize, traces: Traces) -> (Duration, Duration) {
    for _ in 0..steps {
        server.push(Turn::answer(
            "Reading.\n```codepilot\nread_file(\"lib.rs\", end_line=20)\n```",
        ));
    }
    server.push(Turn::answer("```completion\ndone\n```"));
    let observability = match traces {
        Traces::Off => String::new(),
        Traces::On => format!("  observability: {{endpoint: {}}}\n", server.base_url()),
        Traces::Content => format!(
            "  observability: {{endpoint: {}, log_content: true}}\n",
            server.base_url()
        ),
    };
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "agent:\n  name: Bench\n  model:\n    provider: anthropic\n    name: test-model\n    base_url: {}\n  \
             runtime:\n    work_dir: work\n    max_steps: {}\n{observability}",
            server.base_url(),
            steps + 5
        ),
    )
    .unwrap();
    let cpu = children_cpu();
    let started = Instant::now();
    let out = Command::new(bin())
        .current_dir(dir)
        .args(["run", "--session", "memory", "read it"])
        .env("CODEPILOT_HOME", dir.join("home"))
        .env("ANTHROPIC_API_KEY", "bench")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, children_cpu() - cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(7);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(ScriptedServer::start(Vec::new())).unwrap();
    server.forget_requests();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let body: String = (0..40)
        .map(|l| format!("fn f{l}() -> u32 {{ {l} }}\n"))
        .collect();
    std::fs::write(dir.join("work/lib.rs"), body).unwrap();

    let kinds = [
        ("traces off", Traces::Off),
        ("traces on", Traces::On),
        ("traces on, log_content", Traces::Content),
    ];
    let mut wall = vec![Vec::new(); kinds.len()];
    let mut cpu = vec![Vec::new(); kinds.len()];
    for _ in 0..runs {
        for (k, (_, traces)) in kinds.iter().enumerate() {
            let (w10, c10) = run(&server, dir, 10, *traces);
            let (w110, c110) = run(&server, dir, 110, *traces);
            wall[k].push((w110.as_secs_f64() - w10.as_secs_f64()) * 1e3 / 100.0);
            cpu[k].push((c110.as_secs_f64() - c10.as_secs_f64()) * 1e3 / 100.0);
        }
    }
    for (k, (name, _)) in kinds.iter().enumerate() {
        println!(
            "`codepilot run`, {name}: per step {:.3} ms wall, {:.3} ms CPU (median of {runs}, slope 10→110 steps)",
            median(wall[k].clone()),
            median(cpu[k].clone())
        );
    }
    println!("spans received: {}", server.spans().len());
}
