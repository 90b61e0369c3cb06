//! The events a runtime emits while it works, and the envelope that carries them to hosts and clients.
//!
//! Every event is one variant of [`Event`], a serde-tagged enum (`{"type":"tool_call", ...}`). Hosts of the
//! library receive it as it is; everything that crosses a process boundary (the CLI's `--json`, the daemon's
//! `event` notification) wraps it in an [`EventEnvelope`] that names the session and turn and numbers the event, so
//! a client can see gaps and resume after the last `seq` it saw.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

use crate::message::Usage;
use crate::outcome::Outcome;

/// Something the runtime did. Serialized with a `type` tag in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A task started.
    Start(StartEvent),
    /// A step (one model answer and its execution) started.
    Step(StepEvent),
    /// Model text for the user, as it arrives.
    Stream(StreamEvent),
    /// A tool is about to run.
    ToolCall(ToolCallEvent),
    /// A tool finished; `result` is what the model will read.
    ToolResult(ToolResultEvent),
    /// The agent asked the user a question.
    AskUser(AskUserEvent),
    /// A gated tool asks for permission.
    PermissionRequest(PermissionRequestEvent),
    /// A message from the host was queued for the next step.
    UserMessageQueued(UserMessageEvent),
    /// A queued message was added to the conversation.
    UserMessageInjected(UserMessageEvent),
    /// Something went wrong; the run may continue (parse and execution errors) or end (provider failure).
    RuntimeError(RuntimeErrorEvent),
    /// The model call is being retried after a transient failure; text streamed for this call is void.
    ModelRetry(ModelRetryEvent),
    /// Token usage of one model call, and the session's running total (boxed: the largest event by far).
    Usage(Box<UsageEvent>),
    /// The task ended with a completion block, or the model replied without acting.
    Finish(FinishEvent),
    /// The step limit was reached before the task completed.
    MaxSteps(MaxStepsEvent),
    /// The run was aborted by the host.
    Aborted(AbortedEvent),
    /// The conversation history was cleared.
    SessionReset(SessionResetEvent),
    /// The context passed the stress threshold: this step asks the model to archive finished tasks.
    ContextMaintenance(ContextMaintenanceEvent),
    /// Part of the history left the request: archived by the model, summarised, or compacted to fit.
    ContextDrop(ContextDropEvent),
    /// The work directory was stored as a snapshot (SPEC §17), at the end of a run or when the host asked.
    WorkspaceSaved(WorkspaceSavedEvent),
    /// A command, or a file tool's write, ran into one of the session's resource limits (SPEC §24).
    ResourceLimit(ResourceLimitEvent),
    /// The work directory, the conversation or both were rewound to a checkpoint (SPEC §19).
    Rewound(crate::checkpoint::RewoundEvent),
    /// 80 % of a limit on tokens, cost or time is spent (SPEC §21).
    LimitWarning(crate::limits::LimitWarningEvent),
    /// The control block started a worker (SPEC §20).
    SubagentSpawn(crate::subagent::SubagentSpawnEvent),
    /// A worker asked its parent something.
    SubagentMessage(crate::subagent::SubagentMessageEvent),
    /// A worker ended.
    SubagentFinish(crate::subagent::SubagentFinishEvent),
}

/// [`Event::Start`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StartEvent {
    /// Session the task runs in.
    pub session_id: String,
    /// Task number within the session, from 1.
    pub task_number: u64,
    /// The task text.
    pub task: String,
}

/// [`Event::Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepEvent {
    /// Step number within the task, from 1.
    pub step: u32,
    /// The task's step limit.
    pub max_steps: u32,
}

/// What kind of streamed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Prose for the user.
    Text,
    /// The model's visible reasoning (extended thinking).
    Thinking,
}

/// [`Event::Stream`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamEvent {
    /// Text or thinking.
    pub kind: StreamKind,
    /// The new text.
    pub text: String,
}

/// [`Event::ToolCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallEvent {
    /// Pairs this call with its [`ToolResultEvent`].
    pub call_id: String,
    /// Tool name.
    pub tool: String,
    /// Bound arguments, by parameter name.
    pub args: serde_json::Value,
    /// A short human label, e.g. "Reading src/lib.rs".
    pub label: String,
}

/// [`Event::ToolResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolResultEvent {
    /// Pairs this result with its [`ToolCallEvent`].
    pub call_id: String,
    /// Tool name.
    pub tool: String,
    /// Whether the tool succeeded.
    pub ok: bool,
    /// The formatted result, as the model reads it.
    pub result: String,
}

/// [`Event::AskUser`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AskUserEvent {
    /// The question.
    pub question: String,
}

/// [`Event::PermissionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PermissionRequestEvent {
    /// Tool asking.
    pub tool: String,
    /// What it wants to do, e.g. "Execute: rm -rf build".
    pub description: String,
}

/// [`Event::UserMessageQueued`] and [`Event::UserMessageInjected`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserMessageEvent {
    /// The message.
    pub text: String,
}

/// Broad class of a runtime error, stable for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The model's answer broke the protocol; nothing ran.
    Parse,
    /// The control block raised an exception.
    Execution,
    /// The model provider failed after retries.
    Provider,
    /// The session store failed.
    Store,
    /// A workspace snapshot could not be taken or stored; the session's history is kept.
    Snapshot,
    /// An MCP server did not start or stopped; its tools fail until it is back.
    Mcp,
    /// A checkpoint could not be taken (the turn runs without one), or left files out (SPEC §19).
    Checkpoint,
    /// The code index could not be built, or the embeddings endpoint failed; search answers from what it has
    /// (SPEC §22).
    Search,
    /// Anything else.
    Internal,
}

/// [`Event::RuntimeError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuntimeErrorEvent {
    /// Class of error.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
}

/// [`Event::ModelRetry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelRetryEvent {
    /// Retry number, from 1.
    pub attempt: u32,
    /// Wait before the retry, in milliseconds.
    pub delay_ms: u64,
    /// Why.
    pub reason: String,
}

/// [`Event::Usage`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageEvent {
    /// This call.
    pub call: Usage,
    /// The session so far.
    pub total: Usage,
    /// This call's cost in US dollars; `None` when the model's prices are not known.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// The session's cost so far, at today's prices.
    #[serde(default)]
    pub total_cost_usd: Option<f64>,
    /// Whether this call's counts are the runtime's estimate (the provider reported none).
    #[serde(default)]
    pub estimated: bool,
    /// The run so far.
    #[serde(default)]
    pub run: crate::limits::Spend,
}

/// How a task finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A completion block was accepted.
    Completed,
    /// The model answered without a control block.
    Replied,
    /// A limit on tokens, cost or time was reached (the summary names it).
    LimitExceeded,
    /// The completions did not match the run's output schema after every retry.
    InvalidOutput,
}

/// [`Event::Finish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FinishEvent {
    /// Completed or replied.
    pub reason: FinishReason,
    /// The completion text, or the reply.
    pub summary: String,
}

/// [`Event::MaxSteps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MaxStepsEvent {
    /// Steps taken.
    pub steps: u32,
}

/// [`Event::Aborted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AbortedEvent {
    /// Step at which the run stopped.
    pub step: u32,
}

/// [`Event::SessionReset`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionResetEvent {
    /// The session.
    pub session_id: String,
}

/// [`Event::WorkspaceSaved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceSavedEvent {
    /// The snapshot's key in the snapshot store, `<session>/<unix-ms>-<random>.tar.zst`.
    pub key: String,
    /// Files it holds.
    pub files: u64,
    /// Their total size in bytes.
    pub content_bytes: u64,
    /// The archive's (compressed) size in bytes.
    pub size: u64,
    /// Time taken to archive and upload, in milliseconds.
    pub elapsed_ms: u64,
}

/// [`Event::ContextMaintenance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContextMaintenanceEvent {
    /// Tokens of the request as it stands.
    pub context_tokens: u64,
    /// Tokens a request may hold (window − `max_tokens` − thinking − margin).
    pub budget: u64,
    /// `context_tokens` as a percentage of `budget`.
    pub stress_pct: u32,
    /// The finished, unarchived tasks the model is asked to archive.
    pub candidates: Vec<u64>,
}

/// Why history left the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContextDropKind {
    /// The model archived tasks with `archive_context`.
    Archived,
    /// The runtime had the model summarise the oldest finished tasks (the backstop).
    Summarised,
    /// The runtime elided old observations, dropped old steps or dropped old tasks to fit the budget.
    Compacted,
}

/// [`Event::ContextDrop`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContextDropEvent {
    /// What happened.
    pub kind: ContextDropKind,
    /// Tasks archived, summarised or dropped whole.
    pub tasks: Vec<u64>,
    /// Request tokens before.
    pub before_tokens: u64,
    /// Request tokens after.
    pub after_tokens: u64,
    /// Tokens a request may hold.
    pub budget: u64,
}

/// Which resource limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// `runtime.resources.max_processes`: a fork was refused; the command was stopped.
    Processes,
    /// `runtime.resources.max_memory_mb`: a process was killed for memory.
    Memory,
    /// `runtime.resources.max_disk_mb`: the work directory (or one file) reached the cap; the command was
    /// stopped, or the write refused.
    Disk,
    /// `runtime.resources.max_open_files`: a process could open no more files.
    OpenFiles,
}

/// [`Event::ResourceLimit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceLimitEvent {
    /// Which limit.
    pub kind: ResourceKind,
    /// Its value: a count for processes and open files, MiB for memory and disk.
    pub limit: u64,
    /// The terminal whose command ran into it; `None` for a file tool's write.
    #[serde(default)]
    pub terminal: Option<String>,
    /// What the model reads about it, e.g. `[killed: memory limit 256 MiB reached (…)]`.
    pub message: String,
}

/// Which variant an [`Event`] is, for per-kind callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum EventKind {
    Start,
    Step,
    Stream,
    ToolCall,
    ToolResult,
    AskUser,
    PermissionRequest,
    UserMessageQueued,
    UserMessageInjected,
    RuntimeError,
    ModelRetry,
    Usage,
    Finish,
    MaxSteps,
    Aborted,
    SessionReset,
    ContextMaintenance,
    ContextDrop,
    WorkspaceSaved,
    ResourceLimit,
    Rewound,
    LimitWarning,
    SubagentSpawn,
    SubagentMessage,
    SubagentFinish,
}

impl Event {
    /// The variant, without its data.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Start(_) => EventKind::Start,
            Event::Step(_) => EventKind::Step,
            Event::Stream(_) => EventKind::Stream,
            Event::ToolCall(_) => EventKind::ToolCall,
            Event::ToolResult(_) => EventKind::ToolResult,
            Event::AskUser(_) => EventKind::AskUser,
            Event::PermissionRequest(_) => EventKind::PermissionRequest,
            Event::UserMessageQueued(_) => EventKind::UserMessageQueued,
            Event::UserMessageInjected(_) => EventKind::UserMessageInjected,
            Event::RuntimeError(_) => EventKind::RuntimeError,
            Event::ModelRetry(_) => EventKind::ModelRetry,
            Event::Usage(_) => EventKind::Usage,
            Event::Finish(_) => EventKind::Finish,
            Event::MaxSteps(_) => EventKind::MaxSteps,
            Event::Aborted(_) => EventKind::Aborted,
            Event::SessionReset(_) => EventKind::SessionReset,
            Event::ContextMaintenance(_) => EventKind::ContextMaintenance,
            Event::ContextDrop(_) => EventKind::ContextDrop,
            Event::WorkspaceSaved(_) => EventKind::WorkspaceSaved,
            Event::ResourceLimit(_) => EventKind::ResourceLimit,
            Event::Rewound(_) => EventKind::Rewound,
            Event::LimitWarning(_) => EventKind::LimitWarning,
            Event::SubagentSpawn(_) => EventKind::SubagentSpawn,
            Event::SubagentMessage(_) => EventKind::SubagentMessage,
            Event::SubagentFinish(_) => EventKind::SubagentFinish,
        }
    }
}

/// One event as it crosses a process boundary: which session and turn it belongs to, and its number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    /// The session the event belongs to.
    pub session_id: String,
    /// The turn (one `run` of a task) it belongs to; `None` for events between turns, such as a message queued
    /// while the agent is idle or a session reset.
    #[serde(default)]
    pub turn_id: Option<String>,
    /// Increases by one with every event of the session, from 1, so a missing event is visible.
    pub seq: u64,
    /// The worker (sub-agent) whose event this is, numbered as `spawn_subagent` returned; `None` for the
    /// session's own agent (SPEC §20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<u32>,
    /// For a worker's event: who spawned the worker — 0 for the session's own agent, else the spawning worker's
    /// `agent_id` (a worker of a worker, when `subagents.max_depth` allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// The event.
    pub event: Event,
}

/// The end of a turn: how the task ended. The daemon's `turn/completed` notification, and the last line of
/// `codepilot run --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnCompleted {
    /// The session.
    pub session_id: String,
    /// The turn that ended.
    pub turn_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What the turn spent.
    #[serde(default)]
    pub spend: crate::limits::Spend,
}

/// One line of a JSON-lines stream of a run (`codepilot run --json`): an event, or the end of the turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamLine {
    /// An event of the run (`{"type":"event","session_id":…,"turn_id":…,"seq":…,"event":{…}}`).
    Event(EventEnvelope),
    /// The run ended (`{"type":"turn_completed","session_id":…,"turn_id":…,"outcome":{…}}`).
    TurnCompleted(TurnCompleted),
}
