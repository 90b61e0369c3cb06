//! One session in the daemon: its engine, its event log, its subscribers and the questions it is waiting on.
//!
//! Every event the engine emits is serialised once into the session's log (with the `turn/completed` and
//! `turn/failed` notifications between them). Subscribers never receive events pushed by the engine: each
//! subscription is a pump task that follows the log from its own position and writes into its connection's
//! bounded queue, so a slow or stuck client only falls behind — the session never waits for it — and a client that
//! reconnects with `after_seq` is replayed exactly what it missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot::AsyncRuntime;
use codepilot::BoxFuture;
use codepilot::Event;
use codepilot::EventEnvelope;
use codepilot::PermissionDecision;
use codepilot::PermissionRequest;
use codepilot_protocol::AskUserResponse;
use codepilot_protocol::TurnCompleted;
use codepilot_protocol::rpc::AskUserRequestParams;
use codepilot_protocol::rpc::McpLoginParams;
use codepilot_protocol::rpc::PermissionRequestParams;
use codepilot_protocol::rpc::RequestId;
use codepilot_protocol::rpc::RequestResolved;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::ServerNotification;
use codepilot_protocol::rpc::ServerRequest;
use codepilot_protocol::rpc::SubscriptionLagged;
use codepilot_protocol::rpc::TurnFailed;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::wire;
use codepilot_protocol::sync::lock;

/// A client subscribed to sessions: where a session's lines go. The daemon's connections implement it; a session
/// knows nothing else of them.
pub(crate) trait Subscriber: Send + Sync {
    /// Tells subscribers apart: one subscription per subscriber and session.
    fn id(&self) -> u64;
    /// Queues an event line, waiting while the subscriber's queue is full; `false` once it is gone.
    fn send_event(&self, line: Arc<str>) -> BoxFuture<'_, bool>;
    /// Queues a control line (a server request, a resolution, a lag notice) ahead of queued events.
    fn send_control(&self, line: Arc<str>);
    /// Resolves when the subscriber is gone.
    fn closed(&self) -> BoxFuture<'_, ()>;
}

/// One line of the session's log: an event (its `seq`), or a turn's end (the `seq` of the event before it).
struct LogEntry {
    seq: u64,
    is_event: bool,
    line: Arc<str>,
}

/// A subscriber, and what stops the pump that feeds it.
type Subscription = (Arc<dyn Subscriber>, CancellationToken);

/// A server request waiting for any subscriber's answer.
struct Pending {
    id: RequestId,
    line: Arc<str>,
    answer: Option<oneshot::Sender<Value>>,
}

/// What the session shares with its engine's handlers and its subscribers' pumps.
pub(crate) struct Shared {
    pub(crate) session_id: String,
    /// Where the session's earlier events are kept (those before `base_seq`, from before this daemon opened it).
    store: Arc<dyn codepilot::store::SessionStore>,
    /// The last event stored before the session was opened here; the log holds the ones after it.
    base_seq: u64,
    log: Mutex<Vec<LogEntry>>,
    /// The log's length, for pumps to wait on.
    len: watch::Sender<usize>,
    /// By subscriber id: the subscriber, and what stops its pump.
    subscribers: Mutex<HashMap<u64, Subscription>>,
    pending: Mutex<Vec<Pending>>,
    turn: Mutex<Option<String>>,
    started: Mutex<Option<oneshot::Sender<String>>>,
    next_request: Arc<AtomicU64>,
    request_timeout: Duration,
    stall_timeout: Duration,
}

impl Shared {
    pub(crate) fn new(
        session_id: String,
        (store, base_seq): (Arc<dyn codepilot::store::SessionStore>, u64),
        next_request: Arc<AtomicU64>,
        request_timeout: Duration,
        stall_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            session_id,
            store,
            base_seq,
            log: Mutex::new(Vec::new()),
            len: watch::Sender::new(0),
            subscribers: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            turn: Mutex::new(None),
            started: Mutex::new(None),
            next_request,
            request_timeout,
            stall_timeout,
        })
    }

    fn append(&self, seq: u64, is_event: bool, line: String) {
        let len = {
            let mut log = lock(&self.log);
            log.push(LogEntry {
                seq,
                is_event,
                line: line.into(),
            });
            log.len()
        };
        self.len.send_replace(len);
    }

    fn last_seq(&self) -> u64 {
        lock(&self.log)
            .iter()
            .rev()
            .find(|e| e.is_event)
            .map_or(0, |e| e.seq)
    }

    /// Logs an engine event; a `Start` also tells a waiting `turn/start` its turn id.
    pub(crate) fn on_envelope(&self, envelope: &EventEnvelope) {
        // A worker's start (SPEC §20) is not the session's turn starting.
        if let (Event::Start(_), Some(turn), None) =
            (&envelope.event, &envelope.turn_id, envelope.agent_id)
        {
            *lock(&self.turn) = Some(turn.clone());
            if let Some(tx) = lock(&self.started).take() {
                let _ = tx.send(turn.clone());
            }
        }
        let line = wire::notification(&ServerNotification::Event(envelope.clone()));
        self.append(envelope.seq, true, line);
    }

    /// A `turn/start` is about to run: the next `Start` event's turn id goes to the returned receiver.
    pub(crate) fn expect_start(&self) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        *lock(&self.started) = Some(tx);
        rx
    }

    /// The running turn's id.
    pub(crate) fn running_turn(&self) -> Option<String> {
        lock(&self.turn).clone()
    }

    /// The turn ended: `turn/completed` (or `turn/failed`) goes into the log.
    pub(crate) fn turn_ended(
        &self,
        turn_id: String,
        result: Result<(codepilot::Outcome, codepilot::Spend), RpcError>,
    ) {
        *lock(&self.turn) = None;
        let notification = match result {
            Ok((outcome, spend)) => ServerNotification::TurnCompleted(TurnCompleted {
                session_id: self.session_id.clone(),
                turn_id,
                outcome,
                spend,
            }),
            Err(error) => ServerNotification::TurnFailed(TurnFailed {
                session_id: self.session_id.clone(),
                turn_id,
                error,
            }),
        };
        self.append(self.last_seq(), false, wire::notification(&notification));
    }

    /// Subscribes `conn`: replays the log after `after_seq` (everything from now on when `None`), then follows it.
    /// A previous subscription of the same subscriber is replaced. Returns the newest `seq` at the start.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        conn: &Arc<dyn Subscriber>,
        after_seq: Option<u64>,
    ) -> u64 {
        let (start, last_seq) = {
            let log = lock(&self.log);
            let last = log
                .iter()
                .rev()
                .find(|e| e.is_event)
                .map_or(self.base_seq, |e| e.seq);
            let start = match after_seq {
                None => log.len(),
                Some(after) => log
                    .iter()
                    .position(|e| e.seq > after || (!e.is_event && e.seq == after))
                    .unwrap_or(log.len()),
            };
            (start, last)
        };
        let stop = CancellationToken::new();
        if let Some((_, old)) =
            lock(&self.subscribers).insert(conn.id(), (Arc::clone(conn), stop.clone()))
        {
            old.cancel();
        }
        let pending: Vec<Arc<str>> = lock(&self.pending)
            .iter()
            .map(|p| Arc::clone(&p.line))
            .collect();
        let stored_from = after_seq.filter(|&after| after < self.base_seq);
        tokio::spawn(pump(
            Arc::clone(self),
            Arc::clone(conn),
            (stored_from, start),
            stop,
            pending,
        ));
        last_seq
    }

    /// Whether the subscriber with id `conn_id` follows this session.
    pub(crate) fn is_subscribed(&self, conn_id: u64) -> bool {
        lock(&self.subscribers).contains_key(&conn_id)
    }

    /// Ends the subscription of the subscriber with id `conn_id`, if any.
    pub(crate) fn unsubscribe(&self, conn_id: u64) {
        if let Some((_, stop)) = lock(&self.subscribers).remove(&conn_id) {
            stop.cancel();
        }
    }

    /// Ends every subscription (the session closed).
    pub(crate) fn unsubscribe_all(&self) {
        for (_, (_, stop)) in lock(&self.subscribers).drain() {
            stop.cancel();
        }
    }

    /// Asks every subscriber `request`; the first answer wins, none within the timeout gives `None`.
    async fn ask(&self, request: ServerRequest) -> Option<Value> {
        self.ask_until(request, std::future::pending()).await
    }

    /// [`Shared::ask`], taken back (resolved for every client) when `withdrawn` completes first.
    async fn ask_until(
        &self,
        request: ServerRequest,
        withdrawn: impl Future<Output = ()>,
    ) -> Option<Value> {
        let id = RequestId::String(format!(
            "srv-{}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        ));
        let line: Arc<str> = wire::server_request(&id, &request).into();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).push(Pending {
            id: id.clone(),
            line: Arc::clone(&line),
            answer: Some(tx),
        });
        self.broadcast(&line);
        let answer = tokio::select! {
            answer = tokio::time::timeout(self.request_timeout, rx) => answer.ok().and_then(Result::ok),
            () = withdrawn => None,
        };
        self.resolve(&id, None);
        answer
    }

    /// `value` answers the server request `id` (from any subscriber); everyone is told it is resolved. An
    /// unknown or already answered id is ignored.
    pub(crate) fn resolve(&self, id: &RequestId, value: Option<Value>) {
        let removed = {
            let mut pending = lock(&self.pending);
            pending
                .iter()
                .position(|p| &p.id == id)
                .map(|i| pending.remove(i))
        };
        let Some(mut entry) = removed else { return };
        if let (Some(tx), Some(value)) = (entry.answer.take(), value) {
            let _ = tx.send(value);
        }
        let line: Arc<str> =
            wire::notification(&ServerNotification::RequestResolved(RequestResolved {
                session_id: self.session_id.clone(),
                request_id: id.clone(),
            }))
            .into();
        self.broadcast(&line);
    }

    /// Sends `line` to every subscriber, ahead of their queued events.
    fn broadcast(&self, line: &Arc<str>) {
        let subscribers: Vec<Arc<dyn Subscriber>> = lock(&self.subscribers)
            .values()
            .map(|(c, _)| Arc::clone(c))
            .collect();
        for conn in subscribers {
            conn.send_control(Arc::clone(line));
        }
    }

    /// Whether `id` is one of this session's open server requests.
    pub(crate) fn has_request(&self, id: &RequestId) -> bool {
        lock(&self.pending).iter().any(|p| &p.id == id)
    }
}

/// Follows the log for one subscriber from `start`; ends when stopped, when the connection goes, or when the
/// client stays stalled longer than the stall timeout (then it is told, and must resubscribe).
async fn pump(
    shared: Arc<Shared>,
    conn: Arc<dyn Subscriber>,
    (stored_from, mut next): (Option<u64>, usize),
    stop: CancellationToken,
    pending: Vec<Arc<str>>,
) {
    let mut len = shared.len.subscribe();
    let mut last_sent = 0;
    // Events from before this daemon opened the session come from the store first.
    if let Some(mut cursor) = stored_from {
        let id = session_id(&shared);
        'stored: while cursor < shared.base_seq {
            let page = match shared.store.load_events(&id, cursor, 256).await {
                Ok(page) if !page.is_empty() => page,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("replaying stored events of {}: {e}", shared.session_id);
                    break;
                }
            };
            for event in page {
                if event.seq > shared.base_seq {
                    break 'stored;
                }
                cursor = event.seq;
                let Some(line) = wire::stored_event(&event.body) else {
                    tracing::warn!(
                        "event {} of {} in the store is not JSON; it is left out of the replay",
                        event.seq,
                        shared.session_id
                    );
                    continue;
                };
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = conn.closed() => return,
                    sent = conn.send_event(line.into()) => if !sent { return },
                }
                last_sent = event.seq;
            }
        }
    }
    let mut pending = Some(pending);
    loop {
        let batch: Vec<(u64, bool, Arc<str>)> = {
            let log = lock(&shared.log);
            log[next.min(log.len())..]
                .iter()
                .take(256)
                .map(|e| (e.seq, e.is_event, Arc::clone(&e.line)))
                .collect()
        };
        for (seq, is_event, line) in batch {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = conn.closed() => return,
                sent = tokio::time::timeout(shared.stall_timeout, conn.send_event(line)) => match sent {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => {
                        lock(&shared.subscribers).remove(&conn.id());
                        conn.send_control(
                            wire::notification(&ServerNotification::SubscriptionLagged(SubscriptionLagged {
                                session_id: shared.session_id.clone(),
                                last_sent_seq: last_sent,
                            }))
                            .into(),
                        );
                        return;
                    }
                },
            }
            next += 1;
            if is_event {
                last_sent = seq;
            }
        }
        // After the replay, the questions the session is still waiting on.
        if let Some(pending) = pending.take() {
            for line in pending {
                conn.send_control(line);
            }
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = conn.closed() => return,
            changed = len.wait_for(|&l| l > next) => if changed.is_err() { return },
        }
    }
}

fn session_id(shared: &Shared) -> codepilot::store::SessionId {
    codepilot::store::SessionId::new(shared.session_id.clone())
        .unwrap_or_else(|_| codepilot::store::SessionId::generate())
}

/// Permission requests of one session, asked of its subscribers.
pub(crate) struct PermissionViaClients(pub(crate) Arc<Shared>);

impl codepilot::PermissionHandler for PermissionViaClients {
    fn decide<'a>(&'a self, request: &'a PermissionRequest) -> BoxFuture<'a, PermissionDecision> {
        Box::pin(async move {
            let params = PermissionRequestParams {
                session_id: self.0.session_id.clone(),
                turn_id: self.0.running_turn().unwrap_or_default(),
                tool: request.tool.clone(),
                args: request.args.clone(),
                description: request.description.clone(),
            };
            match self.0.ask(ServerRequest::Permission(params)).await {
                Some(value) => serde_json::from_value(value).unwrap_or(PermissionDecision::Deny {
                    reason: Some("the client's answer was not a permission decision".to_owned()),
                }),
                None => PermissionDecision::Deny {
                    reason: Some("no connected client answered in time".to_owned()),
                },
            }
        })
    }
}

/// `ask_user` of one session, asked of its subscribers.
pub(crate) struct AskViaClients(pub(crate) Arc<Shared>);

impl codepilot::AskUserHandler for AskViaClients {
    fn ask<'a>(&'a self, question: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let params = AskUserRequestParams {
                session_id: self.0.session_id.clone(),
                turn_id: self.0.running_turn().unwrap_or_default(),
                question: question.to_owned(),
                schema: None,
            };
            let value = self.0.ask(ServerRequest::AskUser(params)).await?;
            serde_json::from_value::<AskUserResponse>(value)
                .ok()?
                .answer
        })
    }

    /// An MCP server's form goes to the clients whole (`schema`); a client that answers with text only is asked
    /// field by field.
    fn elicit<'a>(&'a self, message: &'a str, schema: &'a Value) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async move {
            let params = AskUserRequestParams {
                session_id: self.0.session_id.clone(),
                turn_id: self.0.running_turn().unwrap_or_default(),
                question: message.to_owned(),
                schema: Some(schema.clone()),
            };
            let value = self.0.ask(ServerRequest::AskUser(params)).await?;
            match serde_json::from_value::<AskUserResponse>(value).ok()? {
                AskUserResponse {
                    content: Some(content),
                    ..
                } => Some(content),
                AskUserResponse {
                    answer: Some(_),
                    content: None,
                } => codepilot::elicit::by_questions(self, message, schema).await,
                AskUserResponse {
                    answer: None,
                    content: None,
                } => None,
            }
        })
    }
}

/// The OAuth logins of one session's MCP servers, shown by its subscribers (`mcp/login`): the URL goes out at once
/// and the login waits for the browser's return on the daemon's loopback address, whatever the clients answer; the
/// request is taken back when the login ends.
pub(crate) struct LoginViaClients {
    shared: Arc<Shared>,
    /// The logins being shown, by server: completing one takes its request back.
    shown: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl LoginViaClients {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            shown: Mutex::default(),
        }
    }
}

impl codepilot::mcp::loopback::LoginHandler for LoginViaClients {
    fn open(&self, server: &str, url: &str) {
        let shared = Arc::clone(&self.shared);
        let request = ServerRequest::McpLogin(McpLoginParams {
            session_id: shared.session_id.clone(),
            server: server.to_owned(),
            url: url.to_owned(),
        });
        let (done, ended) = oneshot::channel();
        lock(&self.shown).insert(server.to_owned(), done);
        tokio::spawn(async move {
            shared
                .ask_until(request, async {
                    let _ = ended.await;
                })
                .await;
        });
    }

    fn finished(&self, server: &str) {
        if let Some(done) = lock(&self.shown).remove(server) {
            let _ = done.send(());
        }
    }
}

/// A session open in the daemon.
pub(crate) struct SessionHost {
    pub(crate) rt: AsyncRuntime,
    pub(crate) shared: Arc<Shared>,
    /// Held by a `turn/start` until its turn started (or failed to), so two never race for one turn.
    pub(crate) starting: tokio::sync::Mutex<()>,
}
