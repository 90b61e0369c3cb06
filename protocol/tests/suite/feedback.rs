//! What the model reads after each answer: every kind of [`Feedback`], rendered in one place.

use codepilot_protocol::ArchiveEntry;
use codepilot_protocol::ArchiveOrigin;
use codepilot_protocol::BlockEnd;
use codepilot_protocol::BlockReport;
use codepilot_protocol::Candidate;
use codepilot_protocol::CompletionRefusal;
use codepilot_protocol::ELIDED_OBSERVATION;
use codepilot_protocol::ExecutionFailure;
use codepilot_protocol::Feedback;
use codepilot_protocol::MAX_OBSERVATION_CHARS;
use codepilot_protocol::Message;
use codepilot_protocol::Observation;
use codepilot_protocol::PermissionRefusal;
use codepilot_protocol::archive_list_text;
use codepilot_protocol::archived_text;
use codepilot_protocol::cap_observation;
use codepilot_protocol::context_status;
use codepilot_protocol::dropped_tasks_marker;
use codepilot_protocol::human_command_text;
use codepilot_protocol::maintenance_message;
use codepilot_protocol::omitted_steps_marker;
use codepilot_protocol::parse;
use codepilot_protocol::permission_denied_entry;
use codepilot_protocol::reveal_text;
use codepilot_protocol::summariser_request;
use codepilot_protocol::tool_error_entry;
use codepilot_protocol::tool_value_entry;
use pretty_assertions::assert_eq;
use serde_json::json;

fn snapshot(name: &str, scenario: &str, value: String) {
    insta::with_settings!({ description => scenario, omit_expression => true }, {
        insta::assert_snapshot!(name, value);
    });
}

fn entries(items: &[&str]) -> Observation {
    let mut o = Observation::new();
    for i in items {
        o.push(*i);
    }
    o
}

fn report(items: &[&str], end: BlockEnd) -> BlockReport {
    BlockReport {
        observation: entries(items),
        unused_payloads: Vec::new(),
        end,
        completion_refused: None,
    }
}

fn failure() -> ExecutionFailure {
    ExecutionFailure {
        exc_type: "FileNotFoundError".to_owned(),
        message: "'missing.txt' does not exist".to_owned(),
        line: Some(2),
        line_text: Some("read_file('missing.txt')".to_owned()),
        traceback: None,
        ran_anything: true,
        compile_error: false,
    }
}

#[test]
fn a_finished_block() {
    let text = Feedback::Block(report(
        &[
            "[read_file] 'a.txt' (lines 1–1 of 1)\n    1 | hi\n[END OF FILE]",
            "printed",
        ],
        BlockEnd::Finished,
    ))
    .render();
    assert!(text.starts_with("[EXECUTION RESULT]\n[read_file]"));
    snapshot(
        "feedback_finished",
        "a control block that read a file and printed",
        text,
    );
}

#[test]
fn unused_payloads_are_warned_about() {
    let mut r = report(&["[write_file] wrote 'a.txt' (1 line)"], BlockEnd::Finished);
    r.unused_payloads = vec!["'b.txt'".to_owned(), "'c.txt'".to_owned()];
    snapshot(
        "feedback_unused_payloads",
        "two payload blocks that no write_file call consumed",
        Feedback::Block(r).render(),
    );
}

#[test]
fn an_aborted_block() {
    snapshot(
        "feedback_aborted",
        "the host aborted the run while the block ran",
        Feedback::Block(report(
            &["[terminal:main:cmd1] $ sleep 100"],
            BlockEnd::Aborted,
        ))
        .render(),
    );
}

#[test]
fn a_block_stopped_by_the_time_limit() {
    snapshot(
        "feedback_out_of_time",
        "the run's wall-time limit stopped the block",
        Feedback::Block(report(
            &["[terminal:main:cmd1] $ sleep 100"],
            BlockEnd::OutOfTime,
        ))
        .render(),
    );
}

#[test]
fn a_failed_block_with_a_refused_completion() {
    let mut r = report(
        &["[read_file] 'a.txt' is empty.\n[END OF FILE]"],
        BlockEnd::Failed(failure()),
    );
    r.completion_refused = Some(CompletionRefusal::BlockFailed);
    let text = Feedback::Block(r).render();
    assert!(text.contains("EXECUTION ERROR"));
    assert!(text.contains("[COMPLETION NOT ACCEPTED]"));
    snapshot(
        "feedback_failed_completion_refused",
        "the block raised FileNotFoundError on line 2 and the answer also had a completion block",
        text,
    );
}

#[test]
fn a_completion_refused_for_an_unread_message() {
    let mut r = report(&[], BlockEnd::Finished);
    r.completion_refused = Some(CompletionRefusal::UnreadUserMessage);
    snapshot(
        "feedback_block_unread_message",
        "the block ran, but a user message arrived before the completion could be accepted",
        Feedback::Block(r).render(),
    );
    snapshot(
        "feedback_completion_only_unread_message",
        "a completion-only answer while a user message waits",
        Feedback::CompletionRefused(CompletionRefusal::UnreadUserMessage).render(),
    );
}

#[test]
fn a_parse_error() {
    let err = parse("```codepilot\nwrite_file('a.txt')\n```\n").unwrap_err();
    assert_eq!(
        Feedback::ParseError(err.clone()).render(),
        codepilot_protocol::parser_error_observation(&err)
    );
}

#[test]
fn long_observations_keep_head_and_tail() {
    let text = format!("HEAD{}TAIL", "y".repeat(200_000));
    let capped = cap_observation(text);
    assert!(capped.starts_with("HEAD") && capped.ends_with("TAIL"));
    assert!(capped.len() < MAX_OBSERVATION_CHARS + 500);
    let marker = capped
        .lines()
        .find(|l| l.contains("characters of output cut"))
        .unwrap()
        .to_owned();
    snapshot(
        "observation_cap_marker",
        "the marker inside a capped observation",
        marker,
    );
    let huge = Feedback::Block(report(&[&"z".repeat(100_000)], BlockEnd::Finished)).render();
    assert!(
        huge.chars().count() < MAX_OBSERVATION_CHARS + 500,
        "feedback is capped"
    );
}

#[test]
fn tool_entries_and_permission_texts() {
    let text = [
        tool_error_entry("read_file", "'x' does not exist"),
        tool_value_entry("greet", &json!("hi bob")),
        tool_value_entry("count", &json!({"n": 3})),
        permission_denied_entry(
            "execute",
            &PermissionRefusal::NoHandler.message("Execute in main: rm -rf build"),
        ),
        permission_denied_entry(
            "execute",
            &PermissionRefusal::Denied(Some("not on Fridays".to_owned()))
                .message("Execute in main: deploy"),
        ),
        permission_denied_entry(
            "write_file",
            &PermissionRefusal::Denied(None).message("Write 'a.txt' (full file)"),
        ),
        human_command_text("main", "ls -la"),
    ]
    .join("\n---\n");
    snapshot(
        "tool_entries_and_permission_texts",
        "a tool error, host tool values, the three permission refusals and a person's command",
        text,
    );
}

#[test]
fn context_management_texts() {
    let archive = ArchiveEntry {
        first_task: 1,
        last_task: 1,
        summary: "Added `--json` to the CLI; tests pass.".into(),
        tokens_saved: 2_345,
        origin: ArchiveOrigin::Agent,
    };
    let summary = ArchiveEntry {
        first_task: 2,
        last_task: 4,
        summary: "x".repeat(200),
        tokens_saved: 9_000,
        origin: ArchiveOrigin::Summary,
    };
    let transcript = [
        Message::user("[Task 1][USER INPUT]\nadd --json"),
        Message::assistant("```codepilot\nexecute('main', 'cargo test')\n```"),
        Message::user("[EXECUTION RESULT]\nok"),
    ];
    let candidates = [
        Candidate {
            task: 1,
            tokens: 2_400,
        },
        Candidate {
            task: 3,
            tokens: 812,
        },
    ];
    let text = [
        archive.message(),
        summary.message(),
        dropped_tasks_marker(5, 5),
        dropped_tasks_marker(5, 9),
        omitted_steps_marker(1),
        omitted_steps_marker(40),
        ELIDED_OBSERVATION.to_owned(),
        context_status(5_000, 10_000),
        context_status(8_100, 10_000),
        maintenance_message(8_100, 10_000, &candidates, 4),
        archived_text(&[1], 2_345, 5_755, 10_000),
        archived_text(&[1, 3], 3_100, 5_000, 10_000),
        archive_list_text(&[]),
        archive_list_text(&[archive, summary]),
        reveal_text(1, &transcript),
        summariser_request(&transcript),
    ]
    .join("\n---\n");
    snapshot(
        "context_texts",
        "archives, drop markers, the context line, the maintenance request and the context tools' results",
        text,
    );
}

#[test]
fn signatures_show_python_annotations_where_given() {
    use codepilot_protocol::ParamSpec;
    use codepilot_protocol::ToolSpec;
    let plain = ToolSpec::new(
        "read_file",
        vec![
            ParamSpec::required("path"),
            ParamSpec::optional("start_line", serde_json::json!(1)),
        ],
        "",
    );
    assert_eq!(plain.signature(), "read_file(path, start_line=1)");
    let mut typed = ToolSpec::new(
        "greet",
        vec![
            ParamSpec::required("name").annotated("str"),
            ParamSpec::optional("times", serde_json::json!(1)).annotated("int"),
            ParamSpec::optional("tag", serde_json::Value::Null),
        ],
        "",
    );
    typed.returns = Some("list[str]".to_owned());
    assert_eq!(
        typed.signature(),
        "greet(name: str, times: int = 1, tag=None) -> list[str]"
    );
}
