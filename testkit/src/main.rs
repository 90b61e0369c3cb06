//! `codepilot-testkit`: the scripted model server as a process, for tests outside Rust.
//!
//! ```text
//! codepilot-testkit [--turns FILE.json] [--oauth-mcp]
//! ```
//!
//! Prints the base URL (`http://127.0.0.1:PORT`) as the first line on stdout (with `--oauth-mcp`, the URL of an
//! MCP server behind a local OAuth authorization server as the second, see `OAuthMcpServer`), then serves until stdin closes or
//! the process gets SIGTERM/SIGINT. Point `ANTHROPIC_BASE_URL` at the URL (or `OPENAI_BASE_URL` at `URL/v1`),
//! queue turns with `POST URL/_testkit/turns` and read what the runtime sent with `GET URL/_testkit/requests`.

use std::io::Write as _;
use std::process::ExitCode;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::TurnSpec;
use tokio::io::AsyncReadExt as _;

const USAGE: &str = "usage: codepilot-testkit [--turns FILE.json] [--oauth-mcp]\n\
Serves the scripted model server on 127.0.0.1 and prints its URL; see GET /_testkit/state.";

fn turns_from(path: &str) -> Result<Vec<Turn>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let specs: Vec<TurnSpec> = serde_json::from_str(&text)
        .map_err(|e| format!("{path}: expected a JSON array of turns: {e}"))?;
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Turn::try_from(spec).map_err(|e| format!("{path}: turn {i}: {e}")))
        .collect()
}

/// The turns to serve, and whether to serve an OAuth-protected MCP server too.
fn parse_args() -> Result<(Vec<Turn>, bool), String> {
    let mut args = std::env::args().skip(1);
    let mut turns = Vec::new();
    let mut oauth = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--turns" => {
                let path = args
                    .next()
                    .ok_or_else(|| format!("--turns needs a file\n{USAGE}"))?;
                turns = turns_from(&path)?;
            }
            "--oauth-mcp" => oauth = true,
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    Ok((turns, oauth))
}

async fn serve(turns: Vec<Turn>, oauth: bool) -> std::io::Result<()> {
    let server = ScriptedServer::start(turns).await?;
    let protected = match oauth {
        true => Some(codepilot_testkit::OAuthMcpServer::start(300).await?),
        false => None,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.base_url())?;
    if let Some(protected) = &protected {
        writeln!(out, "{}", protected.mcp_url())?;
    }
    out.flush()?;
    drop(out);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    let stdin_closed = async {
        // Reads until EOF: the parent closed the pipe or exited.
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = stdin_closed => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let (turns, oauth) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "codepilot-testkit: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(turns, oauth));
    // The stdin reader sits in a blocking read that nothing can cancel; don't wait for it.
    runtime.shutdown_background();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "codepilot-testkit: {e}");
            ExitCode::FAILURE
        }
    }
}
