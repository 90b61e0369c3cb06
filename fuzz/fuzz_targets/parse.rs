//! Fuzz target: `parse`, `compacted`, `visible_text` and `StreamFilter` on arbitrary UTF-8.
//!
//! Checks, beyond "never panics": the streamed text equals `visible_text` whatever the chunking, equals
//! `Action::text` when the answer parses, and compaction re-parses to the same control block.

#![no_main]

use codepilot_protocol::StreamFilter;
use codepilot_protocol::parse;
use codepilot_protocol::visible_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let Ok(answer) = std::str::from_utf8(rest) else {
        return;
    };
    let visible = visible_text(answer);

    // Stream it in chunks of a data-chosen size (1..=16 bytes, snapped to char boundaries).
    let step = usize::from(step % 16) + 1;
    let mut filter = StreamFilter::new();
    let mut streamed = String::new();
    let mut start = 0;
    while start < answer.len() {
        let mut end = (start + step).min(answer.len());
        while !answer.is_char_boundary(end) {
            end += 1;
        }
        streamed.push_str(&filter.push(&answer[start..end]));
        start = end;
    }
    streamed.push_str(&filter.finish());
    assert_eq!(streamed, visible, "streamed text differs from visible_text");

    if let Ok(action) = parse(answer) {
        assert_eq!(
            action.text, visible,
            "Action::text differs from visible_text"
        );
        let compacted = action.compacted(answer);
        let again = parse(&compacted).expect("a compacted answer parses");
        assert_eq!(
            again.control, action.control,
            "compaction changed the control block"
        );
        assert_eq!(
            again.payloads.len(),
            action.payloads.len(),
            "compaction changed the payload count"
        );
    }
});
