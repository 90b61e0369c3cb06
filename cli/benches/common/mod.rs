//! Helpers shared by the CLI benchmarks.

#![allow(dead_code, reason = "each benchmark uses the parts it needs")]

/// What a finished child cost: CPU seconds (user + system) and peak resident set in MiB.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub cpu: f64,
    pub rss_mib: f64,
}

/// Reaps `child` (std's wait reports neither its CPU time nor its peak RSS); panics unless it exited with 0.
#[allow(clippy::cast_precision_loss)]
pub fn wait(child: &std::process::Child) -> Cost {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: a zeroed `rusage` is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both pointers are valid for the call.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "codepilot run failed: {status}"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Cost {
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        rss_mib: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// The `--runs N` argument, or `default`.
pub fn runs(default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A tokio runtime with one worker, for the scripted model server the benchmark talks to.
pub fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
