//! Limits and structured results through the binary (SPEC §21): exit codes 5 and 6, what a run spent on stderr
//! and in `--json`, `--output-schema FILE`, the session's totals in `sessions show`, and the same over a daemon.

use codepilot::protocol::Usage;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::codepilot;
use super::support::json_lines;
use super::support::stderr;
use super::support::stdout;
use super::support::turns;
use super::support::write_agent;

fn reported(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        calls: 1,
        ..Usage::default()
    }
}

fn agent_with_prices(dir: &std::path::Path, server: &ScriptedServer) {
    // `write_agent` writes the model section first: give it prices by rewriting its name line.
    let path = write_agent(dir, server, Wire::Anthropic, true, "");
    let yaml = std::fs::read_to_string(&path).unwrap().replace(
        "    name: test-model\n",
        "    name: test-model\n    pricing: {input_per_mtok: 3, output_per_mtok: 15}\n",
    );
    std::fs::write(path, yaml).unwrap();
}

#[tokio::test]
async fn a_cost_limit_exits_5_and_the_spend_is_printed_and_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(
        (0..20)
            .map(|_| {
                Turn::answer("```codepilot\nprint('again')\n```").with_usage(reported(30_000, 100))
            })
            .collect(),
    )
    .await
    .unwrap();
    agent_with_prices(dir.path(), &server);
    // Each call costs $0.0915 and could cost $0.0614 more than its prompt (4,096 output tokens at $15): after two
    // calls, $0.183 of $0.20 is spent and a third could pass the limit, so it is not made.
    let out = codepilot(dir.path(), &["run", "--max-cost-usd", "0.2", "loop"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("stopped: the run's limit max_cost_usd was reached ($0.1830 of $0.2000)"),
        "{err}"
    );
    assert!(
        err.contains("spent 60200 tokens (in 60000 · out 200"),
        "{err}"
    );
    assert!(err.contains("· $0.1830 ·"), "{err}");

    let out = codepilot(
        dir.path(),
        &["run", "--json", "--max-total-tokens", "64000", "loop again"],
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let lines = json_lines(&out);
    let done = &turns(&lines)[0];
    assert_eq!(done["outcome"]["status"], "limit_exceeded");
    assert_eq!(done["outcome"]["limit"], "max_total_tokens");
    assert_eq!(done["spend"]["tokens"]["input_tokens"], 60_000);
    assert!(done["spend"]["cost_usd"].as_f64().unwrap() > 0.0);
    let usage: Vec<_> = lines
        .iter()
        .filter(|l| l["type"] == "event" && l["event"]["type"] == "usage")
        .collect();
    assert!((usage[0]["event"]["cost_usd"].as_f64().unwrap() - 0.0915).abs() < 1e-9);
    let warning = lines
        .iter()
        .find(|l| l["event"]["type"] == "limit_warning")
        .expect("80 % of the tokens were spent before the stop");
    assert_eq!(warning["event"]["spent"], 60_200.0);
}

#[tokio::test]
async fn an_output_schema_file_gives_json_on_stdout_or_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\nthree files\n```"),
        Turn::answer("```completion\n{\"files\": 3}\n```"),
        Turn::answer("```completion\n{\"files\": \"x\"}\n```"),
        Turn::answer("```completion\n{\"files\": \"y\"}\n```"),
    ])
    .await
    .unwrap();
    write_agent(
        dir.path(),
        &server,
        Wire::OpenAi,
        true,
        "    output_retries: 1\n",
    );
    std::fs::write(
        dir.path().join("schema.json"),
        r#"{"type": "object", "properties": {"files": {"type": "integer"}}, "required": ["files"]}"#,
    )
    .unwrap();
    let out = codepilot(
        dir.path(),
        &["run", "--output-schema", "schema.json", "count"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap(),
        serde_json::json!({"files": 3})
    );
    let out = codepilot(
        dir.path(),
        &[
            "run",
            "--json",
            "--output-schema",
            "schema.json",
            "count again",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let done = &turns(&json_lines(&out))[0];
    assert_eq!(done["outcome"]["status"], "invalid_output");
    assert_eq!(done["outcome"]["last"], "{\"files\": \"y\"}");

    let out = codepilot(
        dir.path(),
        &["run", "--max-wall-s", "18446744073709551615", "x"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--max-wall-s must be at most 31536000 seconds"),
        "{}",
        stderr(&out)
    );
    let out = codepilot(dir.path(), &["run", "--output-schema", "missing.json", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--output-schema missing.json"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn sessions_show_has_the_token_totals() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```completion\ndone\n```").with_usage(reported(1_200, 34)),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, true, "");
    let out = codepilot(
        dir.path(),
        &[
            "run",
            "--session",
            "file",
            "--session-id",
            "spent",
            "finish",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = codepilot(
        dir.path(),
        &["sessions", "show", "--session", "file", "spent"],
    )
    .await;
    assert!(
        stdout(&out).contains("tokens: 1234 in all over 1 model call(s) (in 1200 · out 34"),
        "{}",
        stdout(&out)
    );
}
