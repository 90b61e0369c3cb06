//! [`Turn`]: one scripted answer, error or stall of the [`ScriptedServer`](crate::ScriptedServer).

use codepilot_protocol::Usage;

/// Default size of the byte chunks a streamed body is split into.
pub const DEFAULT_CHUNK_BYTES: usize = 7;
/// Default number of characters per text delta event.
pub const DEFAULT_PIECE_CHARS: usize = 5;

/// One scripted server response, consumed by one request.
#[derive(Debug, Clone)]
pub struct Turn(pub(crate) TurnKind);

#[derive(Debug, Clone)]
pub(crate) enum TurnKind {
    Answer(Answer),
    Status {
        code: u16,
        retry_after: Option<u64>,
    },
    Disconnect {
        answer: Answer,
        bytes: usize,
    },
    Delay {
        ms: u64,
        turn: Box<Turn>,
    },
    Raw {
        status: u16,
        content_type: String,
        body: String,
        chunk_bytes: usize,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) thinking: Option<String>,
    pub(crate) usage: Usage,
    pub(crate) stop_reason: Option<String>,
    pub(crate) chunk_bytes: usize,
    pub(crate) piece_chars: usize,
}

impl Answer {
    fn new(text: String) -> Self {
        Self {
            text,
            thinking: None,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            stop_reason: None,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            piece_chars: DEFAULT_PIECE_CHARS,
        }
    }
}

impl Turn {
    /// A successful answer, in the wire format of the request path; streamed (SSE, several text deltas, split
    /// into [`DEFAULT_CHUNK_BYTES`]-byte chunks) when the request body has `"stream": true`, else one JSON body.
    /// Default usage: 10 input and 5 output tokens.
    #[must_use]
    pub fn answer(text: impl Into<String>) -> Self {
        Turn(TurnKind::Answer(Answer::new(text.into())))
    }

    /// An error status with an error JSON body in the request's wire format, and a `retry-after` header
    /// (seconds) when given.
    #[must_use]
    pub fn status(code: u16, retry_after: Option<u64>) -> Self {
        Turn(TurnKind::Status { code, retry_after })
    }

    /// Starts answering `text` (streamed or not, like [`Turn::answer`]), sends only the first `bytes` bytes of
    /// the body, then drops the connection without the terminal event.
    #[must_use]
    pub fn disconnect_after(text: impl Into<String>, bytes: usize) -> Self {
        Turn(TurnKind::Disconnect {
            answer: Answer::new(text.into()),
            bytes,
        })
    }

    /// Waits `ms` milliseconds before serving `turn`.
    #[must_use]
    pub fn delay(ms: u64, turn: Turn) -> Self {
        Turn(TurnKind::Delay {
            ms,
            turn: Box::new(turn),
        })
    }

    /// Serves `body` verbatim with the given status and content type, split into chunks like a stream; for
    /// testing a client against quirks the generated answers do not have.
    #[must_use]
    pub fn raw(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Turn(TurnKind::Raw {
            status,
            content_type: content_type.into(),
            body: body.into(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        })
    }

    fn answer_mut(&mut self) -> Option<&mut Answer> {
        match &mut self.0 {
            TurnKind::Answer(a) | TurnKind::Disconnect { answer: a, .. } => Some(a),
            TurnKind::Delay { turn, .. } => turn.answer_mut(),
            TurnKind::Status { .. } | TurnKind::Raw { .. } => None,
        }
    }

    /// Sets the byte size of streamed chunks (minimum 1). Applies to answers, disconnects and raw turns.
    #[must_use]
    pub fn with_chunk_bytes(mut self, n: usize) -> Self {
        let n = n.max(1);
        if let TurnKind::Raw { chunk_bytes, .. } = &mut self.0 {
            *chunk_bytes = n;
        } else if let Some(a) = self.answer_mut() {
            a.chunk_bytes = n;
        }
        self
    }

    /// Sets how many characters each text delta event carries (minimum 1).
    #[must_use]
    pub fn with_piece_chars(mut self, n: usize) -> Self {
        if let Some(a) = self.answer_mut() {
            a.piece_chars = n.max(1);
        }
        self
    }

    /// Adds reasoning text: Anthropic thinking blocks, or `reasoning_content` for OpenAI.
    #[must_use]
    pub fn with_thinking(mut self, thinking: impl Into<String>) -> Self {
        if let Some(a) = self.answer_mut() {
            a.thinking = Some(thinking.into());
        }
        self
    }

    /// Sets the reported token usage (`calls` is ignored). OpenAI reports `input + cache_read` as prompt
    /// tokens with `cache_read` as cached tokens; cache writes exist only in the Anthropic format.
    #[must_use]
    pub fn with_usage(mut self, usage: Usage) -> Self {
        if let Some(a) = self.answer_mut() {
            a.usage = usage;
        }
        self
    }

    /// Sets the stop reason (default `end_turn` for Anthropic, `stop` for OpenAI).
    #[must_use]
    pub fn with_stop_reason(mut self, reason: impl Into<String>) -> Self {
        if let Some(a) = self.answer_mut() {
            a.stop_reason = Some(reason.into());
        }
        self
    }
}
