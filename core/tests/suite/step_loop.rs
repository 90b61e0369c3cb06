//! The step loop end to end: completion, replies, max steps, errors, abort, messages, both wire formats.

use std::time::Duration;

use codepilot::Event;
use codepilot::Outcome;
use codepilot::events::FinishReason;
use codepilot::protocol::Role;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

use super::support::BOTH;
use super::support::FILE_TOOLS;
use super::support::Recorder;
use super::support::Wire;
use super::support::agent;
use super::support::builder;
use super::support::last_user_text;
use super::support::run_then_abort;
use super::support::runtime_with;
use super::support::spawn_run;
use super::support::start;
use super::support::when;

const READ_THEN_COMPLETE: [&str; 2] = [
    "Reading the file.\n\n```codepilot\nread_file(\"hello.txt\")\n```\n",
    "Done.\n\n```completion\nThe file says hello.\n```\n",
];

#[tokio::test]
async fn completes_after_reading_a_file_in_both_wire_formats_streaming_and_not() {
    for wire in BOTH {
        for stream in [true, false] {
            let dir = temp_workspace(&[("hello.txt", "hello\nworld\n")]);
            let server = ScriptedServer::start(
                READ_THEN_COMPLETE
                    .iter()
                    .map(|a| Turn::answer(*a))
                    .collect(),
            )
            .await
            .unwrap();
            let rt = builder(agent(&server, wire, dir.path(), stream, FILE_TOOLS))
                .build()
                .await
                .unwrap();
            let rec = Recorder::attach(&rt);
            let outcome = rt.run("what does hello.txt say?").await.unwrap();
            assert_eq!(
                outcome,
                Outcome::Completed {
                    structured: None,
                    summary: "The file says hello.".to_owned(),
                    steps: 2
                },
                "{wire:?} stream={stream}"
            );
            let reqs = server.requests();
            assert_eq!(reqs.len(), 2, "{wire:?} stream={stream}");
            assert_eq!(reqs[0].body["stream"].as_bool().unwrap_or(false), stream);
            let first = last_user_text(&reqs[0].body);
            assert_eq!(first, "[Task 1][USER INPUT]\nwhat does hello.txt say?");
            let second = last_user_text(&reqs[1].body);
            assert!(
                second.starts_with("[EXECUTION RESULT]\n[read_file] 'hello.txt' (lines 1–2 of 2)"),
                "{second}"
            );
            assert!(second.contains("    1 | hello"), "{second}");
            assert!(
                rec.streamed_text().contains("Reading the file."),
                "{wire:?}"
            );
            assert!(
                !rec.streamed_text().contains("read_file("),
                "control block must not be streamed"
            );
            let finish = rec.events().into_iter().find_map(|e| match e {
                Event::Finish(f) => Some(f),
                _ => None,
            });
            assert_eq!(finish.unwrap().reason, FinishReason::Completed);
            let history = rt.history();
            assert_eq!(history.len(), 4);
            assert_eq!(history[3].role, Role::Assistant);
        }
    }
}

#[tokio::test]
async fn a_plain_answer_is_a_reply() {
    let dir = temp_workspace(&[]);
    let (server, rt, rec) = start(
        &["Hi! What should I work on?"],
        Wire::OpenAi,
        dir.path(),
        "",
    )
    .await;
    let outcome = rt.run("hello").await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Replied {
            text: "Hi! What should I work on?".to_owned(),
            steps: 1
        }
    );
    assert_eq!(server.requests().len(), 1);
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, Event::Finish(f) if f.reason == FinishReason::Replied))
    );
}

#[tokio::test]
async fn completion_without_a_control_block_finishes() {
    let dir = temp_workspace(&[]);
    let (_server, rt, _rec) = start(
        &["```completion\nNothing to do.\n```"],
        Wire::Anthropic,
        dir.path(),
        "",
    )
    .await;
    let outcome = rt.run("noop").await.unwrap();
    assert!(
        matches!(outcome, Outcome::Completed { ref summary, steps: 1, .. } if summary == "Nothing to do."),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn max_steps_stops_the_loop_and_counts_every_step() {
    let dir = temp_workspace(&[("a.txt", "x\n")]);
    let looping = "Again.\n\n```codepilot\nread_file(\"a.txt\")\n```\n";
    let server = ScriptedServer::start(vec![Turn::answer(looping); 10])
        .await
        .unwrap();
    let mut agent = agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS);
    agent.runtime.max_steps = 3;
    let rt = builder(agent).build().await.unwrap();
    let rec = Recorder::attach(&rt);
    let outcome = rt.run("loop").await.unwrap();
    assert_eq!(outcome, Outcome::MaxSteps { steps: 3 });
    assert_eq!(server.requests().len(), 3);
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, Event::MaxSteps(m) if m.steps == 3))
    );
}

#[tokio::test]
async fn parse_errors_are_fed_back_and_nothing_runs() {
    let dir = temp_workspace(&[]);
    let two_blocks = "```codepilot\nwrite_file(\"x.txt\")\n```\n\n```codepilot\nread_file(\"x.txt\")\n```\n\n```text filename=x.txt\nhi\n```\n";
    let (server, rt, rec) = start(
        &[two_blocks, "```completion\ngave up\n```"],
        Wire::OpenAi,
        dir.path(),
        "",
    )
    .await;
    rt.run("write x").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(
        obs.starts_with("[EXECUTION RESULT]\nPARSER ERROR:"),
        "{obs}"
    );
    assert!(
        !dir.path().join("x.txt").exists(),
        "nothing may run after a parse error"
    );
    assert!(rec.events().iter().any(
        |e| matches!(e, Event::RuntimeError(r) if r.kind == codepilot::events::ErrorKind::Parse)
    ));
}

#[tokio::test]
async fn execution_errors_name_the_line_and_keep_earlier_results() {
    let dir = temp_workspace(&[("a.txt", "alpha\n")]);
    let answer =
        "```codepilot\nread_file(\"a.txt\")\nundefined_tool(1)\n```\n\n```completion\nnope\n```\n";
    let (server, rt, _rec) = start(
        &[answer, "```completion\nok\n```"],
        Wire::OpenAi,
        dir.path(),
        "",
    )
    .await;
    let outcome = rt.run("go").await.unwrap();
    assert!(
        matches!(outcome, Outcome::Completed { steps: 2, .. }),
        "completion after a failed block must be refused: {outcome:?}"
    );
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("[read_file] 'a.txt'"), "{obs}");
    assert!(obs.contains("EXECUTION ERROR"), "{obs}");
    assert!(obs.contains("NameError"), "{obs}");
    assert!(obs.contains("undefined_tool(1)"), "{obs}");
}

#[tokio::test]
async fn print_output_interleaves_with_tool_results_in_call_order() {
    let dir = temp_workspace(&[("a.txt", "alpha\n")]);
    let answer = "```codepilot\nprint(\"before\")\nread_file(\"a.txt\")\nprint(\"after\")\n```\n";
    let (server, rt, _rec) = start(
        &[answer, "```completion\nok\n```"],
        Wire::OpenAi,
        dir.path(),
        "",
    )
    .await;
    rt.run("go").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    let before = obs.find("before").unwrap();
    let read = obs.find("[read_file]").unwrap();
    let after = obs.find("after").unwrap();
    assert!(before < read && read < after, "{obs}");
}

#[tokio::test]
async fn send_message_is_injected_at_the_next_step() {
    let dir = temp_workspace(&[("a.txt", "alpha\n")]);
    let (server, rt) = runtime_with(
        vec![
            Turn::answer("```codepilot\nread_file(\"a.txt\")\n```"),
            Turn::answer("```completion\nok\n```"),
        ],
        Wire::OpenAi,
        dir.path(),
    )
    .await;
    let rec = Recorder::attach(&rt);
    // Queued while step 1's block runs: it must reach the model at step 2.
    let host = rt.clone();
    rt.on_tool_call(move |_| host.send_message("please also check b.txt"));
    rt.run("go").await.unwrap();
    let second = last_user_text(&server.requests()[1].body);
    assert!(
        second.ends_with("[USER MESSAGE]\nplease also check b.txt"),
        "{second}"
    );
    let kinds: Vec<_> = rec.events().iter().map(Event::kind).collect();
    assert!(kinds.contains(&codepilot::events::EventKind::UserMessageQueued));
    assert!(kinds.contains(&codepilot::events::EventKind::UserMessageInjected));
}

#[tokio::test]
async fn abort_cancels_a_slow_model_call_promptly() {
    let dir = temp_workspace(&[]);
    let (_server, rt) = runtime_with(
        vec![Turn::delay(30_000, Turn::answer("late"))],
        Wire::Anthropic,
        dir.path(),
    )
    .await;
    let rec = Recorder::attach(&rt);
    // run_then_abort fails the test if the run does not end well before the 30 s answer would arrive.
    let asked = when(&rt, |e| matches!(e, Event::Step(_)));
    let outcome = run_then_abort(&rt, "slow", asked).await;
    assert_eq!(outcome, Outcome::Aborted { steps: 1 });
    assert!(rec.events().iter().any(|e| matches!(e, Event::Aborted(_))));
}

#[tokio::test]
async fn abort_stops_a_running_control_block() {
    let dir = temp_workspace(&[]);
    let spin = "```codepilot\nwhile True:\n    pass\n```";
    let (_server, rt, _rec) = start(&[spin], Wire::OpenAi, dir.path(), "").await;
    let answered = when(&rt, |e| matches!(e, Event::Usage(_)));
    let outcome = run_then_abort(&rt, "spin", answered).await;
    assert_eq!(outcome, Outcome::Aborted { steps: 1 });
    let history = rt.history();
    assert!(
        history
            .last()
            .unwrap()
            .content
            .contains("[aborted by the user]")
    );
}

#[tokio::test]
async fn a_second_concurrent_run_is_refused() {
    let dir = temp_workspace(&[]);
    let (_server, rt) = runtime_with(
        vec![Turn::delay(1_000, Turn::answer("hi"))],
        Wire::OpenAi,
        dir.path(),
    )
    .await;
    let started = when(&rt, |e| matches!(e, Event::Start(_)));
    let run = spawn_run(&rt, "one");
    started.await.unwrap();
    let err = rt.run("two").await.unwrap_err();
    assert!(matches!(err, codepilot::Error::Busy), "{err}");
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn provider_failures_end_the_run_with_an_error_and_no_step_is_lost() {
    let dir = temp_workspace(&[]);
    let (_server, rt) =
        runtime_with(vec![Turn::status(401, None)], Wire::Anthropic, dir.path()).await;
    let err = rt.run("go").await.unwrap_err();
    assert!(matches!(err, codepilot::Error::Provider(_)), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    // The task message is kept, so a retry continues the same task.
    assert_eq!(rt.history().len(), 1);
}

#[tokio::test]
async fn retries_after_429_and_500_are_transparent() {
    let dir = temp_workspace(&[]);
    let (_server, rt) = runtime_with(
        vec![
            Turn::status(429, Some(0)),
            Turn::status(500, None),
            Turn::answer("```completion\nok\n```"),
        ],
        Wire::OpenAi,
        dir.path(),
    )
    .await;
    let rec = Recorder::attach(&rt);
    let outcome = rt.run("go").await.unwrap();
    assert!(
        matches!(outcome, Outcome::Completed { steps: 1, .. }),
        "{outcome:?}"
    );
    let retries = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::ModelRetry(_)))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn the_task_counter_continues_across_runs() {
    let dir = temp_workspace(&[]);
    let (server, rt, _rec) = start(&["one", "two"], Wire::OpenAi, dir.path(), "").await;
    rt.run("first").await.unwrap();
    rt.run("second").await.unwrap();
    let second = last_user_text(&server.requests()[1].body);
    assert_eq!(second, "[Task 2][USER INPUT]\nsecond");
    assert_eq!(
        server.requests()[1].body["messages"]
            .as_array()
            .unwrap()
            .len()
            >= 3,
        true
    );
}

#[tokio::test]
async fn an_abort_right_after_run_starts_is_not_lost() {
    let dir = temp_workspace(&[]);
    let (_server, rt) = runtime_with(
        vec![Turn::delay(30_000, Turn::answer("late"))],
        Wire::OpenAi,
        dir.path(),
    )
    .await;
    let run = spawn_run(&rt, "go");
    tokio::task::yield_now().await;
    rt.abort();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Aborted { .. }), "{outcome:?}");
}

#[tokio::test]
async fn an_abort_while_idle_does_not_affect_the_next_run() {
    let dir = temp_workspace(&[]);
    let (_server, rt, _rec) = start(&["hello"], Wire::OpenAi, dir.path(), "").await;
    rt.abort();
    let outcome = rt.run("hi").await.unwrap();
    assert!(matches!(outcome, Outcome::Replied { .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_completion_is_refused_while_a_user_message_is_unread() {
    let dir = temp_workspace(&[("a.txt", "a\n")]);
    let (server, rt) = runtime_with(
        vec![
            Turn::answer("```codepilot\nread_file(\"a.txt\")\n```\n\n```completion\nfirst\n```"),
            Turn::answer("```completion\nsecond, with the message read\n```"),
        ],
        Wire::OpenAi,
        dir.path(),
    )
    .await;
    // Queued while the block before the completion runs: the completion must wait for it.
    let host = rt.clone();
    rt.on_tool_call(move |_| host.send_message("also check b.txt"));
    let outcome = rt.run("go").await.unwrap();
    assert!(
        matches!(outcome, Outcome::Completed { ref summary, steps: 2, .. } if summary.starts_with("second")),
        "{outcome:?}"
    );
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("[COMPLETION NOT ACCEPTED]"), "{obs}");
    assert!(obs.ends_with("[USER MESSAGE]\nalso check b.txt"), "{obs}");
}

#[tokio::test]
async fn terminal_events_follow_the_checkpoint_and_every_call_is_closed() {
    let dir = temp_workspace(&[]);
    let spin = "```codepilot\nask_user(\"wait?\")\n```";
    let server = ScriptedServer::start(vec![Turn::answer(spin)])
        .await
        .unwrap();
    let rt = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .ask_user_handler(|_q: String| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            None
        })
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    let asking = when(&rt, |e| matches!(e, Event::AskUser(_)));
    let outcome = run_then_abort(&rt, "ask", asking).await;
    assert_eq!(outcome, Outcome::Aborted { steps: 1 });
    let events = rec.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AskUser(a) if a.question == "wait?"))
    );
    let call = events.iter().find_map(|e| match e {
        Event::ToolCall(c) => Some(c.call_id.clone()),
        _ => None,
    });
    let closed = events.iter().find_map(|e| match e {
        Event::ToolResult(r) => Some((r.call_id.clone(), r.ok)),
        _ => None,
    });
    assert_eq!(closed, Some((call.unwrap(), false)));
    assert!(
        matches!(events.last(), Some(Event::Aborted(_))),
        "{:?}",
        events.last()
    );
    // The aborted step was stored before Aborted was announced.
    assert!(
        rt.history()
            .last()
            .unwrap()
            .content
            .contains("[aborted by the user]")
    );
}

#[tokio::test]
async fn reset_starts_a_new_session_and_close_refuses_further_runs() {
    let dir = temp_workspace(&[]);
    let (server, rt, rec) = start(&["one", "two"], Wire::OpenAi, dir.path(), "").await;
    rt.run("first").await.unwrap();
    let old = rt.session_id();
    let new = rt.reset().await.unwrap();
    assert_ne!(old, new);
    assert_eq!(rt.session_id(), new);
    assert!(rt.history().is_empty());
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, Event::SessionReset(r) if r.session_id == new))
    );
    rt.run("again").await.unwrap();
    assert_eq!(
        last_user_text(&server.requests()[1].body),
        "[Task 1][USER INPUT]\nagain"
    );
    assert_eq!(
        server.requests()[1].body["messages"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "system + the new task only"
    );
    rt.close().await.unwrap();
    let err = rt.run("after close").await.unwrap_err();
    assert!(matches!(err, codepilot::Error::Closed), "{err}");
}
