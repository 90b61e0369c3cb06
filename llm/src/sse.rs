//! Turning a server-sent-events byte stream into a [`Completion`], for any [`Dialect`].

use std::fmt::Display;

use eventsource_stream::EventStreamError;
use eventsource_stream::Eventsource;
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
    let mut events = std::pin::pin!(bytes.eventsource());
    let mut acc = Accumulator::default();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(e)) => {
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
            // The UTF-8 decoder buffers incomplete characters, so this only happens when the stream ends in
            // the middle of one: a truncation.
            Err(EventStreamError::Utf8(e)) => {
                if acc.finished {
                    break;
                }
                return Err(LlmError::Stream(format!(
                    "the stream ended inside a character ({e}) after {} characters of text",
                    acc.text.chars().count()
                )));
            }
            Err(EventStreamError::Parser(e)) => {
                return Err(LlmError::Decode(format!("malformed event stream: {e}")));
            }
        };
        dialect.on_event(&mut acc, &event.event, &event.data, on_delta)?;
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

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
