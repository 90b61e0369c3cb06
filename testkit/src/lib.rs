//! Test support for CodePilot: [`ScriptedServer`], an in-process HTTP model server that speaks both the
//! Anthropic Messages and the OpenAI Chat Completions wire formats and replays scripted [`Turn`]s, and
//! [`temp_workspace`]. Tests in other languages run it as the `codepilot-testkit` binary and script it over HTTP
//! (the [`control`] endpoints).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use codepilot_testkit::ScriptedServer;
//! use codepilot_testkit::Turn;
//! let server = ScriptedServer::start(vec![Turn::status(429, Some(1)), Turn::answer("hello")]).await?;
//! let anthropic_base = server.base_url(); // POST {base}/v1/messages
//! let openai_base = format!("{}/v1", server.base_url()); // POST {base}/chat/completions
//! # let _ = (anthropic_base, openai_base);
//! assert_eq!(server.remaining(), 2);
//! # Ok(()) }
//! ```
#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header;
use axum::response::Response;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use codepilot_protocol::Usage;
use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;

pub mod control;
pub mod moto;
pub use control::TurnSpec;

/// Default size of the byte chunks a streamed body is split into.
pub const DEFAULT_CHUNK_BYTES: usize = 7;
/// Default number of characters per text delta event.
pub const DEFAULT_PIECE_CHARS: usize = 5;

/// One scripted server response, consumed by one request.
#[derive(Debug, Clone)]
pub struct Turn(TurnKind);

#[derive(Debug, Clone)]
enum TurnKind {
    Answer(Answer),
    Status {
        code: u16,
        retry_after: Option<u64>,
    },
    Disconnect {
        answer: Answer,
        bytes: usize,
    },
    Delay {
        ms: u64,
        turn: Box<Turn>,
    },
    Raw {
        status: u16,
        content_type: String,
        body: String,
        chunk_bytes: usize,
    },
}

#[derive(Debug, Clone)]
struct Answer {
    text: String,
    thinking: Option<String>,
    usage: Usage,
    stop_reason: Option<String>,
    chunk_bytes: usize,
    piece_chars: usize,
}

impl Answer {
    fn new(text: String) -> Self {
        Self {
            text,
            thinking: None,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            stop_reason: None,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            piece_chars: DEFAULT_PIECE_CHARS,
        }
    }
}

impl Turn {
    /// A successful answer, in the wire format of the request path; streamed (SSE, several text deltas, split
    /// into [`DEFAULT_CHUNK_BYTES`]-byte chunks) when the request body has `"stream": true`, else one JSON body.
    /// Default usage: 10 input and 5 output tokens.
    #[must_use]
    pub fn answer(text: impl Into<String>) -> Self {
        Turn(TurnKind::Answer(Answer::new(text.into())))
    }

    /// An error status with an error JSON body in the request's wire format, and a `retry-after` header
    /// (seconds) when given.
    #[must_use]
    pub fn status(code: u16, retry_after: Option<u64>) -> Self {
        Turn(TurnKind::Status { code, retry_after })
    }

    /// Starts answering `text` (streamed or not, like [`Turn::answer`]), sends only the first `bytes` bytes of
    /// the body, then drops the connection without the terminal event.
    #[must_use]
    pub fn disconnect_after(text: impl Into<String>, bytes: usize) -> Self {
        Turn(TurnKind::Disconnect {
            answer: Answer::new(text.into()),
            bytes,
        })
    }

    /// Waits `ms` milliseconds before serving `turn`.
    #[must_use]
    pub fn delay(ms: u64, turn: Turn) -> Self {
        Turn(TurnKind::Delay {
            ms,
            turn: Box::new(turn),
        })
    }

    /// Serves `body` verbatim with the given status and content type, split into chunks like a stream; for
    /// testing a client against quirks the generated answers do not have.
    #[must_use]
    pub fn raw(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Turn(TurnKind::Raw {
            status,
            content_type: content_type.into(),
            body: body.into(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        })
    }

    fn answer_mut(&mut self) -> Option<&mut Answer> {
        match &mut self.0 {
            TurnKind::Answer(a) | TurnKind::Disconnect { answer: a, .. } => Some(a),
            TurnKind::Delay { turn, .. } => turn.answer_mut(),
            TurnKind::Status { .. } | TurnKind::Raw { .. } => None,
        }
    }

    /// Sets the byte size of streamed chunks (minimum 1). Applies to answers, disconnects and raw turns.
    #[must_use]
    pub fn with_chunk_bytes(mut self, n: usize) -> Self {
        let n = n.max(1);
        if let TurnKind::Raw { chunk_bytes, .. } = &mut self.0 {
            *chunk_bytes = n;
        } else if let Some(a) = self.answer_mut() {
            a.chunk_bytes = n;
        }
        self
    }

    /// Sets how many characters each text delta event carries (minimum 1).
    #[must_use]
    pub fn with_piece_chars(mut self, n: usize) -> Self {
        if let Some(a) = self.answer_mut() {
            a.piece_chars = n.max(1);
        }
        self
    }

    /// Adds reasoning text: Anthropic thinking blocks, or `reasoning_content` for OpenAI.
    #[must_use]
    pub fn with_thinking(mut self, thinking: impl Into<String>) -> Self {
        if let Some(a) = self.answer_mut() {
            a.thinking = Some(thinking.into());
        }
        self
    }

    /// Sets the reported token usage (`calls` is ignored). OpenAI reports `input + cache_read` as prompt
    /// tokens with `cache_read` as cached tokens; cache writes exist only in the Anthropic format.
    #[must_use]
    pub fn with_usage(mut self, usage: Usage) -> Self {
        if let Some(a) = self.answer_mut() {
            a.usage = usage;
        }
        self
    }

    /// Sets the stop reason (default `end_turn` for Anthropic, `stop` for OpenAI).
    #[must_use]
    pub fn with_stop_reason(mut self, reason: impl Into<String>) -> Self {
        if let Some(a) = self.answer_mut() {
            a.stop_reason = Some(reason.into());
        }
        self
    }
}

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
struct Shared {
    turns: Mutex<VecDeque<Turn>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Requests are kept for [`ScriptedServer::requests`] unless turned off (load tests).
    forget_requests: std::sync::atomic::AtomicBool,
    cancelled: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scripted model server on `127.0.0.1` with a random port, running inside the current tokio runtime until
/// dropped. Each request consumes the next [`Turn`]; with none left it answers HTTP 500 with the error message
/// `scripted server: no turns left`, so tests fail loudly.
///
/// Paths: `/v1/messages` is Anthropic, `/v1/chat/completions` is OpenAI, `/_testkit/…` are the [`control`]
/// endpoints; other paths get a 404 (without consuming a turn).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Anthropic,
    OpenAi,
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

/// Splits `text` into pieces of `n` characters.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn sse(out: &mut String, event: Option<&str>, data: &Value) {
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// Renders an answer as (content type, body).
fn render(wire: Wire, a: &Answer, stream: bool, include_usage: bool) -> (String, String) {
    match (wire, stream) {
        (Wire::Anthropic, true) => ("text/event-stream".into(), anthropic_sse(a)),
        (Wire::Anthropic, false) => ("application/json".into(), anthropic_json(a).to_string()),
        (Wire::OpenAi, true) => ("text/event-stream".into(), openai_sse(a, include_usage)),
        (Wire::OpenAi, false) => ("application/json".into(), openai_json(a).to_string()),
    }
}

fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    })
}

fn anthropic_sse(a: &Answer) -> String {
    let stop = a.stop_reason.as_deref().unwrap_or("end_turn");
    let mut out = String::new();
    let mut start_usage = anthropic_usage(&a.usage);
    start_usage["output_tokens"] = json!(1);
    sse(
        &mut out,
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": "scripted",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    );
    let mut index = 0;
    if let Some(thinking) = &a.thinking {
        sse(
            &mut out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}}),
        );
        for p in pieces(thinking, a.piece_chars) {
            sse(
                &mut out,
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": p}}),
            );
        }
        sse(
            &mut out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}}),
        );
        sse(
            &mut out,
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    sse(
        &mut out,
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
    );
    sse(&mut out, Some("ping"), &json!({"type": "ping"}));
    for p in pieces(&a.text, a.piece_chars) {
        sse(
            &mut out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}),
        );
    }
    sse(
        &mut out,
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": index}),
    );
    sse(
        &mut out,
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": a.usage.output_tokens}}),
    );
    sse(
        &mut out,
        Some("message_stop"),
        &json!({"type": "message_stop"}),
    );
    out
}

fn anthropic_json(a: &Answer) -> Value {
    let mut content = Vec::new();
    if let Some(thinking) = &a.thinking {
        content
            .push(json!({"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"}));
    }
    content.push(json!({"type": "text", "text": a.text}));
    json!({
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": "scripted",
        "content": content,
        "stop_reason": a.stop_reason.as_deref().unwrap_or("end_turn"),
        "stop_sequence": null,
        "usage": anthropic_usage(&a.usage),
    })
}

fn openai_usage(u: &Usage) -> Value {
    let prompt = u.input_tokens.saturating_add(u.cache_read_tokens);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt.saturating_add(u.output_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
    })
}

fn openai_chunk(delta: &Value, finish_reason: &Value, usage: &Value) -> Value {
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

/// An OpenAI stream with the quirks of compatible servers: `usage: {}` on the first chunk,
/// `finish_reason: ""` on content chunks and a `: keep-alive` comment.
fn openai_sse(a: &Answer, include_usage: bool) -> String {
    let stop = a.stop_reason.as_deref().unwrap_or("stop");
    let mut out = String::new();
    sse(
        &mut out,
        None,
        &openai_chunk(
            &json!({"role": "assistant", "content": ""}),
            &Value::Null,
            &json!({}),
        ),
    );
    out.push_str(": keep-alive\n\n");
    if let Some(thinking) = &a.thinking {
        for p in pieces(thinking, a.piece_chars) {
            sse(
                &mut out,
                None,
                &openai_chunk(&json!({"reasoning_content": p}), &Value::Null, &Value::Null),
            );
        }
    }
    for p in pieces(&a.text, a.piece_chars) {
        sse(
            &mut out,
            None,
            &openai_chunk(&json!({"content": p}), &json!(""), &Value::Null),
        );
    }
    sse(
        &mut out,
        None,
        &openai_chunk(&json!({}), &json!(stop), &Value::Null),
    );
    if include_usage {
        sse(
            &mut out,
            None,
            &json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                    "model": "scripted", "choices": [], "usage": openai_usage(&a.usage)}),
        );
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn openai_json(a: &Answer) -> Value {
    let mut message = json!({"role": "assistant", "content": a.text});
    if let Some(thinking) = &a.thinking {
        message["reasoning_content"] = json!(thinking);
    }
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": a.stop_reason.as_deref().unwrap_or("stop")}],
        "usage": openai_usage(&a.usage),
    })
}

/// A fresh folder outside the temporary folders a sandboxed shell may write (`/tmp`, `/var/tmp`, `/dev/shm`, the
/// system temp dir), for tests that check a write there is refused: under the current directory, unless that is
/// itself in a temporary folder (a checkout under `mktemp -d`); then under `/var/lib/codepilot-test` (made
/// world-readable, when this user may create it) or the home folder. Removed when dropped.
///
/// # Panics
/// When no such folder can be created.
#[must_use]
pub fn outside_temp_dir() -> tempfile::TempDir {
    #![allow(clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt as _;
    let temp_roots = [
        std::path::PathBuf::from("/tmp"),
        std::path::PathBuf::from("/var/tmp"),
        std::path::PathBuf::from("/dev/shm"),
        std::env::temp_dir(),
    ];
    let outside = |p: &std::path::Path| !temp_roots.iter().any(|t| p.starts_with(t));
    let shared = std::path::PathBuf::from("/var/lib/codepilot-test");
    let shared_ok = std::fs::create_dir_all(&shared).is_ok()
        && std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).is_ok();
    let base = std::env::current_dir()
        .ok()
        .into_iter()
        .chain(shared_ok.then_some(shared))
        .chain(std::env::var_os("HOME").map(std::path::PathBuf::from))
        .find(|p| outside(p))
        .expect(
            "a folder outside the temporary folders (the current directory, /var/lib or $HOME)",
        );
    tempfile::tempdir_in(&base).expect("creating a folder outside the temporary folders")
}

/// A temporary directory holding `files` (relative path, content); parent directories are created.
///
/// # Panics
/// When the directory or a file cannot be created, or a path is absolute or climbs out with `..`: this is a
/// test helper, and a broken fixture should stop the test.
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "test fixture: failing loudly is the point"
)]
pub fn temp_workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary workspace");
    for (rel, content) in files {
        let rel_path = std::path::Path::new(rel);
        assert!(
            rel_path.components().all(|c| matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )),
            "temp_workspace: `{rel}` must be a relative path inside the workspace"
        );
        let path = dir.path().join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create workspace directories");
        }
        std::fs::write(&path, content).expect("write a workspace file");
    }
    dir
}

/// `len` deterministic bytes that do not compress (xorshift from `seed`): file contents for archive tests and
/// benchmarks.
#[must_use]
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The text of the last user message of a recorded request body, in either wire format (string content or an
/// array of text blocks).
///
/// # Panics
/// If the body has no `messages` array or no user message: a test helper fails loudly.
#[allow(clippy::expect_used)]
#[must_use]
pub fn last_user_text(body: &Value) -> String {
    let msgs = body["messages"]
        .as_array()
        .expect("request has a messages array");
    let last = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .expect("request has a user message");
    content_text(&last["content"])
}

/// The system prompt of a recorded request body: Anthropic's `system` blocks, or OpenAI's system message.
#[must_use]
pub fn system_text(body: &Value) -> String {
    match &body["system"] {
        Value::Null => body["messages"]
            .as_array()
            .map(|msgs| {
                msgs.iter()
                    .filter(|m| m["role"] == "system")
                    .map(|m| content_text(&m["content"]))
                    .collect()
            })
            .unwrap_or_default(),
        other => content_text(other),
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}
