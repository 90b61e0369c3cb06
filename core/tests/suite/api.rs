//! The public API surfaces: the async event stream, the blocking facade, the Anthropic cache layout.

use codepilot::Outcome;
use codepilot::Runtime;
use codepilot::events::StreamItem;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

use super::support::FILE_TOOLS;
use super::support::Wire;
use super::support::agent;
use super::support::builder;
use super::support::runtime_with;

#[tokio::test]
async fn subscribe_streams_every_event_in_order() {
    let dir = temp_workspace(&[("a.txt", "a\n")]);
    let (_server, rt) = runtime_with(
        vec![
            Turn::answer("Reading.\n\n```codepilot\nread_file(\"a.txt\")\n```"),
            Turn::answer("```completion\nok\n```"),
        ],
        Wire::OpenAi,
        dir.path(),
    )
    .await;
    let mut stream = rt.subscribe();
    rt.run("go").await.unwrap();
    let mut kinds = Vec::new();
    let mut seqs = Vec::new();
    while let Ok(Some(item)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await
    {
        match item {
            StreamItem::Event(e) => {
                assert_eq!(e.session_id, rt.session_id());
                assert_eq!(e.turn_id.as_deref(), Some("turn-1"), "{e:?}");
                kinds.push(e.event.kind());
                seqs.push(e.seq);
            }
            StreamItem::Lagged(n) => panic!("lagged by {n}"),
        }
    }
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "envelopes are numbered 1, 2, 3, … without gaps"
    );
    use codepilot::events::EventKind as K;
    let expected_prefix = [K::Start, K::Step];
    assert_eq!(&kinds[..2], &expected_prefix);
    let call = kinds.iter().position(|k| *k == K::ToolCall).unwrap();
    let result = kinds.iter().position(|k| *k == K::ToolResult).unwrap();
    assert!(call < result);
    assert_eq!(kinds.last(), Some(&K::Finish));
    assert_eq!(kinds.iter().filter(|k| **k == K::Step).count(), 2);
}

#[test]
fn the_blocking_runtime_runs_a_task_and_can_be_aborted_from_another_thread() {
    let dir = temp_workspace(&[]);
    // The scripted server needs a tokio runtime of its own, separate from the facade's.
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt
        .block_on(ScriptedServer::start(vec![
            Turn::answer("```completion\nblocking ok\n```"),
            Turn::delay(30_000, Turn::answer("late")),
        ]))
        .unwrap();
    let rt = Runtime::new(builder(agent(
        &server,
        Wire::Anthropic,
        dir.path(),
        true,
        FILE_TOOLS,
    )))
    .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    rt.on_event(move |e| sink.lock().unwrap().push(e.kind()));
    let outcome = rt.run("first").unwrap();
    assert_eq!(
        outcome,
        Outcome::Completed {
            structured: None,
            summary: "blocking ok".to_owned(),
            steps: 1
        }
    );
    let handle = rt.handle();
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        handle.abort();
    });
    let outcome = rt.run("second").unwrap();
    aborter.join().unwrap();
    assert_eq!(outcome, Outcome::Aborted { steps: 1 });
    assert!(
        seen.lock()
            .unwrap()
            .contains(&codepilot::events::EventKind::Aborted)
    );
    rt.close().unwrap();
    drop(server);
}

#[tokio::test]
async fn anthropic_requests_cache_the_static_prompt_and_send_the_step_separately() {
    let dir = temp_workspace(&[]);
    let (server, rt) = runtime_with(vec![Turn::answer("hi")], Wire::Anthropic, dir.path()).await;
    rt.run("hello").await.unwrap();
    let body = &server.requests()[0].body;
    let system = body["system"].as_array().unwrap();
    assert_eq!(system.len(), 2);
    assert!(system[0]["cache_control"].is_object());
    assert!(system[0]["text"].as_str().unwrap().contains("# TOOLS"));
    assert!(system[1].get("cache_control").is_none());
    assert!(system[1]["text"].as_str().unwrap().contains("Step: 1 of 6"));
    assert_eq!(body["stream"], true);
    assert!(matches!(
        rt.history().first().map(|m| m.content.clone()),
        Some(t) if t.starts_with("[Task 1]")
    ));
}

#[tokio::test]
async fn per_kind_callbacks_and_usage_accounting() {
    use codepilot::protocol::Usage;
    use std::sync::Arc;
    use std::sync::Mutex;

    let dir = temp_workspace(&[("a.txt", "a\n")]);
    let usage = Usage {
        input_tokens: 100,
        output_tokens: 20,
        ..Usage::default()
    };
    let server = ScriptedServer::start(vec![
        Turn::answer("Reading.\n\n```codepilot\nread_file(\"a.txt\")\n```").with_usage(usage),
        Turn::answer("```completion\ndone\n```").with_usage(usage),
    ])
    .await
    .unwrap();
    let url = format!("sqlite:///{}", dir.path().join("s.db").display());
    let rt = builder(agent(
        &server,
        Wire::Anthropic,
        dir.path(),
        true,
        FILE_TOOLS,
    ))
    .session(codepilot::StoreConfig::Sqlite { url: url.clone() })
    .session_id("usage-1")
    .build()
    .await
    .unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = Arc::clone(&log);
    rt.on_stream(move |s| l.lock().unwrap().push(format!("stream:{}", s.text)));
    let l = Arc::clone(&log);
    rt.on_step(move |s| l.lock().unwrap().push(format!("step:{}", s.step)));
    let l = Arc::clone(&log);
    rt.on_tool_call(move |c| l.lock().unwrap().push(format!("call:{}", c.tool)));
    let l = Arc::clone(&log);
    rt.on_tool_result(move |r| l.lock().unwrap().push(format!("result:{}", r.ok)));
    let l = Arc::clone(&log);
    rt.on_finish(move |f| l.lock().unwrap().push(format!("finish:{}", f.summary)));
    let l = Arc::clone(&log);
    rt.on(codepilot::events::EventKind::Usage, move |e| {
        if let codepilot::Event::Usage(u) = e {
            l.lock()
                .unwrap()
                .push(format!("usage:{}", u.total.input_tokens));
        }
    });
    // A panicking callback must not end the run.
    rt.on_step(|_| panic!("host bug"));
    rt.run("go").await.unwrap();
    let log = log.lock().unwrap().clone();
    let compact: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("stream:"))
        .collect();
    assert_eq!(
        compact,
        [
            "step:1",
            "usage:100",
            "call:read_file",
            "result:true",
            "step:2",
            "usage:200",
            "finish:done"
        ]
    );
    let streamed: String = log
        .iter()
        .filter_map(|l| l.strip_prefix("stream:"))
        .collect();
    assert_eq!(streamed.trim(), "Reading.");
    assert_eq!(rt.usage().input_tokens, 200);
    assert_eq!(rt.usage().output_tokens, 40);
    rt.close().await.unwrap();

    let resumed = builder(agent(
        &server,
        Wire::Anthropic,
        dir.path(),
        true,
        FILE_TOOLS,
    ))
    .session(codepilot::StoreConfig::Sqlite { url })
    .session_id("usage-1")
    .build()
    .await
    .unwrap();
    assert_eq!(
        resumed.usage().input_tokens,
        200,
        "usage totals survive a resume"
    );
    assert_eq!(resumed.usage().calls, 2);
    resumed.close().await.unwrap();
}

#[tokio::test]
async fn step_timeout_s_limits_a_control_block() {
    let dir = temp_workspace(&[]);
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwhile True:\n    pass\n```"),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let mut a = agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS);
    a.runtime.step_timeout_s = 1;
    let rt = builder(a).build().await.unwrap();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), rt.run("spin"))
        .await
        .expect("the block must be stopped by step_timeout_s")
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Completed { steps: 2, .. }),
        "{outcome:?}"
    );
    let obs = codepilot_testkit::last_user_text(&server.requests()[1].body);
    assert!(obs.contains("TimeoutError"), "{obs}");
}

/// The public methods of `impl TYPE` blocks in `file`, by name.
fn public_methods(file: &str, ty: &str) -> std::collections::BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("impl ") {
            inside = line == format!("impl {ty} {{");
        } else if inside && line == "}" {
            inside = false;
        } else if inside {
            let l = line.trim_start();
            let rest = l
                .strip_prefix("pub async fn ")
                .or_else(|| l.strip_prefix("pub fn "));
            if let Some(rest) = rest {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn the_blocking_runtime_has_every_method_of_the_async_one() {
    let async_methods = public_methods("src/runtime/mod.rs", "AsyncRuntime");
    let blocking_methods = public_methods("src/runtime/blocking.rs", "Runtime");
    assert!(
        async_methods.len() >= 20,
        "parsed too little: {async_methods:?}"
    );
    let missing: Vec<&String> = async_methods.difference(&blocking_methods).collect();
    assert!(
        missing.is_empty(),
        "Runtime lacks these AsyncRuntime methods: {missing:?}"
    );
    let extra: Vec<&String> = blocking_methods.difference(&async_methods).collect();
    assert_eq!(
        extra,
        ["block_on", "handle", "new"],
        "Runtime-only methods changed"
    );
}
