//! What differs between the wire formats an HTTP provider speaks: one [`Dialect`] per format.
//!
//! The HTTP provider ([`crate::http`]) and the event-stream reader ([`crate::sse`]) work through this trait only; the
//! formats themselves live in `anthropic.rs` and `openai.rs`, and the crate root picks one per
//! [`crate::WireFormat`].

use codepilot_protocol::Usage;
use reqwest::header::HeaderMap;
use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::ChatRequest;
use crate::Completion;
use crate::StreamDelta;
use crate::config::ProviderConfig;
use crate::error::LlmError;
use crate::error::Result;

/// One HTTP wire format: where a request goes, how it authenticates, what its body is and how the answer is read.
pub(crate) trait Dialect: Send + Sync {
    /// Rejects settings this format cannot send (called before the provider is built). Default: all are fine.
    fn check(&self, _cfg: &ProviderConfig) -> Result<()> {
        Ok(())
    }

    /// The endpoint for `base`, the effective base URL without a trailing slash.
    fn url(&self, base: &str) -> String;

    /// Adds the format's version and authentication headers; `key` is the trimmed API key, if one is set.
    fn add_headers(&self, headers: &mut HeaderMap, key: Option<&str>) -> Result<()>;

    /// The JSON body of a request.
    fn request_body(&self, cfg: &ProviderConfig, req: &ChatRequest<'_>) -> Result<Vec<u8>>;

    /// Reads a whole (non-streamed) response.
    fn parse_response(
        &self,
        v: &Value,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<Completion>;

    /// Handles one server-sent event (`event` is its name, empty when the stream gives none).
    fn on_event(
        &self,
        acc: &mut Accumulator,
        event: &str,
        data: &str,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<()>;
}

/// `value` as a header value marked sensitive (never printed by `Debug`), for a key or a token built from one.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        LlmError::InvalidConfig(
            "the API key contains characters not allowed in an HTTP header".into(),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// What has been received so far in one response.
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    pub(crate) text: String,
    pub(crate) usage: Usage,
    pub(crate) stop_reason: Option<String>,
    /// The provider said why it stopped: the answer is complete even if the terminal event is missing.
    pub(crate) finished: bool,
    /// The terminal event (`message_stop`, `[DONE]`) arrived.
    pub(crate) done: bool,
}

impl Accumulator {
    pub(crate) fn push_text(
        &mut self,
        piece: &str,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) {
        if !piece.is_empty() {
            self.text.push_str(piece);
            on_delta(StreamDelta::Text(piece));
        }
    }

    pub(crate) fn into_completion(self) -> Completion {
        let mut usage = self.usage;
        usage.calls = 1;
        Completion {
            text: self.text,
            usage,
            stop_reason: self.stop_reason,
            attempts: 1,
        }
    }
}
