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
