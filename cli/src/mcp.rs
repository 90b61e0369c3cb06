//! `codepilot mcp list`: the agent file's MCP servers, their status and tools.

use std::sync::Arc;
use std::time::Duration;

use codepilot::AgentFile;
use codepilot::mcp::McpHub;
use codepilot::mcp::ServerState;

use crate::Exit;
use crate::Failure;
use crate::output;
use crate::secrets::EnvSnapshot;

pub(crate) async fn list(agent: &AgentFile, json: bool, env: EnvSnapshot) -> Result<Exit, Failure> {
    if agent.mcp_servers.is_empty() {
        output::err_line(
            "this agent file lists no MCP servers (add `mcp_servers:`, see docs/mcp.md)",
        );
        return Ok(Exit::Completed);
    }
    let hub = McpHub::start(
        &agent.mcp_servers,
        Arc::new(move |var: &str| env.get(var)),
        Arc::new(|_: &str| {}),
    );
    let longest = agent
        .mcp_servers
        .iter()
        .map(|s| s.timeout_s)
        .max()
        .unwrap_or(1);
    hub.wait_started(Duration::from_secs(longest)).await;
    let status = hub.status();
    hub.shutdown().await;
    let mut all_ready = true;
    for server in &status {
        let (state, why) = match &server.state {
            ServerState::Ready => ("ready", None),
            ServerState::Starting => ("starting", None),
            ServerState::Failed(why) => ("failed", Some(why.as_str())),
        };
        all_ready &= server.state == ServerState::Ready;
        if json {
            output::emit_stdout(
                &serde_json::json!({
                    "server": server.name,
                    "endpoint": server.endpoint,
                    "status": state,
                    "error": why,
                    "tools": server.tools.iter().map(|t| serde_json::json!({
                        "name": t.name,
                        "signature": t.signature(),
                        "doc": t.doc,
                    })).collect::<Vec<_>>(),
                })
                .to_string(),
            );
            continue;
        }
        // What a server says is shown defused: no escape sequences reach the terminal.
        output::emit_stdout(&format!(
            "{}  {state}  {}",
            server.name,
            output::printable(&server.endpoint)
        ));
        if let Some(why) = why {
            output::emit_stdout(&format!("  {}", output::printable(why)));
        }
        for tool in &server.tools {
            output::emit_stdout(&format!("  {}", output::printable(&tool.signature())));
            if let Some(first) = tool.doc.lines().next().filter(|l| !l.trim().is_empty()) {
                output::emit_stdout(&format!("      {}", output::printable(first)));
            }
        }
    }
    Ok(if all_ready {
        Exit::Completed
    } else {
        Exit::Error
    })
}
