//! The daemon's wire protocol (SPEC §13): JSON-RPC 2.0 messages between `codepilot serve` and its clients.
//!
//! Every message is one JSON object: one per line on a Unix socket or stdio, one per text frame on a WebSocket.
//! [`ClientRequest`] lists what a client may call, [`ServerNotification`] what the daemon announces, and
//! [`ServerRequest`] what it asks a client (a permission decision, an answer). Params and results are typed here
//! with serde and JSON Schema derives, so clients and the committed schema (`docs/protocol.schema.json`) are
//! generated from one source.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use crate::event::EventEnvelope;
use crate::event::TurnCompleted;
use crate::message::Message;
use crate::request::AskUserResponse;
use crate::request::PermissionDecision;

/// The protocol version `initialize` reports.
pub const PROTOCOL_VERSION: u32 = 1;

/// JSON-RPC error codes: the standard ones and the daemon's own.
pub mod codes {
    /// Not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a JSON-RPC 2.0 message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The connection's outgoing queue is full: the client fell behind and must resubscribe. Retryable.
    pub const OVERLOADED: i64 = -32001;
    /// A call before `initialize`.
    pub const NOT_INITIALIZED: i64 = -32002;
    /// A message larger than the daemon accepts.
    pub const TOO_LARGE: i64 = -32003;
    /// No session with that id in this daemon.
    pub const UNKNOWN_SESSION: i64 = 1001;
    /// The session is already running a turn.
    pub const TURN_RUNNING: i64 = 1002;
    /// Another runtime (this daemon or another process) holds the session's lease.
    pub const SESSION_LEASED: i64 = 1003;
    /// The agent file is invalid; the message names the key and line.
    pub const BAD_AGENT_CONFIG: i64 = 1004;
    /// The session's workspace snapshot could not be restored or saved (missing, corrupt, too large, store
    /// unreachable, or no snapshot store); the message says which and what to do. The session's history is intact.
    pub const SNAPSHOT_FAILED: i64 = 1005;
    /// A checkpoint is unknown, unreadable, on a conversation a later rewind replaced, or its files could not be
    /// written back; the message says which and what to do. A staging failure changed nothing; a failure after
    /// changes names the checkpoint that undoes them.
    pub const CHECKPOINT_FAILED: i64 = 1006;
}

/// A request or response id: a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RequestId {
    /// A number.
    Number(i64),
    /// A string.
    String(String),
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcError {
    /// One of [`codes`].
    pub code: i64,
    /// What went wrong and what to do.
    pub message: String,
    /// More detail, when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// Any message on the wire, before its method is known: requests have `id` and `method`, notifications only
/// `method`, responses `id` and `result` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RawMessage {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Requests and responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// Requests and notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The method's params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// A successful response's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// A failed response's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// Who is calling, from `initialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    /// The client's name, e.g. `codepilot-vscode`.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
}

/// `initialize` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitializeParams {
    /// The client.
    pub client: ClientInfo,
}

/// `initialize` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitializeResult {
    /// The daemon (`name` `codepilot`, its version).
    pub server: ClientInfo,
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
}

/// `session/start` params: an agent file by path or as YAML text (exactly one), optionally a work directory and a
/// session id to create or open. The daemon records the agent (the file's text, its path, the work directory) with
/// the session, so `session/resume {session_id}` opens it again on any daemon sharing the store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStartParams {
    /// Path of an agent file on the daemon's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_file: Option<String>,
    /// An agent file's YAML text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Overrides `runtime.work_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    /// Create this session, or open it if it is stored (default: a new id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// When the daemon keeps snapshots and the session has one: what to do with a work directory that lacks it
    /// (default [`RestoreMode::IfEmpty`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreMode>,
}

/// What `session/start` does with the work directory of a session that has a workspace snapshot (SPEC §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Restore into a missing or empty directory or over an older copy of the session's workspace; fail
    /// ([`codes::SNAPSHOT_FAILED`]) rather than restore over anything else.
    IfEmpty,
    /// Restore whatever the directory holds (its contents are deleted).
    Replace,
    /// Keep the directory as it is.
    Skip,
}

/// A workspace restored from a snapshot when the session started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestoredWorkspace {
    /// The snapshot's key.
    pub snapshot: String,
    /// Files restored.
    pub files: u64,
    /// Bytes downloaded.
    pub size: u64,
    /// Time taken, in milliseconds.
    pub elapsed_ms: u64,
}

/// `session/start` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStartResult {
    /// The session.
    pub session_id: String,
    /// Set when the session's workspace was restored from its snapshot into the work directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredWorkspace>,
}

/// `session/snapshot` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotResult {
    /// The snapshot that now holds the workspace.
    pub snapshot: String,
    /// `false` when nothing changed since that snapshot, so nothing was uploaded.
    pub saved: bool,
}

/// Params naming a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    /// The session.
    pub session_id: String,
}

/// `session/checkpoints` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointsResult {
    /// The session.
    pub session_id: String,
    /// Its checkpoints, oldest first.
    pub checkpoints: Vec<crate::CheckpointInfo>,
}

/// `session/export` result (SPEC §23).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportResult {
    /// The session.
    pub session_id: String,
    /// The trajectory, JSON lines ([`TrajectoryLine`](crate::TrajectoryLine)s); what `codepilot replay` reads.
    pub jsonl: String,
    /// Messages in it.
    pub messages: u64,
    /// Stored events in it.
    pub events: u64,
    /// Files of its starting workspace.
    pub files: u64,
}

/// `session/rewind` params (SPEC §19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindParams {
    /// The session.
    pub session_id: String,
    /// The checkpoint: `"3"` (before turn 3), `"3.2"` (before its step 2) or `"rewind-1"` (the state a rewind
    /// replaced).
    pub checkpoint: String,
    /// What to rewind. Default `both`.
    #[serde(default)]
    pub scope: crate::RewindScope,
    /// Say what would change, change nothing (for a confirmation). Default `false`.
    #[serde(default)]
    pub dry_run: bool,
}

/// `session/resume` params: a stored session to open in this daemon. `{session_id}` alone opens it with the agent
/// the store recorded for it (the agent file's text and work directory it was last opened with by a daemon, which
/// may be another one sharing the store). An agent file by path or as YAML text (at most one) runs it with that
/// agent instead, and is recorded in its place; a session no daemon recorded an agent for (created by the CLI, the
/// Python package or an older daemon) needs one. `work_dir` and `restore` as for `session/start` (`work_dir`
/// overrides the recorded work directory too). All are ignored when the session is already open in this daemon.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionResumeParams {
    /// The session.
    pub session_id: String,
    /// Path of an agent file on the daemon's machine; default: the agent the store recorded for the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_file: Option<String>,
    /// An agent file's YAML text; default: the agent the store recorded for the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Overrides `runtime.work_dir` (of the recorded agent too); default: the agent's, the recorded one's being
    /// the directory the session last ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    /// When the daemon keeps snapshots and the session has one: what to do with a work directory that lacks it
    /// (default [`RestoreMode::IfEmpty`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreMode>,
}

/// `session/resume` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionResumeResult {
    /// The session.
    pub session_id: String,
    /// Its conversation as stored.
    pub messages: Vec<Message>,
    /// Set when the session's workspace was restored from its snapshot into the work directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredWorkspace>,
}

/// `session/read` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionReadResult {
    /// The session.
    pub session_id: String,
    /// Its conversation as stored.
    pub messages: Vec<Message>,
}

/// `session/subscribe` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// The session.
    pub session_id: String,
    /// Replay the session's events after this `seq` first (0: from its start); none: live events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
}

/// `session/subscribe` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscribeResult {
    /// The session.
    pub session_id: String,
    /// The `seq` of the session's newest event when the subscription started; replayed events are at most this.
    pub last_seq: u64,
}

/// Whether a session is working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Waiting for a turn.
    Idle,
    /// A turn is running.
    Running,
    /// Stored, not open in this daemon.
    Stored,
}

/// One session in `session/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionSummary {
    /// The session.
    pub session_id: String,
    /// Its title (from its first task).
    pub title: String,
    /// Whether it works.
    pub status: SessionStatus,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Which process drives it now, `HOST (pid N)`: this daemon or another sharing the store. None when no one
    /// does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<String>,
    /// Its latest workspace snapshot, when the daemons keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// `session/list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionListResult {
    /// Open sessions first, then stored ones, newest first.
    pub sessions: Vec<SessionSummary>,
}

/// `turn/start` and `turn/steer` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnParams {
    /// The session.
    pub session_id: String,
    /// The task (`turn/start`) or the message for the running turn (`turn/steer`).
    pub text: String,
    /// `turn/start`: limits for this turn, each replacing the agent's `runtime.limits` value (SPEC §21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<crate::limits::Limits>,
    /// `turn/start`: a JSON Schema (2020-12) the completion must match; the outcome then carries `structured`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// `turn/start`: request metadata; its `traceparent` parents the turn's trace (SPEC §23).
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<RequestMeta>,
}

/// `_meta` of a request: metadata beside its parameters, as MCP carries it. Keys this daemon does not know are
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestMeta {
    /// A W3C trace context (`00-<trace id>-<parent id>-<flags>`): the turn's spans join the caller's trace, and the
    /// agent's shells get it as `TRACEPARENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// `turn/start` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TurnStartResult {
    /// The new turn; its events and `turn/completed` carry it.
    pub turn_id: String,
}

/// One terminal in `terminal/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TerminalInfo {
    /// Its name, e.g. `main`.
    pub name: String,
    /// The shell's process id.
    pub pid: u32,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// How a client on the daemon's machine attaches to the terminal's multiplexer directly (raw PTY bytes after a
    /// token line and a JSON greeting; see `codepilot attach`). Only sent over the Unix socket and stdio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<TerminalAttach>,
}

/// Where a local client attaches to a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TerminalAttach {
    /// The terminal's Unix socket.
    pub socket: String,
    /// The token to send as the first line.
    pub token: String,
}

/// `terminal/list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TerminalListResult {
    /// The session's terminals.
    pub terminals: Vec<TerminalInfo>,
}

/// An empty result (`{}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// A client's call: `{"method": ..., "params": ...}` of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params")]
pub enum ClientRequest {
    /// → [`InitializeResult`]. The first call on a connection.
    #[serde(rename = "initialize")]
    Initialize(InitializeParams),
    /// → [`SessionStartResult`]; the caller is subscribed to the session.
    #[serde(rename = "session/start")]
    SessionStart(SessionStartParams),
    /// → [`SessionResumeResult`]: opens a stored session in this daemon (takes its lease, restores its workspace
    /// when the daemon keeps snapshots and the work directory lacks it) with the agent the store recorded for it
    /// unless the params give one, or finds it open here already; subscribes the caller to its live events, and
    /// returns its conversation. Error [`codes::UNKNOWN_SESSION`] when the store has no such session,
    /// [`codes::SESSION_LEASED`] while another runtime drives it, [`codes::INVALID_PARAMS`] when no agent is given
    /// and none is recorded.
    #[serde(rename = "session/resume")]
    SessionResume(SessionResumeParams),
    /// → [`SessionReadResult`]: the stored conversation, read without opening the session or subscribing.
    #[serde(rename = "session/read")]
    SessionRead(SessionParams),
    /// → [`SubscribeResult`]; replays events after `after_seq`, then sends live ones.
    #[serde(rename = "session/subscribe")]
    SessionSubscribe(SubscribeParams),
    /// → [`SessionListResult`].
    #[serde(rename = "session/list")]
    SessionList(Empty),
    /// → [`Empty`]: aborts a running turn, kills the terminals, releases the session.
    #[serde(rename = "session/close")]
    SessionClose(SessionParams),
    /// → [`SnapshotResult`]: stores the session's work directory in the snapshot store now.
    #[serde(rename = "session/snapshot")]
    SessionSnapshot(SessionParams),
    /// → [`CheckpointsResult`]: the session's checkpoints, oldest first.
    #[serde(rename = "session/checkpoints")]
    SessionCheckpoints(SessionParams),
    /// → [`ExportResult`]: the session as a trajectory (SPEC §23), to replay with `codepilot replay`.
    #[serde(rename = "session/export")]
    SessionExport(SessionParams),
    /// → [`RewoundEvent`](crate::RewoundEvent): rewinds the session's files, conversation or both to a checkpoint
    /// (or, with `dry_run`, says what that would change). Error [`codes::TURN_RUNNING`] while a turn runs,
    /// [`codes::CHECKPOINT_FAILED`] for an unknown checkpoint or files that could not be written back.
    #[serde(rename = "session/rewind")]
    SessionRewind(RewindParams),
    /// → [`TurnStartResult`]; error [`codes::TURN_RUNNING`] while one runs.
    #[serde(rename = "turn/start")]
    TurnStart(TurnParams),
    /// → [`Empty`]: a user message for the running turn.
    #[serde(rename = "turn/steer")]
    TurnSteer(TurnParams),
    /// → [`Empty`]: aborts the running turn.
    #[serde(rename = "turn/interrupt")]
    TurnInterrupt(SessionParams),
    /// → [`TerminalListResult`].
    #[serde(rename = "terminal/list")]
    TerminalList(SessionParams),
}

impl ClientRequest {
    /// The method name.
    #[must_use]
    pub fn method(&self) -> &'static str {
        match self {
            ClientRequest::Initialize(_) => "initialize",
            ClientRequest::SessionStart(_) => "session/start",
            ClientRequest::SessionResume(_) => "session/resume",
            ClientRequest::SessionRead(_) => "session/read",
            ClientRequest::SessionSubscribe(_) => "session/subscribe",
            ClientRequest::SessionList(_) => "session/list",
            ClientRequest::SessionClose(_) => "session/close",
            ClientRequest::SessionSnapshot(_) => "session/snapshot",
            ClientRequest::SessionCheckpoints(_) => "session/checkpoints",
            ClientRequest::SessionExport(_) => "session/export",
            ClientRequest::SessionRewind(_) => "session/rewind",
            ClientRequest::TurnStart(_) => "turn/start",
            ClientRequest::TurnSteer(_) => "turn/steer",
            ClientRequest::TurnInterrupt(_) => "turn/interrupt",
            ClientRequest::TerminalList(_) => "terminal/list",
        }
    }

    /// Every method name, for "unknown method" messages.
    pub const METHODS: &'static [&'static str] = &[
        "initialize",
        "session/start",
        "session/resume",
        "session/read",
        "session/subscribe",
        "session/list",
        "session/close",
        "session/snapshot",
        "session/checkpoints",
        "session/export",
        "session/rewind",
        "turn/start",
        "turn/steer",
        "turn/interrupt",
        "terminal/list",
    ];
}

/// A server request or its resolution, naming the server request it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestResolved {
    /// The session.
    pub session_id: String,
    /// The id of the `permission/request` or `ask_user/request` that no longer needs an answer.
    pub request_id: RequestId,
}

/// A turn that stopped with an error instead of an outcome (the provider failed after retries, the store failed):
/// the `turn/completed` of a failed turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnFailed {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// What stopped it.
    pub error: RpcError,
}

/// A subscription the daemon ended because the client fell behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionLagged {
    /// The session.
    pub session_id: String,
    /// The last `seq` the client was sent; resubscribe with `after_seq` set to it.
    pub last_sent_seq: u64,
}

/// What the daemon announces: `{"method": ..., "params": ...}` of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params")]
pub enum ServerNotification {
    /// An event of a subscribed session.
    #[serde(rename = "event")]
    Event(EventEnvelope),
    /// A turn ended.
    #[serde(rename = "turn/completed")]
    TurnCompleted(TurnCompleted),
    /// A turn stopped with an error.
    #[serde(rename = "turn/failed")]
    TurnFailed(TurnFailed),
    /// A permission or ask-user request was answered (by any client) or expired: drop its prompt.
    #[serde(rename = "serverRequest/resolved")]
    RequestResolved(RequestResolved),
    /// The client fell too far behind on a session; its subscription ended.
    #[serde(rename = "subscription/lagged")]
    SubscriptionLagged(SubscriptionLagged),
}

/// `permission/request` params: a gated tool call waiting for a decision ([`PermissionDecision`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PermissionRequestParams {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// The tool, e.g. `execute`.
    pub tool: String,
    /// The call's arguments.
    pub args: Value,
    /// What it wants to do, e.g. "Execute in main: cargo test".
    pub description: String,
}

/// `ask_user/request` params: the agent's question, waiting for an [`AskUserResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AskUserRequestParams {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// The question (for an MCP server's form, its message).
    pub question: String,
    /// An MCP server's form (`elicitation/create`): a flat JSON Schema object whose properties are strings,
    /// numbers, integers, booleans or lists of choices. A client that can show a form answers with
    /// [`AskUserResponse::content`]; one that answers with text only is asked field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// `mcp/login` params: an MCP server needs an OAuth login (SPEC §18). The client shows `url` to the person (opens it
/// in a browser); the authorization server sends the browser back to the daemon's loopback address, so the
/// browser must run on the daemon's machine. The login waits a while (the runtime's `LOGIN_WAIT`); the server's tools come with the step
/// after it is approved, and runs never wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct McpLoginParams {
    /// The session whose runtime connects to the server.
    pub session_id: String,
    /// The server's name in the agent file.
    pub server: String,
    /// The authorization URL to open.
    pub url: String,
}

/// The answer to `mcp/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct McpLoginResponse {
    /// Whether the client opened the URL (or showed it).
    #[serde(default)]
    pub opened: bool,
}

/// What the daemon asks a client: `{"method": ..., "params": ...}` of a server request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params")]
pub enum ServerRequest {
    /// → [`PermissionDecision`].
    #[serde(rename = "permission/request")]
    Permission(PermissionRequestParams),
    /// → [`AskUserResponse`].
    #[serde(rename = "ask_user/request")]
    AskUser(AskUserRequestParams),
    /// → [`McpLoginResponse`].
    #[serde(rename = "mcp/login")]
    McpLogin(McpLoginParams),
}

/// Every message type of the protocol, for schema generation: the root of `docs/protocol.schema.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProtocolMessage {
    /// A client request's method and params.
    ClientRequest(ClientRequest),
    /// A notification's method and params.
    ServerNotification(ServerNotification),
    /// A server request's method and params.
    ServerRequest(ServerRequest),
    /// `initialize`'s result.
    InitializeResult(InitializeResult),
    /// `session/start`'s result.
    SessionStartResult(SessionStartResult),
    /// `session/resume`'s result.
    SessionResumeResult(SessionResumeResult),
    /// `session/read`'s result.
    SessionReadResult(SessionReadResult),
    /// `session/subscribe`'s result.
    SubscribeResult(SubscribeResult),
    /// `session/list`'s result.
    SessionListResult(SessionListResult),
    /// `turn/start`'s result.
    TurnStartResult(TurnStartResult),
    /// `terminal/list`'s result.
    TerminalListResult(TerminalListResult),
    /// `session/checkpoints`' result.
    CheckpointsResult(CheckpointsResult),
    /// `session/rewind`'s result.
    RewindResult(crate::RewoundEvent),
    /// `session/export`'s result.
    ExportResult(ExportResult),
    /// A line of a trajectory (`session/export`, `codepilot sessions export`).
    TrajectoryLine(crate::TrajectoryLine),
    /// The answer to `permission/request`.
    PermissionDecision(PermissionDecision),
    /// The answer to `ask_user/request`.
    AskUserResponse(AskUserResponse),
    /// The answer to `mcp/login`.
    McpLoginResponse(McpLoginResponse),
    /// The envelope of every message.
    RawMessage(RawMessage),
}
