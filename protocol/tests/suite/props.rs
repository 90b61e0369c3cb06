use codepilot_protocol::StreamFilter;
use codepilot_protocol::parse;
use codepilot_protocol::visible_text;
use proptest::prelude::*;

/// Answers made of protocol-looking pieces, so that fences, payloads and partial fences are common.
fn answer() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("```codepilot\n".to_string()),
        Just("```\n".to_string()),
        Just("````\n".to_string()),
        Just("````md filename=a.md\n".to_string()),
        Just("```py filename=a.py\n".to_string()),
        Just("```text filename=\"b c\"\n".to_string()),
        Just("~~~ filename=t\n".to_string()),
        Just("```completion\n".to_string()),
        Just("```python\n".to_string()),
        Just("write_file('a.py')\n".to_string()),
        Just("write_file('m', mode='multi_edit', edits=[(1, 2), (3, 4)])\n".to_string()),
        Just("for f in fs:\n    write_file(f)\n".to_string()),
        Just("use ```codepilot inline\n".to_string()),
        Just("``".to_string()),
        Just("\n".to_string()),
        Just("   ".to_string()),
        Just("\r".to_string()),
        "[a-z `~\n]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

fn stream(answer: &str, cuts: &[usize]) -> String {
    let mut f = StreamFilter::new();
    let mut out = String::new();
    let mut last = 0;
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c % (answer.len() + 1))
        .filter(|c| answer.is_char_boundary(*c))
        .collect();
    points.sort_unstable();
    for p in points {
        out.push_str(&f.push(&answer[last..p]));
        last = p;
    }
    out.push_str(&f.push(&answer[last..]));
    out.push_str(&f.finish());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        if let Ok(a) = parse(&s) {
            let _ = a.compacted(&s);
        }
        let _ = visible_text(&s);
    }

    #[test]
    fn parse_never_panics_on_protocol_like_input(s in answer()) {
        if let Ok(a) = parse(&s) {
            let _ = a.compacted(&s);
        }
    }

    #[test]
    fn stream_output_is_independent_of_chunking(s in answer(), cuts in prop::collection::vec(any::<usize>(), 0..20)) {
        let whole = stream(&s, &[]);
        prop_assert_eq!(&stream(&s, &cuts), &whole);
        prop_assert_eq!(&whole, &visible_text(&s));
        if let Ok(a) = parse(&s) {
            prop_assert_eq!(&a.text, &whole);
        }
    }

    #[test]
    fn crlf_parses_like_lf(s in answer()) {
        let lf = s.replace('\r', "");
        let crlf = lf.replace('\n', "\r\n");
        match (parse(&lf), parse(&crlf)) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.text, b.text);
                prop_assert_eq!(a.control, b.control);
                prop_assert_eq!(a.payloads, b.payloads);
                prop_assert_eq!(a.completion, b.completion);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "LF {:?} vs CRLF {:?}", a, b),
        }
        prop_assert_eq!(stream(&crlf, &[]), visible_text(&lf));
    }

    /// Compaction is bounded by the answer plus one marker per payload: it can never blow up like the
    /// original's substring replacement did.
    #[test]
    fn compaction_is_bounded(n in 0usize..40, body in "[a-z\n]{0,40}", name in "[a-z]{1,8}") {
        let body = if body.is_empty() || body.ends_with('\n') { body } else { format!("{body}\n") };
        let mut answer = String::from("```codepilot\n");
        for _ in 0..n {
            answer.push_str(&format!("write_file('{name}')\n"));
        }
        answer.push_str("```\n");
        for _ in 0..n {
            answer.push_str(&format!("```text filename={name}\n{body}```\n"));
        }
        let a = parse(&answer).unwrap();
        let compacted = a.compacted(&answer);
        let marker_max = 120 + name.len();
        prop_assert!(compacted.len() <= answer.len() + n * marker_max, "{} -> {}", answer.len(), compacted.len());
        if body.is_empty() {
            prop_assert_eq!(&compacted, &answer);
        }
        // Compacting is structural: parsing the compacted text gives the same control block and filenames.
        let again = parse(&compacted).unwrap();
        prop_assert_eq!(&again.control, &a.control);
        let names = |x: &codepilot_protocol::Action| x.payloads.iter().map(|p| p.filename.clone()).collect::<Vec<_>>();
        prop_assert_eq!(names(&again), names(&a));
    }
}
