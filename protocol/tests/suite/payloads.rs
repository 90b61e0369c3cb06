use codepilot_protocol::ParseError;
use codepilot_protocol::Payload;
use codepilot_protocol::check_payloads;
use codepilot_protocol::parse;
use pretty_assertions::assert_eq;

fn p(name: &str) -> Payload {
    Payload {
        filename: name.to_string(),
        content: String::new(),
        line: 10,
    }
}

#[test]
fn matching_payloads_pass() {
    check_payloads(
        "write_file('a')\nwrite_file('b', mode='a')\n",
        &[p("a"), p("b")],
    )
    .unwrap();
    check_payloads("print(1)\n", &[]).unwrap();
    check_payloads("write_file('./src\\\\x.py')\n", &[p("src/x.py")]).unwrap();
}

#[test]
fn multi_edit_consumes_one_per_range() {
    let code =
        "write_file('m.py', mode='multi_edit', edits=[(1, 2), (8, 9)])\nwrite_file('n.py')\n";
    check_payloads(code, &[p("m.py"), p("m.py"), p("n.py")]).unwrap();
    let err = check_payloads(code, &[p("m.py"), p("n.py")]).unwrap_err();
    assert_eq!(
        err,
        ParseError::PayloadFilenameMismatch {
            index: 2,
            expected: "m.py".to_string(),
            got: "n.py".to_string(),
            consumer:
                "range 2 of 2 of write_file('m.py', mode='multi_edit') on control block line 1"
                    .to_string(),
            payload_line: 10,
        }
    );
    assert!(
        err.to_string().starts_with(
            "payload block #2 (answer line 10) has filename='n.py', but the 2nd payload"
        ),
        "{err}"
    );
}

#[test]
fn missing_payload() {
    let err = check_payloads("write_file('a')\nwrite_file('b')\n", &[p("a")]).unwrap_err();
    assert_eq!(
        err,
        ParseError::MissingPayload {
            index: 2,
            path: "b".to_string(),
            consumer: "write_file('b') on control block line 2".to_string(),
            expected: 2,
            got: 1,
            unannotated_blocks: 0,
        }
    );
}

#[test]
fn missing_payload_hints_at_unannotated_blocks() {
    let answer = "```codepilot\nwrite_file('a.py')\n```\n```python\nx = 1\n```\n";
    let err = parse(answer).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::MissingPayload {
                unannotated_blocks: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "(one block after the control block has no filename=: if it is a payload, annotate it)"
        ),
        "{err}"
    );
}

#[test]
fn extra_payload() {
    let err = check_payloads("write_file('a')\n", &[p("a"), p("b")]).unwrap_err();
    assert_eq!(
        err,
        ParseError::ExtraPayload {
            index: 2,
            filename: "b".to_string(),
            payload_line: 10,
            expected: 1,
            got: 2
        }
    );
}

#[test]
fn payloads_without_any_write_file() {
    let err = check_payloads("print(1)\n", &[p("a")]).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::ExtraPayload {
                index: 1,
                expected: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn inline_content_is_rejected() {
    for arg in ["content", "payload", "text", "data"] {
        let err = check_payloads(&format!("write_file('a', {arg}='x')\n"), &[]).unwrap_err();
        assert_eq!(
            err,
            ParseError::InlineContent {
                call_line: 1,
                argument: arg.to_string()
            }
        );
    }
}

#[test]
fn invalid_literal_mode_is_rejected() {
    let err = check_payloads("\n\nwrite_file('a', mode='append')\n", &[p("a")]).unwrap_err();
    assert_eq!(
        err,
        ParseError::InvalidMode {
            call_line: 3,
            mode: "append".to_string()
        }
    );
}

#[test]
fn loop_skips_the_strict_check_after_it() {
    let code = "write_file('a')\nfor f in files:\n    write_file(f)\nwrite_file('z')\n";
    // Any number and any names after the loop are accepted; the runtime errors if payloads run out.
    check_payloads(code, &[p("a")]).unwrap();
    check_payloads(code, &[p("a"), p("x"), p("y"), p("anything")]).unwrap();
    // The calls before the first unresolved one are still checked.
    assert!(matches!(
        check_payloads(code, &[p("b")]),
        Err(ParseError::PayloadFilenameMismatch { index: 1, .. })
    ));
    assert!(matches!(
        check_payloads(code, &[]),
        Err(ParseError::MissingPayload { index: 1, .. })
    ));
}

#[test]
fn non_literal_path_skips_the_strict_check() {
    check_payloads("name = 'a' + '.py'\nwrite_file(name)\n", &[p("a.py")]).unwrap();
    check_payloads("write_file(f'{WORK_DIR}/a.py')\n", &[p("whatever")]).unwrap();
}

#[test]
fn parse_reports_mismatch_with_answer_positions() {
    let answer = "```codepilot\nwrite_file('a.py')\nwrite_file('b.py')\n```\n```py filename=b.py\nB\n```\n```py filename=a.py\nA\n```\n";
    let err = parse(answer).unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload block #1 (answer line 5) has filename='b.py', but the 1st payload is consumed by write_file('a.py') on control block line 1, which expects 'a.py'. Payload blocks must follow the order of the write_file calls, one per call and one per (start, end) range of a multi_edit, with a matching filename="
    );
}

#[test]
fn parse_counts_display_blocks_as_nothing() {
    let answer =
        "```codepilot\nwrite_file('a.py')\n```\n```py\nexample\n```\n```py filename=a.py\nA\n```\n";
    let a = parse(answer).unwrap();
    assert_eq!(a.payloads.len(), 1);
}
