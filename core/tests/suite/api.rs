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

#[tokio::test]
async fn subscribe_streams_every_event_in_order() {
    let dir = temp_workspace(&[("a.txt", "a\n")]);
    let server = ScriptedServer::start(vec![
        Turn::answer("Reading.\n\n```codepilot\nread_file(\"a.txt\")\n```"),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .build()
        .await
        .unwrap();
    let mut stream = rt.subscribe();
    rt.run("go").await.unwrap();
    let mut kinds = Vec::new();
    while let Ok(Some(item)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await
    {
        match item {
            StreamItem::Event(e) => kinds.push(e.kind()),
            StreamItem::Lagged(n) => panic!("lagged by {n}"),
        }
    }
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
    let server = ScriptedServer::start(vec![Turn::answer("hi")])
        .await
        .unwrap();
    let rt = builder(agent(
        &server,
        Wire::Anthropic,
        dir.path(),
        true,
        FILE_TOOLS,
    ))
    .build()
    .await
    .unwrap();
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
