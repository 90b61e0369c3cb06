//! JSON-RPC lines as the daemon writes them. [`line`] writes every one — responses, errors, notifications, server
//! requests and replayed events — so each is `{"jsonrpc":"2.0", "id"?, …}` in the same way; the functions below
//! only say which members a kind of line has.

use codepilot_protocol::rpc::RequestId;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::ServerNotification;
use codepilot_protocol::rpc::ServerRequest;
use codepilot_protocol::rpc::codes;
use serde::Serialize;
use serde_json::value::RawValue;

/// One message on the wire: `"jsonrpc"`, the `id` when it has one, then the message's own members.
#[derive(Serialize)]
struct Envelope<'a, M> {
    jsonrpc: &'static str,
    /// Absent on notifications; `null` on an error answering a message whose id could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Option<&'a RequestId>>,
    #[serde(flatten)]
    message: M,
}

/// A successful response's member.
#[derive(Serialize)]
struct Success<'a, R> {
    result: &'a R,
}

/// An error response's member.
#[derive(Serialize)]
struct Failure<'a> {
    error: &'a RpcError,
}

/// An `event` notification whose params are already JSON (an event kept in the store).
#[derive(Serialize)]
struct StoredEvent<'a> {
    method: &'static str,
    params: &'a RawValue,
}

/// Writes one line: the only place a JSON-RPC message is put together. A message that cannot be encoded becomes
/// an internal error (answering the same id, if any), so the peer still hears something.
fn line(id: Option<Option<&RequestId>>, message: impl Serialize) -> String {
    serde_json::to_string(&Envelope {
        jsonrpc: "2.0",
        id,
        message,
    })
    .unwrap_or_else(|e| {
        let error = RpcError::new(
            codes::INTERNAL_ERROR,
            format!("the daemon could not encode a message: {e}"),
        );
        serde_json::json!({"jsonrpc": "2.0", "id": id.flatten(), "error": error}).to_string()
    })
}

/// A notification line.
pub(crate) fn notification(message: &ServerNotification) -> String {
    line(None, message)
}

/// An `event` notification of an event kept in the store (its envelope as stored JSON); `None` when the stored
/// text is not JSON.
pub(crate) fn stored_event(body: &str) -> Option<String> {
    let params: &RawValue = serde_json::from_str(body).ok()?;
    Some(line(
        None,
        StoredEvent {
            method: "event",
            params,
        },
    ))
}

/// A server request line with `id`.
pub(crate) fn server_request(id: &RequestId, message: &ServerRequest) -> String {
    line(Some(Some(id)), message)
}

/// A successful response line.
pub(crate) fn response(id: &RequestId, result: &impl Serialize) -> String {
    line(Some(Some(id)), Success { result })
}

/// An error response line (`id` null when the request could not be read).
pub(crate) fn error(id: Option<&RequestId>, error: &RpcError) -> String {
    line(Some(id), Failure { error })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use codepilot_protocol::rpc::RequestResolved;
    use serde_json::Value;
    use serde_json::json;

    use super::*;

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn every_kind_of_line_is_a_json_rpc_message() {
        let id = RequestId::Number(7);
        assert_eq!(
            parsed(&response(&id, &json!({"turn_id": "turn-1"}))),
            json!({"jsonrpc": "2.0", "id": 7, "result": {"turn_id": "turn-1"}})
        );
        let failed = RpcError::new(codes::UNKNOWN_SESSION, "no such session");
        assert_eq!(
            parsed(&error(Some(&id), &failed)),
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": 1001, "message": "no such session"}})
        );
        assert_eq!(
            parsed(&error(None, &failed)),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": 1001, "message": "no such session"}}),
            "an error to an unreadable request has a null id"
        );
        let resolved = ServerNotification::RequestResolved(RequestResolved {
            session_id: "s".to_owned(),
            request_id: RequestId::String("srv-1".to_owned()),
        });
        assert_eq!(
            parsed(&notification(&resolved)),
            json!({"jsonrpc": "2.0", "method": "serverRequest/resolved",
                   "params": {"session_id": "s", "request_id": "srv-1"}}),
            "a notification has no id"
        );
        let stored = stored_event(r#"{"session_id":"s","seq":3}"#).unwrap();
        assert_eq!(
            stored, r#"{"jsonrpc":"2.0","method":"event","params":{"session_id":"s","seq":3}}"#,
            "a stored event is sent as stored"
        );
        assert_eq!(stored_event("{not json"), None);
    }
}
