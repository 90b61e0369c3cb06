use codepilot_protocol::Usage;
use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;
use crate::config::WireFormat;

const TEXT: &str = "```codepilot\nr = execute(\"main\", \"ls é 🦀\")\n```";

fn anthropic_body() -> String {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"cache_creation_input_tokens\":4,\"output_tokens\":1}}}\n\n");
    s.push_str("event: ping\ndata: {\"type\":\"ping\"}\n\n");
    s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"think\"}}\n\n");
    for piece in [
        "```codepilot\nr = execute(",
        "\"main\", \"ls é 🦀\")",
        "\n```",
    ] {
        let data = serde_json::json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":piece}});
        s.push_str(&format!("event: content_block_delta\ndata: {data}\n\n"));
    }
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s
}

fn openai_body() -> String {
    let mut s = String::from(": keep-alive\n\n");
    for piece in [
        "```codepilot\nr = execute(",
        "\"main\", \"ls é 🦀\")",
        "\n```",
    ] {
        let data = serde_json::json!({"choices":[{"delta":{"content":piece},"finish_reason":""}],"usage":{}});
        s.push_str(&format!("data: {data}\n\n"));
    }
    s.push_str("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    s.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n");
    s.push_str("data: [DONE]\n\n");
    s
}

fn split(body: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([body.len()]) {
        chunks.push(body[start..c].to_vec());
        start = c;
    }
    chunks
}

fn run(
    chunks: Vec<Vec<u8>>,
    tail_error: bool,
    wire: WireFormat,
) -> (Result<Completion>, Vec<String>) {
    let mut items: Vec<std::result::Result<Vec<u8>, String>> = chunks.into_iter().map(Ok).collect();
    if tail_error {
        items.push(Err("connection reset".to_owned()));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut deltas = Vec::new();
    let result = rt.block_on(read_events(
        futures_util::stream::iter(items),
        crate::dialect_of(wire).unwrap(),
        &mut |d| deltas.push(format!("{d:?}")),
    ));
    (result, deltas)
}

fn expected_usage(wire: WireFormat) -> Usage {
    match wire {
        WireFormat::Anthropic => Usage {
            reasoning_tokens: 0,
            input_tokens: 12,
            output_tokens: 15,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
            calls: 1,
        },
        _ => Usage {
            reasoning_tokens: 0,
            input_tokens: 12,
            output_tokens: 15,
            cache_read_tokens: 3,
            cache_write_tokens: 0,
            calls: 1,
        },
    }
}

proptest! {
    #[test]
    fn any_chunking_reassembles_the_same_answer(
        cuts in proptest::collection::vec(0usize..4096, 0..40),
        crlf in any::<bool>(),
        anthropic in any::<bool>(),
    ) {
        let wire = if anthropic { WireFormat::Anthropic } else { WireFormat::OpenAiChat };
        let mut body = if anthropic { anthropic_body() } else { openai_body() };
        if crlf {
            body = body.replace('\n', "\r\n");
        }
        let (result, deltas) = run(split(body.as_bytes(), &cuts), false, wire);
        let c = result.unwrap();
        prop_assert_eq!(&c.text, TEXT);
        prop_assert_eq!(c.usage, expected_usage(wire));
        let n_text = deltas.iter().filter(|d| d.starts_with("Text")).count();
        prop_assert_eq!(n_text, 3);
    }

    #[test]
    fn a_truncated_stream_is_a_retryable_error(cut in 0usize..200, anthropic in any::<bool>()) {
        let wire = if anthropic { WireFormat::Anthropic } else { WireFormat::OpenAiChat };
        let body = if anthropic { anthropic_body() } else { openai_body() };
        // Cut somewhere before the stop reason arrives.
        let stop_at = body.find("\"stop_reason\":\"end_turn\"").or_else(|| body.find("\"finish_reason\":\"stop\"")).unwrap();
        let cut = cut % stop_at;
        for tail_error in [false, true] {
            let (result, _) = run(vec![body.as_bytes()[..cut].to_vec()], tail_error, wire);
            let err = result.unwrap_err();
            prop_assert!(err.is_retryable(), "{}", err);
            prop_assert!(matches!(err, LlmError::Stream(_)));
        }
    }
}

#[test]
fn a_break_after_the_stop_reason_keeps_the_answer() {
    let body = openai_body();
    let cut = body.find("data: [DONE]").unwrap();
    let (result, _) = run(
        vec![body.as_bytes()[..cut].to_vec()],
        true,
        WireFormat::OpenAiChat,
    );
    assert_eq!(result.unwrap().text, TEXT);
    let body = anthropic_body();
    let cut = body.find("event: message_stop").unwrap();
    let (result, _) = run(
        vec![body.as_bytes()[..cut].to_vec()],
        false,
        WireFormat::Anthropic,
    );
    let c = result.unwrap();
    assert_eq!(c.text, TEXT);
    assert_eq!(c.stop_reason.as_deref(), Some("end_turn"));
}

#[test]
fn thinking_deltas_are_separate_from_text() {
    let (result, deltas) = run(
        vec![anthropic_body().into_bytes()],
        false,
        WireFormat::Anthropic,
    );
    assert_eq!(result.unwrap().text, TEXT);
    assert_eq!(deltas[0], r#"Thinking("think")"#);
}

/// Events as the decoder dispatches them, for `body` fed in `chunk`-byte pieces.
fn decode(body: &[u8], chunk: usize) -> Result<Vec<(String, String)>> {
    let mut decoder = Decoder::default();
    let mut events = Vec::new();
    for piece in body.chunks(chunk) {
        decoder.feed(piece, |event, data| {
            events.push((event.to_owned(), data.to_owned()));
            Ok(false)
        })?;
    }
    Ok(events)
}

#[test]
fn the_decoder_follows_the_event_stream_format() {
    let body = b": a comment\n\nevent: first\ndata: one\ndata:  two\nid: 7\nretry: 10\n\ndata\n\nevent: nothing\n\ndata: last\r\n\r\ndata: cut off";
    for chunk in [1, 2, 3, 7, body.len()] {
        assert_eq!(
            decode(body, chunk).unwrap(),
            [
                ("first".to_owned(), "one\n two".to_owned()),
                ("message".to_owned(), String::new()),
                ("message".to_owned(), "last".to_owned()),
            ],
            "chunks of {chunk}"
        );
    }
    let err = decode(b"data: \xff\n\n", 4).unwrap_err();
    assert!(matches!(err, LlmError::Decode(_)), "{err}");
}
