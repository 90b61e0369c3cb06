//! `codepilot mcp list`: the agent file's MCP servers, their status and tools; `mcp login` / `mcp logout`: the
//! OAuth login of a server behind the MCP authorization spec; `codepilot mcp conformance`: the client the official
//! conformance suite drives.

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
            ServerState::NeedsLogin(why) => ("needs login", Some(why.as_str())),
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

/// The client metadata document the suite expects a client to name as its id where the server supports that.
const CONFORMANCE_CLIENT_METADATA: &str = "https://conformance-test.local/client-metadata.json";

/// How long the conformance client may take: the suite stops a client after 30 s.
const CONFORMANCE_LIMIT: Duration = Duration::from_secs(25);

/// `codepilot mcp conformance URL`: connects through the runtime's MCP client, calls every listed tool with
/// arguments made from its signature (answering the server's questions with their defaults), and exits 0 when the
/// server was reached and every call returned.
pub(crate) async fn conformance(url: &str) -> Result<Exit, Failure> {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    output::err_line(&format!(
        "conformance client: scenario {scenario:?}, server {url}"
    ));
    let server = codepilot::config::McpServerConfig {
        name: "conformance".to_owned(),
        transport: codepilot::config::McpTransport::Http {
            url: url.to_owned(),
            headers: std::collections::BTreeMap::new(),
        },
        timeout_s: CONFORMANCE_LIMIT.as_secs(),
        require_permission: false,
        include: Vec::new(),
        exclude: Vec::new(),
        elicitation: codepilot::config::Elicitation::AcceptDefaults,
        oauth: None,
        sampling: codepilot::config::Sampling::Deny,
    };
    // The suite's authorization servers approve at once; its pre-registered client comes in the context.
    let context: serde_json::Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    let text = |key: &str| context.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let tokens =
        tempfile::tempdir().map_err(|e| anyhow::anyhow!("a folder for the tokens: {e}"))?;
    let auth = codepilot::mcp::McpAuth {
        home: Some(tokens.path().to_path_buf()),
        approver: Some(Arc::new(codepilot::mcp::auth::FollowRedirect)),
        login: codepilot::mcp::auth::LoginOptions {
            client_id: text("client_id"),
            client_secret: text("client_secret"),
            client_metadata_url: Some(CONFORMANCE_CLIENT_METADATA.to_owned()),
            client_credentials: scenario.starts_with("auth/client-credentials"),
            ..codepilot::mcp::auth::LoginOptions::default()
        },
    };
    let hub = McpHub::start_with_auth(
        std::slice::from_ref(&server),
        Arc::new(|var: &str| std::env::var(var).ok()),
        Arc::new(|warning: &str| output::err_line(&format!("warning: {warning}"))),
        auth,
    );
    hub.wait_started(CONFORMANCE_LIMIT).await;
    let mut ok = hub.status().iter().all(|s| s.state == ServerState::Ready);
    for tool in hub.tools() {
        let spec = tool.spec();
        // The server's tools; the resource and prompt functions need a real uri or name.
        if !spec.name.starts_with("conformance__") {
            continue;
        }
        let args: serde_json::Map<String, serde_json::Value> = spec
            .params
            .iter()
            .filter(|p| p.default.is_none())
            .map(|p| (p.name.clone(), sample(p.annotation.as_deref())))
            .collect();
        let id = format!("conformance-{}", spec.name);
        match tool.call(codepilot::ToolCall::new(args, &id)).await {
            Ok(out) => output::emit_stdout(&format!("{}: {}", spec.name, out.value)),
            Err(e) => {
                ok = false;
                output::err_line(&format!("{}: {}", spec.name, e.message));
            }
        }
    }
    hub.shutdown().await;
    Ok(if ok { Exit::Completed } else { Exit::Error })
}

/// A value of the Python annotation a tool's signature gives a parameter.
fn sample(annotation: Option<&str>) -> serde_json::Value {
    match annotation.unwrap_or("") {
        "int" => serde_json::json!(2),
        "float" => serde_json::json!(2.5),
        "bool" => serde_json::json!(true),
        "list" => serde_json::json!([]),
        "dict" => serde_json::json!({}),
        _ => serde_json::json!("conformance"),
    }
}

/// The agent file's server `name`, or a usage error listing the ones it has.
fn server<'a>(
    agent: &'a AgentFile,
    name: &str,
) -> Result<&'a codepilot::config::McpServerConfig, Failure> {
    agent
        .mcp_servers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = agent.mcp_servers.iter().map(|s| s.name.as_str()).collect();
            crate::usage(format!(
                "the agent file has no MCP server `{name}`{}",
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" (it has: {})", names.join(", "))
                }
            ))
        })
}

/// `codepilot mcp login NAME`.
pub(crate) async fn login(
    agent: &AgentFile,
    name: &str,
    env: EnvSnapshot,
) -> Result<Exit, Failure> {
    let server = server(agent, name)?;
    let home = codepilot::store::codepilot_home().map_err(|e| anyhow::anyhow!("{e}"))?;
    let lookup: codepilot::mcp::EnvLookup = Arc::new(move |var: &str| env.get(var));
    let approver =
        codepilot::mcp::loopback::LoopbackApprover::new(Arc::new(|_: &str, url: &str| {
            output::err_line("Open this URL in a browser and approve CodePilot:");
            output::emit_stdout(url);
            open_browser(url);
        }));
    match codepilot::mcp::login(server, &home, lookup, Arc::new(approver)).await {
        Ok(true) => {
            output::err_line(&format!(
                "logged in to MCP server `{name}`; its tokens are kept under {}",
                home.join("mcp-auth").display()
            ));
            Ok(Exit::Completed)
        }
        Ok(false) => {
            output::err_line(&format!(
                "MCP server `{name}` asks for no authorization; nothing to do"
            ));
            Ok(Exit::Completed)
        }
        Err(why) => {
            output::err_line(&format!(
                "codepilot: login to MCP server `{name}` failed: {why}"
            ));
            Ok(Exit::Error)
        }
    }
}

/// `codepilot mcp logout NAME`.
pub(crate) fn logout(agent: &AgentFile, name: &str) -> Result<Exit, Failure> {
    let server = server(agent, name)?;
    let home = codepilot::store::codepilot_home().map_err(|e| anyhow::anyhow!("{e}"))?;
    match codepilot::mcp::logout(server, &home) {
        Ok(true) => output::err_line(&format!("forgot the tokens of MCP server `{name}`")),
        Ok(false) => output::err_line(&format!("no tokens kept for MCP server `{name}`")),
        Err(why) => return Err(anyhow::anyhow!(why).into()),
    }
    Ok(Exit::Completed)
}

/// Opens `url` in the desktop's browser when there is one; quietly does nothing otherwise (the URL is printed).
pub(crate) fn open_browser(url: &str) {
    // Only a web page: a server's metadata must not make the desktop open other handlers (file:, smb:).
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return;
    }
    let desktop =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let opener = if cfg!(target_os = "macos") {
        Some("open")
    } else if desktop {
        Some("xdg-open")
    } else {
        None
    };
    if let Some(opener) = opener {
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}
