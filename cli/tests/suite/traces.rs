//! OpenTelemetry traces through the binary (SPEC §23): the span tree of a run with tools, an MCP server, a worker
//! and an error, as a collector receives it over OTLP/HTTP and gRPC; content only when asked; `TRACEPARENT` from the
//! caller parents the run and reaches the agent's shells; a collector that is down costs one warning.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use codepilot_testkit::OtlpGrpcReceiver;
use codepilot_testkit::ReceivedSpan;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::codepilot_with;
use super::support::stderr;
use super::support::write_agent;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn caller() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// The Python with the `mcp` SDK, as the MCP tests find it.
fn python() -> Option<std::path::PathBuf> {
    codepilot_testkit::service::fixture_path(
        "CODEPILOT_TEST_MCP_PYTHON",
        "run `bash scripts/mcp-fixtures.sh` and export its two lines as CODEPILOT_TEST_MCP_PYTHON and CODEPILOT_TEST_MCP_FS",
    )
}

fn mcp_server(python: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp/server.py");
    format!(
        "  mcp_servers:\n    - name: calc\n      command: {}\n      args: [{}, stdio]\n",
        python.display(),
        serde_json::to_string(&script.display().to_string()).unwrap()
    )
}

/// The parent's first block uses an MCP tool, a shell and a worker; its second fails; its third completes. The
/// worker's one answer comes between them (the parent waits for it).
fn script() -> Vec<Turn> {
    vec![
        Turn::answer(
            "Working.\n```codepilot\nprint(calc__add(a=2, b=3))\nprint(\"MCP-TP\", calc__traceparent())\nprint(execute(\"main\", \"echo TP=$TRACEPARENT\"))\nw = spawn_subagent(\"say hi\")\nprint(await_subagent(w))\n```",
        ),
        Turn::answer("```completion\nhi\n```"),
        Turn::answer("```codepilot\nread_file(\"missing.txt\")\n```"),
        Turn::answer("```completion\ndone\n```"),
    ]
}

fn by_id(spans: &[ReceivedSpan]) -> BTreeMap<&str, &ReceivedSpan> {
    spans.iter().map(|s| (s.span_id.as_str(), s)).collect()
}

fn parent_of<'a>(spans: &'a [ReceivedSpan], span: &ReceivedSpan) -> Option<&'a ReceivedSpan> {
    by_id(spans).get(span.parent_span_id.as_str()).copied()
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one {name} span expected: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_tools_mcp_a_worker_and_an_error_is_one_trace_under_the_caller() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(script()).await.unwrap();
    let extra = format!(
        "{}  observability:\n    endpoint: {}\n    service_name: traces-test\n",
        mcp_server(&python),
        server.base_url()
    );
    write_agent(dir.path(), &server, Wire::Anthropic, true, &extra);
    let tp = caller();
    let out = codepilot_with(
        dir.path(),
        &["run", "--session", "memory", "add and delegate"],
        &[("TRACEPARENT", tp.as_str())],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The process flushed its spans before it exited.
    let spans = server.spans();

    assert!(spans.iter().all(|s| s.trace_id == TRACE_ID), "{spans:#?}");
    assert!(spans.iter().all(|s| s.service == "traces-test"));
    let runs: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name.starts_with("invoke_agent "))
        .collect();
    assert_eq!(runs.len(), 2, "the run and the worker's: {spans:#?}");
    let run = runs
        .iter()
        .find(|s| s.attr("codepilot.agent_id").is_none())
        .unwrap();
    assert_eq!(
        run.parent_span_id, CALLER_SPAN,
        "the caller parents the run"
    );
    assert_eq!(
        run.attr("gen_ai.operation.name").as_deref(),
        Some("invoke_agent")
    );
    assert_eq!(run.attr("codepilot.outcome").as_deref(), Some("completed"));
    assert_eq!(run.attr("codepilot.steps").as_deref(), Some("3"));
    assert_eq!(run.attr("codepilot.turn_id").as_deref(), Some("turn-1"));

    // Steps hang under the run, model calls and blocks under steps, tool calls under blocks.
    let steps = named(&spans, "codepilot.step")
        .into_iter()
        .filter(|s| s.parent_span_id == run.span_id)
        .count();
    assert_eq!(steps, 3, "{spans:#?}");
    for chat in named(&spans, "chat test-model") {
        assert_eq!(parent_of(&spans, chat).unwrap().name, "codepilot.step");
        assert_eq!(chat.kind, "client");
        assert_eq!(chat.attr("gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(
            chat.attr("gen_ai.provider.name").as_deref(),
            Some("anthropic")
        );
        assert_eq!(
            chat.attr("gen_ai.request.model").as_deref(),
            Some("test-model")
        );
        assert!(
            chat.attributes["gen_ai.usage.input_tokens"]
                .as_i64()
                .unwrap()
                > 0
        );
        assert!(
            chat.attributes["gen_ai.usage.output_tokens"]
                .as_i64()
                .unwrap()
                > 0
        );
        assert!(chat.attributes["gen_ai.response.finish_reasons"].is_array());
        assert_eq!(chat.events, vec!["codepilot.model.first_token"]);
    }
    for tool in spans.iter().filter(|s| s.name.starts_with("execute_tool ")) {
        assert_eq!(parent_of(&spans, tool).unwrap().name, "codepilot.block");
    }
    let mcp_call = one(&spans, "execute_tool calc__add");
    assert_eq!(
        mcp_call.attr("gen_ai.tool.type").as_deref(),
        Some("extension")
    );
    let mcp = one(&spans, "tools/call add");
    assert_eq!(mcp.parent_span_id, mcp_call.span_id);
    assert_eq!(mcp.kind, "client");
    assert_eq!(mcp.attr("mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(mcp.attr("codepilot.mcp.server").as_deref(), Some("calc"));
    let shell = one(&spans, "execute_tool execute");
    assert_eq!(shell.attr("codepilot.exit_code").as_deref(), Some("0"));

    // The worker's run hangs under the call that spawned it.
    let spawn = one(&spans, "execute_tool spawn_subagent");
    let worker = runs
        .iter()
        .find(|s| s.attr("codepilot.agent_id").as_deref() == Some("1"))
        .unwrap();
    assert_eq!(worker.parent_span_id, spawn.span_id);
    assert_eq!(worker.name, "invoke_agent E2E-worker");
    assert_eq!(
        worker.attr("codepilot.outcome").as_deref(),
        Some("completed")
    );

    // The failing call and its block are marked.
    let read = one(&spans, "execute_tool read_file");
    assert_eq!(read.attr("error.type").as_deref(), Some("tool_error"));
    assert_eq!(
        read.error.as_deref(),
        Some(""),
        "the message is content: {read:?}"
    );
    assert_eq!(read.attr("codepilot.tool.ok").as_deref(), Some("false"));
    let failed_block = parent_of(&spans, read).unwrap();
    assert_eq!(
        failed_block.attr("codepilot.block.end").as_deref(),
        Some("failed")
    );
    assert_eq!(
        failed_block.error.as_deref(),
        Some("FileNotFoundError"),
        "the exception's type only"
    );

    // The session was stored under each step; the work dir's checkpoints are there too.
    assert!(named(&spans, "codepilot.save").len() >= 3);
    assert!(
        !named(&spans, "codepilot.checkpoint").is_empty(),
        "{spans:#?}"
    );

    // Content is off by default: no prompt, answer, arguments or results.
    for span in &spans {
        for key in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
        ] {
            assert!(!span.attributes.contains_key(key), "{key} on {span:?}");
        }
    }

    // The MCP server was given its call's span as the parent of whatever it traces.
    let mcp_trace = one(&spans, "tools/call traceparent");
    let observation = codepilot_testkit::last_user_text(&server.requests()[2].body);
    assert!(
        observation.contains(&format!("'00-{TRACE_ID}-{}-01'", mcp_trace.span_id)),
        "{observation}"
    );

    // The shell (started before the run, with the caller's TRACEPARENT in its environment) got the run's trace
    // context for the agent's command: its programs join the trace under the run.
    assert!(
        observation.contains(&format!("TP=00-{TRACE_ID}-{}-01", run.span_id)),
        "{observation}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_goes_into_spans_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\nwrite_file(\"a.txt\")\ntry:\n    read_file(\"nope.txt\")\nexcept Exception:\n    pass\n```\n\n```text filename=a.txt\nsecret plan\n```",
        ),
        Turn::answer("```completion\nwritten\n```"),
    ])
    .await
    .unwrap();
    let extra = format!(
        "  observability:\n    endpoint: {}\n    log_content: true\n",
        server.base_url()
    );
    write_agent(dir.path(), &server, Wire::OpenAi, true, &extra);
    let out = codepilot_with(
        dir.path(),
        &["run", "--session", "memory", "write the plan"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let spans = server.spans();
    let run = one(&spans, "invoke_agent E2E");
    assert!(run.parent_span_id.is_empty(), "no caller: a root span");
    assert!(
        run.attr("gen_ai.input.messages")
            .unwrap()
            .contains("write the plan")
    );
    let chats = named(&spans, "chat test-model");
    assert!(
        chats[0]
            .attr("gen_ai.input.messages")
            .unwrap()
            .contains("write the plan")
    );
    assert!(
        chats[0]
            .attr("gen_ai.system_instructions")
            .unwrap()
            .contains("codepilot")
    );
    assert!(
        chats[0]
            .attr("gen_ai.output.messages")
            .unwrap()
            .contains("secret plan")
    );
    let write = one(&spans, "execute_tool write_file");
    assert!(
        write
            .attr("gen_ai.tool.call.arguments")
            .unwrap()
            .contains("a.txt")
    );
    assert!(write.attr("gen_ai.tool.call.result").is_some());
    let read = one(&spans, "execute_tool read_file");
    assert!(
        read.error.as_deref().unwrap().contains("nope.txt"),
        "{read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_the_standard_variables_work_without_an_observability_section() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpGrpcReceiver::start().await.unwrap();
    let server = ScriptedServer::start(vec![Turn::answer("```completion\nok\n```")])
        .await
        .unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, true, "");
    let endpoint = receiver.endpoint();
    let out = codepilot_with(
        dir.path(),
        &["run", "--session", "memory", "hello"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let spans = receiver
        .wait_for(Duration::from_secs(5), |s| {
            s.iter().any(|s| s.name == "invoke_agent E2E")
        })
        .await;
    let run = one(&spans, "invoke_agent E2E");
    assert_eq!(run.service, "from-env");
    assert_eq!(run.attr("codepilot.outcome").as_deref(), Some("completed"));
    assert!(
        server.spans().is_empty(),
        "nothing went to the HTTP endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_one_warning_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let turns: Vec<Turn> = (0..4)
        .map(|i| Turn::delay(150, Turn::answer(format!("```codepilot\nprint({i})\n```"))))
        .chain([Turn::answer("```completion\nok\n```")])
        .collect();
    let server = ScriptedServer::start(turns).await.unwrap();
    write_agent(dir.path(), &server, Wire::Anthropic, true, "");
    let out = codepilot_with(
        dir.path(),
        &["run", "--session", "memory", "count"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str()),
            // Batches leave every 50 ms: several exports fail during the run.
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("traces cannot be exported").count(),
        1,
        "one warning: {err}"
    );
    assert!(err.contains(&dead), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trace_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![Turn::answer("```completion\nok\n```")])
        .await
        .unwrap();
    write_agent(
        dir.path(),
        &server,
        Wire::Anthropic,
        true,
        "  observability:\n    protocol: http/json\n",
    );
    let out = codepilot_with(dir.path(), &["run", "--session", "memory", "x"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("observability.protocol"),
        "{}",
        stderr(&out)
    );

    write_agent(dir.path(), &server, Wire::Anthropic, true, "");
    let out = codepilot_with(
        dir.path(),
        &["run", "--session", "memory", "x"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
            ("TRACEPARENT", "not-a-trace"),
        ],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    assert!(err.contains("TRACEPARENT ignored"), "{err}");
}
