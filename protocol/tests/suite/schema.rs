//! The daemon protocol: its committed JSON Schema matches the Rust types, and messages look as SPEC §13 says.

use codepilot_protocol::rpc::ClientRequest;
use codepilot_protocol::rpc::ProtocolMessage;
use codepilot_protocol::rpc::ServerRequest;
use pretty_assertions::assert_eq;
use serde_json::json;

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.schema.json");

/// `value` with every object's keys sorted, so the comparison ignores key order.
fn canonical(value: &serde_json::Value) -> String {
    fn sort(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sort(&map[k])))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sort).collect())
            }
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sort(value)).unwrap() + "\n"
}

#[test]
fn the_committed_schema_matches_the_types() {
    let generated =
        canonical(&serde_json::to_value(schemars::schema_for!(ProtocolMessage)).unwrap());
    if std::env::var_os("CODEPILOT_UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(SCHEMA).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/protocol.schema.json is out of date with the protocol types: rerun with CODEPILOT_UPDATE_SCHEMA=1 \
         (cargo test -p codepilot-protocol schema), then regenerate ide/vscode/src/protocol.ts"
    );
}

#[test]
fn requests_parse_from_method_and_params() {
    let req: ClientRequest = serde_json::from_value(
        json!({"method": "turn/start", "params": {"session_id": "s", "text": "go"}}),
    )
    .unwrap();
    assert_eq!(req.method(), "turn/start");
    assert!(ClientRequest::METHODS.contains(&req.method()));
    let list: ClientRequest =
        serde_json::from_value(json!({"method": "session/list", "params": {}})).unwrap();
    assert_eq!(list.method(), "session/list");
    let bad = serde_json::from_value::<ClientRequest>(
        json!({"method": "turn/start", "params": {"session_id": "s", "txt": "go"}}),
    );
    assert!(bad.is_err(), "unknown fields are refused");
    let asked = serde_json::to_value(ServerRequest::AskUser(
        codepilot_protocol::rpc::AskUserRequestParams {
            session_id: "s".into(),
            turn_id: "t".into(),
            question: "which?".into(),
            schema: None,
        },
    ))
    .unwrap();
    assert_eq!(
        asked,
        json!({"method": "ask_user/request", "params": {"session_id": "s", "turn_id": "t", "question": "which?"}})
    );
    let login = serde_json::to_value(ServerRequest::McpLogin(
        codepilot_protocol::rpc::McpLoginParams {
            session_id: "s".into(),
            server: "linear".into(),
            url: "https://auth.example/authorize?state=x".into(),
        },
    ))
    .unwrap();
    assert_eq!(
        login,
        json!({"method": "mcp/login", "params": {"session_id": "s", "server": "linear", "url": "https://auth.example/authorize?state=x"}})
    );
    // A form's answer: the content; an old client's text answer still reads.
    let answered: codepilot_protocol::AskUserResponse =
        serde_json::from_value(json!({"content": {"name": "Ada"}})).unwrap();
    assert_eq!(answered.content, Some(json!({"name": "Ada"})));
    let text: codepilot_protocol::AskUserResponse =
        serde_json::from_value(json!({"answer": "yes"})).unwrap();
    assert_eq!((text.answer.as_deref(), text.content), (Some("yes"), None));
}
