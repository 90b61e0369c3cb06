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

pub mod auth;
pub mod loopback;
mod resources;
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

use crate::config::Elicitation;
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
    /// It asks for authorization and no login was kept: `codepilot mcp login NAME` (the message says so).
    NeedsLogin(String),
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

/// A server's request for a completion, in the runtime's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingRequest {
    /// The server's system prompt.
    pub system: Option<String>,
    /// The conversation it sends, text only.
    pub messages: Vec<(codepilot_protocol::Role, String)>,
    /// The most tokens it wants back.
    pub max_tokens: u32,
}

/// The agent's model answering servers' sampling requests (SPEC §18): set by the runtime, which counts the usage in
/// the run's limits.
pub trait Sampler: Send + Sync {
    /// Answers `request` of server `server` (`ask`: the host approves first); the text and the model's name.
    fn sample<'a>(
        &'a self,
        server: &'a str,
        ask: bool,
        request: SamplingRequest,
    ) -> BoxFuture<'a, Result<(String, String), String>>;
}

/// The runtime's sampler, once it exists (the hub starts before the runtime is complete).
type SamplerSlot = Arc<Mutex<Option<Arc<dyn Sampler>>>>;

/// The host's ask-user handler, for servers' questions.
type AskerSlot = Arc<Mutex<Option<Arc<dyn crate::AskUserHandler>>>>;

/// Receives the server's notifications (a changed tool list marks the tools stale) and answers its questions.
#[derive(Clone)]
struct Handler {
    stale: Arc<AtomicBool>,
    elicitation: Elicitation,
    sampling: crate::config::Sampling,
    server: String,
    sampler: SamplerSlot,
    asker: AskerSlot,
    asking: Arc<Asking>,
}

/// A server's questions a person is answering (a form, a sampling approval): the time they take does not count
/// against the calls waiting on that server (all of them: the server does not say which call asked).
#[derive(Default)]
struct Asking {
    open: std::sync::atomic::AtomicUsize,
    last_answered: Mutex<Option<tokio::time::Instant>>,
}

impl Asking {
    /// Waits for `answer` with the question counted open (also when the wait is dropped half-way).
    async fn around<T>(&self, answer: impl Future<Output = T>) -> T {
        struct Open<'a>(&'a Asking);
        impl Drop for Open<'_> {
            fn drop(&mut self) {
                *lock(&self.0.last_answered) = Some(tokio::time::Instant::now());
                self.0.open.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        let _open = Open(self);
        answer.await
    }

    /// Runs `call` within `limit`, the limit starting again while a person answers and after their answer.
    async fn timed<T>(&self, limit: Duration, call: impl Future<Output = T>) -> Result<T, ()> {
        let mut call = std::pin::pin!(call);
        let mut deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(out) = tokio::time::timeout_at(deadline, &mut call).await {
                return Ok(out);
            }
            let now = tokio::time::Instant::now();
            let answered = *lock(&self.last_answered);
            deadline = if self.open.load(Ordering::SeqCst) > 0 {
                now + limit
            } else {
                match answered.map(|t| t + limit) {
                    Some(later) if later > now => later,
                    _ => return Err(()),
                }
            };
        }
    }
}

impl ClientHandler for Handler {
    /// Who this client is and what it does: the protocol version is the newest that starts with `initialize`
    /// (rmcp's default, 2026-07-28, has no initialize handshake); elicitation is offered when this server's
    /// questions get an answer.
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut capabilities = rmcp::model::ClientCapabilities::default();
        if self.elicitation != Elicitation::Decline {
            capabilities.elicitation = Some(
                rmcp::model::ElicitationCapability::new()
                    .with_form(rmcp::model::FormElicitationCapability::new()),
            );
        }
        if self.sampling != crate::config::Sampling::Deny {
            #[allow(
                deprecated,
                reason = "2025-11-25, the version this client speaks, has sampling"
            )]
            {
                capabilities.sampling = Some(rmcp::model::SamplingCapability::default());
            }
        }
        rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("codepilot", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> impl Future<Output = Result<rmcp::model::ElicitResult, rmcp::ErrorData>> + Send + '_ {
        let asker = lock(&self.asker).clone().filter(|a| a.available());
        let policy = self.elicitation;
        let server = self.server.clone();
        let asking = Arc::clone(&self.asking);
        async move {
            let decline = rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Decline);
            let rmcp::model::ElicitRequestParams::FormElicitationParams {
                message,
                requested_schema,
                ..
            } = request
            else {
                return Ok(decline);
            };
            Ok(match (policy, asker) {
                (Elicitation::AcceptDefaults, _) => match schema_defaults(&requested_schema) {
                    Some(content) => {
                        rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                            .with_content(content)
                    }
                    None => decline,
                },
                (Elicitation::Ask, Some(asker)) => {
                    let schema = serde_json::to_value(&requested_schema).unwrap_or(Value::Null);
                    // The person sees which server asks.
                    let message = format!("MCP server `{server}` asks: {message}");
                    // The call that asked waits for the person without its timeout running.
                    let answer = asking
                        .around(ask_form(asker.as_ref(), &message, &schema))
                        .await;
                    match answer {
                        Some(content) => {
                            rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                                .with_content(content)
                        }
                        None => decline,
                    }
                }
                (Elicitation::Ask | Elicitation::Decline, _) => decline,
            })
        }
    }

    #[allow(
        deprecated,
        reason = "2025-11-25, the version this client speaks, has sampling"
    )]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        let refuse =
            |message: String| rmcp::ErrorData::new(rmcp::model::ErrorCode(-1), message, None);
        let ask = match self.sampling {
            crate::config::Sampling::Deny => {
                return Err(refuse(format!(
                    "sampling is off for MCP server `{}` (sampling: deny in the agent file)",
                    self.server
                )));
            }
            crate::config::Sampling::Ask => true,
            crate::config::Sampling::Allow => false,
        };
        let sampler = lock(&self.sampler).clone();
        let Some(sampler) = sampler else {
            return Err(refuse("no model is available to answer".to_owned()));
        };
        let mut messages = Vec::with_capacity(params.messages.len());
        for m in params.messages {
            let role = match m.role {
                rmcp::model::Role::User => codepilot_protocol::Role::User,
                rmcp::model::Role::Assistant => codepilot_protocol::Role::Assistant,
            };
            let mut text = String::new();
            for block in m.content.into_vec() {
                match block {
                    rmcp::model::SamplingMessageContentBlock::Text(t) => text.push_str(&t.text),
                    _ => {
                        return Err(refuse(
                            "this client samples text only (no images, audio or tool use)"
                                .to_owned(),
                        ));
                    }
                }
            }
            messages.push((role, text));
        }
        let request = SamplingRequest {
            system: params.system_prompt,
            messages,
            max_tokens: params.max_tokens,
        };
        let sampled = sampler.sample(&self.server, ask, request);
        let (text, model) = if ask {
            self.asking.around(sampled).await
        } else {
            sampled.await
        }
        .map_err(refuse)?;
        Ok(rmcp::model::CreateMessageResult::new(
            rmcp::model::SamplingMessage::new(
                rmcp::model::Role::Assistant,
                rmcp::model::SamplingMessageContentBlock::text(text),
            ),
            model,
        )
        .with_stop_reason("endTurn"))
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.stale.store(true, Ordering::SeqCst);
        std::future::ready(())
    }
}

/// Puts a form to the host, checks the answers against `schema` (defaults for omitted fields) and asks again,
/// saying what did not fit, at most three times; `None` when the person declined.
async fn ask_form(
    asker: &dyn crate::AskUserHandler,
    message: &str,
    schema: &Value,
) -> Option<Value> {
    let mut shown = message.to_owned();
    for _ in 0..3 {
        let content = asker.elicit(&shown, schema).await?;
        match crate::elicit::check_form(schema, content) {
            Ok(content) => return Some(content),
            Err(why) => shown = format!("{message}\n(The last answer did not fit: {why}.)"),
        }
    }
    None
}

/// The answer a form built from `schema`'s defaults gives: each property with a `default`, by name; `None` when a
/// required field has none (the form cannot be answered without a person).
fn schema_defaults(schema: &rmcp::model::ElicitationSchema) -> Option<Value> {
    let schema = serde_json::to_value(schema).unwrap_or(Value::Null);
    let props = schema.get("properties").and_then(Value::as_object);
    let defaults: Map<String, Value> = props
        .map(|props| {
            props
                .iter()
                .filter_map(|(name, p)| Some((name.clone(), p.get("default")?.clone())))
                .collect()
        })
        .unwrap_or_default();
    let required_missing = schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .any(|n| !defaults.contains_key(n))
        });
    (!required_missing).then_some(Value::Object(defaults))
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
    /// Where its tokens are and who may approve a login.
    auth: McpAuth,
    /// The authorization of a streamable-HTTP connection, swapped after a login (the connection stays).
    authorizer: tokio::sync::Mutex<
        Option<Arc<tokio::sync::Mutex<rmcp::transport::auth::AuthorizationManager>>>,
    >,
    /// Logins made for this server by this process: a server that keeps refusing stops being asked.
    authorizations: std::sync::atomic::AtomicU32,
    /// It asked for a login nobody could approve.
    needs_login: AtomicBool,
    /// One login at a time for a live connection.
    login_turn: tokio::sync::Mutex<()>,
    /// Logins given to the live connection so far.
    logins: std::sync::atomic::AtomicU64,
    /// The challenge of the login it asked for, for a login in the background.
    challenge: Mutex<Option<String>>,
    /// A login in the background is under way.
    logging_in: AtomicBool,
    /// A login in the background was started for the current need.
    login_tried: AtomicBool,
    /// The login in the background, stopped when the hub shuts down.
    login_task: Mutex<Option<tokio::task::AbortHandle>>,
    /// When its token file last changed as this process saw it (a login elsewhere, `codepilot mcp login`, changes
    /// it: the server is tried again).
    token_seen: Mutex<Option<std::time::SystemTime>>,
    /// Who answers its sampling requests.
    sampler: SamplerSlot,
    /// Who answers its questions.
    asker: AskerSlot,
    /// Its questions a person is answering.
    asking: Arc<Asking>,
}

/// The most logins one server gets from one process (a server that refuses every token cannot loop).
const MAX_AUTHORIZATIONS: u32 = 3;

/// How MCP servers behind the authorization spec are logged in to.
#[derive(Clone, Default)]
pub struct McpAuth {
    /// Where tokens are kept (`CODEPILOT_HOME`); `None`: no server can be authorized.
    pub home: Option<std::path::PathBuf>,
    /// Who approves a login while the runtime runs; `None` (runtimes): a server that needs one says
    /// `codepilot mcp login NAME` and offers no tools.
    pub approver: Option<Arc<dyn auth::Approver>>,
    /// How logins register (the conformance client's pre-registered client, its metadata document).
    pub login: auth::LoginOptions,
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
        expand_vars(text, &self.env)
    }

    /// Connects (within the timeout) and lists the tools.
    async fn connect(&self) -> Result<(), String> {
        let handler = Handler {
            stale: Arc::clone(&self.stale),
            elicitation: self.config.elicitation,
            sampling: self.config.sampling,
            server: self.config.name.clone(),
            sampler: Arc::clone(&self.sampler),
            asker: Arc::clone(&self.asker),
            asking: Arc::clone(&self.asking),
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
                    self.connect_http(&handler, url, headers).await?
                }
            };
            let tools = match service.list_all_tools().await {
                Ok(tools) => tools,
                // A server may let the handshake through and ask for authorization with its first request.
                Err(e) if e.auth_challenge().is_some() => {
                    self.authorize(e.auth_challenge()).await?;
                    service.list_all_tools().await.map_err(|e| e.to_string())?
                }
                Err(e) => return Err(e.to_string()),
            };
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

    /// Connects to a streamable-HTTP server through an authorizing client: tokens from an earlier login are
    /// sent (and refreshed); a server that asks for authorization at the handshake is logged in to when someone
    /// can approve, else it fails saying `codepilot mcp login`.
    async fn connect_http(
        &self,
        handler: &Handler,
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<Service, String> {
        crate::install_tls_provider();
        let mut config =
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url,
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
        let Some(store) = self.token_file() else {
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
            return handler
                .clone()
                .serve(transport)
                .await
                .map_err(|e| handshake_failed(&e));
        };
        let manager = match auth::stored(url, &store).await? {
            Some(manager) => manager,
            None => rmcp::transport::auth::AuthorizationManager::new(url)
                .await
                .map_err(|e| format!("cannot prepare authorization for {url}: {e}"))?,
        };
        let client = rmcp::transport::AuthClient::new(reqwest::Client::new(), manager);
        *self.authorizer.lock().await = Some(Arc::clone(&client.auth_manager));
        let transport =
            rmcp::transport::StreamableHttpClientTransport::with_client(client, config.clone());
        match handler.clone().serve(transport).await {
            Ok(service) => Ok(service),
            Err(e) if e.auth_challenge().is_some() || e.is_authorization_required() => {
                let challenge = e.auth_challenge().map(str::to_owned);
                let manager = self.login(challenge.as_deref()).await?;
                let client = rmcp::transport::AuthClient::new(reqwest::Client::new(), manager);
                *self.authorizer.lock().await = Some(Arc::clone(&client.auth_manager));
                let transport =
                    rmcp::transport::StreamableHttpClientTransport::with_client(client, config);
                handler
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| handshake_failed(&e))
            }
            Err(e) => Err(handshake_failed(&e)),
        }
    }

    /// Where this server's tokens are kept, when it is an HTTP server and tokens can be kept.
    fn token_file(&self) -> Option<std::path::PathBuf> {
        let McpTransport::Http { url, .. } = &self.config.transport else {
            return None;
        };
        let home = self.auth.home.as_ref()?;
        Some(auth::token_file(home, &self.config.name, url))
    }

    /// Logs in again for a live connection (a 401 or 403 after the handshake) and gives the connection the new
    /// authorization.
    async fn authorize(&self, challenge: Option<&str>) -> Result<(), String> {
        // Calls refused at once (parallel calls after an expiry) share one login: who waited for the turn finds the
        // new authorization in place and retries with it.
        let seen = self.logins.load(Ordering::SeqCst);
        let _turn = self.login_turn.lock().await;
        if self.logins.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        let manager = self.login(challenge).await?;
        self.logins.fetch_add(1, Ordering::SeqCst);
        let held = self.authorizer.lock().await.clone();
        match held {
            Some(slot) => *slot.lock().await = manager,
            None => {
                return Err(format!(
                    "MCP server `{}` asked for authorization on a connection that cannot carry it",
                    self.config.name
                ));
            }
        }
        Ok(())
    }

    /// Logs in for the server's `challenge` (a 403's asks for more scopes: those and the ones held), when someone
    /// can approve and the server has not refused too often.
    async fn login(
        &self,
        challenge: Option<&str>,
    ) -> Result<rmcp::transport::auth::AuthorizationManager, String> {
        let name = &self.config.name;
        let options = self.login_options();
        if options.client_credentials
            && let (Some(store), McpTransport::Http { url, .. }) =
                (self.token_file(), &self.config.transport)
        {
            if self.authorizations.fetch_add(1, Ordering::SeqCst) >= MAX_AUTHORIZATIONS {
                return Err(format!(
                    "MCP server `{name}` refused the last {MAX_AUTHORIZATIONS} tokens; not asking again"
                ));
            }
            let wanted = challenge.map(auth::challenged_scopes).unwrap_or_default();
            return auth::client_credentials(url, &store, challenge, &options, &wanted).await;
        }
        let (Some(approver), Some(_), McpTransport::Http { .. }) = (
            &self.auth.approver,
            self.token_file(),
            &self.config.transport,
        ) else {
            self.needs_login.store(true, Ordering::SeqCst);
            return Err(format!(
                "it needs a login: run `codepilot mcp login {name}`, then start again"
            ));
        };
        if approver.waits_for_person() {
            // A person approves in a browser: that runs in the background (`login_in_background`), never in a
            // step.
            self.needs_login.store(true, Ordering::SeqCst);
            *lock(&self.challenge) = challenge.map(str::to_owned);
            return Err(if approver.available() {
                format!(
                    "it needs a login: the authorization URL went to the host; its tools come when the login is \
                     approved (or run `codepilot mcp login {name}`)"
                )
            } else {
                format!(
                    "it needs a login: run `codepilot mcp login {name}`; it connects at the next step"
                )
            });
        }
        self.login_now(challenge).await
    }

    /// Runs the login (`login`'s approver) for `challenge`, at most [`MAX_AUTHORIZATIONS`] in a row.
    async fn login_now(
        &self,
        challenge: Option<&str>,
    ) -> Result<rmcp::transport::auth::AuthorizationManager, String> {
        let name = &self.config.name;
        let options = self.login_options();
        let (Some(approver), Some(store), McpTransport::Http { url, .. }) = (
            &self.auth.approver,
            self.token_file(),
            &self.config.transport,
        ) else {
            return Err(format!(
                "it needs a login: run `codepilot mcp login {name}`, then start again"
            ));
        };
        if self.authorizations.fetch_add(1, Ordering::SeqCst) >= MAX_AUTHORIZATIONS {
            return Err(format!(
                "MCP server `{name}` refused the last {MAX_AUTHORIZATIONS} logins' tokens; not asking again"
            ));
        }
        let held = self.authorizer.lock().await.clone();
        let mut scopes = match &held {
            Some(m) => m.lock().await.get_current_scopes().await,
            None => Vec::new(),
        };
        // The scopes held stay (a 401 after a revocation names none), and those the challenge asks for join them.
        for s in challenge.map(auth::challenged_scopes).unwrap_or_default() {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        auth::login(name, url, &store, challenge, &options, &scopes, approver).await
    }

    /// How a login registers: the server's `oauth:` section, else the hub's defaults.
    fn login_options(&self) -> auth::LoginOptions {
        login_options(&self.config, &self.env).unwrap_or_else(|| self.auth.login.clone())
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

    /// Stops a login waiting in the background (its listener and port go with it).
    fn stop_login(&self) {
        if let Some(task) = lock(&self.login_task).take() {
            task.abort();
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
            if self.needs_login.load(Ordering::SeqCst) {
                self.wait_for_login();
            }
        }
        self.started.send_replace(true);
    }

    /// The server failed because it needs a login: it waits for one (its state says so), notes the token file to
    /// see a login made elsewhere, and starts one in the background when a person can approve it.
    fn wait_for_login(self: &Arc<Self>) {
        {
            let mut state = lock(&self.state);
            if let ServerState::Failed(message) = &*state {
                *state = ServerState::NeedsLogin(message.clone());
            }
        }
        self.note_token_file();
        self.login_in_background();
    }

    /// Notes when the token file last changed, to try again once a login elsewhere changes it.
    fn note_token_file(&self) {
        *lock(&self.token_seen) = self.token_file_changed_at();
    }

    /// When the token file last changed; `None` when there is none.
    fn token_file_changed_at(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.token_file()?)
            .and_then(|m| m.modified())
            .ok()
    }

    /// A server that needs a login and whose tokens changed since (`codepilot mcp login` in another process):
    /// connects again in the background.
    fn recheck_login(self: &Arc<Self>) {
        if !matches!(*lock(&self.state), ServerState::NeedsLogin(_))
            || self.logging_in.load(Ordering::SeqCst)
        {
            return;
        }
        // Someone to show the login to may have come since (a Python hook registered after the runtime was built).
        self.login_in_background();
        let now = self.token_file_changed_at();
        if now.is_none() || now == *lock(&self.token_seen) {
            return;
        }
        *lock(&self.token_seen) = now;
        if self.logging_in.swap(true, Ordering::SeqCst) {
            return;
        }
        let server = Arc::clone(self);
        tokio::spawn(async move {
            server.reconnect_after_login().await;
            server.logging_in.store(false, Ordering::SeqCst);
        });
    }

    /// When the login waits for a person (a browser through the host's login handler): logs in in the background
    /// and connects again once approved; the tools come with the next step. Runs and steps never wait for it.
    fn login_in_background(self: &Arc<Self>) {
        if !self.person_can_approve()
            || !self.needs_login.load(Ordering::SeqCst)
            || self.closed.load(Ordering::SeqCst)
            || self.login_tried.load(Ordering::SeqCst)
            || self.logging_in.swap(true, Ordering::SeqCst)
        {
            return;
        }
        // One login shown per need: one that does not finish is not started again by itself (a
        // `codepilot mcp login` elsewhere is still noticed, by `recheck_login`).
        self.login_tried.store(true, Ordering::SeqCst);
        let server = Arc::clone(self);
        let task = tokio::spawn(async move {
            let challenge = lock(&server.challenge).clone();
            match server.login_now(challenge.as_deref()).await {
                Ok(_) => server.reconnect_after_login().await,
                Err(why) => {
                    let message = format!(
                        "MCP server `{}` ({}): the login did not finish: {why}; run `codepilot mcp login {}` \
                         (the server connects at the next step)",
                        server.config.name,
                        server.endpoint(),
                        server.config.name
                    );
                    *lock(&server.state) = ServerState::NeedsLogin(message.clone());
                    (server.warn)(&message);
                }
            }
            server.logging_in.store(false, Ordering::SeqCst);
        });
        *lock(&self.login_task) = Some(task.abort_handle());
    }

    /// Whether a person can approve a login now: the host showed a login handler, and it has someone to show it to.
    fn person_can_approve(&self) -> bool {
        self.auth
            .approver
            .as_ref()
            .is_some_and(|a| a.waits_for_person() && a.available())
    }

    /// Connects again with the tokens a login just stored; the tools come with the next step.
    async fn reconnect_after_login(&self) {
        self.stop().await;
        self.needs_login.store(false, Ordering::SeqCst);
        self.login_tried.store(false, Ordering::SeqCst);
        let connected = self.connect().await;
        // What this connection wrote (a refresh) is not a login from elsewhere.
        self.note_token_file();
        match connected {
            Ok(()) => tracing::info!("MCP server `{}` logged in", self.config.name),
            Err(why) => {
                let message = format!(
                    "MCP server `{}` ({}): {why}",
                    self.config.name,
                    self.endpoint()
                );
                *lock(&self.state) = if self.needs_login.load(Ordering::SeqCst) {
                    ServerState::NeedsLogin(message.clone())
                } else {
                    ServerState::Failed(message.clone())
                };
                (self.warn)(&message);
            }
        }
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
        self: &Arc<Self>,
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
        if let ServerState::NeedsLogin(why) = state {
            return Err(ToolError::permission(why));
        }
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
                if self.needs_login.load(Ordering::SeqCst) {
                    // Not a crash: it wants a login, which keeps its one restart for a real one.
                    self.restarted.store(false, Ordering::SeqCst);
                    self.wait_for_login();
                    return Err(ToolError::permission(format!(
                        "MCP server `{}` ({}): {e}",
                        self.config.name,
                        self.endpoint()
                    )));
                }
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
        let mut answer = self
            .asking
            .timed(self.timeout(), peer.call_tool(params.clone()))
            .await;
        // A 401 (expired or revoked) or a 403 asking for more scopes: log in again when someone can approve, then
        // try once more.
        while let Ok(Err(e)) = &answer
            && let Some(challenge) = e.auth_challenge().map(str::to_owned)
        {
            if let Err(why) = self.authorize(Some(&challenge)).await {
                if self.needs_login.load(Ordering::SeqCst) {
                    *lock(&self.state) = ServerState::Failed(format!(
                        "MCP server `{}` ({}): {why}",
                        self.config.name,
                        self.endpoint()
                    ));
                    self.wait_for_login();
                }
                return Err(ToolError::permission(format!("{block_name}: {why}")));
            }
            answer = self
                .asking
                .timed(self.timeout(), peer.call_tool(params.clone()))
                .await;
        }
        let result = match answer {
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
            Ok(Ok(result)) => {
                // The server took the token: logins count again from nothing (a short-lived client-credentials
                // token is bought again at every expiry).
                self.authorizations.store(0, Ordering::SeqCst);
                result
            }
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

/// `text` with each `${VAR}` replaced by its value from `env` (nothing, with a warning, when it is not set).
fn expand_vars(text: &str, env: &EnvLookup) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let var = &after[..end];
                match env(var) {
                    Some(value) => out.push_str(&value),
                    None => {
                        tracing::warn!("MCP server: ${{{var}}} is not set; it expands to nothing")
                    }
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

/// How a login to `server` registers, from its `oauth:` section (the secret read through `env`); `None` without one.
fn login_options(server: &McpServerConfig, env: &EnvLookup) -> Option<auth::LoginOptions> {
    let o = server.oauth.as_ref()?;
    Some(auth::LoginOptions {
        client_id: o.client_id.clone(),
        client_secret: o.client_secret_env.as_deref().and_then(|v| env(v)),
        scopes: o.scopes.clone(),
        redirect_port: o.redirect_port,
        client_metadata_url: o.client_metadata_url.clone(),
        client_credentials: o.client_credentials,
    })
}

/// Logs in to the streamable-HTTP `server` (`codepilot mcp login`): asks it for its challenge, runs the login
/// `approver` approves, and keeps the tokens under `home` for every later runtime. `Ok(false)` when the server
/// asks for no authorization.
///
/// # Errors
/// A stdio server, an unreachable one, or why the login failed.
pub async fn login(
    server: &McpServerConfig,
    home: &std::path::Path,
    env: EnvLookup,
    approver: Arc<dyn auth::Approver>,
) -> Result<bool, String> {
    let McpTransport::Http { url, headers } = &server.transport else {
        return Err(format!(
            "MCP server `{}` runs a command; only url servers log in",
            server.name
        ));
    };
    let expanded: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.clone(), expand_vars(v, &env)))
        .collect();
    let Some(challenge) = auth::challenge(url, &expanded).await? else {
        return Ok(false);
    };
    let options = login_options(server, &env).unwrap_or_default();
    auth::login(
        &server.name,
        url,
        &auth::token_file(home, &server.name, url),
        Some(&challenge),
        &options,
        &[],
        &approver,
    )
    .await?;
    Ok(true)
}

/// Forgets `server`'s tokens (`codepilot mcp logout`); `Ok(false)` when there were none.
///
/// # Errors
/// A stdio server, or a token file that cannot be removed.
pub fn logout(server: &McpServerConfig, home: &std::path::Path) -> Result<bool, String> {
    let McpTransport::Http { url, .. } = &server.transport else {
        return Err(format!(
            "MCP server `{}` runs a command; only url servers log in",
            server.name
        ));
    };
    let file = auth::token_file(home, &server.name, url);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot remove {}: {e}", file.display())),
    }
}

/// The configured MCP servers of one runtime.
pub struct McpHub {
    servers: Vec<Arc<Server>>,
    /// Who answers the servers' sampling requests.
    sampler: SamplerSlot,
    /// Who answers the servers' questions.
    asker: AskerSlot,
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
        Self::start_with_auth(
            configs,
            env,
            warn,
            McpAuth {
                home: codepilot_store::codepilot_home().ok(),
                ..McpAuth::default()
            },
        )
    }

    /// [`McpHub::start`] with `auth` deciding where tokens are kept and who approves a login.
    #[must_use]
    pub fn start_with_auth(
        configs: &[McpServerConfig],
        env: EnvLookup,
        warn: Warn,
        auth: McpAuth,
    ) -> Arc<Self> {
        let sampler: SamplerSlot = Arc::default();
        let asker: AskerSlot = Arc::default();
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
                    auth: auth.clone(),
                    authorizer: tokio::sync::Mutex::new(None),
                    authorizations: std::sync::atomic::AtomicU32::new(0),
                    needs_login: AtomicBool::new(false),
                    login_turn: tokio::sync::Mutex::new(()),
                    logins: std::sync::atomic::AtomicU64::new(0),
                    challenge: Mutex::new(None),
                    logging_in: AtomicBool::new(false),
                    login_tried: AtomicBool::new(false),
                    login_task: Mutex::new(None),
                    token_seen: Mutex::new(None),
                    sampler: Arc::clone(&sampler),
                    asker: Arc::clone(&asker),
                    asking: Arc::default(),
                })
            })
            .collect();
        for server in &servers {
            tokio::spawn(Arc::clone(server).start());
        }
        Arc::new(Self {
            servers,
            sampler,
            asker,
            closed,
            held,
            warn,
        })
    }

    /// Sets who answers the servers' sampling requests (the runtime, once built).
    pub fn set_sampler(&self, sampler: Arc<dyn Sampler>) {
        *lock(&self.sampler) = Some(sampler);
    }

    /// Sets who answers the servers' questions (`elicitation: ask`): the host's ask-user handler.
    pub fn set_asker(&self, asker: Arc<dyn crate::AskUserHandler>) {
        *lock(&self.asker) = Some(asker);
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
        for server in &self.servers {
            server.recheck_login();
        }
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
        if !self.servers.is_empty() {
            for function in resources::Function::ALL {
                out.push(Arc::new(resources::HubFunction {
                    hub: Arc::clone(self),
                    function,
                }));
            }
        }
        out
    }

    /// Whether any server's tools need the host's permission.
    fn any_gated(&self) -> bool {
        self.servers.iter().any(|s| s.config.require_permission)
    }

    /// The live connection to server `name` and its per-call timeout, for the resource and prompt functions.
    async fn peer(&self, name: &str) -> Result<(rmcp::Peer<RoleClient>, Duration), ToolError> {
        let Some(server) = self.servers.iter().find(|s| s.config.name == name) else {
            let names: Vec<&str> = self
                .servers
                .iter()
                .map(|s| s.config.name.as_str())
                .collect();
            return Err(ToolError::new(
                ExcKind::ValueError,
                format!(
                    "no MCP server `{name}`; the agent has: {}",
                    names.join(", ")
                ),
            ));
        };
        let state = lock(&server.state).clone();
        match state {
            ServerState::Ready => {}
            ServerState::Starting => {
                return Err(ToolError::runtime(format!(
                    "MCP server `{name}` is still starting; try again in a moment"
                )));
            }
            ServerState::Failed(why) => return Err(ToolError::runtime(why)),
            ServerState::NeedsLogin(why) => return Err(ToolError::permission(why)),
        }
        match &*server.service.lock().await {
            Some(s) => Ok((s.peer().clone(), server.timeout())),
            None => Err(ToolError::runtime(format!(
                "MCP server `{name}` is not connected"
            ))),
        }
    }

    /// The block names of every server's tools (also of servers that are down), to replace them as a whole.
    pub(crate) fn is_mcp_tool(&self, name: &str) -> bool {
        resources::Function::ALL.iter().any(|f| f.name() == name)
            || self
                .servers
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
        for server in &self.servers {
            server.stop_login();
        }
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
        for server in &self.servers {
            server.stop_login();
        }
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
