//! Sub-agents (SPEC §20) through the runtime against the scripted server over HTTP: workers run concurrently,
//! report through `await_subagent`, and their events reach the parent's stream marked with their id.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use codepilot::EventEnvelope;
use codepilot::Outcome;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::agent;
use super::support::builder;
use super::support::last_user_text;

const WORKER_DONE: &str = "```completion\nworker done\n```";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_at_once_and_report_to_the_parent() {
    let work = tempfile::tempdir().unwrap();
    let block = "```codepilot\na = spawn_subagent(\"say hi\", context=\"be brief\")\nb = spawn_subagent(\"say hi too\")\nprint(await_subagent(a))\nprint(await_subagent(b))\nprint(list_subagents())\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(block),
        Turn::delay(1000, Turn::answer(WORKER_DONE)),
        Turn::delay(1000, Turn::answer(WORKER_DONE)),
        Turn::answer("```completion\nboth done\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, ""))
        .build()
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<EventEnvelope>>> = Arc::default();
    let sink = Arc::clone(&seen);
    rt.on_envelope(move |e| sink.lock().unwrap().push(e.clone()));
    let started = Instant::now();
    let outcome = rt.run("delegate").await.unwrap();
    let took = started.elapsed();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    assert!(
        took < Duration::from_millis(1900),
        "two 1 s workers took {took:?}: they did not run at once"
    );
    let bodies = server.requests();
    let observed = last_user_text(&bodies[bodies.len() - 1].body);
    assert!(observed.contains("Sub-agent #1 completed in"), "{observed}");
    assert!(observed.contains("Sub-agent #2 completed in"), "{observed}");
    assert!(observed.contains("Summary: worker done"), "{observed}");
    let worker_task = bodies
        .iter()
        .map(|b| b.body.to_string())
        .find(|b| b.contains("say hi") && b.contains("Context provided by main agent"))
        .expect("a worker got the task and its context");
    assert!(worker_task.contains("be brief"));

    let seen = seen.lock().unwrap();
    let kinds: Vec<(Option<u32>, String)> = seen
        .iter()
        .map(|e| {
            (
                e.agent_id,
                serde_json::to_value(&e.event).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    for id in [1, 2] {
        assert!(
            kinds.contains(&(None, "subagent_spawn".to_owned())),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&(Some(id), "start".to_owned())),
            "worker {id}'s own events: {kinds:?}"
        );
        assert!(
            kinds.contains(&(Some(id), "finish".to_owned())),
            "{kinds:?}"
        );
    }
    assert_eq!(
        kinds.iter().filter(|(_, k)| k == "subagent_finish").count(),
        2
    );
    // Callbacks may see two workers' concurrent events out of `seq` order (streams never do): the numbers, sorted,
    // are one sequence without gaps or repeats.
    let mut seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "one numbering for the tree"
    );
    assert!(
        seen.iter()
            .filter(|e| e.agent_id.is_some())
            .all(|e| e.parent == Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_asks_the_parent_and_continues_with_its_reply() {
    let work = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        // The parent starts the worker and gives it two seconds, in which it asks.
        Turn::answer("```codepilot\na = spawn_subagent(\"paint it\")\nprint(await_subagent(a, timeout=2))\n```"),
        Turn::answer("```codepilot\nprint(ask_main_agent(\"which color?\"))\n```"),
        Turn::answer("```codepilot\nreply_subagent(1, \"blue\")\nprint(await_subagent(1))\n```"),
        Turn::answer("```completion\npainted it blue\n```"),
        Turn::answer("```completion\ndone\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, ""))
        .build()
        .await
        .unwrap();
    let outcome = rt.run("delegate").await.unwrap();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let bodies = server.requests();
    let parent_step2 = bodies[2].body.to_string();
    assert!(
        parent_step2.contains("Timeout: sub-agent #1 did not finish within 2s."),
        "{parent_step2}"
    );
    assert!(
        parent_step2.contains("[Sub-Agent #1 →] which color?"),
        "{parent_step2}"
    );
    let worker_step2 = last_user_text(&bodies[3].body);
    assert!(
        worker_step2.contains("[ask_main_agent] A: blue"),
        "{worker_step2}"
    );
    let parent_end = last_user_text(&bodies[4].body);
    assert!(
        parent_end.contains("Summary: painted it blue"),
        "{parent_end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_workers_are_errors_in_the_block() {
    let work = tempfile::tempdir().unwrap();
    let block = "```codepilot\na = spawn_subagent(\"one\")\ntry:\n    spawn_subagent(\"two\")\nexcept RuntimeError as e:\n    print(\"refused:\", e)\ntry:\n    spawn_subagent(\"three\", tools=[\"teleport\"])\nexcept RuntimeError as e:\n    print(\"refused:\", e)\nprint(await_subagent(a))\n```";
    let worker = "```codepilot\ntry:\n    spawn_subagent(\"deeper\")\nexcept Exception as e:\n    print(\"nested:\", e)\n```\n```completion\nworker done\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(block),
        Turn::answer(worker),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let extra = "  subagents: {max_concurrent: 1}\n";
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, extra))
        .build()
        .await
        .unwrap();
    rt.run("delegate").await.unwrap();
    let bodies = server.requests();
    let parent = last_user_text(&bodies[2].body);
    assert!(
        parent.contains("refused: spawn_subagent(): 1 sub-agents are running, the most subagents.max_concurrent allows"),
        "{parent}"
    );
    assert!(
        parent.contains("unknown tool(s) for a sub-agent, or off for this agent: teleport"),
        "{parent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_parent_stops_its_workers_and_their_shells() {
    let work = tempfile::tempdir().unwrap();
    let marker = format!("101.{}", std::process::id() % 1000);
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\na = spawn_subagent(\"wait\")\nprint(await_subagent(a))\n```"),
        Turn::answer(format!(
            "```codepilot\nexecute(\"main\", \"sleep {marker}\", timeout=300)\n```"
        )),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, ""))
        .build()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    rt.on_envelope(move |e| {
        if e.agent_id.is_some()
            && matches!(&e.event, codepilot::Event::ToolCall(c) if c.tool == "execute")
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    });
    let run = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run("delegate").await })
    };
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the worker started its command")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let aborted = Instant::now();
    rt.abort();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the abort ends the run")
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Aborted { .. }), "{outcome:?}");
    // The worker's shell goes with it.
    let gone = loop {
        let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(&format!("sleep{}{marker}", '\0'))
            })
        });
        if !alive || aborted.elapsed() > Duration::from_secs(5) {
            break !alive;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(gone, "the worker's `sleep {marker}` is still running");
    assert!(
        aborted.elapsed() < Duration::from_secs(2),
        "{:?}",
        aborted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_another_model_with_only_the_tools_it_was_given() {
    let work = tempfile::tempdir().unwrap();
    let main = ScriptedServer::start(vec![
        Turn::answer("```codepilot\na = spawn_subagent(\"look\", tools=[\"read_file\"], model=\"fast\")\nprint(await_subagent(a))\n```"),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let fast = ScriptedServer::start(vec![Turn::answer(
        "```completion\nfrom the fast model\n```",
    )])
    .await
    .unwrap();
    let extra = format!(
        "  subagents:\n    models:\n      fast: {{provider: openai-compatible, name: fast-model, base_url: \"{}/v1\"}}\n",
        fast.base_url()
    );
    let rt = builder(agent(&main, Wire::Anthropic, work.path(), true, &extra))
        .build()
        .await
        .unwrap();
    rt.run("delegate").await.unwrap();
    let worker = fast.requests();
    assert_eq!(worker.len(), 1);
    assert_eq!(worker[0].body["model"], "fast-model");
    let system = codepilot_testkit::system_text(&worker[0].body);
    assert!(
        system.contains("• read_file(") && system.contains("• ask_main_agent("),
        "{system}"
    );
    assert!(
        !system.contains("• execute(") && !system.contains("• spawn_subagent("),
        "{system}"
    );
    let bodies = main.requests();
    assert!(last_user_text(&bodies[1].body).contains("Summary: from the fast model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_a_file_a_worker_changed_is_refused() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("shared.txt"), "first\n").unwrap();
    let parent = "```codepilot\nread_file(\"shared.txt\")\na = spawn_subagent(\"rewrite shared.txt\", tools=[\"write_file\"])\nprint(await_subagent(a))\nwrite_file(\"shared.txt\", mode=\"edit\", start_line=1, end_line=1)\n```\n\n```text filename=shared.txt\nfrom the parent\n```";
    let worker = "```codepilot\nwrite_file(\"shared.txt\")\n```\n\n```text filename=shared.txt\nfrom the worker\n```\n\n```completion\nrewrote it\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(parent),
        Turn::answer(worker),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, ""))
        .build()
        .await
        .unwrap();
    rt.run("delegate").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(work.path().join("shared.txt")).unwrap(),
        "from the worker\n"
    );
    let bodies = server.requests();
    let seen = last_user_text(&bodies[2].body);
    assert!(seen.contains("Files written: shared.txt"), "{seen}");
    assert!(
        seen.contains("'shared.txt' changed on disk since you last read it"),
        "the parent's edit by line number is refused: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_spend_counts_toward_the_parents_limits() {
    let work = tempfile::tempdir().unwrap();
    let costly = codepilot::protocol::Usage {
        input_tokens: 58_000,
        output_tokens: 100,
        calls: 1,
        ..codepilot::protocol::Usage::default()
    };
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nprint(await_subagent(spawn_subagent(\"read a lot\")))\n```"),
        Turn::answer(WORKER_DONE).with_usage(costly),
        Turn::answer("```completion\nnever asked for\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, ""))
        .build()
        .await
        .unwrap();
    let options = codepilot::RunOptions {
        limits: codepilot::RunLimits {
            max_total_tokens: Some(60_000),
            ..codepilot::RunLimits::default()
        },
        output_schema: None,
        ..codepilot::RunOptions::default()
    };
    let outcome = rt.run_with("delegate", &options).await.unwrap();
    let Outcome::LimitExceeded { spent, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        spent >= 58_100.0,
        "the worker's tokens are the run's: {spent}"
    );
    assert_eq!(server.remaining(), 1, "the parent's next call was not made");
    assert!(rt.last_spend().unwrap().tokens.total() >= 58_100);
}
