//! The HTTP listener: token, origin and host checks, JSON-RPC over WebSocket, terminals, the page.

use std::time::Duration;

use codepilot_server::Daemon;
use codepilot_server::DaemonConfig;
use codepilot_server::Listen;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use futures_util::SinkExt;
use futures_util::StreamExt;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::support::DONE;
use super::support::agent_yaml;

const TOKEN: &str = "s3cret-token";

async fn daemon() -> (Daemon, std::net::SocketAddr, tempfile::TempDir) {
    let daemon = Daemon::start(DaemonConfig {
        token: Some(TOKEN.to_owned()),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let serving = daemon.clone();
    tokio::spawn(async move {
        serving
            .serve(vec![Listen::Ws("127.0.0.1:0".parse().unwrap())])
            .await
            .unwrap();
    });
    let addr = tokio::time::timeout(Duration::from_secs(5), daemon.http_addrs())
        .await
        .unwrap()[0];
    (daemon, addr, tempfile::tempdir().unwrap())
}

/// `GET path` over plain HTTP/1.1: (status, raw headers, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, origin: Option<&str>) -> Result<Ws, u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("{e}"),
    }
}

async fn call(ws: &mut Ws, id: i64, method: &str, params: Value) -> Value {
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if value["id"] == json!(id) && value.get("method").is_none() {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_listener_checks_token_origin_and_host() {
    let (_d, addr, _dir) = daemon().await;
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(
        connect(&format!("ws://{addr}/rpc"), None).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(&format!("ws://{addr}/rpc?token=wrong"), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        connect(
            &format!("ws://{addr}/rpc?token={TOKEN}"),
            Some("http://evil.example")
        )
        .await
        .err(),
        Some(403)
    );
    let rebinding = format!("ws://evil.example:{}/rpc?token={TOKEN}", addr.port());
    let mut request = format!("ws://{addr}/rpc?token={TOKEN}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "host",
        rebinding[5..].split('/').next().unwrap().parse().unwrap(),
    );
    let refused = tokio_tungstenite::connect_async(request)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403));
    let mut ws = connect(
        &format!("ws://{addr}/rpc?token={TOKEN}"),
        Some(&format!("http://{addr}")),
    )
    .await
    .unwrap();
    let init = call(&mut ws, 1, "initialize", json!({"client": {"name": "t"}})).await;
    assert_eq!(init["result"]["server"]["name"], "codepilot");
    let (_, _, page) = get(addr, "/").await;
    assert!(page.contains("<title>CodePilot</title>"));
    let (status, head, xterm) = get(addr, "/assets/vendor/xterm.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript; charset=utf-8"));
    assert!(xterm.len() > 100_000, "{}", xterm.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_over_websocket_and_a_terminal_in_binary_frames() {
    let (_d, addr, dir) = daemon().await;
    let model = ScriptedServer::start(vec![Turn::answer(DONE)])
        .await
        .unwrap();
    let mut request = format!("ws://{addr}/rpc").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut rpc, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    call(&mut rpc, 1, "initialize", json!({"client": {"name": "t"}})).await;
    let started = call(
        &mut rpc,
        2,
        "session/start",
        json!({"agent": agent_yaml(&model, dir.path(), "")}),
    )
    .await;
    let session = started["result"]["session_id"].as_str().unwrap().to_owned();
    call(
        &mut rpc,
        3,
        "turn/start",
        json!({"session_id": session, "text": "finish"}),
    )
    .await;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), rpc.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if value["method"] == "turn/completed" {
            assert_eq!(value["params"]["outcome"]["status"], "completed");
            break;
        }
    }

    let mut term = connect(
        &format!("ws://{addr}/sessions/{session}/terminals/main?token={TOKEN}"),
        None,
    )
    .await
    .unwrap();
    let hello = tokio::time::timeout(Duration::from_secs(5), term.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
    assert!(hello["pid"].as_u64().unwrap() > 0);
    term.send(Message::text(json!({"resize": [100, 30]}).to_string()))
        .await
        .unwrap();
    term.send(Message::binary(
        b"echo from-the-browser-$((6*7))\r".to_vec(),
    ))
    .await
    .unwrap();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = term.next().await {
            if let Message::Binary(bytes) = msg {
                seen.extend_from_slice(&bytes);
                if String::from_utf8_lossy(&seen).contains("from-the-browser-42") {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "{}", String::from_utf8_lossy(&seen));
    let terminals = call(&mut rpc, 4, "terminal/list", json!({"session_id": session})).await;
    assert_eq!(terminals["result"]["terminals"][0]["cols"], 100);
    assert!(
        terminals["result"]["terminals"][0].get("attach").is_none(),
        "remote clients never get the terminal's socket and token"
    );
    assert_eq!(
        connect(
            &format!("ws://{addr}/sessions/nope/terminals/main?token={TOKEN}"),
            None
        )
        .await
        .err(),
        Some(404)
    );
}
