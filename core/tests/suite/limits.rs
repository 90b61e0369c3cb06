//! Limits and structured results (SPEC §21), through the runtime against the scripted server over HTTP: a runaway
//! loop stopped by tokens, cost and wall time, limits kept across a resume, and completions held to a schema.

use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use codepilot::AgentFile;
use codepilot::Event;
use codepilot::LimitKind;
use codepilot::LimitScope;
use codepilot::Outcome;
use codepilot::RunLimits;
use codepilot::RunOptions;
use codepilot::StoreConfig;
use codepilot::protocol::Usage;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use serde_json::json;

use super::support::Recorder;
use super::support::builder;
use super::support::last_user_text;

/// An answer that works and never finishes.
const LOOP: &str = "Still going.\n```codepilot\nprint('working')\n```";

fn reported(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        calls: 1,
        ..Usage::default()
    }
}

/// An agent for `server` named `model`, with `model_extra` and `runtime_extra` lines (indented 4 spaces) in its
/// sections.
fn agent(
    server: &ScriptedServer,
    work: &Path,
    model: &str,
    model_extra: &str,
    runtime_extra: &str,
) -> AgentFile {
    let yaml = format!(
        "agent:\n  name: LimitPilot\n  model:\n    provider: anthropic\n    name: {model}\n    base_url: {}\n    \
         max_tokens: 200\n{model_extra}  runtime:\n    work_dir: {}\n    max_steps: 40\n{runtime_extra}",
        server.base_url(),
        serde_json::to_string(&work.display().to_string()).unwrap()
    );
    AgentFile::from_yaml_str(&yaml, Some(&work.join("agent.yaml"))).unwrap()
}

fn usage_events(rec: &Recorder) -> Vec<codepilot::events::UsageEvent> {
    rec.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Usage(u) => Some(*u),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_runaway_loop_stops_at_the_token_limit_without_going_over() {
    let work = tempfile::tempdir().unwrap();
    let turns = (0..30)
        .map(|_| Turn::answer(LOOP).with_usage(reported(3_000, 100)))
        .collect();
    let server = ScriptedServer::start(turns).await.unwrap();
    let rt = builder(agent(
        &server,
        work.path(),
        "test-model",
        "",
        "    limits: {max_total_tokens: 20000}\n",
    ))
    .build()
    .await
    .unwrap();
    let rec = Recorder::attach(&rt);
    let outcome = rt.run("loop forever").await.unwrap();
    let Outcome::LimitExceeded {
        limit,
        scope,
        max,
        spent,
        steps,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (limit, scope, max),
        (LimitKind::MaxTotalTokens, LimitScope::Run, 20_000.0)
    );
    let calls = usage_events(&rec).len();
    assert_eq!(
        u32::try_from(calls).unwrap(),
        steps,
        "one call per step taken"
    );
    assert!(calls >= 2, "{calls} calls");
    #[allow(clippy::cast_precision_loss)]
    let total = (calls as f64) * 3_100.0;
    assert_eq!(spent, total, "what the calls reported");
    assert!(spent <= max, "never over: {spent}");
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, Event::LimitWarning(w) if w.limit == LimitKind::MaxTotalTokens)),
        "a warning at 80 %"
    );
    assert_eq!(
        rt.last_spend().unwrap().tokens.total(),
        3_100 * calls as u64
    );
    assert_eq!(server.remaining(), 30 - calls, "no call after the stop");
}

#[tokio::test]
async fn cost_limits_use_the_agent_files_prices_or_the_built_in_table() {
    let work = tempfile::tempdir().unwrap();
    let turns = (0..30)
        .map(|_| Turn::answer(LOOP).with_usage(reported(3_000, 100)))
        .collect();
    let server = ScriptedServer::start(turns).await.unwrap();
    let rt = builder(agent(
        &server,
        work.path(),
        "my-finetune",
        "    pricing: {input_per_mtok: 3, output_per_mtok: 15}\n",
        "    limits: {max_cost_usd: 0.05}\n",
    ))
    .build()
    .await
    .unwrap();
    let rec = Recorder::attach(&rt);
    let outcome = rt.run("loop forever").await.unwrap();
    let Outcome::LimitExceeded {
        limit, spent, max, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(limit, LimitKind::MaxCostUsd);
    let usage = usage_events(&rec);
    let per_call = 3_000.0 * 3.0 / 1e6 + 100.0 * 15.0 / 1e6;
    assert!(
        (usage[0].cost_usd.unwrap() - per_call).abs() < 1e-12,
        "{:?}",
        usage[0]
    );
    assert!(
        spent <= max && spent > max - 2.0 * per_call,
        "{spent} of {max}"
    );
    let spend = rt.last_spend().unwrap();
    assert!((spend.cost_usd.unwrap() - spent).abs() < 1e-12);
    rt.close().await.unwrap();

    // No pricing in the file: the table's price for the model.
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\ndone\n```").with_usage(reported(1_000_000, 100_000)),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, work.path(), "claude-sonnet-4-5", "", ""))
        .build()
        .await
        .unwrap();
    rt.run("finish").await.unwrap();
    let spend = rt.last_spend().unwrap();
    assert!(
        (spend.cost_usd.unwrap() - (3.0 + 1.5)).abs() < 1e-9,
        "{spend:?}"
    );
}

#[test]
fn a_cost_limit_without_a_known_price_is_a_config_error() {
    let yaml = "agent:\n  name: A\n  model:\n    provider: anthropic\n    name: my-finetune\n  runtime:\n    \
                limits: {max_cost_usd: 1}\n";
    let err = AgentFile::from_yaml_str(yaml, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("runtime.limits.max_cost_usd"), "{err}");
    assert!(err.contains("model.pricing"), "{err}");
    let yaml = "agent:\n  name: A\n  model:\n    provider: anthropic\n    name: m\n    pricing: {input_per_mtok: 3}\n";
    let err = AgentFile::from_yaml_str(yaml, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.pricing.output_per_mtok"), "{err}");
    for (limits, wanted) in [
        (
            "session_limits: {max_wall_s: 60}",
            "runtime.session_limits.max_wall_s",
        ),
        (
            "limits: {max_wall_s: 18446744073709551615}",
            "at most 31536000 seconds",
        ),
        ("limits: {max_cost_usd: -1}", "0 or more"),
        ("limits: {max_tokens: 5}", "max_tokens"),
    ] {
        let yaml = format!(
            "agent:\n  name: A\n  model:\n    provider: anthropic\n    name: claude-sonnet-4-5\n  runtime:\n    {limits}\n"
        );
        let err = AgentFile::from_yaml_str(&yaml, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{limits}: {err}");
    }
}

#[tokio::test]
async fn the_wall_limit_stops_a_long_shell_command() {
    let work = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![Turn::answer(
        "```codepilot\nr = execute(\"main\", \"sleep 60\", timeout=120)\nprint(r[\"status\"])\n```",
    )])
    .await
    .unwrap();
    let rt = builder(agent(&server, work.path(), "test-model", "", ""))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let options = RunOptions {
        limits: RunLimits {
            max_wall_s: Some(2),
            ..RunLimits::default()
        },
        output_schema: None,
        ..RunOptions::default()
    };
    let outcome = tokio::time::timeout(Duration::from_secs(30), rt.run_with("wait", &options))
        .await
        .expect("the wall limit ends the run")
        .unwrap();
    let Outcome::LimitExceeded { limit, spent, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(limit, LimitKind::MaxWallS);
    assert!(
        spent >= 2.0 && started.elapsed() < Duration::from_secs(15),
        "{spent}"
    );
    // The terminal is usable again: the next run's command runs.
    server.push(Turn::answer(
        "```codepilot\nprint(execute(\"main\", \"echo again\")[\"output\"])\n```",
    ));
    server.push(Turn::answer("```completion\nok\n```"));
    let outcome = rt.run("again").await.unwrap();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let bodies = server.requests();
    let fed_back = last_user_text(&bodies[bodies.len() - 1].body);
    assert!(fed_back.contains("again"), "{fed_back}");
    let history = bodies[1].body.to_string();
    assert!(
        history.contains("[stopped: the run's time limit (max_wall_s) was reached"),
        "the model reads why the command stopped, not that a person aborted it"
    );
}

#[tokio::test]
async fn session_limits_keep_counting_across_a_resume() {
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("sessions.db");
    let url = format!("sqlite:///{}", db.display());
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\none\n```").with_usage(reported(11_000, 100)),
        Turn::answer("```completion\ntwo\n```").with_usage(reported(11_000, 100)),
    ])
    .await
    .unwrap();
    let yaml_extra = "    session_limits: {max_total_tokens: 12000}\n";
    let open = || async {
        builder(agent(&server, work.path(), "test-model", "", yaml_extra))
            .session(StoreConfig::Sqlite { url: url.clone() })
            .session_id("counted")
            .build()
            .await
            .unwrap()
    };
    let rt = open().await;
    assert!(matches!(
        rt.run("first").await.unwrap(),
        Outcome::Completed { .. }
    ));
    rt.close().await.unwrap();
    let rt = open().await;
    let outcome = rt.run("second").await.unwrap();
    let Outcome::LimitExceeded {
        scope,
        spent,
        steps,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((scope, spent, steps), (LimitScope::Session, 11_100.0, 0));
    assert_eq!(server.remaining(), 1, "the second call was not made");
}

#[tokio::test]
async fn a_provider_that_reports_no_usage_is_counted_by_estimate() {
    let work = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\ndone\n```").with_usage(Usage::default()),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, work.path(), "claude-haiku-4-5", "", ""))
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    rt.run("finish").await.unwrap();
    let usage = usage_events(&rec);
    assert!(usage[0].estimated);
    assert!(
        usage[0].call.input_tokens > 1_000,
        "the system prompt alone: {:?}",
        usage[0]
    );
    assert!(usage[0].call.output_tokens > 0);
    let spend = rt.last_spend().unwrap();
    assert!(spend.estimated && spend.cost_usd.unwrap() > 0.0);
}

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "files": {"type": "integer", "minimum": 0},
            "summary": {"type": "string"}
        },
        "required": ["files", "summary"]
    })
}

#[tokio::test]
async fn structured_results_are_validated_refused_with_the_errors_and_retried() {
    let work = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\n{\"files\": 3, \"summary\": \"ok\"}\n```"),
        Turn::answer("```completion\nI changed three files.\n```"),
        Turn::answer("Here it is: three files."),
        Turn::answer("```completion\n{\"files\": -1}\n```"),
        Turn::answer("```completion\n{\"files\": 2, \"summary\": \"fixed\"}\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, work.path(), "test-model", "", ""))
        .build()
        .await
        .unwrap();
    let options = RunOptions {
        limits: RunLimits::default(),
        output_schema: Some(schema()),
        ..RunOptions::default()
    };
    // Valid the first time.
    let outcome = rt.run_with("count", &options).await.unwrap();
    assert_eq!(
        outcome.structured(),
        Some(&json!({"files": 3, "summary": "ok"}))
    );
    let first = server.requests();
    let task = last_user_text(&first[0].body);
    assert!(
        task.contains("valid against this JSON Schema") && task.contains("\"minimum\": 0"),
        "{task}"
    );

    // Prose, a reply without a completion block, then an invalid object: each refused with what is wrong (the
    // default three retries), then a valid one.
    let outcome = rt.run_with("count again", &options).await.unwrap();
    assert_eq!(
        outcome.structured(),
        Some(&json!({"files": 2, "summary": "fixed"}))
    );
    assert_eq!(outcome.steps(), 4);
    let bodies = server.requests();
    let after_prose = last_user_text(&bodies[2].body);
    assert!(
        after_prose.contains("[COMPLETION NOT ACCEPTED]") && after_prose.contains("not JSON"),
        "{after_prose}"
    );
    let after_reply = last_user_text(&bodies[3].body);
    assert!(
        after_reply.contains("no ```completion block"),
        "{after_reply}"
    );
    let after_invalid = last_user_text(&bodies[4].body);
    assert!(
        after_invalid.contains("at /files: -1 is less than the minimum of 0"),
        "{after_invalid}"
    );
    assert!(
        after_invalid.contains("\"summary\" is a required property"),
        "{after_invalid}"
    );
}

#[tokio::test]
async fn a_result_that_never_matches_ends_as_invalid_output() {
    let work = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(
        (0..5)
            .map(|i| Turn::answer(format!("```completion\n{{\"files\": \"{i}\"}}\n```")))
            .collect(),
    )
    .await
    .unwrap();
    let rt = builder(agent(
        &server,
        work.path(),
        "test-model",
        "",
        "    output_retries: 2\n",
    ))
    .build()
    .await
    .unwrap();
    let options = RunOptions {
        limits: RunLimits::default(),
        output_schema: Some(schema()),
        ..RunOptions::default()
    };
    let outcome = rt.run_with("count", &options).await.unwrap();
    let Outcome::InvalidOutput {
        errors,
        last,
        steps,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(steps, 3, "two refusals, then the end");
    assert_eq!(last, "{\"files\": \"2\"}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("is not of type \"integer\"")),
        "{errors:?}"
    );

    let bad = RunOptions {
        limits: RunLimits::default(),
        output_schema: Some(json!({"type": 12})),
        ..RunOptions::default()
    };
    let err = rt.run_with("count", &bad).await.unwrap_err();
    assert!(err.to_string().contains("output schema"), "{err}");
    assert!(err.is_config());
}
