#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::path::Path;
use std::time::Duration;

use codepilot_terminal::TerminalConfig;
use codepilot_terminal::TerminalManager;
use tokio::io::AsyncReadExt as _;

/// Generous: the machine is slow and shared.
pub const T: Duration = Duration::from_secs(60);

pub async fn manager(work_dir: &Path) -> TerminalManager {
    manager_with(TerminalConfig::new(work_dir)).await
}

pub async fn manager_with(cfg: TerminalConfig) -> TerminalManager {
    TerminalManager::new(cfg).await.unwrap()
}

/// Reads from `reader` until the bytes seen contain `needle`; panics after `T`.
pub async fn read_until<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 8192];
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if String::from_utf8_lossy(&seen).contains(needle) {
            return String::from_utf8_lossy(&seen).into_owned();
        }
        let n = tokio::time::timeout_at(deadline, reader.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {needle:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "EOF before {needle:?}; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Waits until `pid` is gone (or a zombie); panics after `T`.
pub async fn wait_gone(pid: u32) {
    let deadline = tokio::time::Instant::now() + T;
    while codepilot_terminal::procs::alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Descendants of the shell other than the shell, polled until `n` exist.
pub async fn wait_children(shell: u32, n: usize) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let kids: Vec<u32> = codepilot_terminal::procs::tree(shell)
            .into_iter()
            .filter(|p| *p != shell && codepilot_terminal::procs::alive(*p))
            .collect();
        if kids.len() >= n {
            return kids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {kids:?} started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
