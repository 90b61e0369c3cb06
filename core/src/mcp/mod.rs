//! MCP servers (SPEC §18): their tools as functions in the control block, through the official Rust SDK (`rmcp`).
//!
//! An [`McpHub`] starts every configured server in the background (a stdio child process in a clean environment,
//! or a streamable-HTTP endpoint). Each server's tools become [`Tool`]s named `<server>__<tool>`, with signatures
//! from their input schemas. A server that does not start, hangs or crashes never stalls anything: its calls fail
//! with an exception the block can catch, a warning is reported, and it is started again, once, on the next call.
//! `tools/list_changed` marks the server's tools stale; the runtime fetches them again before its next step.
//!
//! Child processes die with the runtime: they are killed when the hub shuts down or is dropped, and the kernel
//! kills them if this process dies first (`PR_SET_PDEATHSIG`).

mod schema;

use codepilot_protocol::sync::lock;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolError;
use codepilot_protocol::ToolSpec;
use rmcp::ClientHandler;
use rmcp::RoleClient;
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::model::ContentBlock;
use rmcp::service::NotificationContext;
use rmcp::service::RunningService;
use serde_json::Map;
use serde_json::Value;

use crate::config::McpServerConfig;
use crate::config::McpTransport;
use crate::handlers::BoxFuture;
use crate::tools::Tool;
use crate::tools::ToolCall;
use crate::tools::ToolOutput;

/// Reads the runtime's environment (for `${VAR}` in `env:` and `headers:`).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Called with a warning about a server (did not start, crashed), for the host's event stream.
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// Why the MCP handshake failed, in words a user can act on: for a transport failure the innermost cause (a
/// refused connection, a server that exited), not the transport library's type names.
fn handshake_failed(e: &rmcp::service::ClientInitializeError) -> String {
    let rmcp::service::ClientInitializeError::TransportError { error, context } = e else {
        return format!("the MCP handshake failed: {e}");
    };
    let mut cause: &(dyn std::error::Error + 'static) = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("the MCP handshake failed (while trying to {context}): {cause}")
}

/// The longest the first step waits for servers still starting.
const STARTUP_WAIT: Duration = Duration::from_secs(15);

/// The longest a step waits for a server to list its changed tools (the old list stays meanwhile).
const REFRESH_WAIT: Duration = Duration::from_secs(5);

/// How long closing one connection may take before its process group is killed.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Variables a stdio server inherits from the runtime; everything else starts clean (no API keys, no tokens).
const INHERITED: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ",
];

/// Where a server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Connecting.
    Starting,
    /// Connected; its tools are known.
    Ready,
    /// Not reachable: did not start, or stopped. The message says why.
    Failed(String),
}

/// A server's state and tools, as `codepilot mcp list` shows them.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    /// Its name.
    pub name: String,
    /// `stdio: COMMAND ARGS` or the URL.
    pub endpoint: String,
    /// Where it is.
    pub state: ServerState,
    /// Its tools (the agent's view: filtered and renamed).
    pub tools: Vec<ToolSpec>,
}

/// Receives the server's notifications: a changed tool list marks the tools stale.
#[derive(Clone)]
struct Handler {
    stale: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.stale.store(true, Ordering::SeqCst);
        std::future::ready(())
    }
}

type Service = RunningService<RoleClient, Handler>;

/// One server: its connection (if any) and the tools it last listed.
struct Server {
    config: McpServerConfig,
    env: EnvLookup,
    warn: Warn,
    state: Mutex<ServerState>,
    /// The live connection; replaced on restart.
    service: tokio::sync::Mutex<Option<Service>>,
    /// Tools as listed (unfiltered), for calls and specs.
    tools: Mutex<Vec<rmcp::model::Tool>>,
    /// The server said its tool list changed: fetch it again before the next step.
    stale: Arc<AtomicBool>,
    /// The tools changed since the runtime last took them.
    changed: AtomicBool,
    /// The one restart was used.
    restarted: AtomicBool,
    /// A warning about the current failure was given.
    warned: AtomicBool,
    /// Wakes waiters when the first start ends.
    started: tokio::sync::watch::Sender<bool>,
    /// The process group of a stdio server (its leader's pid), killed as a whole on shutdown.
    group: Mutex<Option<u32>>,
    /// The hub shut down: a start still in progress must not leave a live server behind.
    closed: Arc<AtomicBool>,
}

impl Server {
    fn endpoint(&self) -> String {
        match &self.config.transport {
            McpTransport::Stdio { command, args, .. } => {
                let mut s = format!("stdio: {command}");
                for a in args {
                    s.push(' ');
                    s.push_str(a);
                }
                s
            }
            McpTransport::Http { url, .. } => url.clone(),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_s)
    }

    /// `${VAR}` replaced by the runtime's value of VAR (empty when unset).
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let var = &after[..end];
                    match (self.env)(var) {
                        Some(value) => out.push_str(&value),
                        None => tracing::warn!(
                            "MCP server `{}`: ${{{var}}} is not set; it expands to nothing",
                            self.config.name
                        ),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Connects (within the timeout) and lists the tools.
    async fn connect(&self) -> Result<(), String> {
        let handler = Handler {
            stale: Arc::clone(&self.stale),
        };
        let started = tokio::time::timeout(self.timeout(), async {
            let service = match &self.config.transport {
                McpTransport::Stdio {
                    command,
                    args,
                    cwd,
                    env,
                } => {
                    let mut cmd = tokio::process::Command::new(command);
                    // Its own process group: a terminal's Ctrl-C meant for the task does not reach it, and
                    // shutdown stops it with everything it started.
                    cmd.args(args)
                        .current_dir(cwd)
                        .env_clear()
                        .kill_on_drop(true)
                        .process_group(0);
                    for var in INHERITED {
                        if let Some(v) = std::env::var_os(var) {
                            cmd.env(var, v);
                        }
                    }
                    for (k, v) in env {
                        cmd.env(k, self.expand(v));
                    }
                    die_with_parent(&mut cmd);
                    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                        .stderr(Stdio::piped())
                        .spawn()
                        .map_err(|e| format!("could not start `{command}`: {e}"))?;
                    *lock(&self.group) = transport.id();
                    if let Some(stderr) = stderr {
                        forward_stderr(self.config.name.clone(), stderr);
                    }
                    handler
                        .serve(transport)
                        .await
                        .map_err(|e| handshake_failed(&e))?
                }
                McpTransport::Http { url, headers } => {
                    crate::install_tls_provider();
                    let mut config =
                        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                            url.as_str(),
                        );
                    for (name, value) in headers {
                        let value = self.expand(value);
                        let (Ok(n), Ok(v)) = (
                            http::HeaderName::try_from(name.as_str()),
                            http::HeaderValue::try_from(value.as_str()),
                        ) else {
                            return Err(format!("header `{name}` is not a valid HTTP header"));
                        };
                        config.custom_headers.insert(n, v);
                    }
                    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
                    handler
                        .serve(transport)
                        .await
                        .map_err(|e| handshake_failed(&e))?
                }
            };
            let tools = service.list_all_tools().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((service, tools))
        })
        .await;
        let (service, tools) = match started {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                self.kill_group();
                return Err(e);
            }
            Err(_) => {
                // The child went with the abandoned start; what it started goes with its group.
                self.kill_group();
                return Err(format!(
                    "it did not answer within {} s (timeout_s)",
                    self.config.timeout_s
                ));
            }
        };
        if self.closed.load(Ordering::SeqCst) {
            close_service(service).await;
            self.kill_group();
            return Err("the runtime closed while it started".to_owned());
        }
        *lock(&self.tools) = tools;
        *self.service.lock().await = Some(service);
        *lock(&self.state) = ServerState::Ready;
        self.warned.store(false, Ordering::SeqCst);
        self.changed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Kills the stdio server's process group (what it started too).
    fn kill_group(&self) {
        if let Some(pid) = lock(&self.group).take()
            && let Ok(pid) = i32::try_from(pid)
        {
            // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH, which is fine.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }

    /// Closes the connection and stops the server.
    async fn stop(&self) {
        let service = self.service.lock().await.take();
        if let Some(service) = service {
            close_service(service).await;
        }
        self.kill_group();
    }

    fn fail(&self, why: String) {
        let message = format!(
            "MCP server `{}` ({}): {why}",
            self.config.name,
            self.endpoint()
        );
        *lock(&self.state) = ServerState::Failed(message.clone());
        if !self.warned.swap(true, Ordering::SeqCst) {
            tracing::debug!("{message}");
            (self.warn)(&message);
        }
    }

    /// The first start, in the background.
    async fn start(self: Arc<Self>) {
        if let Err(why) = self.connect().await {
            self.fail(format!("did not start: {why}"));
        }
        self.started.send_replace(true);
    }

    /// Refetches the tool list after a `list_changed` notification.
    async fn refresh(&self) {
        let peer = match &*self.service.lock().await {
            Some(s) => s.peer().clone(),
            None => return,
        };
        match tokio::time::timeout(self.timeout().min(REFRESH_WAIT), peer.list_all_tools()).await {
            Ok(Ok(tools)) => {
                *lock(&self.tools) = tools;
                self.changed.store(true, Ordering::SeqCst);
            }
            Ok(Err(e)) => {
                self.stale.store(true, Ordering::SeqCst);
                tracing::warn!(
                    "listing the tools of MCP server `{}`: {e}",
                    self.config.name
                );
            }
            Err(_) => {
                self.stale.store(true, Ordering::SeqCst);
                tracing::warn!(
                    "listing the tools of MCP server `{}` timed out",
                    self.config.name
                );
            }
        }
    }

    /// Calls server tool `tool`, restarting a failed server once first.
    async fn call(
        &self,
        tool: &str,
        block_name: &str,
        args: Map<String, Value>,
        traceparent: Option<String>,
    ) -> Result<ToolOutput, ToolError> {
        let closed_while_idle = match &*self.service.lock().await {
            Some(s) => s.peer().is_transport_closed(),
            None => false,
        };
        if closed_while_idle {
            self.fail("stopped while idle".to_owned());
        }
        let state = lock(&self.state).clone();
        if let ServerState::Failed(why) = state {
            if self.restarted.swap(true, Ordering::SeqCst) {
                return Err(ToolError::runtime(format!(
                    "{why}; it was restarted once already, so its tools are unavailable until the runtime restarts"
                )));
            }
            tracing::info!("restarting MCP server `{}`", self.config.name);
            self.stop().await;
            if let Err(e) = self.connect().await {
                self.fail(format!("did not restart: {e}"));
                return Err(ToolError::runtime(format!(
                    "MCP server `{}` is unavailable: it stopped and did not restart ({e})",
                    self.config.name
                )));
            }
        }
        let peer = match &*self.service.lock().await {
            Some(s) => s.peer().clone(),
            None => {
                return Err(ToolError::runtime(format!(
                    "MCP server `{}` is still starting; try again in a moment",
                    self.config.name
                )));
            }
        };
        let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        if let Some(tp) = traceparent {
            // The server's own spans join the call's trace (W3C trace context in `_meta`, SEP-414).
            let mut meta = rmcp::model::MetaObject::default();
            meta.set_traceparent(tp);
            params.meta = Some(rmcp::model::RequestMetaObject(meta));
        }
        let result = match tokio::time::timeout(self.timeout(), peer.call_tool(params)).await {
            Err(_) => {
                return Err(ToolError::new(
                    ExcKind::TimeoutError,
                    format!(
                        "{block_name} timed out after {} s (MCP server `{}`, timeout_s)",
                        self.config.timeout_s, self.config.name
                    ),
                ));
            }
            Ok(Err(rmcp::ServiceError::McpError(e))) => {
                return Err(ToolError::runtime(format!(
                    "{block_name}: the MCP server `{}` refused the call: {}",
                    self.config.name, e.message
                )));
            }
            Ok(Err(e)) => {
                self.fail(format!("stopped: {e}"));
                return Err(ToolError::runtime(format!(
                    "{block_name}: MCP server `{}` stopped ({e}); it is restarted on the next call",
                    self.config.name
                )));
            }
            Ok(Ok(result)) => result,
        };
        let text = content_text(&result.content);
        if result.is_error == Some(true) {
            return Err(ToolError::runtime(if text.is_empty() {
                format!(
                    "{block_name} failed (MCP server `{}` gave no message)",
                    self.config.name
                )
            } else {
                text
            }));
        }
        Ok(ToolOutput::value(match result.structured_content {
            Some(value) => value,
            None => Value::String(text),
        }))
    }
}

/// The text of content blocks, joined by newlines; other content is named, not inlined.
fn content_text(content: &[ContentBlock]) -> String {
    content
        .iter()
        .map(|c| match c {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image: {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio: {}]", a.mime_type),
            ContentBlock::Resource(r) => match &r.resource {
                rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
                _ => "[resource]".to_owned(),
            },
            ContentBlock::ResourceLink(l) => format!("[resource: {}]", l.uri),
            _ => "[content of a kind this runtime does not show]".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Kills the child when this process dies, however it dies.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A server's stderr goes to the log (debug), never to the user's terminal. Read to its end whatever it holds
/// (a server whose stderr pipe closed would die of `EPIPE`); long lines are cut.
fn forward_stderr(name: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt as _;
    use tokio::io::AsyncReadExt as _;
    const MAX_LINE: u64 = 4096;
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    tracing::debug!(server = %name, "{}", text.trim_end());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(server = %name, "reading its stderr: {e}");
                    break;
                }
            }
        }
    });
}

/// Closes a connection, waiting at most [`CLOSE_WAIT`].
async fn close_service(mut service: Service) {
    if let Err(e) = service.close_with_timeout(CLOSE_WAIT).await {
        tracing::debug!("closing an MCP connection: {e}");
    }
}

/// The configured MCP servers of one runtime.
pub struct McpHub {
    servers: Vec<Arc<Server>>,
    closed: Arc<AtomicBool>,
    /// Warnings held until the first step: a server that fails at once (a missing command) would otherwise warn
    /// while the runtime is being built, before any host listens. `None` once released.
    held: Arc<Mutex<Option<Vec<String>>>>,
    warn: Warn,
}

impl std::fmt::Debug for McpHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHub")
            .field(
                "servers",
                &self
                    .servers
                    .iter()
                    .map(|s| &s.config.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl McpHub {
    /// Starts every server in the background (needs a tokio runtime). `env` supplies `${VAR}` values; `warn` hears
    /// about servers that fail.
    #[must_use]
    pub fn start(configs: &[McpServerConfig], env: EnvLookup, warn: Warn) -> Arc<Self> {
        let closed = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Option<Vec<String>>>> = Arc::new(Mutex::new(Some(Vec::new())));
        let hold: Warn = {
            let held = Arc::clone(&held);
            let warn = Arc::clone(&warn);
            Arc::new(move |message: &str| {
                let mut pending = lock(&held);
                match pending.as_mut() {
                    Some(queue) => queue.push(message.to_owned()),
                    None => {
                        drop(pending);
                        warn(message);
                    }
                }
            })
        };
        let servers: Vec<Arc<Server>> = configs
            .iter()
            .map(|config| {
                Arc::new(Server {
                    config: config.clone(),
                    env: Arc::clone(&env),
                    warn: Arc::clone(&hold),
                    state: Mutex::new(ServerState::Starting),
                    service: tokio::sync::Mutex::new(None),
                    tools: Mutex::new(Vec::new()),
                    stale: Arc::new(AtomicBool::new(false)),
                    changed: AtomicBool::new(false),
                    restarted: AtomicBool::new(false),
                    warned: AtomicBool::new(false),
                    started: tokio::sync::watch::Sender::new(false),
                    group: Mutex::new(None),
                    closed: Arc::clone(&closed),
                })
            })
            .collect();
        for server in &servers {
            tokio::spawn(Arc::clone(server).start());
        }
        Arc::new(Self {
            servers,
            closed,
            held,
            warn,
        })
    }

    /// Gives the warnings held since the start to the host, in order; later ones go out at once.
    pub(crate) fn release_warnings(&self) {
        let held = lock(&self.held).take().unwrap_or_default();
        for message in held {
            (self.warn)(&message);
        }
    }

    /// Waits until every server finished its first start, at most `limit` (and never longer than a server's own
    /// timeout).
    pub async fn wait_started(&self, limit: Duration) {
        let waits = self.servers.iter().map(|s| {
            let mut rx = s.started.subscribe();
            let limit = limit.min(s.timeout());
            async move {
                let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
            }
        });
        futures_util::future::join_all(waits).await;
    }

    /// Waits for the first start of every server, up to a bound, before a runtime's first step.
    pub(crate) async fn wait_for_first_step(&self) {
        self.wait_started(STARTUP_WAIT).await;
        self.release_warnings();
    }

    /// Fetches the tool lists servers said changed; `true` when any server's tools changed since the last call
    /// (the runtime then rebuilds its tool set).
    pub(crate) async fn refresh(&self) -> bool {
        let stale = self
            .servers
            .iter()
            .filter(|s| s.stale.swap(false, Ordering::SeqCst))
            .map(|s| s.refresh());
        futures_util::future::join_all(stale).await;
        self.servers.iter().fold(false, |changed, s| {
            s.changed.swap(false, Ordering::SeqCst) | changed
        })
    }

    /// Every server's tools, as the block sees them.
    #[must_use]
    pub fn tools(self: &Arc<Self>) -> Vec<Arc<dyn Tool>> {
        let mut out: Vec<Arc<dyn Tool>> = Vec::new();
        for (index, server) in self.servers.iter().enumerate() {
            for tool in lock(&server.tools).iter() {
                if server.config.wants(&tool.name) {
                    out.push(Arc::new(McpTool::new(Arc::clone(self), index, tool)));
                }
            }
        }
        out
    }

    /// The block names of every server's tools (also of servers that are down), to replace them as a whole.
    pub(crate) fn is_mcp_tool(&self, name: &str) -> bool {
        self.servers
            .iter()
            .any(|s| name.starts_with(&format!("{}__", s.config.name)))
    }

    /// Each server's state and tools.
    #[must_use]
    pub fn status(self: &Arc<Self>) -> Vec<ServerStatus> {
        let tools = self.tools();
        self.servers
            .iter()
            .map(|s| ServerStatus {
                name: s.config.name.clone(),
                endpoint: s.endpoint(),
                state: lock(&s.state).clone(),
                tools: tools
                    .iter()
                    .map(|t| t.spec())
                    .filter(|t| t.name.starts_with(&format!("{}__", s.config.name)))
                    .collect(),
            })
            .collect()
    }

    /// Closes every connection and stops every child process (with its process group), all at once; a server
    /// still starting is stopped as soon as it is up.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        futures_util::future::join_all(self.servers.iter().map(|s| s.stop())).await;
    }
}

impl Drop for McpHub {
    /// A hub dropped without [`McpHub::shutdown`] still closes its connections and stops its children, also when
    /// it is dropped outside a tokio runtime (a host's thread).
    fn drop(&mut self) {
        let services: Vec<Service> = self
            .servers
            .iter()
            .filter_map(|s| s.service.try_lock().ok().and_then(|mut g| g.take()))
            .collect();
        self.closed.store(true, Ordering::SeqCst);
        let groups: Vec<u32> = self
            .servers
            .iter()
            .filter_map(|s| lock(&s.group).take())
            .collect();
        if services.is_empty() && groups.is_empty() {
            return;
        }
        let close = async move {
            futures_util::future::join_all(services.into_iter().map(close_service)).await;
            for pid in groups {
                if let Ok(pid) = i32::try_from(pid) {
                    // SAFETY: killpg only sends a signal.
                    unsafe {
                        libc::killpg(pid, libc::SIGKILL);
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn(close)),
            Err(_) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(close),
                Err(e) => tracing::warn!("stopping MCP servers: {e}"),
            },
        }
    }
}

/// One server tool as a block function.
struct McpTool {
    hub: Arc<McpHub>,
    server: usize,
    name: String,
    block_name: String,
    schema: Arc<Map<String, Value>>,
    spec: ToolSpec,
}

impl McpTool {
    fn new(hub: Arc<McpHub>, server: usize, tool: &rmcp::model::Tool) -> Self {
        let config = &hub.servers[server].config;
        let block_name = config.tool_name(&tool.name);
        let schema = Arc::clone(&tool.input_schema);
        let mut spec = ToolSpec::new(
            block_name.clone(),
            schema::params(&schema),
            schema::doc(tool.description.as_deref(), &schema, &config.name),
        );
        if let Some(output) = &tool.output_schema {
            spec.returns = Some("dict".to_owned());
            if let Some(shape) = schema::shape(output) {
                spec.doc.push_str(&format!("\nReturns {shape}"));
            }
        }
        Self {
            name: tool.name.to_string(),
            block_name,
            schema,
            spec,
            server,
            hub,
        }
    }

    fn config(&self) -> &McpServerConfig {
        &self.hub.servers[self.server].config
    }
}

impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call<'a>(&'a self, call: ToolCall<'a>) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let mut args = call.args;
            schema::check_args(&self.block_name, &self.schema, &mut args)
                .map_err(ToolError::type_error)?;
            let span = call.span.child(
                || format!("tools/call {}", self.name).into(),
                codepilot_telemetry::SpanKind::Client,
                || {
                    use codepilot_telemetry::KeyValue;
                    use codepilot_telemetry::names;
                    vec![
                        KeyValue::new(names::MCP_METHOD_NAME, "tools/call"),
                        KeyValue::new(names::GEN_AI_TOOL_NAME, self.name.clone()),
                        KeyValue::new(names::MCP_SERVER_NAME, self.config().name.clone()),
                    ]
                },
            );
            let result = self.hub.servers[self.server]
                .call(&self.name, &self.block_name, args, span.traceparent())
                .await;
            if let Err(e) = &result {
                span.fail("mcp", || {
                    if span.records_content() {
                        e.message.clone()
                    } else {
                        String::new()
                    }
                });
            }
            result
        })
    }

    fn requires_permission(&self) -> bool {
        self.config().require_permission
    }

    fn label(&self, _args: &Map<String, Value>) -> Option<String> {
        Some(format!(
            "Calling {} on MCP server {}",
            self.name,
            self.config().name
        ))
    }

    fn describe_call(&self, args: &Map<String, Value>) -> Option<String> {
        let shown: BTreeMap<&String, String> = args
            .iter()
            .map(|(k, v)| (k, codepilot_protocol::py_literal(v)))
            .collect();
        let list: Vec<String> = shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(format!(
            "MCP server {}: {}({})",
            self.config().name,
            self.name,
            list.join(", ")
        ))
    }
}
