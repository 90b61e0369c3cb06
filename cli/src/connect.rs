//! `codepilot run --connect unix://…`: the task runs on a daemon; this process shows it exactly as a local run
//! would (same output, same exit codes) and answers the daemon's permission and ask-user requests.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use codepilot::PermissionRequest;
use codepilot::protocol::TurnCompleted;
use codepilot::protocol::rpc::ServerNotification;
use codepilot::protocol::rpc::ServerRequest;
use serde_json::Value;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;

use crate::Exit;
use crate::Failure;
use crate::cli::AgentArgs;
use crate::output;
use crate::output::Output;
use crate::prompts::Prompter;
use crate::usage;

/// A JSON-RPC connection to the daemon.
struct Rpc {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: OwnedWriteHalf,
    next_id: i64,
}

/// Something the daemon sent that is not the response being waited for.
enum Incoming {
    Notification(ServerNotification),
    Request(Value, ServerRequest),
}

impl Rpc {
    async fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        let mut line = message.to_string();
        line.push('\n');
        self.write
            .write_all(line.as_bytes())
            .await
            .context("writing to the daemon")
    }

    async fn read(&mut self) -> anyhow::Result<Value> {
        let line = self
            .lines
            .next_line()
            .await
            .context("reading from the daemon")?
            .context("the daemon closed the connection")?;
        serde_json::from_str(&line)
            .with_context(|| format!("the daemon sent something that is not JSON: {line}"))
    }

    /// Calls `method`; whatever arrives before the response is kept in `early`.
    async fn call(
        &mut self,
        method: &str,
        params: Value,
        early: &mut Vec<Incoming>,
    ) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let message = self.read().await?;
            if message.get("method").is_none() && message.get("id") == Some(&json!(id)) {
                if let Some(error) = message.get("error") {
                    let text = error["message"]
                        .as_str()
                        .unwrap_or("unknown error")
                        .to_owned();
                    let config = matches!(error["code"].as_i64(), Some(1004 | -32602));
                    return Err(if config {
                        usage(text)
                    } else {
                        anyhow::anyhow!("{method}: {text}").into()
                    });
                }
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
            if let Some(incoming) = classify(message) {
                early.push(incoming);
            }
        }
    }
}

fn classify(message: Value) -> Option<Incoming> {
    let id = message.get("id").cloned();
    let method = message.get("method")?.clone();
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let typed = json!({"method": method, "params": params});
    match id {
        Some(id) => serde_json::from_value(typed)
            .ok()
            .map(|r| Incoming::Request(id, r)),
        None => serde_json::from_value(typed)
            .ok()
            .map(Incoming::Notification),
    }
}

/// Runs `task` on the daemon at `url` (`unix://PATH`).
pub(crate) async fn run(
    url: &str,
    config: &Path,
    args: &AgentArgs,
    task: &str,
    options: &codepilot::RunOptions,
    out: Arc<dyn Output>,
) -> Result<Exit, Failure> {
    let path = url.strip_prefix("unix://").ok_or_else(|| {
        usage(format!(
            "--connect {url:?}: use unix://PATH (the daemon's socket)"
        ))
    })?;
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!("connecting to the daemon at {url} (is `codepilot serve` running?)")
    })?;
    let (read, write) = stream.into_split();
    let mut rpc = Rpc {
        lines: BufReader::new(read).lines(),
        write,
        next_id: 1,
    };
    let mut queue = Vec::new();
    rpc.call(
        "initialize",
        json!({"client": {"name": "codepilot-cli", "version": env!("CARGO_PKG_VERSION")}}),
        &mut queue,
    )
    .await?;
    let agent_file = std::path::absolute(config).context("resolving the agent file's path")?;
    let mut start = json!({"agent_file": agent_file});
    if let Some(id) = &args.session_id {
        start["session_id"] = json!(id);
    }
    let started = rpc.call("session/start", start, &mut queue).await?;
    let session_id = started["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !args.json {
        output::err_line(&format!("session {session_id} · on the daemon at {url}"));
    }
    let mut turn = json!({"session_id": session_id, "text": task});
    if !options.limits.is_empty() {
        turn["limits"] = json!(options.limits);
    }
    if let Some(schema) = &options.output_schema {
        turn["output_schema"] = schema.clone();
    }
    if let Some(tp) = &options.traceparent {
        turn["_meta"] = json!({ "traceparent": tp.to_string() });
    }
    rpc.call("turn/start", turn, &mut queue).await?;
    let prompter = Prompter::new(args.yes, Arc::clone(&out));
    let mut signals = crate::signals::Signals::new();
    let mut interrupted = false;
    let mut pending = queue.into_iter();
    let exit = loop {
        let incoming = match pending.next() {
            Some(i) => i,
            None => {
                let message = tokio::select! {
                    message = rpc.read() => message?,
                    stop = signals.next() => {
                        if interrupted {
                            break Exit::Aborted;
                        }
                        interrupted = true;
                        out.suspend();
                        output::err_line(stop.notice());
                        rpc.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "turn/interrupt", "params": {"session_id": session_id}}))
                            .await?;
                        continue;
                    }
                };
                match classify(message) {
                    Some(i) => i,
                    None => continue,
                }
            }
        };
        match incoming {
            Incoming::Notification(ServerNotification::Event(envelope)) => out.on_event(&envelope),
            Incoming::Notification(ServerNotification::TurnCompleted(TurnCompleted {
                outcome,
                spend,
                ..
            })) => {
                out.suspend();
                out.on_outcome(&session_id, &outcome, &spend);
                break crate::outcome_exit(&outcome);
            }
            Incoming::Notification(ServerNotification::TurnFailed(failed)) => {
                out.suspend();
                close(&mut rpc, &session_id).await;
                return Err(anyhow::anyhow!("{}", failed.error.message).into());
            }
            Incoming::Notification(_) => {}
            Incoming::Request(id, ServerRequest::Permission(p)) => {
                let request = PermissionRequest {
                    tool: p.tool,
                    args: p.args,
                    description: p.description,
                };
                let decision = prompter.permission(&request).await;
                rpc.send(&json!({"jsonrpc": "2.0", "id": id, "result": decision}))
                    .await?;
            }
            Incoming::Request(id, ServerRequest::AskUser(q)) => {
                let result = match &q.schema {
                    // An MCP server's form: asked field by field here, sent back whole.
                    Some(schema) => json!({
                        "content": codepilot::elicit::by_questions(&prompter, &q.question, schema).await,
                    }),
                    None => json!({"answer": prompter.question(&q.question).await}),
                };
                rpc.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
                    .await?;
            }
            Incoming::Request(id, ServerRequest::McpLogin(login)) => {
                out.suspend();
                output::err_line(&format!(
                    "MCP server `{}` needs a login; open this URL in a browser (the run goes on, and its tools come \
                     once you approve):",
                    login.server
                ));
                output::err_line(&login.url);
                crate::mcp::open_browser(&login.url);
                rpc.send(&json!({"jsonrpc": "2.0", "id": id, "result": {"opened": true}}))
                    .await?;
            }
        }
    };
    close(&mut rpc, &session_id).await;
    Ok(exit)
}

/// Closes the session on the daemon, as a local run closes its runtime.
async fn close(rpc: &mut Rpc, session_id: &str) {
    let mut ignored = Vec::new();
    if let Err(e) = rpc
        .call(
            "session/close",
            json!({"session_id": session_id}),
            &mut ignored,
        )
        .await
    {
        output::err_line(&format!(
            "codepilot: closing the session on the daemon: {}",
            e.error
        ));
    }
}
