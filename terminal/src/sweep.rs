//! Removing the runtime folders of processes that died without cleaning up (SIGKILL, a crash, a power cut).
//!
//! Every [`TerminalManager`](crate::TerminalManager) makes a socket folder `codepilot-PID-XXXXXXXX` (under
//! `XDG_RUNTIME_DIR`, else `/tmp`) and a shell folder `codepilot-shell-PID-XXXXXXXX` (in the temporary folder),
//! and removes both when it shuts down. A process that is killed leaves them behind; a host that restarts daily
//! would collect them forever. The first manager of a process removes the ones whose process is gone — only
//! folders with exactly that name shape, owned by this user, whose PID no longer exists.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Removes, once per process, the leftover runtime folders of dead processes in `socket_base` and `shell_base`.
pub(crate) fn once(socket_base: &Path, shell_base: &Path) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        sweep(socket_base, "codepilot-");
        sweep(shell_base, "codepilot-shell-");
    });
}

/// The PID of a folder named `<prefix><pid>-<8 hex digits>`.
fn leftover_pid(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, suffix) = rest.split_once('-')?;
    let is_hex8 = suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit());
    let is_digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    if !is_hex8 || !is_digits {
        return None;
    }
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

/// Whether process `pid` exists (a process of another user counts as existing).
fn alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

fn sweep(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| leftover_pid(n, prefix)) else {
            continue;
        };
        if pid == own || alive(pid) {
            continue;
        }
        let path = entry.path();
        // Not followed: a symlink or another user's folder is never ours.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::debug!("removed {} (its process {pid} is gone)", path.display()),
            Err(e) => tracing::debug!("could not remove leftover {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::leftover_pid;

    #[test]
    fn only_exact_name_shapes_name_a_pid() {
        assert_eq!(
            leftover_pid("codepilot-123-0badf00d", "codepilot-"),
            Some(123)
        );
        assert_eq!(
            leftover_pid("codepilot-shell-77-deadbeef", "codepilot-shell-"),
            Some(77)
        );
        for other in [
            "codepilot-shell-77-deadbeef",
            "codepilot-123-0badf00",
            "codepilot-123-0badf00dd",
            "codepilot-12a-0badf00d",
            "codepilot--0badf00d",
            "codepilot-0-0badf00d",
            "codepilot-demo-abc",
            "codepilot-123-0badf00g",
        ] {
            assert_eq!(leftover_pid(other, "codepilot-"), None, "{other}");
        }
    }
}
