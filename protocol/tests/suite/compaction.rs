use codepilot_protocol::parse;
use pretty_assertions::assert_eq;

use super::lf;

#[test]
fn payload_bodies_become_markers() {
    let answer = lf(&[
        "Writing two files.",
        "```codepilot",
        "write_file('a.py')",
        "write_file('b.txt')",
        "```",
        "```python filename=a.py",
        "x = 1",
        "y = 2",
        "```",
        "```text filename=b.txt",
        "x",
        "```",
        "```completion",
        "done",
        "```",
    ]);
    let a = parse(&answer).unwrap();
    let expected = lf(&[
        "Writing two files.",
        "```codepilot",
        "write_file('a.py')",
        "write_file('b.txt')",
        "```",
        "```python filename=a.py",
        "[payload for 'a.py' — 2 lines, not kept in history; use read_file to view the file]",
        "```",
        "```text filename=b.txt",
        "[payload for 'b.txt' — 1 line, not kept in history; use read_file to view the file]",
        "```",
        "```completion",
        "done",
        "```",
    ]);
    assert_eq!(a.compacted(&answer), expected);
}

/// Original bug: an empty payload made the substring replacement insert the marker between every character
/// (a 138-character answer stored as 25,853 characters).
#[test]
fn empty_payload_keeps_the_answer_unchanged() {
    let answer = "Creating an empty file.\n```codepilot\nwrite_file('empty.txt')\n```\n```text filename=empty.txt\n```\n";
    let a = parse(answer).unwrap();
    assert_eq!(a.compacted(answer), answer);
}

/// Original bug: a short payload such as `x` rewrote unrelated text that contained it.
#[test]
fn short_payload_does_not_touch_other_text() {
    let answer = "x marks the spot.\n```codepilot\nwrite_file('x')\nprint('x')\n```\n```text filename=x\nx\n```\n";
    let a = parse(answer).unwrap();
    let c = a.compacted(answer);
    assert!(c.starts_with("x marks the spot.\n```codepilot\nwrite_file('x')\nprint('x')\n```\n```text filename=x\n[payload"), "{c}");
    assert!(c.ends_with("to view the file]\n```\n"), "{c}");
}

#[test]
fn crlf_is_kept_byte_identical() {
    let answer = "Hi.\r\n```codepilot\r\nwrite_file('a')\r\n```\r\n```t filename=a\r\n1\r\n2\r\n```\r\nBye.\r\n";
    let a = parse(answer).unwrap();
    assert_eq!(
        a.compacted(answer),
        "Hi.\r\n```codepilot\r\nwrite_file('a')\r\n```\r\n```t filename=a\r\n[payload for 'a' — 2 lines, not kept in history; use read_file to view the file]\r\n```\r\nBye.\r\n"
    );
}

#[test]
fn no_payloads_means_identity() {
    let answer = "```codepilot\nprint(1)\n```\n```python\nshown\n```\n";
    assert_eq!(parse(answer).unwrap().compacted(answer), answer);
}

#[test]
fn wrong_answer_does_not_panic() {
    let answer = "```codepilot\nwrite_file('a')\n```\n```t filename=a\n1\n```\n";
    let a = parse(answer).unwrap();
    assert_eq!(a.compacted("short"), "short");
    assert_eq!(a.compacted("é".repeat(30).as_str()), "é".repeat(30));
}
