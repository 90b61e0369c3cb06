//! `mcp_servers:` (SPEC §18): the Model Context Protocol servers whose tools the control block can call.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::Result;
use super::raw::Ctx;
use super::raw::line_of;
use super::raw::resolve;
use super::validate::invalid;
use super::validate::missing;

/// Default per-call timeout of an MCP tool, in seconds.
pub const DEFAULT_MCP_TIMEOUT_S: u64 = 60;

/// One `mcp_servers:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerConfig {
    /// `[a-z][a-z0-9_]{0,30}`: its tools are `<name>__<tool>` in the block.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
    /// Per-call timeout in seconds (also the longest a start may take). Default 60.
    pub timeout_s: u64,
    /// Every call of its tools needs the host's permission first. Default false.
    pub require_permission: bool,
    /// Which of its tools the agent gets: `include` (all when empty), minus `exclude`.
    pub include: Vec<String>,
    /// Tools left out.
    pub exclude: Vec<String>,
    /// What a question of the server (`elicitation/create`) gets. Default [`Elicitation::Ask`].
    pub elicitation: Elicitation,
    /// How a login to a server behind the MCP authorization spec registers and what it asks for (`oauth:`);
    /// `None`: discovery and dynamic registration decide everything.
    pub oauth: Option<OAuthConfig>,
    /// Whether the server may ask the agent's model for a completion (`sampling/createMessage`). Default
    /// [`Sampling::Deny`].
    pub sampling: Sampling,
}

/// What a server's request for a completion (`sampling/createMessage`) gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sampling {
    /// Refused.
    #[default]
    Deny,
    /// Put to the host's permission handler first (refused when there is none).
    Ask,
    /// Answered by the agent's model, counted in the run's usage and limits.
    Allow,
}

impl Sampling {
    /// Reads `sampling:`; `None` for a value this runtime does not know.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "deny" => Some(Self::Deny),
            "ask" => Some(Self::Ask),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// `mcp_servers[].oauth:`: all optional; discovery and registration fill in what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthConfig {
    /// A client id registered with the authorization server beforehand.
    pub client_id: Option<String>,
    /// The variable holding that client's secret (read when logging in; hidden from the agent's shell).
    pub client_secret_env: Option<String>,
    /// The scopes to ask for (default: those the server's challenge or metadata name).
    pub scopes: Vec<String>,
    /// The loopback port the browser is sent back to (default [`DEFAULT_REDIRECT_PORT`](crate::mcp::auth::DEFAULT_REDIRECT_PORT)): a pre-registered client's redirect URI is
    /// `http://127.0.0.1:PORT/callback`.
    pub redirect_port: Option<u16>,
    /// An https URL where this client's metadata document is published, used as its client id by authorization
    /// servers that support client ID metadata documents.
    pub client_metadata_url: Option<String>,
    /// `grant: client_credentials`: machine to machine, the client id and secret buy the token without a person.
    pub client_credentials: bool,
}

/// How a server's questions (`elicitation/create`) are answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Elicitation {
    /// Put to the person through the host's ask-user path (declined when nobody can answer).
    #[default]
    Ask,
    /// Declined: the server goes on without an answer.
    Decline,
    /// Accepted with the defaults the requested schema gives (fields without one are left out).
    AcceptDefaults,
}

impl Elicitation {
    /// Reads `elicitation:`; `None` for a value this runtime does not know.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ask" => Some(Self::Ask),
            "decline" => Some(Self::Decline),
            "accept-defaults" => Some(Self::AcceptDefaults),
            _ => None,
        }
    }
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its working directory (resolved against the agent file's directory). Default: that directory.
        cwd: PathBuf,
        /// Variables added to its otherwise clean environment (`${VAR}` expanded from the runtime's environment
        /// when the server starts).
        env: BTreeMap<String, String>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// `http(s)://host/path`.
        url: String,
        /// Request headers (`${VAR}` expanded from the runtime's environment when the server starts).
        headers: BTreeMap<String, String>,
    },
}

impl McpServerConfig {
    /// The block name of server tool `tool`: `<server>__<tool>`, characters that are not Python identifier
    /// characters replaced by `_`.
    #[must_use]
    pub fn tool_name(&self, tool: &str) -> String {
        let tool: String = tool
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}__{tool}", self.name)
    }

    /// Whether server tool `tool` is one the agent gets.
    #[must_use]
    pub fn wants(&self, tool: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|t| t == tool))
            && !self.exclude.iter().any(|t| t == tool)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcpServer {
    name: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    args: Option<Vec<String>>,
    cwd: Option<String>,
    env: Option<BTreeMap<String, String>>,
    url: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, String>>,
    timeout_s: Option<Spanned<u64>>,
    require_permission: Option<bool>,
    tools: Option<Spanned<RawToolFilter>>,
    elicitation: Option<Spanned<String>>,
    oauth: Option<Spanned<RawOAuth>>,
    sampling: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    client_id: Option<String>,
    client_secret_env: Option<String>,
    scopes: Option<Vec<String>>,
    redirect_port: Option<u16>,
    client_metadata_url: Option<String>,
    grant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolFilter {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
}

/// Converts and checks the `mcp_servers:` list.
pub(super) fn convert(raw: Vec<Spanned<RawMcpServer>>, ctx: &Ctx) -> Result<Vec<McpServerConfig>> {
    let mut out: Vec<McpServerConfig> = Vec::new();
    for entry in raw {
        let line = line_of(entry.referenced);
        let r = entry.value;
        let Some(name) = r.name else {
            return Err(missing(
                "mcp_servers.name",
                ctx,
                line,
                "every MCP server needs `name:` (lower case, e.g. `name: calc`): its tools are `calc__<tool>`",
            ));
        };
        let name_line = line_of(name.referenced).or(line);
        if r.headers.is_some() && r.command.is_some() {
            return Err(invalid(
                "mcp_servers.headers",
                ctx,
                name_line,
                format!(
                    "server '{}' runs a command; `headers` apply to a `url` server only",
                    name.value
                ),
            ));
        }
        let transport = match (r.command, r.url) {
            (Some(command), None) => McpTransport::Stdio {
                command: command.value,
                args: r.args.unwrap_or_default(),
                cwd: resolve(ctx, r.cwd.as_deref().unwrap_or(".")),
                env: r.env.unwrap_or_default(),
            },
            (None, Some(url)) => {
                if r.args.is_some() || r.cwd.is_some() || r.env.is_some() {
                    return Err(invalid(
                        "mcp_servers.url",
                        ctx,
                        line_of(url.referenced),
                        format!(
                            "server '{}' has a url, so `args`, `cwd` and `env` (for a command) do not apply; remove them",
                            name.value
                        ),
                    ));
                }
                McpTransport::Http {
                    url: url.value,
                    headers: r.headers.unwrap_or_default(),
                }
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "mcp_servers",
                    ctx,
                    name_line,
                    format!(
                        "server '{}' has both `command` and `url`; give `command` for a stdio server or `url` for a streamable-HTTP one",
                        name.value
                    ),
                ));
            }
            (None, None) => {
                return Err(missing(
                    "mcp_servers.command",
                    ctx,
                    name_line,
                    "give `command:` (and `args:`) for a stdio server, or `url:` for a streamable-HTTP one",
                ));
            }
        };
        let (include, exclude) = r.tools.map_or((Vec::new(), Vec::new()), |t| {
            (
                t.value.include.unwrap_or_default(),
                t.value.exclude.unwrap_or_default(),
            )
        });
        let elicitation = match &r.elicitation {
            None => Elicitation::default(),
            Some(e) => Elicitation::parse(&e.value).ok_or_else(|| {
                invalid(
                    "mcp_servers.elicitation",
                    ctx,
                    line_of(e.referenced).or(name_line),
                    format!("must be ask, decline or accept-defaults (got {})", e.value),
                )
            })?,
        };
        let sampling = match &r.sampling {
            None => Sampling::default(),
            Some(v) => Sampling::parse(&v.value).ok_or_else(|| {
                invalid(
                    "mcp_servers.sampling",
                    ctx,
                    line_of(v.referenced).or(name_line),
                    format!("must be deny, ask or allow (got {})", v.value),
                )
            })?,
        };
        let oauth = match r.oauth {
            None => None,
            Some(o) => {
                let line = line_of(o.referenced).or(name_line);
                if !matches!(transport, McpTransport::Http { .. }) {
                    return Err(invalid(
                        "mcp_servers.oauth",
                        ctx,
                        line,
                        format!(
                            "server '{}' runs a command; `oauth` applies to a `url` server only",
                            name.value
                        ),
                    ));
                }
                let o = o.value;
                if o.redirect_port == Some(0) {
                    return Err(invalid(
                        "mcp_servers.oauth.redirect_port",
                        ctx,
                        line,
                        "must be a port from 1 to 65535 (the browser comes back to it)".to_owned(),
                    ));
                }
                if o.client_secret_env.is_some() && o.client_id.is_none() {
                    return Err(invalid(
                        "mcp_servers.oauth.client_secret_env",
                        ctx,
                        line,
                        "a client secret belongs to a pre-registered client: add `client_id`"
                            .to_owned(),
                    ));
                }
                if let Some(url) = &o.client_metadata_url
                    && !url.starts_with("https://")
                {
                    return Err(invalid(
                        "mcp_servers.oauth.client_metadata_url",
                        ctx,
                        line,
                        format!("must be an https:// URL (got {url})"),
                    ));
                }
                let client_credentials = match o.grant.as_deref() {
                    None | Some("authorization_code") => false,
                    Some("client_credentials")
                        if o.client_id.is_some() && o.client_secret_env.is_some() =>
                    {
                        true
                    }
                    Some("client_credentials") => {
                        return Err(invalid(
                            "mcp_servers.oauth.grant",
                            ctx,
                            line,
                            "client_credentials needs `client_id` and `client_secret_env`"
                                .to_owned(),
                        ));
                    }
                    Some(other) => {
                        return Err(invalid(
                            "mcp_servers.oauth.grant",
                            ctx,
                            line,
                            format!(
                                "must be authorization_code or client_credentials (got {other})"
                            ),
                        ));
                    }
                };
                Some(OAuthConfig {
                    client_credentials,
                    client_id: o.client_id,
                    client_secret_env: o.client_secret_env,
                    scopes: o.scopes.unwrap_or_default(),
                    redirect_port: o.redirect_port,
                    client_metadata_url: o.client_metadata_url,
                })
            }
        };
        let server = McpServerConfig {
            name: name.value,
            transport,
            timeout_s: r
                .timeout_s
                .as_ref()
                .map_or(DEFAULT_MCP_TIMEOUT_S, |t| t.value),
            require_permission: r.require_permission.unwrap_or(false),
            include,
            exclude,
            elicitation,
            oauth,
            sampling,
        };
        let timeout_line = r.timeout_s.as_ref().and_then(|t| line_of(t.referenced));
        check_server(&server, &out, ctx, name_line, timeout_line)?;
        out.push(server);
    }
    Ok(out)
}

/// The rules one server entry must follow (also for agents built in code).
pub(super) fn check_server(
    server: &McpServerConfig,
    before: &[McpServerConfig],
    ctx: &Ctx,
    line: Option<u64>,
    timeout_line: Option<u64>,
) -> Result<()> {
    let name = &server.name;
    let valid = name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid || name.contains("__") || name.ends_with('_') {
        return Err(invalid(
            "mcp_servers.name",
            ctx,
            line,
            format!(
                "'{name}' is not a server name: use a lower-case letter, then up to 30 lower-case letters, digits or single underscores, not ending in one (it prefixes the tools: `{name}__tool`)"
            ),
        ));
    }
    if before.iter().any(|s| s.name == *name) {
        return Err(invalid(
            "mcp_servers.name",
            ctx,
            line,
            format!("two MCP servers are named '{name}'; names must be unique"),
        ));
    }
    if server.timeout_s == 0 {
        return Err(invalid(
            "mcp_servers.timeout_s",
            ctx,
            timeout_line.or(line),
            "must be at least 1 (seconds)".to_string(),
        ));
    }
    match &server.transport {
        McpTransport::Stdio { command, .. } if command.trim().is_empty() => Err(invalid(
            "mcp_servers.command",
            ctx,
            line,
            format!("server '{name}': the command must not be empty"),
        )),
        McpTransport::Http { url, .. }
            if !(url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Err(invalid(
                "mcp_servers.url",
                ctx,
                line,
                format!(
                    "server '{name}': '{url}' is not an http(s) URL, e.g. http://127.0.0.1:8000/mcp"
                ),
            ))
        }
        McpTransport::Stdio { .. } | McpTransport::Http { .. } => Ok(()),
    }
}
