//! What every subcommand prints when it fails, through the binary: one structured line per failure, each cause
//! said once, and no raw library error or log line after it. Snapshotted, so a new line is a reviewed change.

use std::fmt::Write as _;
use std::path::Path;

use super::support::codepilot;
use super::support::stderr;

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` with the run's directory and the closed port replaced by placeholders.
fn normalise(text: &str, dir: &Path, port: u16) -> String {
    text.replace(&dir.display().to_string(), "[DIR]")
        .replace(&port.to_string(), "[PORT]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_says_each_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let port = closed_port();
    std::fs::create_dir_all(root.join("bad")).unwrap();
    std::fs::write(
        root.join("bad/agent.yaml"),
        "agent:\n  name: X\n  model:\n    provider: anthropic\n    name: m\n  runtime:\n    max_stepz: 3\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("mcp")).unwrap();
    std::fs::write(
        root.join("mcp/agent.yaml"),
        format!(
            "agent:\n  name: X\n  model:\n    provider: anthropic\n    name: m\n  mcp_servers:\n    \
             - {{name: gone, url: \"http://127.0.0.1:{port}/mcp\", timeout_s: 5}}\n    \
             - {{name: missing, command: codepilot-no-such-server, timeout_s: 5}}\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("exists.yaml"), "x").unwrap();
    let cases: &[&[&str]] = &[
        &["run", "hi"],
        &["run", "--config", "bad/agent.yaml", "hi"],
        &["chat", "--config", "nowhere.yaml"],
        &["init", "exists.yaml"],
        &["attach", "--socket-dir", "no-such-dir", "main"],
        &["sessions", "show", "no-such-session"],
        &["sessions", "rm", "no-such-session"],
        &["serve", "--listen", "bogus://x"],
        &["snapshots", "list"],
        &[
            "snapshots",
            "list",
            "--snapshots",
            "ftp://example.invalid/x",
        ],
        &["mcp", "list", "--config", "mcp/agent.yaml"],
        &["mcp", "list", "--config", "mcp/agent.yaml", "--json"],
        &["no-such-command"],
    ];
    let mut transcript = String::new();
    for args in cases {
        let out = codepilot(root, args).await;
        let err = normalise(&stderr(&out), root, port);
        let stdout = normalise(&String::from_utf8_lossy(&out.stdout), root, port);
        // The CLI's own lines only (clap's usage error aside); a library's error log would read
        // `codepilot: error: …` after the structured line.
        for line in err.lines() {
            assert!(
                line.is_empty()
                    || (line.starts_with("codepilot: ") && !line.starts_with("codepilot: error:"))
                    || args[0] == "no-such-command",
                "a line that is not the CLI's own after `codepilot {}`:\n{err}",
                args.join(" ")
            );
        }
        let _ = writeln!(
            transcript,
            "$ codepilot {}\nexit {:?}\n{stdout}{err}",
            args.join(" "),
            out.status.code()
        );
    }
    insta::assert_snapshot!("failures", transcript);
}
