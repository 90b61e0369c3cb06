//! The HTTP listener (`ws://HOST:PORT`): JSON-RPC over WebSocket at `GET /rpc`, terminals at
//! `GET /sessions/{id}/terminals/{name}`, `GET /healthz`, and the web UI at `GET /`.
//!
//! Every WebSocket needs the daemon's token (`Authorization: Bearer T`, or `?token=T` for browsers, which cannot set
//! headers on a WebSocket), compared in constant time. A request with an `Origin` header must come from the
//! daemon's own page or an origin the operator allowed; on a loopback address the `Host` header must name it too,
//! so a web page elsewhere cannot reach the daemon through DNS rebinding.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::extract::ws::Message;
use axum::extract::ws::WebSocket;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

use crate::Daemon;
use crate::conn::Line;
use crate::conn::serve_messages;

/// What the handlers share.
pub(crate) struct WebState {
    pub(crate) daemon: Daemon,
    pub(crate) token: String,
    /// `Origin` values accepted besides the daemon's own.
    pub(crate) origins: Vec<String>,
    /// The address the listener is bound to.
    pub(crate) addr: SocketAddr,
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl WebState {
    /// The `Host` values that name this listener.
    fn own_hosts(&self) -> Vec<String> {
        let port = self.addr.port();
        let mut hosts = vec![self.addr.to_string(), format!("localhost:{port}")];
        if self.addr.ip().is_loopback() {
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        hosts
    }

    /// Refuses requests without the token, from foreign origins, or (on loopback) for foreign hosts.
    fn authorize(
        &self,
        headers: &HeaderMap,
        query: &TokenQuery,
    ) -> Result<(), (StatusCode, &'static str)> {
        let own = self.own_hosts();
        if self.addr.ip().is_loopback() {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !own.iter().any(|h| h == host) {
                return Err((StatusCode::FORBIDDEN, "unexpected Host header"));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let ours = own.iter().any(|h| origin == format!("http://{h}"));
            if !ours && !self.origins.iter().any(|o| o == origin) {
                return Err((
                    StatusCode::FORBIDDEN,
                    "origin not allowed (see --allow-origin)",
                ));
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let given = bearer.or(query.token.as_deref()).unwrap_or("");
        if constant_time_eq(given.as_bytes(), self.token.as_bytes()) {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, "missing or wrong token"))
        }
    }
}

/// The listener's routes.
pub(crate) fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/rpc", get(rpc))
        .route("/sessions/{id}/terminals/{name}", get(terminal))
        .merge(crate::ui::router())
        .with_state(state)
}

async fn rpc(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = state.authorize(&headers, &query) {
        return refused.into_response();
    }
    let max = state.daemon.config().max_message_bytes;
    let daemon = state.daemon.clone();
    // Frames up to twice the limit are read, so a too-large message gets a JSON-RPC error, not a dropped socket.
    ws.max_message_size(max.saturating_mul(2))
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let inbound = stream
                .take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_)) | Err(_))))
                .filter_map(|m| {
                    std::future::ready(match m {
                        Ok(Message::Text(text)) => Some(Ok(Line::Text(text.to_string()))),
                        Ok(Message::Binary(bytes)) => {
                            Some(Ok(Line::Text(String::from_utf8_lossy(&bytes).into_owned())))
                        }
                        _ => None,
                    })
                });
            let outbound = sink
                .sink_map_err(std::io::Error::other)
                .with(|line: String| {
                    std::future::ready(Ok::<_, std::io::Error>(Message::Text(line.into())))
                });
            serve_messages(daemon, Box::pin(inbound), Box::pin(outbound), false).await;
        })
}

#[derive(Deserialize)]
struct Resize {
    resize: (u16, u16),
}

async fn terminal(
    State(state): State<Arc<WebState>>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = state.authorize(&headers, &query) {
        return refused.into_response();
    }
    let Some(host) = state.daemon.open_session(&id) else {
        return (StatusCode::NOT_FOUND, "no such session in this daemon").into_response();
    };
    let Some(terminals) = host.rt.terminals() else {
        return (StatusCode::NOT_FOUND, "this session has no terminals").into_response();
    };
    let connection = match codepilot::terminal::client::connect(
        terminals.socket_dir(),
        &name,
        terminals.token(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            return (StatusCode::NOT_FOUND, format!("terminal {name:?}: {e}")).into_response();
        }
    };
    ws.on_upgrade(move |socket| async move {
        bridge(socket, connection, host, name).await;
    })
}

/// Raw PTY bytes both ways as binary frames; text frames carry JSON (the greeting, resizes).
async fn bridge(
    mut socket: WebSocket,
    connection: codepilot::terminal::client::Connection,
    host: Arc<crate::session::SessionHost>,
    name: String,
) {
    let hello = serde_json::json!({
        "pid": connection.hello.pid,
        "cols": connection.hello.cols,
        "rows": connection.hello.rows,
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let codepilot::terminal::client::Connection {
        mut reader,
        mut writer,
        ..
    } = connection;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if socket.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Ok(Resize { resize: (cols, rows) }) = serde_json::from_str::<Resize>(&text)
                        && let Some(terminals) = host.rt.terminals()
                        && let Err(e) = terminals.resize(&name, cols, rows)
                    {
                        let error = serde_json::json!({"error": e.to_string()});
                        let _ = socket.send(Message::Text(error.to_string().into())).await;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
