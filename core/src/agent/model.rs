//! One model call: the request streamed, the user's share of it forwarded as events, abortable.

use codepilot_llm::ChatRequest;
use codepilot_llm::Completion;
use codepilot_llm::StreamDelta;
use codepilot_llm::WireMessage;
use codepilot_protocol::StreamFilter;
use codepilot_telemetry::KeyValue;
use codepilot_telemetry::Span;
use codepilot_telemetry::names;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::error::Result;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::ModelRetryEvent;
use crate::events::RuntimeErrorEvent;
use crate::events::StreamEvent;
use crate::events::StreamKind;

/// Asks the model for the next answer. Prose meant for the user is emitted as `Stream` events while it arrives;
/// a retry voids what was streamed for the failed attempt. `Ok(None)` when the run was aborted meanwhile; an
/// error (after the provider's own retries) is reported as an event and ends the run without consuming a step.
pub(super) async fn ask(
    cx: &Context,
    system: &str,
    system_dynamic: &str,
    messages: &[WireMessage],
    cache_marks: &[usize],
    cancel: &CancellationToken,
    span: &Span,
) -> Result<Option<Completion>> {
    let mut filter = StreamFilter::new();
    let events = &cx.events;
    let started = span.is_recording().then(std::time::Instant::now);
    let mut first_token = true;
    let mut forward = |d: StreamDelta<'_>| match d {
        StreamDelta::Text(t) => {
            let shown = filter.push(t);
            if !shown.is_empty() {
                events.emit(Event::Stream(StreamEvent {
                    kind: StreamKind::Text,
                    text: shown,
                }));
            }
        }
        StreamDelta::Thinking(t) => events.emit(Event::Stream(StreamEvent {
            kind: StreamKind::Thinking,
            text: t.to_owned(),
        })),
        StreamDelta::Retry {
            attempt,
            delay,
            reason,
        } => {
            filter = StreamFilter::new();
            span.event(names::EVENT_RETRY, || {
                vec![
                    KeyValue::new(names::RETRY_ATTEMPT, i64::from(attempt)),
                    KeyValue::new(names::RETRY_REASON, reason.to_owned()),
                ]
            });
            events.emit(Event::ModelRetry(ModelRetryEvent {
                attempt: attempt.saturating_sub(1),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason: reason.to_owned(),
            }));
        }
        _ => {}
    };
    let mut on_delta = |d: StreamDelta<'_>| {
        if first_token
            && let (Some(started), StreamDelta::Text(_) | StreamDelta::Thinking(_)) = (started, &d)
        {
            first_token = false;
            let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            span.event(names::EVENT_FIRST_TOKEN, || {
                vec![KeyValue::new(names::FIRST_TOKEN_MS, ms)]
            });
            span.set(names::FIRST_TOKEN_MS, ms);
        }
        forward(d);
    };
    let call = cx.provider.complete(
        ChatRequest {
            system,
            system_dynamic,
            messages,
            cache_marks: Some(cache_marks),
        },
        &mut on_delta,
    );
    let result = tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(None),
        r = call => r,
    };
    match result {
        Err(e) => {
            span.fail("provider", || e.to_string());
            cx.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Provider,
                message: e.to_string(),
            }));
            // The task message stays; the failed call did not consume a step.
            Err(e.into())
        }
        Ok(completion) => {
            let rest = filter.finish();
            if !rest.is_empty() {
                cx.emit(Event::Stream(StreamEvent {
                    kind: StreamKind::Text,
                    text: rest,
                }));
            }
            Ok(Some(completion))
        }
    }
}
