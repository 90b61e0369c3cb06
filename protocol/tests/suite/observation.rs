use codepilot_protocol::ExecutionFailure;
use codepilot_protocol::Observation;
use codepilot_protocol::ParseError;
use codepilot_protocol::completion_rejected;
use codepilot_protocol::environment_change;
use codepilot_protocol::execution_error_observation;
use codepilot_protocol::parse;
use codepilot_protocol::parser_error_observation;
use codepilot_protocol::task_message;
use codepilot_protocol::user_message;
use pretty_assertions::assert_eq;

/// A named snapshot with a one-line scenario header.
fn snapshot(name: &str, scenario: &str, value: String) {
    insta::with_settings!({ description => scenario, omit_expression => true }, {
        insta::assert_snapshot!(name, value);
    });
}

#[test]
fn render_joins_entries() {
    let mut o = Observation::new();
    assert!(o.is_empty());
    o.push("[read_file] 'a' (lines 1–1 of 1)\n    1 | x\n[END OF FILE]");
    o.push(String::from("printed"));
    assert!(!o.is_empty());
    assert_eq!(
        o.render(),
        "[EXECUTION RESULT]\n[read_file] 'a' (lines 1–1 of 1)\n    1 | x\n[END OF FILE]\n\nprinted"
    );
}

#[test]
fn empty_observation_snapshot() {
    snapshot(
        "empty_observation",
        "a control block that ran and produced no output",
        Observation::new().render(),
    );
}

#[test]
fn parser_error_snapshot() {
    let err = parse("```codepilot\nprint(1)\n```\n```codepilot\nprint(2)\n```\n").unwrap_err();
    let text = parser_error_observation(&err);
    assert!(text.starts_with("[EXECUTION RESULT]\nPARSER ERROR: the answer has 2 ```codepilot"));
    assert!(text.ends_with("No tool code from the previous response ran."));
    snapshot(
        "parser_error_two_control_blocks",
        "an answer with two ```codepilot blocks is rejected before anything runs",
        text,
    );
}

#[test]
fn parser_error_mismatch_snapshot() {
    let err = ParseError::MissingPayload {
        index: 2,
        path: "b.py".to_string(),
        consumer: "write_file('b.py') on control block line 2".to_string(),
        expected: 2,
        got: 1,
        unannotated_blocks: 0,
    };
    snapshot(
        "parser_error_missing_payload",
        "two write_file calls but only one payload block",
        parser_error_observation(&err),
    );
}

#[test]
fn execution_error_snapshot() {
    let mut partial = Observation::new();
    partial.push("[read_file] 'a.py' (lines 1–1 of 1)\n    1 | x = 1\n[END OF FILE]");
    let failure = ExecutionFailure {
        exc_type: "NameError".to_string(),
        message: "name 'reed_file' is not defined".to_string(),
        line: Some(2),
        line_text: Some("    reed_file('b.py')".to_string()),
        traceback: Some("Traceback (most recent call last):\n  File \"<codepilot-control-block>\", line 2, in <module>\nNameError: name 'reed_file' is not defined\n".to_string()),
        ran_anything: true,
        compile_error: false,
    };
    let text = execution_error_observation(&partial, &failure);
    assert!(
        text.contains("raised NameError on line 2 of the block: `reed_file('b.py')`"),
        "{text}"
    );
    snapshot(
        "execution_error_runtime",
        "line 2 raises NameError after read_file on line 1 ran",
        text,
    );
}

#[test]
fn compile_error_snapshot() {
    let failure = ExecutionFailure {
        exc_type: "SyntaxError".to_string(),
        message: "invalid syntax".to_string(),
        line: Some(3),
        line_text: Some("print(".to_string()),
        traceback: None,
        ran_anything: false,
        compile_error: true,
    };
    snapshot(
        "execution_error_compile",
        "the block does not compile, so nothing ran",
        execution_error_observation(&Observation::new(), &failure),
    );
}

#[test]
fn execution_error_variants() {
    let failure = ExecutionFailure {
        exc_type: "TimeoutError".to_string(),
        ..ExecutionFailure::default()
    };
    assert_eq!(
        execution_error_observation(&Observation::new(), &failure),
        "[EXECUTION RESULT]\nEXECUTION ERROR: the ```codepilot control block raised TimeoutError.\nTimeoutError\nNothing ran before the failing statement, and nothing after it."
    );
    let ran = ExecutionFailure {
        ran_anything: true,
        line: Some(4),
        ..ExecutionFailure::default()
    };
    let text = execution_error_observation(&Observation::new(), &ran);
    assert!(
        text.contains("raised Exception on line 4 of the block.\n"),
        "{text}"
    );
    assert!(
        text.ends_with("ran, without output. Nothing after it ran."),
        "{text}"
    );
}

#[test]
fn tags() {
    assert_eq!(task_message(3, "fix it"), "[Task 3][USER INPUT]\nfix it");
    assert_eq!(user_message("also docs"), "[USER MESSAGE]\nalso docs");
    assert_eq!(
        environment_change("a.py modified"),
        "[ENVIRONMENT CHANGE]\na.py modified"
    );
    assert_eq!(
        completion_rejected("the control block raised NameError."),
        "[COMPLETION NOT ACCEPTED] Your ```completion block was not accepted because the control block raised NameError. The task is not finished: fix the problem, check the result, and send the completion block again in a later answer."
    );
}
