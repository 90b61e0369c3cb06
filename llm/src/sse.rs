//! Turning a server-sent-events byte stream into a [`Completion`], for any [`Dialect`].

use std::fmt::Display;

use futures_util::Stream;
use futures_util::StreamExt;

use crate::Completion;
use crate::StreamDelta;
use crate::dialect::Accumulator;
use crate::dialect::Dialect;
use crate::error::LlmError;
use crate::error::Result;

/// Reads SSE events from `bytes` with `dialect` until the terminal event, forwarding deltas to `on_delta`.
///
/// A stream that ends (or breaks) before the provider said why it stopped is an [`LlmError::Stream`], which is
/// retryable.
pub(crate) async fn read_events<S, B, E>(
    bytes: S,
    dialect: &dyn Dialect,
    on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
) -> Result<Completion>
where
    S: Stream<Item = std::result::Result<B, E>> + Send,
    B: AsRef<[u8]> + Send,
    E: Display + Send,
{
    let mut bytes = std::pin::pin!(bytes);
    let mut acc = Accumulator::default();
    let mut decoder = Decoder::default();
    while let Some(chunk) = bytes.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                if acc.finished {
                    tracing::debug!(
                        "stream broke after the final answer event, keeping the answer: {e}"
                    );
                    break;
                }
                return Err(LlmError::Stream(format!(
                    "{e} (after {} characters of text)",
                    acc.text.chars().count()
                )));
            }
        };
        decoder.feed(chunk.as_ref(), |event, data| {
            dialect.on_event(&mut acc, event, data, on_delta)?;
            Ok(acc.done)
        })?;
        if acc.done {
            break;
        }
    }
    if !acc.done && !acc.finished {
        return Err(LlmError::Stream(format!(
            "the stream ended before the final event (after {} characters of text)",
            acc.text.chars().count()
        )));
    }
    Ok(acc.into_completion())
}

/// An incremental decoder of an event stream (the WHATWG `text/event-stream` format): bytes in any chunking, each
/// byte looked at once however small the chunks are. Lines end with LF or CRLF; `event` and `data` fields are
/// kept (several `data` lines join with newlines), comments and other fields are skipped, and a blank line
/// dispatches an event that has data. A line cut off by the end of the stream is dropped, as the format says.
#[derive(Debug, Default)]
struct Decoder {
    /// The start of a line that a later chunk ends.
    partial: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl Decoder {
    /// Decodes `chunk`, calling `dispatch(event type, data)` for every event it completes (`message` when the
    /// stream names no type); stops when `dispatch` returns `true`.
    fn feed(
        &mut self,
        mut chunk: &[u8],
        mut dispatch: impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<()> {
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            let stop = if self.partial.is_empty() {
                self.line(&chunk[..end], &mut dispatch)?
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..end]);
                let stop = self.line(&line, &mut dispatch)?;
                line.clear();
                self.partial = line;
                stop
            };
            if stop {
                return Ok(());
            }
            chunk = &chunk[end + 1..];
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// One complete line (without its LF).
    fn line(
        &mut self,
        line: &[u8],
        dispatch: &mut impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<bool> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let stop = if self.has_data {
                self.data.pop();
                let event = if self.event.is_empty() {
                    "message"
                } else {
                    &self.event
                };
                dispatch(event, &self.data)?
            } else {
                false
            };
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(stop);
        }
        if line[0] == b':' {
            return Ok(false);
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = std::str::from_utf8(value)
            .map_err(|e| LlmError::Decode(format!("the event stream is not UTF-8: {e}")))?;
        match field {
            b"event" => value.clone_into(&mut self.event),
            b"data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            _ => {}
        }
        Ok(false)
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
