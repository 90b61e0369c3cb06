//! Round trip of a trivial MCP tool call from the control block (SPEC §18), through `codepilot run`, against the
//! official Python client calling the same server in a loop.
//!
//! `cargo bench -p codepilot-cli --bench mcp` (needs `CODEPILOT_TEST_MCP_PYTHON`: `bash scripts/mcp-fixtures.sh`
//! prints it). The server is the test server written with the Python SDK (`cli/tests/fixtures/mcp/server.py`),
//! over stdio and over streamable HTTP. The block calls `calc__add` 150 times in a loop; the per-call figure is the
//! time from the first call's `tool_call` event to the last call's `tool_result` event, as `--json` streams them,
//! divided by the calls in between: the whole path, the block's interpreter suspending, the runtime calling the
//! server and the result back in the block. The Python client's figure is its own loop of `call_tool`
//! (`cli/benches/mcp_client.py`). Median of 5 runs (`-- --runs N`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::io::BufRead as _;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

const CALLS: usize = 150;

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// Seconds per call from the block, through the binary, with `server_yaml` as the `calc` server.
fn from_block(rt: &tokio::runtime::Runtime, dir: &Path, server_yaml: &str) -> f64 {
    let block = format!("```codepilot\nfor i in range({CALLS}):\n    calc__add(a=i, b=1)\n```");
    let server = rt
        .block_on(ScriptedServer::start(vec![
            Turn::answer("```codepilot\ncalc__add(a=0, b=0)\n```"),
            Turn::answer(block),
            Turn::answer("```completion\ndone\n```"),
        ]))
        .unwrap();
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "agent:\n  name: Bench\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: {}/v1\n  \
             runtime:\n    work_dir: work\n    max_steps: 5\n  mcp_servers:\n{server_yaml}",
            server.base_url()
        ),
    )
    .unwrap();
    let bin =
        std::env::var_os("CODEPILOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_codepilot").into());
    let mut child = Command::new(bin)
        .current_dir(dir)
        .args(["run", "--session", "memory", "--json", "go"])
        .env("CODEPILOT_HOME", dir.join("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut calls: Vec<Instant> = Vec::new();
    let mut results: Vec<Instant> = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let at = Instant::now();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"]["tool"] == "calc__add" {
            match v["event"]["type"].as_str() {
                Some("tool_call") => calls.push(at),
                Some("tool_result") => results.push(at),
                _ => {}
            }
        }
    }
    assert!(child.wait().unwrap().success());
    // The first call (step 1) warms the connection up; measure step 2's loop.
    assert_eq!(calls.len(), CALLS + 1, "every call was made");
    let span = results[CALLS].duration_since(calls[1]);
    span.as_secs_f64() / CALLS as f64
}

fn python_client(python: &Path, target: &str) -> f64 {
    let out = Command::new(python)
        .args([
            fixture("benches/mcp_client.py"),
            fixture("tests/fixtures/mcp/server.py"),
            CALLS.to_string(),
            target.to_owned(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(python) = std::env::var_os("CODEPILOT_TEST_MCP_PYTHON").map(PathBuf::from) else {
        println!("skipped: set CODEPILOT_TEST_MCP_PYTHON (bash scripts/mcp-fixtures.sh prints it)");
        return;
    };
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_usize);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut http = Command::new(&python)
        .args([
            fixture("tests/fixtures/mcp/server.py"),
            "http".to_owned(),
            port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let stdio_yaml = format!(
        "    - name: calc\n      command: {}\n      args: [{}, stdio]\n",
        python.display(),
        serde_json::to_string(&fixture("tests/fixtures/mcp/server.py")).unwrap()
    );
    let http_yaml = format!("    - name: calc\n      url: {url}\n");
    println!(
        "| transport | from the block, through `codepilot run` | official Python client loop | ratio |"
    );
    println!("|---|---|---|---|");
    for (label, yaml, target) in [
        ("stdio", &stdio_yaml, "stdio"),
        ("streamable HTTP", &http_yaml, url.as_str()),
    ] {
        let ours = median(
            (0..runs)
                .map(|_| from_block(&rt, tmp.path(), yaml))
                .collect(),
        );
        let theirs = median((0..runs).map(|_| python_client(&python, target)).collect());
        println!(
            "| {label} | {:.3} ms | {:.3} ms | {:.2}× |",
            ours * 1e3,
            theirs * 1e3,
            ours / theirs
        );
    }
    let _ = http.kill();
    let _ = http.wait();
}
