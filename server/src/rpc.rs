//! The JSON-RPC dispatcher: one line from a client in, its reply out. It reads the message, checks the envelope,
//! routes a request to its method and a client's answer to the session that asked; opening and closing sessions is
//! [`open`](crate::open)'s.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use codepilot::store::snapshot::Saved;
use codepilot_protocol::rpc::CheckpointsResult;
use codepilot_protocol::rpc::ClientInfo;
use codepilot_protocol::rpc::ClientRequest;
use codepilot_protocol::rpc::Empty;
use codepilot_protocol::rpc::ExportResult;
use codepilot_protocol::rpc::InitializeResult;
use codepilot_protocol::rpc::PROTOCOL_VERSION;
use codepilot_protocol::rpc::RawMessage;
use codepilot_protocol::rpc::RequestId;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::SessionListResult;
use codepilot_protocol::rpc::SessionStatus;
use codepilot_protocol::rpc::SessionSummary;
use codepilot_protocol::rpc::SnapshotResult;
use codepilot_protocol::rpc::SubscribeResult;
use codepilot_protocol::rpc::TerminalAttach;
use codepilot_protocol::rpc::TerminalInfo;
use codepilot_protocol::rpc::TerminalListResult;
use codepilot_protocol::rpc::TurnStartResult;
use codepilot_protocol::rpc::codes;

use crate::Daemon;
use crate::Reply;
use crate::engine_error;
use crate::ok;
use crate::session::Subscriber;
use crate::wire;
use codepilot_protocol::sync::lock;

/// A client connection as the dispatcher sees it.
pub(crate) struct Peer {
    /// Where the sessions it subscribes to send their lines.
    pub(crate) subscriber: Arc<dyn Subscriber>,
    initialized: bool,
    /// Sessions it subscribed to, to unsubscribe when it goes.
    sessions: HashSet<String>,
    /// A Unix-socket or stdio client, on this machine: it may attach to terminals' sockets directly.
    local: bool,
}

impl Peer {
    /// A connection that has not called `initialize` yet.
    pub(crate) fn new(subscriber: Arc<dyn Subscriber>, local: bool) -> Self {
        Self {
            subscriber,
            initialized: false,
            sessions: HashSet::new(),
            local,
        }
    }
}

impl Daemon {
    /// Handles one line from a connection; returns the response line, if the message wants one.
    pub(crate) async fn handle_line(&self, peer: &mut Peer, line: &str) -> Option<String> {
        let message: RawMessage = match serde_json::from_str(line) {
            Ok(m) => m,
            Err(e) => {
                let code = if serde_json::from_str::<serde_json::Value>(line).is_ok() {
                    codes::INVALID_REQUEST
                } else {
                    codes::PARSE_ERROR
                };
                return Some(wire::error(
                    None,
                    &RpcError::new(code, format!("not a JSON-RPC 2.0 message: {e}")),
                ));
            }
        };
        if message.jsonrpc != "2.0" {
            return Some(wire::error(
                message.id.as_ref(),
                &RpcError::new(codes::INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""),
            ));
        }
        match (message.id, message.method) {
            (Some(id), Some(method)) => {
                Some(match self.call(peer, &method, message.params).await {
                    Ok(result) => wire::response(&id, &result),
                    Err(error) => wire::error(Some(&id), &error),
                })
            }
            (Some(id), None) => {
                // A client's answer to one of our requests.
                self.answer(peer, &id, message.result);
                None
            }
            // Client notifications need no reply and change nothing here.
            (None, Some(_)) => None,
            (None, None) => Some(wire::error(
                None,
                &RpcError::new(
                    codes::INVALID_REQUEST,
                    "a message needs \"method\" or \"id\"",
                ),
            )),
        }
    }

    /// The connection is gone: its subscriptions end.
    pub(crate) fn disconnected(&self, peer: &mut Peer) {
        let id = peer.subscriber.id();
        for session in peer.sessions.drain() {
            if let Some(host) = self.open_session(&session) {
                host.shared.unsubscribe(id);
            }
        }
    }

    /// Subscribes `peer` to the open session `session_id`, replaying its events after `after_seq`; the newest
    /// `seq` at the start.
    fn subscribe(
        &self,
        peer: &mut Peer,
        session_id: &str,
        after_seq: Option<u64>,
    ) -> Result<u64, RpcError> {
        let host = self.host(session_id)?;
        peer.sessions.insert(session_id.to_owned());
        Ok(host.shared.subscribe(&peer.subscriber, after_seq))
    }

    /// Routes an answer to the session that asked (any session this connection subscribes to).
    fn answer(&self, peer: &Peer, id: &RequestId, value: Option<serde_json::Value>) {
        for session in &peer.sessions {
            if let Some(host) = self.open_session(session)
                && host.shared.has_request(id)
            {
                host.shared.resolve(id, value);
                return;
            }
        }
        tracing::debug!("an answer to unknown request {id:?}");
    }

    async fn call(
        &self,
        peer: &mut Peer,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Reply {
        let mut object = serde_json::Map::new();
        object.insert(
            "method".to_owned(),
            serde_json::Value::String(method.to_owned()),
        );
        object.insert(
            "params".to_owned(),
            params.unwrap_or_else(|| serde_json::json!({})),
        );
        let request: ClientRequest = match serde_json::from_value(serde_json::Value::Object(object))
        {
            Ok(r) => r,
            Err(e) if ClientRequest::METHODS.contains(&method) => {
                return Err(RpcError::new(
                    codes::INVALID_PARAMS,
                    format!("{method}: {e}"),
                ));
            }
            Err(_) => {
                return Err(RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    format!(
                        "unknown method {method:?}; the methods are {}",
                        ClientRequest::METHODS.join(", ")
                    ),
                ));
            }
        };
        if !peer.initialized && !matches!(request, ClientRequest::Initialize(_)) {
            return Err(RpcError::new(
                codes::NOT_INITIALIZED,
                "call initialize first",
            ));
        }
        match request {
            ClientRequest::Initialize(_) => {
                peer.initialized = true;
                ok(InitializeResult {
                    server: ClientInfo {
                        name: "codepilot".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    },
                    protocol: PROTOCOL_VERSION,
                })
            }
            ClientRequest::SessionStart(params) => {
                let started = self.start_session(&peer.subscriber, params).await?;
                peer.sessions.insert(started.session_id.clone());
                ok(started)
            }
            ClientRequest::SessionResume(params) => {
                let resumed = self.resume_session(&peer.subscriber, params).await?;
                peer.sessions.insert(resumed.session_id.clone());
                ok(resumed)
            }
            ClientRequest::SessionRead(p) => ok(self.read_session(&p.session_id).await?),
            ClientRequest::SessionSnapshot(p) => self.snapshot(&p.session_id).await,
            ClientRequest::SessionCheckpoints(p) => {
                let checkpoints = self
                    .host(&p.session_id)?
                    .rt
                    .checkpoints()
                    .await
                    .map_err(|e| engine_error(&e))?;
                ok(CheckpointsResult {
                    session_id: p.session_id,
                    checkpoints,
                })
            }
            ClientRequest::SessionExport(p) => {
                let mut jsonl = Vec::new();
                let stats = self
                    .host(&p.session_id)?
                    .rt
                    .export_trajectory(&mut jsonl)
                    .await
                    .map_err(|e| engine_error(&e))?;
                ok(ExportResult {
                    session_id: p.session_id,
                    jsonl: String::from_utf8_lossy(&jsonl).into_owned(),
                    messages: stats.messages,
                    events: stats.events,
                    files: stats.files,
                })
            }
            ClientRequest::SessionRewind(p) => {
                let rt = &self.host(&p.session_id)?.rt;
                let done = if p.dry_run {
                    rt.rewind_preview(&p.checkpoint, p.scope).await
                } else {
                    rt.rewind(&p.checkpoint, p.scope).await
                };
                ok(done.map_err(|e| engine_error(&e))?)
            }
            ClientRequest::SessionSubscribe(p) => {
                let last_seq = self.subscribe(peer, &p.session_id, p.after_seq)?;
                ok(SubscribeResult {
                    session_id: p.session_id,
                    last_seq,
                })
            }
            ClientRequest::SessionList(Empty {}) => self.list().await,
            ClientRequest::SessionClose(p) => {
                self.close_session(&p.session_id).await?;
                peer.sessions.remove(&p.session_id);
                ok(Empty {})
            }
            ClientRequest::TurnStart(p) => {
                let traceparent = match p.meta.and_then(|m| m.traceparent) {
                    Some(tp) => Some(tp.parse::<codepilot::telemetry::TraceParent>().map_err(
                        |e| RpcError::new(codes::INVALID_PARAMS, format!("_meta.traceparent: {e}")),
                    )?),
                    None => None,
                };
                let options = codepilot::RunOptions {
                    limits: p.limits.unwrap_or_default(),
                    output_schema: p.output_schema,
                    traceparent,
                };
                self.start_turn(&p.session_id, p.text, options).await
            }
            ClientRequest::TurnSteer(p) => {
                if p.limits.is_some() || p.output_schema.is_some() || p.meta.is_some() {
                    return Err(RpcError::new(
                        codes::INVALID_PARAMS,
                        "turn/steer takes session_id and text; limits, output_schema and _meta belong to turn/start",
                    ));
                }
                self.host(&p.session_id)?.rt.send_message(p.text);
                ok(Empty {})
            }
            ClientRequest::TurnInterrupt(p) => {
                self.host(&p.session_id)?.rt.abort();
                ok(Empty {})
            }
            ClientRequest::TerminalList(p) => self.terminals(&p.session_id, peer.local),
        }
    }

    async fn snapshot(&self, session_id: &str) -> Reply {
        match self.host(session_id)?.rt.snapshot().await {
            Ok(Some(Saved::Stored { info, .. })) => ok(SnapshotResult {
                snapshot: info.key,
                saved: true,
            }),
            Ok(Some(Saved::Unchanged { key })) => ok(SnapshotResult {
                snapshot: key,
                saved: false,
            }),
            Ok(None) => Err(RpcError::new(
                codes::SNAPSHOT_FAILED,
                "this daemon keeps no snapshots; start it with --snapshots file:///DIR or s3://BUCKET/PREFIX",
            )),
            Err(e) => Err(engine_error(&e)),
        }
    }

    /// The session's terminals; `local` clients are told how to attach to their sockets directly.
    fn terminals(&self, session_id: &str, local: bool) -> Reply {
        let host = self.host(session_id)?;
        let terminals = host
            .rt
            .terminals()
            .map(|t| {
                t.list()
                    .into_iter()
                    .map(|i| TerminalInfo {
                        attach: local.then(|| TerminalAttach {
                            socket: t
                                .socket_dir()
                                .join(format!("{}.sock", i.name))
                                .display()
                                .to_string(),
                            token: t.token().to_owned(),
                        }),
                        name: i.name,
                        pid: i.pid,
                        cols: i.cols,
                        rows: i.rows,
                    })
                    .collect()
            })
            .unwrap_or_default();
        ok(TerminalListResult { terminals })
    }

    async fn list(&self) -> Reply {
        let open: HashMap<String, SessionStatus> = lock(&self.inner.sessions)
            .iter()
            .map(|(id, h)| {
                let status = if h.shared.running_turn().is_some() {
                    SessionStatus::Running
                } else {
                    SessionStatus::Idle
                };
                (id.clone(), status)
            })
            .collect();
        let mut stored = self
            .inner
            .store
            .list()
            .await
            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?;
        stored.sort_by_key(|s| std::cmp::Reverse(s.meta.updated_at));
        let mut sessions: Vec<SessionSummary> = stored
            .into_iter()
            .map(|s| SessionSummary {
                status: open
                    .get(s.id.as_str())
                    .copied()
                    .unwrap_or(SessionStatus::Stored),
                session_id: s.id.to_string(),
                title: s.meta.title.unwrap_or_default(),
                updated_at: codepilot::store::rfc3339(s.meta.updated_at),
                runs_on: s.holder.map(|h| format!("{} (pid {})", h.host, h.pid)),
                snapshot: s.meta.snapshot,
            })
            .collect();
        sessions.sort_by_key(|s| s.status == SessionStatus::Stored);
        ok(SessionListResult { sessions })
    }

    async fn start_turn(
        &self,
        session_id: &str,
        text: String,
        options: codepilot::RunOptions,
    ) -> Reply {
        let host = self.host(session_id)?;
        let _starting = host.starting.lock().await;
        if host.shared.running_turn().is_some() {
            return Err(RpcError::new(
                codes::TURN_RUNNING,
                format!(
                    "session {session_id:?} is running a turn; steer it, interrupt it or wait for turn/completed"
                ),
            ));
        }
        let started = host.shared.expect_start();
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        let runner = Arc::clone(&host);
        tokio::spawn(async move {
            let result = runner.rt.run_with(&text, &options).await;
            let turn = runner.shared.running_turn();
            match (result, turn) {
                (Ok(outcome), Some(turn)) => {
                    let spend = runner.rt.last_spend().unwrap_or_default();
                    runner.shared.turn_ended(turn, Ok((outcome, spend)));
                }
                (Err(e), Some(turn)) => runner.shared.turn_ended(turn, Err(engine_error(&e))),
                // It never started: the caller gets the error.
                (Err(e), None) => {
                    let _ = failed_tx.send(engine_error(&e));
                }
                (Ok(_), None) => {}
            }
        });
        tokio::select! {
            biased;
            Ok(turn_id) = started => ok(TurnStartResult { turn_id }),
            Ok(error) = failed_rx => Err(error),
            else => Err(RpcError::new(codes::INTERNAL_ERROR, "the turn ended before it started")),
        }
    }
}
