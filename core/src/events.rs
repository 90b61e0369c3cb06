//! Events the runtime emits while it works, and the hooks hosts register to follow them.
//!
//! Every event is one variant of [`Event`], a serde-tagged enum (`{"type":"tool_call", ...}`) that a host can forward
//! as JSON as it is. Events are delivered two ways:
//! - synchronously, in order, to callbacks registered with [`crate::AsyncRuntime::on_event`] (or a per-kind helper
//!   such as [`crate::AsyncRuntime::on_stream`]); a callback must return quickly, it runs on the agent's task;
//! - asynchronously to any number of [`EventStream`]s from [`crate::AsyncRuntime::subscribe`]; a stream that falls
//!   more than [`EVENT_BUFFER`] events behind skips ahead and is told how many it missed.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;

use codepilot_protocol::Usage;
use futures_util::Stream;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::broadcast;

/// How many events an [`EventStream`] may fall behind before it skips ahead.
pub const EVENT_BUFFER: usize = 4096;

/// Something the runtime did. Serialized with a `type` tag in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Token usage of one model call, and the session's running total.
    Usage(UsageEvent),
    /// The task ended with a completion block, or the model replied without acting.
    Finish(FinishEvent),
    /// The step limit was reached before the task completed.
    MaxSteps(MaxStepsEvent),
    /// The run was aborted by the host.
    Aborted(AbortedEvent),
    /// The conversation history was cleared.
    SessionReset(SessionResetEvent),
}

/// [`Event::Start`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartEvent {
    /// Session the task runs in.
    pub session_id: String,
    /// Task number within the session, from 1.
    pub task_number: u64,
    /// The task text.
    pub task: String,
}

/// [`Event::Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEvent {
    /// Step number within the task, from 1.
    pub step: u32,
    /// The task's step limit.
    pub max_steps: u32,
}

/// What kind of streamed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Prose for the user.
    Text,
    /// The model's visible reasoning (extended thinking).
    Thinking,
}

/// [`Event::Stream`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// Text or thinking.
    pub kind: StreamKind,
    /// The new text.
    pub text: String,
}

/// [`Event::ToolCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskUserEvent {
    /// The question.
    pub question: String,
}

/// [`Event::PermissionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionRequestEvent {
    /// Tool asking.
    pub tool: String,
    /// What it wants to do, e.g. "Execute: rm -rf build".
    pub description: String,
}

/// [`Event::UserMessageQueued`] and [`Event::UserMessageInjected`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMessageEvent {
    /// The message.
    pub text: String,
}

/// Broad class of a runtime error, stable for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Anything else.
    Internal,
}

/// [`Event::RuntimeError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeErrorEvent {
    /// Class of error.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
}

/// [`Event::ModelRetry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRetryEvent {
    /// Retry number, from 1.
    pub attempt: u32,
    /// Wait before the retry, in milliseconds.
    pub delay_ms: u64,
    /// Why.
    pub reason: String,
}

/// [`Event::Usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// This call.
    pub call: Usage,
    /// The session so far.
    pub total: Usage,
}

/// How a task finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A completion block was accepted.
    Completed,
    /// The model answered without a control block.
    Replied,
}

/// [`Event::Finish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishEvent {
    /// Completed or replied.
    pub reason: FinishReason,
    /// The completion text, or the reply.
    pub summary: String,
}

/// [`Event::MaxSteps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxStepsEvent {
    /// Steps taken.
    pub steps: u32,
}

/// [`Event::Aborted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedEvent {
    /// Step at which the run stopped.
    pub step: u32,
}

/// [`Event::SessionReset`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResetEvent {
    /// The session.
    pub session_id: String,
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
        }
    }
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Fans events out to callbacks and streams.
pub(crate) struct EventBus {
    callbacks: Mutex<Vec<(Option<EventKind>, Callback)>>,
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            callbacks: Mutex::new(Vec::new()),
            tx,
        }
    }

    pub(crate) fn add(&self, kind: Option<EventKind>, f: Callback) {
        if let Ok(mut cbs) = self.callbacks.lock() {
            cbs.push((kind, f));
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        let kind = event.kind();
        // Clone the list so a callback may register another callback without deadlocking.
        let callbacks: Vec<Callback> = match self.callbacks.lock() {
            Ok(cbs) => cbs
                .iter()
                .filter(|(k, _)| k.is_none_or(|k| k == kind))
                .map(|(_, f)| Arc::clone(f))
                .collect(),
            Err(_) => Vec::new(),
        };
        for cb in callbacks {
            // A panicking host callback must not take the agent down with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&event))).is_err() {
                tracing::error!(
                    "an event callback panicked on a {kind:?} event; the run continues"
                );
            }
        }
        // No receivers is fine: nobody subscribed.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        EventStream {
            inner: tokio_util::sync::ReusableBoxFuture::new(recv(self.tx.subscribe())),
        }
    }
}

/// An item of an [`EventStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// The next event.
    Event(Event),
    /// The stream fell behind and this many events were skipped.
    Lagged(u64),
}

async fn recv(
    mut rx: broadcast::Receiver<Event>,
) -> (Option<StreamItem>, broadcast::Receiver<Event>) {
    let item = match rx.recv().await {
        Ok(e) => Some(StreamItem::Event(e)),
        Err(broadcast::error::RecvError::Lagged(n)) => Some(StreamItem::Lagged(n)),
        Err(broadcast::error::RecvError::Closed) => None,
    };
    (item, rx)
}

/// An asynchronous stream of every event, from [`crate::AsyncRuntime::subscribe`]. Ends when the runtime is dropped.
pub struct EventStream {
    inner: tokio_util::sync::ReusableBoxFuture<
        'static,
        (Option<StreamItem>, broadcast::Receiver<Event>),
    >,
}

impl EventStream {
    /// The next item, or `None` once the runtime is gone.
    pub async fn next(&mut self) -> Option<StreamItem> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for EventStream {
    type Item = StreamItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        let (item, rx) = std::task::ready!(self.inner.poll(cx));
        self.inner.set(recv(rx));
        Poll::Ready(item)
    }
}
