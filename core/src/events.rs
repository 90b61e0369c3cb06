//! Delivering events to hosts: callbacks and streams.
//!
//! The event types are the wire contract and live in `codepilot-protocol` (re-exported here). Every event the
//! runtime emits is numbered and wrapped in an [`EventEnvelope`] naming its session and turn. Events are delivered
//! two ways:
//! - synchronously to callbacks registered with [`crate::AsyncRuntime::on_event`] (or a per-kind helper such as
//!   [`crate::AsyncRuntime::on_stream`]), on the task that emitted the event; a callback must return quickly;
//! - asynchronously to any number of [`EventStream`]s from [`crate::AsyncRuntime::subscribe`], always in `seq`
//!   order; a stream that falls more than [`EVENT_BUFFER`] events behind skips ahead and is told how many it
//!   missed.
//!
//! Events emitted concurrently (a host's `send_message` while a step streams) may reach callbacks in a different
//! order than their `seq`; streams always see `seq` order.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;

pub use codepilot_protocol::AbortedEvent;
pub use codepilot_protocol::AskUserEvent;
pub use codepilot_protocol::ContextDropEvent;
pub use codepilot_protocol::ContextDropKind;
pub use codepilot_protocol::ContextMaintenanceEvent;
pub use codepilot_protocol::ErrorKind;
pub use codepilot_protocol::Event;
pub use codepilot_protocol::EventEnvelope;
pub use codepilot_protocol::EventKind;
pub use codepilot_protocol::FinishEvent;
pub use codepilot_protocol::FinishReason;
pub use codepilot_protocol::LimitWarningEvent;
pub use codepilot_protocol::MaxStepsEvent;
pub use codepilot_protocol::ModelRetryEvent;
pub use codepilot_protocol::PermissionRequestEvent;
pub use codepilot_protocol::ResourceKind;
pub use codepilot_protocol::ResourceLimitEvent;
pub use codepilot_protocol::RewoundEvent;
pub use codepilot_protocol::RuntimeErrorEvent;
pub use codepilot_protocol::SessionResetEvent;
pub use codepilot_protocol::StartEvent;
pub use codepilot_protocol::StepEvent;
pub use codepilot_protocol::StreamEvent;
pub use codepilot_protocol::StreamKind;
pub use codepilot_protocol::ToolCallEvent;
pub use codepilot_protocol::ToolResultEvent;
pub use codepilot_protocol::UsageEvent;
pub use codepilot_protocol::UserMessageEvent;
pub use codepilot_protocol::WorkspaceSavedEvent;
use futures_util::Stream;
use tokio::sync::broadcast;

/// How many events an [`EventStream`] may fall behind before it skips ahead.
pub const EVENT_BUFFER: usize = 4096;

type Callback = Arc<dyn Fn(&EventEnvelope) + Send + Sync>;

/// Where the next event goes: its session, its turn and its number.
struct Sequence {
    session_id: String,
    turn_id: Option<String>,
    last_seq: u64,
}

/// Numbers events and fans them out to callbacks and streams.
pub(crate) struct EventBus {
    callbacks: Mutex<Vec<(Option<EventKind>, Callback)>>,
    sequence: Mutex<Sequence>,
    tx: broadcast::Sender<EventEnvelope>,
}

impl EventBus {
    /// A bus for `session_id` whose next event is numbered `last_seq + 1` (events already stored keep theirs).
    pub(crate) fn new(session_id: String, last_seq: u64) -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            callbacks: Mutex::new(Vec::new()),
            sequence: Mutex::new(Sequence {
                session_id,
                turn_id: None,
                last_seq,
            }),
            tx,
        }
    }

    pub(crate) fn add(&self, kind: Option<EventKind>, f: Callback) {
        if let Ok(mut cbs) = self.callbacks.lock() {
            cbs.push((kind, f));
        }
    }

    /// Events from now on belong to `session_id`, numbered from 1 (after [`crate::AsyncRuntime::reset`]).
    pub(crate) fn start_session(&self, session_id: String) {
        if let Ok(mut seq) = self.sequence.lock() {
            *seq = Sequence {
                session_id,
                turn_id: None,
                last_seq: 0,
            };
        }
    }

    /// The session events belong to now.
    pub(crate) fn session_id(&self) -> String {
        self.sequence
            .lock()
            .map_or_else(|_| String::new(), |seq| seq.session_id.clone())
    }

    /// The number of the last event emitted (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.sequence.lock().map_or(0, |seq| seq.last_seq)
    }

    /// Events from now on belong to `turn_id` (`None`: between turns).
    pub(crate) fn set_turn(&self, turn_id: Option<String>) {
        if let Ok(mut seq) = self.sequence.lock() {
            seq.turn_id = turn_id;
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.emit_as(event, None);
    }

    /// Emits a worker's event in this session's sequence, marked with the worker's id and the turn that spawned it
    /// (SPEC §20), so a host sees one ordered stream with the tree in it.
    pub(crate) fn forward(&self, event: Event, agent_id: u32, parent: u32) {
        self.emit_as(event, Some((agent_id, parent)));
    }

    fn emit_as(&self, event: Event, worker: Option<(u32, u32)>) {
        let kind = event.kind();
        let envelope = {
            let Ok(mut seq) = self.sequence.lock() else {
                return;
            };
            seq.last_seq += 1;
            let envelope = EventEnvelope {
                session_id: seq.session_id.clone(),
                turn_id: seq.turn_id.clone(),
                seq: seq.last_seq,
                agent_id: worker.map(|(id, _)| id),
                parent: worker.map(|(_, parent)| parent),
                event,
            };
            // Sent under the lock so streams see `seq` order. No receivers is fine: nobody subscribed.
            let _ = self.tx.send(envelope.clone());
            envelope
        };
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
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&envelope))).is_err() {
                tracing::error!(
                    "an event callback panicked on a {kind:?} event; the run continues"
                );
            }
        }
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
    Event(EventEnvelope),
    /// The stream fell behind and this many events were skipped.
    Lagged(u64),
}

async fn recv(
    mut rx: broadcast::Receiver<EventEnvelope>,
) -> (Option<StreamItem>, broadcast::Receiver<EventEnvelope>) {
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
        (Option<StreamItem>, broadcast::Receiver<EventEnvelope>),
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
