use super::*;
use pretty_assertions::assert_eq;

#[test]
fn clean_strips_escapes_and_overwrites() {
    assert_eq!(clean(b"\x1b[1;31mred\x1b[0m\r\n"), "red\n");
    assert_eq!(clean(b"50%\r100%\n"), "100%\n");
    assert_eq!(clean(b"a\x1b]0;title\x07b\x1b]8;;x\x1b\\c"), "abc");
    assert_eq!(clean(b"ab\x08c"), "ac");
    assert_eq!(clean(b"\x1b(Bx\x1b=y\x07"), "xy");
}

#[test]
fn capture_keeps_head_and_tail_and_counts_dropped() {
    let mut c = Capture::new(4);
    c.push(b"0123");
    c.push(b"45");
    c.push(b"6789ab");
    assert_eq!(c.total(), 12);
    let span = c.since(0);
    assert_eq!(span.before, b"0123");
    assert_eq!(span.gap, 4);
    assert_eq!(span.after, b"89ab");
    let span = c.since(10);
    assert_eq!((span.before, span.gap), (b"ab".to_vec(), 0));
    let span = c.since(6);
    assert_eq!(
        (span.before.len(), span.gap, span.after),
        (0, 2, b"89ab".to_vec())
    );
}

#[test]
fn capture_huge_push_stays_bounded() {
    let mut c = Capture::new(8);
    c.push(&vec![b'x'; 1000]);
    c.push(b"end");
    assert_eq!(c.total(), 1003);
    let span = c.since(0);
    assert_eq!(span.before.len() + span.after.len(), 16);
    assert_eq!(span.gap, 987);
}

#[test]
fn truncation_respects_limit() {
    let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let mut c = Capture::new(100_000);
    c.push(text.as_bytes());
    let (out, truncated) = render_span(&c.since(0), 1000);
    assert!(truncated);
    assert!(out.chars().count() <= 1000, "{}", out.chars().count());
    assert!(out.starts_with("line 0\n"));
    assert!(out.ends_with("line 4999"));
    assert!(out.contains("characters omitted"));
}

#[test]
fn short_output_is_untouched() {
    let mut c = Capture::new(100);
    c.push(b"hi\r\n");
    assert_eq!(render_span(&c.since(0), 1000), ("hi".to_owned(), false));
}
