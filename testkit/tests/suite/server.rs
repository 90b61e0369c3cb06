use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

/// A raw response: status line + headers (lower-cased) and the de-chunked body.
struct Raw {
    status: u16,
    head: String,
    body: String,
    /// Whether the chunked body ended with its terminating zero-size chunk.
    complete: bool,
}

async fn post(server: &ScriptedServer, path: &str, body: &Value) -> Raw {
    let addr = server.base_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let payload = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Test: Yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A dropped connection may end in a reset; keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let head = head.to_ascii_lowercase();
    let (body, complete) = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        (rest.to_owned(), true)
    };
    Raw {
        status,
        head,
        body,
        complete,
    }
}

fn dechunk(mut rest: &str) -> (String, bool) {
    let mut body = String::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (body, false);
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        if after.len() < size {
            body.push_str(after);
            return (body, false);
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

fn data_lines(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn anthropic_whole_and_streamed_answers() {
    let server = ScriptedServer::start(vec![
        Turn::answer("hello world"),
        Turn::answer("hello world").with_thinking("hmm"),
    ])
    .await
    .unwrap();
    let whole = post(&server, "/v1/messages", &json!({"model": "m"})).await;
    assert_eq!(whole.status, 200);
    let v: Value = serde_json::from_str(&whole.body).unwrap();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "hello world"}])
    );
    assert_eq!(v["usage"]["input_tokens"], json!(10));
    assert_eq!(v["stop_reason"], json!("end_turn"));

    let streamed = post(&server, "/v1/messages", &json!({"stream": true})).await;
    assert!(
        streamed.head.contains("content-type: text/event-stream"),
        "{}",
        streamed.head
    );
    assert!(streamed.complete);
    let events = data_lines(&streamed.body);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert!(kinds.contains(&"ping"));
    let text: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "hello world");
    let thinking: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "thinking_delta")
        .map(|e| e["delta"]["thinking"].as_str().unwrap())
        .collect();
    assert_eq!(thinking, "hmm");
    assert_eq!(events[0]["message"]["usage"]["input_tokens"], json!(10));
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["output_tokens"], json!(5));
    assert_eq!(server.remaining(), 0);
}

#[tokio::test]
async fn openai_stream_has_quirks_and_usage_only_on_request() {
    let server =
        ScriptedServer::start(vec![Turn::answer("abcdefghij"), Turn::answer("abcdefghij")])
            .await
            .unwrap();
    let with = post(
        &server,
        "/v1/chat/completions",
        &json!({"stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert!(with.body.contains(": keep-alive\n"));
    assert!(with.body.trim_end().ends_with("data: [DONE]"));
    let chunks = data_lines(&with.body);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "abcdefghij");
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], json!(10));
    let without = post(&server, "/v1/chat/completions", &json!({"stream": true})).await;
    assert!(
        data_lines(&without.body)
            .iter()
            .all(|c| c["usage"].get("prompt_tokens").is_none())
    );
}

#[tokio::test]
async fn statuses_disconnects_and_exhaustion() {
    let server = ScriptedServer::start(vec![
        Turn::status(429, Some(7)),
        Turn::disconnect_after("x".repeat(100), 30),
    ])
    .await
    .unwrap();
    let limited = post(&server, "/v1/chat/completions", &json!({})).await;
    assert_eq!(limited.status, 429);
    assert!(limited.head.contains("retry-after: 7"), "{}", limited.head);
    assert_eq!(
        serde_json::from_str::<Value>(&limited.body).unwrap()["error"]["type"],
        json!("rate_limit_error")
    );
    let cut = post(&server, "/v1/messages", &json!({"stream": true})).await;
    assert_eq!(cut.status, 200);
    assert!(!cut.complete, "the body must not end cleanly");
    assert_eq!(cut.body.len(), 30);

    let empty = post(&server, "/v1/messages", &json!({})).await;
    assert_eq!(empty.status, 500);
    assert!(
        empty.body.contains("scripted server: no turns left"),
        "{}",
        empty.body
    );
}

#[tokio::test]
async fn requests_are_recorded_and_turns_can_be_pushed() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    server.push(Turn::answer("late"));
    assert_eq!(server.remaining(), 1);
    let unknown = post(&server, "/v2/other", &json!({"a": 1})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(server.remaining(), 1, "a 404 consumes no turn");
    let ok = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(
        serde_json::from_str::<Value>(&ok.body).unwrap()["choices"][0]["message"]["content"],
        json!("late")
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v2/other");
    assert_eq!(reqs[0].body, json!({"a": 1}));
    assert_eq!(reqs[1].header("x-test"), Some("Yes"));
    assert_eq!(reqs[1].header("content-type"), Some("application/json"));
}
