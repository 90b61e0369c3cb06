use codepilot_protocol::StreamFilter;
use codepilot_protocol::visible_text;
use pretty_assertions::assert_eq;

fn pushes(chunks: &[&str]) -> Vec<String> {
    let mut f = StreamFilter::new();
    let mut out: Vec<String> = chunks.iter().map(|c| f.push(c)).collect();
    out.push(f.finish());
    out
}

#[test]
fn prose_is_shown_immediately() {
    assert_eq!(
        pushes(&["Hel", "lo wor", "ld"]),
        vec!["Hel", "lo wor", "ld", ""]
    );
}

#[test]
fn control_payload_and_completion_are_hidden() {
    let chunks = [
        "Plan:\n",
        "```codepilot\nwrite_file('a')\n",
        "```\n```py filename=a\nx=1\n```\n",
        "```completion\nok\n```\n",
        "After.\n",
    ];
    assert_eq!(pushes(&chunks), vec!["Plan:\n", "", "", "", "After.\n", ""]);
}

#[test]
fn display_blocks_are_shown() {
    assert_eq!(
        pushes(&["```rust\nfn main", "() {}\n```\n"]),
        vec!["```rust\nfn main", "() {}\n```\n", ""]
    );
}

#[test]
fn only_a_possible_fence_is_held_back() {
    let mut f = StreamFilter::new();
    assert_eq!(f.push("Text\n``"), "Text\n");
    assert_eq!(f.push("`codep"), "");
    assert_eq!(f.push("ilot\nprint(1)\n```\nok"), "ok");
    assert_eq!(f.finish(), "");
    // A line that cannot become a fence is released as soon as that is known.
    let mut f = StreamFilter::new();
    assert_eq!(f.push("``"), "");
    assert_eq!(f.push("x"), "``x");
    assert_eq!(f.push("`` y"), "`` y");
    assert_eq!(f.finish(), "");
    let mut f = StreamFilter::new();
    assert_eq!(
        f.push("```py `x"),
        "```py `x",
        "a backtick in the info string: not a fence"
    );
}

#[test]
fn partial_fence_at_the_end_is_flushed_by_finish() {
    let mut f = StreamFilter::new();
    assert_eq!(f.push("Wait ``"), "Wait ``");
    let mut f = StreamFilter::new();
    assert_eq!(f.push("a\n``"), "a\n");
    assert_eq!(f.finish(), "``");
}

#[test]
fn crlf_is_shown_as_lf_even_when_split() {
    let mut f = StreamFilter::new();
    assert_eq!(f.push("a\r"), "a");
    assert_eq!(f.push("\nb\r"), "\nb");
    assert_eq!(f.push("c"), "\rc");
    assert_eq!(f.finish(), "");
}

#[test]
fn finish_resets_for_a_new_answer() {
    let mut f = StreamFilter::new();
    let _ = f.push("```codepilot\nx");
    let _ = f.finish();
    assert_eq!(f.push("visible"), "visible");
}

#[test]
fn stream_equals_visible_text() {
    let answer = "I'll mention ```codepilot inline.\n````md\n```codepilot\n```\n````\n```codepilot\nprint(1)\n```\ndone\n";
    let whole: String = pushes(&[answer]).concat();
    assert_eq!(whole, visible_text(answer));
    let by_char: String = {
        let mut f = StreamFilter::new();
        let mut s: String = answer.chars().map(|c| f.push(&c.to_string())).collect();
        s.push_str(&f.finish());
        s
    };
    assert_eq!(by_char, whole);
}
