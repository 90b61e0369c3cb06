//! The scripted server's control endpoints, for tests in other languages (the Python package's, through the
//! `codepilot-testkit` binary): queue turns as JSON and read back what the server received.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /_testkit/turns` | appends the turns in the body, a JSON array of [`TurnSpec`]s |
//! | `DELETE /_testkit/turns` | drops the turns not yet served |
//! | `GET /_testkit/requests` | the requests received so far: `[{"path", "headers", "body"}]` |
//! | `GET /_testkit/state` | `{"remaining", "requests", "cancelled", "busy_ms"}` (`busy_ms`: time spent serving model requests, as [`crate::ScriptedServer::busy`]) |

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use codepilot_protocol::Usage;
use serde::Deserialize;
use serde_json::Value;
use serde_json::json;

use crate::Shared;
use crate::Turn;
use crate::lock;

/// One turn as JSON: exactly one of `answer` and `status`, with optional details.
///
/// ```json
/// [{"answer": "Done.\n```completion\nok\n```"},
///  {"status": 429, "retry_after": 1},
///  {"answer": "slow", "delay_ms": 500, "thinking": "hmm", "input_tokens": 900}]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    /// The answer's text ([`Turn::answer`]).
    pub answer: Option<String>,
    /// An error status instead ([`Turn::status`]).
    pub status: Option<u16>,
    /// The `retry-after` seconds of a `status` turn.
    pub retry_after: Option<u64>,
    /// Send only this many bytes of the answer, then drop the connection ([`Turn::disconnect_after`]).
    pub disconnect_after_bytes: Option<usize>,
    /// Wait this long first ([`Turn::delay`]).
    pub delay_ms: Option<u64>,
    /// Reasoning text ([`Turn::with_thinking`]).
    pub thinking: Option<String>,
    /// Streamed chunk size in bytes ([`Turn::with_chunk_bytes`]).
    pub chunk_bytes: Option<usize>,
    /// Characters per text delta ([`Turn::with_piece_chars`]).
    pub piece_chars: Option<usize>,
    /// Reported input tokens (default 10).
    pub input_tokens: Option<u64>,
    /// Reported output tokens (default 5).
    pub output_tokens: Option<u64>,
    /// The stop reason ([`Turn::with_stop_reason`]).
    pub stop_reason: Option<String>,
}

impl TryFrom<TurnSpec> for Turn {
    type Error = String;

    fn try_from(spec: TurnSpec) -> Result<Self, String> {
        let mut turn = match (spec.answer, spec.status) {
            (Some(text), None) => match spec.disconnect_after_bytes {
                Some(bytes) => Turn::disconnect_after(text, bytes),
                None => Turn::answer(text),
            },
            (None, Some(code)) => Turn::status(code, spec.retry_after),
            (Some(_), Some(_)) => {
                return Err("a turn has either `answer` or `status`, not both".to_owned());
            }
            (None, None) => {
                return Err("a turn needs `answer` (text) or `status` (an HTTP code)".to_owned());
            }
        };
        if let Some(thinking) = spec.thinking {
            turn = turn.with_thinking(thinking);
        }
        if let Some(n) = spec.chunk_bytes {
            turn = turn.with_chunk_bytes(n);
        }
        if let Some(n) = spec.piece_chars {
            turn = turn.with_piece_chars(n);
        }
        if spec.input_tokens.is_some() || spec.output_tokens.is_some() {
            turn = turn.with_usage(Usage {
                input_tokens: spec.input_tokens.unwrap_or(10),
                output_tokens: spec.output_tokens.unwrap_or(5),
                ..Usage::default()
            });
        }
        if let Some(reason) = spec.stop_reason {
            turn = turn.with_stop_reason(reason);
        }
        if let Some(ms) = spec.delay_ms {
            turn = Turn::delay(ms, turn);
        }
        Ok(turn)
    }
}

/// The routes, nested under `/_testkit`.
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/turns",
            get(turns_unsupported).post(push_turns).delete(clear_turns),
        )
        .route("/requests", get(requests))
        .route("/state", get(state))
        .route("/spans", get(spans))
}

/// The spans posted to `/v1/traces` so far, as [`crate::ReceivedSpan`] JSON.
async fn spans(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.spans.all()))
}

fn bad_request(message: String) -> (StatusCode, Json<Value>) {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message })))
}

async fn push_turns(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let specs: Vec<TurnSpec> = match serde_json::from_slice(&body) {
        Ok(specs) => specs,
        Err(e) => return bad_request(format!("the body must be a JSON array of turns: {e}")),
    };
    let mut turns = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        match Turn::try_from(spec) {
            Ok(turn) => turns.push(turn),
            Err(e) => return bad_request(format!("turn {i}: {e}")),
        }
    }
    let mut queue = lock(&shared.turns);
    queue.extend(turns);
    (StatusCode::OK, Json(json!({ "remaining": queue.len() })))
}

async fn turns_unsupported() -> (StatusCode, Json<Value>) {
    bad_request("POST a JSON array of turns, or DELETE to drop the queued ones".to_owned())
}

async fn clear_turns(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mut queue = lock(&shared.turns);
    let dropped = queue.len();
    queue.clear();
    Json(json!({ "dropped": dropped }))
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let list: Vec<Value> = lock(&shared.requests)
        .iter()
        .map(|r| json!({ "path": r.path, "headers": r.headers, "body": r.body }))
        .collect();
    Json(Value::Array(list))
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "remaining": lock(&shared.turns).len(),
        "requests": lock(&shared.requests).len(),
        "cancelled": shared.cancelled.load(Ordering::SeqCst),
        "busy_ms": shared.busy_nanos.load(Ordering::Relaxed) as f64 / 1e6,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(json: &str) -> Result<Turn, String> {
        let spec: TurnSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Turn::try_from(spec)
    }

    #[test]
    fn specs_become_turns_and_bad_ones_say_why() {
        assert!(
            turn(r#"{"answer": "hi", "delay_ms": 5, "thinking": "t", "input_tokens": 7}"#).is_ok()
        );
        assert!(turn(r#"{"status": 429, "retry_after": 1}"#).is_ok());
        assert!(
            turn(r#"{"answer": "x", "status": 500}"#)
                .unwrap_err()
                .contains("not both")
        );
        assert!(turn("{}").unwrap_err().contains("needs `answer`"));
        assert!(
            turn(r#"{"answr": "typo"}"#)
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
