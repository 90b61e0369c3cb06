//! [`ScriptedServer`]: the axum server that replays [`Turn`]s and records what it was sent.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;

use crate::control;
use crate::turn::Turn;
use crate::turn::TurnKind;
use crate::wire::Wire;
use crate::wire::render;

/// A request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The request path, e.g. `/v1/messages`.
    pub path: String,
    /// Headers, names in lower case (repeated headers keep the last value).
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The header `name` (lower case), if present.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) turns: Mutex<VecDeque<Turn>>,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    /// Requests are kept for [`ScriptedServer::requests`] unless turned off (load tests).
    pub(crate) forget_requests: std::sync::atomic::AtomicBool,
    pub(crate) cancelled: AtomicUsize,
    /// `/v1/embeddings` answers 503 while set.
    pub(crate) embeddings_down: std::sync::atomic::AtomicBool,
    /// Spans posted to `/v1/traces`.
    pub(crate) spans: crate::otlp::Received,
    /// Nanoseconds spent serving requests, each from its arrival to the end of its response body.
    pub(crate) busy_nanos: AtomicU64,
}

/// Dimensions of the scripted embeddings.
pub const EMBEDDING_DIMS: usize = 64;

/// The scripted embedding of `text`: a bag of its lower-cased words hashed into [`EMBEDDING_DIMS`] buckets, so texts
/// sharing words are similar and the answer is the same every time.
#[must_use]
pub fn scripted_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; EMBEDDING_DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
    {
        let h = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        v[(h % EMBEDDING_DIMS as u64) as usize] += 1.0;
    }
    v
}

pub(crate) use codepilot_protocol::sync::lock;

/// A scripted model server on `127.0.0.1` with a random port, running inside the current tokio runtime until
/// dropped. Each request consumes the next [`Turn`]; with none left it answers HTTP 500 with the error message
/// `scripted server: no turns left`, so tests fail loudly.
///
/// Paths: `/v1/messages` is Anthropic, `/v1/chat/completions` is OpenAI, `/v1/embeddings` answers every request
/// with [`scripted_embedding`]s (no turn consumed; 503 while [`ScriptedServer::set_embeddings_down`]), `/v1/traces` is
/// an OTLP/HTTP protobuf trace receiver ([`ScriptedServer::spans`]), `/_testkit/…` are the [`control`] endpoints;
/// other paths get a 404 (without consuming a turn).
#[derive(Debug)]
pub struct ScriptedServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedServer {
    /// Binds and starts serving `turns` in order.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(turns: Vec<Turn>) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // Like a real provider's server: small streamed chunks go out at once instead of waiting (Nagle) for
        // the client's delayed ACK, which would add ~40 ms to every answer.
        // A socket that refuses the option still works, only slower.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let shared = Arc::new(Shared {
            turns: Mutex::new(turns.into()),
            ..Shared::default()
        });
        let app = Router::new()
            .nest("/_testkit", control::router())
            .fallback(handle)
            // Bodies as big as the OpenTelemetry Collector's OTLP/HTTP receiver takes (axum's default is 2 MiB).
            .layer(axum::extract::DefaultBodyLimit::max(20 << 20))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&shared),
                timed,
            ))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Serving only fails when the listener dies; there is nobody to report it to, and the test
            // then fails on its own with a connection error.
            let _served = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`. Anthropic clients use it as is (`/v1/messages`); OpenAI clients use
    /// `base_url() + "/v1"` (`/v1/chat/completions`).
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The time spent serving requests so far: the sum, over requests, of arrival to the end of the response body
    /// (reading the request, answering it, streaming the answer out). A benchmark subtracts it from its wall clock
    /// to get the client's own overhead.
    #[must_use]
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.shared.busy_nanos.load(Ordering::Relaxed))
    }

    /// Makes `/v1/embeddings` answer 503 (`true`) or work again (`false`).
    pub fn set_embeddings_down(&self, down: bool) {
        self.shared.embeddings_down.store(down, Ordering::Relaxed);
    }

    /// The spans posted to `/v1/traces` so far (point `observability.endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` at
    /// [`ScriptedServer::base_url`]).
    #[must_use]
    pub fn spans(&self) -> Vec<crate::ReceivedSpan> {
        self.shared.spans.all()
    }

    /// Waits until `done` holds for the spans received, at most `timeout`; returns them.
    pub async fn wait_for_spans(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&[crate::ReceivedSpan]) -> bool,
    ) -> Vec<crate::ReceivedSpan> {
        self.shared.spans.wait_for(timeout, done).await
    }

    /// Queues another turn after the remaining ones.
    pub fn push(&self, turn: Turn) {
        lock(&self.shared.turns).push_back(turn);
    }

    /// Stops keeping requests (a load test's thousands of growing bodies would dominate its memory);
    /// [`ScriptedServer::requests`] then returns only those received before.
    pub fn forget_requests(&self) {
        self.shared.forget_requests.store(true, Ordering::Relaxed);
    }

    /// How many turns have not been served yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        lock(&self.shared.turns).len()
    }

    /// How many delayed turns were abandoned because the client went away during the delay.
    #[must_use]
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Times each request from its arrival until its response body has been sent (or abandoned) into
/// [`Shared::busy_nanos`].
/// The control endpoints are not timed.
async fn timed(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_testkit/") {
        return next.run(request).await;
    }
    let arrived = Instant::now();
    let (parts, body) = next.run(request).await.into_parts();
    let body = TimedBody {
        inner: body,
        arrived,
        shared,
    };
    Response::from_parts(parts, Body::new(body))
}

/// A response body that adds the time since its request arrived to [`Shared::busy_nanos`] when it is dropped:
/// after its last chunk was written, or when the client went away.
/// Sizes and frames are the inner body's, so a whole answer keeps its `content-length`.
struct TimedBody {
    inner: Body,
    arrived: Instant,
    shared: Arc<Shared>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.arrived.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Counts a delayed turn as cancelled when the handler is dropped before the delay ends.
struct CancelGuard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if path == "/v1/traces" {
        return traces(&shared, &body);
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let recorded = RecordedRequest {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    };
    if !shared.forget_requests.load(Ordering::Relaxed) {
        lock(&shared.requests).push(recorded);
    }
    if path == "/v1/embeddings" {
        return embeddings(&shared, &body);
    }
    let wire = if path == "/v1/messages" {
        Wire::Anthropic
    } else if path == "/v1/chat/completions" {
        Wire::OpenAi
    } else {
        return json_response(
            404,
            None,
            &json!({"error": {"type": "not_found_error", "message": format!("scripted server: no route for {path}")}}),
        );
    };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let next = lock(&shared.turns).pop_front();
    let Some(mut turn) = next else {
        return error_response(wire, 500, None, "scripted server: no turns left");
    };
    loop {
        match turn.0 {
            TurnKind::Delay { ms, turn: inner } => {
                let mut guard = CancelGuard {
                    shared: Arc::clone(&shared),
                    armed: true,
                };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                guard.armed = false;
                turn = *inner;
            }
            TurnKind::Status { code, retry_after } => {
                return error_response(wire, code, retry_after, &format!("scripted status {code}"));
            }
            TurnKind::Answer(answer) => {
                let (content_type, body) = render(wire, &answer, stream, include_usage);
                return chunked(
                    200,
                    &content_type,
                    body.into_bytes(),
                    answer.chunk_bytes,
                    None,
                );
            }
            TurnKind::Disconnect { answer, bytes } => {
                let (content_type, body) = render(wire, &answer, stream, include_usage);
                let mut body = body.into_bytes();
                body.truncate(bytes);
                return chunked(200, &content_type, body, answer.chunk_bytes, Some(()));
            }
            TurnKind::Raw {
                status,
                content_type,
                body,
                chunk_bytes,
            } => return chunked(status, &content_type, body.into_bytes(), chunk_bytes, None),
        }
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An OTLP/HTTP export: decoded and kept; a body that is not one gets a 400.
fn traces(shared: &Shared, body: &[u8]) -> Response {
    match crate::otlp::decode(body) {
        Ok(spans) => {
            shared.spans.extend(spans);
            Response::builder()
                .status(200)
                .header("content-type", "application/x-protobuf")
                .body(axum::body::Body::empty())
                .unwrap_or_default()
        }
        Err(e) => json_response(
            400,
            None,
            &json!({"error": {"message": format!("not an OTLP ExportTraceServiceRequest: {e}")}}),
        ),
    }
}

fn embeddings(shared: &Shared, body: &Value) -> Response {
    if shared.embeddings_down.load(Ordering::Relaxed) {
        return json_response(
            503,
            None,
            &json!({"error": {"message": "scripted embeddings: down"}}),
        );
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => {
            return json_response(
                400,
                None,
                &json!({"error": {"message": "scripted embeddings: no input"}}),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(
            |(i, t)| json!({"object": "embedding", "index": i, "embedding": scripted_embedding(t)}),
        )
        .collect();
    json_response(
        200,
        None,
        &json!({"object": "list", "data": data, "model": body.get("model")}),
    )
}

fn json_response(code: u16, retry_after: Option<u64>, body: &Value) -> Response {
    let mut builder = Response::builder()
        .status(status_code(code))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(secs) = retry_after {
        builder = builder.header(header::RETRY_AFTER, secs.to_string());
    }
    builder
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::from("scripted server: bad response")))
}

fn error_response(wire: Wire, code: u16, retry_after: Option<u64>, message: &str) -> Response {
    let kind = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let body = match wire {
        Wire::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Wire::OpenAi => json!({"error": {"message": message, "type": kind, "code": null}}),
    };
    json_response(code, retry_after, &body)
}

/// Streams `body` in `chunk_bytes` pieces; with `drop_at_end`, ends with a transport error so the connection
/// is cut without a clean end of body.
fn chunked(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    chunk_bytes: usize,
    drop_at_end: Option<()>,
) -> Response {
    let items: Vec<Result<Bytes, io::Error>> = body
        .chunks(chunk_bytes.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let cut = drop_at_end.map(|()| async {
        // Give the server time to flush what was sent, so the client really receives the partial body.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "scripted disconnect",
        ))
    });
    let stream =
        futures_util::stream::iter(items).chain(futures_util::stream::iter(cut).then(|f| f));
    Response::builder()
        .status(status_code(status))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::from("scripted server: bad response")))
}
