use pretty_assertions::assert_eq;

use super::*;

#[test]
fn opening_fences() {
    assert_eq!(
        opening_fence("```codepilot"),
        Some(Fence {
            ch: '`',
            len: 3,
            indent: 0,
            info: "codepilot".to_string()
        })
    );
    assert_eq!(
        opening_fence("   ~~~~ python  ").map(|f| (f.len, f.indent, f.info)),
        Some((4, 3, "python".to_string()))
    );
    assert_eq!(
        opening_fence("    ```"),
        None,
        "4 spaces is an indented code block"
    );
    assert_eq!(opening_fence("``"), None);
    assert_eq!(
        opening_fence("``` a`b"),
        None,
        "backtick in a backtick fence's info"
    );
    assert!(
        opening_fence("~~~ a`b").is_some(),
        "backticks are fine after tildes"
    );
    assert_eq!(opening_fence("use ```codepilot"), None);
}

#[test]
fn closing_fences() {
    let f = opening_fence("````").unwrap();
    assert!(is_closing("````", &f));
    assert!(is_closing("  `````  \t", &f));
    assert!(!is_closing("```", &f), "shorter than the opening");
    assert!(!is_closing("```` x", &f), "info after a closing fence");
    assert!(!is_closing("~~~~", &f), "other character");
}

#[test]
fn partial_lines() {
    for yes in [
        "",
        " ",
        "   ",
        "`",
        "``",
        "```",
        "```codep",
        "~~~~ filename=",
        "   ``",
    ] {
        assert!(may_become_opening_fence(yes), "{yes:?}");
    }
    for no in ["    ", "a", "``a", "~~x", "```a`", "\t```", "> ```"] {
        assert!(!may_become_opening_fence(no), "{no:?}");
    }
}

#[test]
fn info_strings() {
    let i = Info::parse("Python filename=\"a b.py\" x");
    assert_eq!(i.lang, "python");
    assert_eq!(i.filename.as_deref(), Some("a b.py"));
    assert_eq!(
        Info::parse("filename='q.txt'").filename.as_deref(),
        Some("q.txt")
    );
    assert_eq!(Info::parse("filename=q.txt").lang, "");
    assert_eq!(Info::parse("py myfilename=q").filename, None);
    assert_eq!(Info::parse("CodePilot").kind(), BlockKind::Control);
    assert_eq!(Info::parse("completion").kind(), BlockKind::Completion);
    assert_eq!(
        Info::parse("rust filename=src/x.rs").kind(),
        BlockKind::Payload
    );
    assert_eq!(Info::parse("rust").kind(), BlockKind::Display);
    assert_eq!(Info::parse("").kind(), BlockKind::Display);
}

#[test]
fn line_splitting() {
    let v: Vec<(&str, bool, usize)> = lines("a\r\nb\n\nc\r")
        .map(|l| (l.text, l.has_newline, l.number))
        .collect();
    assert_eq!(
        v,
        vec![
            ("a", true, 1),
            ("b", true, 2),
            ("", true, 3),
            ("c\r", false, 4)
        ]
    );
    assert_eq!(lines("").count(), 0);
    assert_eq!(lines("x\n").count(), 1);
}
