//! JSON-RPC lines as the daemon writes them.

use codepilot_protocol::rpc::RequestId;
use codepilot_protocol::rpc::RpcError;
use codepilot_protocol::rpc::ServerNotification;
use codepilot_protocol::rpc::ServerRequest;
use serde::Serialize;
use serde_json::Value;
use serde_json::json;

/// `{"method", "params"}` of `message` with `"jsonrpc": "2.0"` (and `id`) added.
fn envelope(message: &impl Serialize, id: Option<&RequestId>) -> String {
    let mut value = serde_json::to_value(message).unwrap_or_else(|e| {
        json!({"method": "internal/error", "params": {"message": format!("could not encode a message: {e}")}})
    });
    if let Value::Object(map) = &mut value {
        map.insert("jsonrpc".to_owned(), Value::String("2.0".to_owned()));
        if let Some(id) = id {
            map.insert(
                "id".to_owned(),
                serde_json::to_value(id).unwrap_or(Value::Null),
            );
        }
    }
    value.to_string()
}

/// A notification line.
pub(crate) fn notification(message: &ServerNotification) -> String {
    envelope(message, None)
}

/// A server request line with `id`.
pub(crate) fn server_request(id: &RequestId, message: &ServerRequest) -> String {
    envelope(message, Some(id))
}

/// A successful response line.
pub(crate) fn response(id: &RequestId, result: &impl Serialize) -> String {
    let result = serde_json::to_value(result).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// An error response line (`id` null when the request could not be read).
pub(crate) fn error(id: Option<&RequestId>, error: &RpcError) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
}
