use codepilot_llm::ScriptedProvider;
use codepilot_llm::load_script;
use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

use super::*;

#[tokio::test]
async fn answers_are_replayed_in_order_then_exhausted() {
    let provider = build_provider(ProviderConfig::scripted(vec![
        "one\ntwo\n".into(),
        "three".into(),
    ]))
    .unwrap();
    assert_eq!(provider.describe(), "scripted (2 answers)");
    let (first, seen) = call_with(&provider, "", &[]).await;
    let first = first.unwrap();
    assert_eq!(first.text, "one\ntwo\n");
    assert_eq!(
        seen,
        vec![Seen::Text("one\n".into()), Seen::Text("two\n".into())]
    );
    assert_eq!(first.usage.calls, 1);
    assert_eq!(call_with(&provider, "", &[]).await.0.unwrap().text, "three");
    let err = call_with(&provider, "", &[]).await.0.unwrap_err();
    assert!(matches!(err, LlmError::ScriptExhausted { answers: 2 }));
    assert!(!err.is_retryable());
    insta::assert_snapshot!("script_exhausted", err.to_string());
}

#[test]
fn remaining_counts_down() {
    let p = ScriptedProvider::new(vec!["a".into()]);
    assert_eq!(p.remaining(), 1);
    assert_eq!(p.describe(), "scripted (1 answer)");
}

#[test]
fn scripted_needs_answers() {
    let mut cfg = ProviderConfig::scripted(vec![]);
    cfg.scripted_answers = None;
    let err = build_provider(cfg).err().unwrap();
    assert!(matches!(err, LlmError::InvalidConfig(_)), "{err}");
}

#[test]
fn load_script_json_array() {
    let ws = temp_workspace(&[("s.json", "  [\"first\\nline\", \"\", \"third\"]\n")]);
    assert_eq!(
        load_script(ws.path().join("s.json")).unwrap(),
        vec!["first\nline", "", "third"]
    );
}

#[test]
fn load_script_text_with_separators() {
    let text = "```codepilot\nprint(1)\n```\n--- next answer ---\nsecond answer\n\nwith a blank line\n--- next answer ---\n";
    let ws = temp_workspace(&[
        ("s.txt", text),
        ("crlf.txt", &text.replace('\n', "\r\n")),
        ("one.txt", "only\n"),
    ]);
    let expected = vec![
        "```codepilot\nprint(1)\n```",
        "second answer\n\nwith a blank line",
    ];
    assert_eq!(load_script(ws.path().join("s.txt")).unwrap(), expected);
    let crlf = load_script(ws.path().join("crlf.txt")).unwrap();
    assert_eq!(crlf.len(), 2);
    assert_eq!(crlf[1].replace('\r', ""), expected[1]);
    assert_eq!(
        load_script(ws.path().join("one.txt")).unwrap(),
        vec!["only"]
    );
}

#[test]
fn separator_must_be_the_whole_line() {
    let ws = temp_workspace(&[("s.txt", "a\n  --- next answer ---\nb --- next answer ---\n")]);
    assert_eq!(load_script(ws.path().join("s.txt")).unwrap().len(), 1);
}

#[test]
fn bad_scripts_are_reported() {
    let ws = temp_workspace(&[
        ("bad.json", "[1, 2]"),
        ("empty.txt", "\n--- next answer ---\n  \n"),
    ]);
    let root = ws.path().display().to_string();
    let msg = |name: &str| {
        load_script(ws.path().join(name))
            .unwrap_err()
            .to_string()
            .replace(&root, "<DIR>")
    };
    insta::assert_snapshot!("script_bad_json", msg("bad.json"));
    insta::assert_snapshot!("script_empty", msg("empty.txt"));
    assert!(matches!(
        load_script(ws.path().join("missing.txt")),
        Err(LlmError::Script { .. })
    ));
}
