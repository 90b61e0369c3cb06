//! The span handle the runtime records with.

use std::borrow::Cow;

use opentelemetry::KeyValue;
use opentelemetry::Value;
use opentelemetry::trace::SpanKind;
use opentelemetry::trace::Status;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::trace::Tracer as _;
use opentelemetry_sdk::trace::SdkTracer;

use crate::TraceParent;

/// A span, or nothing when tracing is off. Clones share the span; it ends at [`Span::end`] or when the last clone
/// drops, so an early return cannot leave it open.
#[derive(Clone, Default)]
pub struct Span {
    inner: Option<Inner>,
}

/// The span in its context, and the tracer its children come from.
#[derive(Clone)]
struct Inner {
    cx: opentelemetry::Context,
    tracer: SdkTracer,
    /// Whether prompts, answers, tool arguments, results and error messages may be recorded (inherited).
    content: bool,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.traceparent() {
            Some(tp) => write!(f, "Span({tp})"),
            None => f.write_str("Span(none)"),
        }
    }
}

pub(crate) fn start(
    tracer: &SdkTracer,
    name: Cow<'static, str>,
    kind: SpanKind,
    parent: &opentelemetry::Context,
    attributes: Vec<KeyValue>,
    content: bool,
) -> Span {
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    Span {
        inner: Some(Inner {
            cx: parent.with_span(span),
            tracer: tracer.clone(),
            content,
        }),
    }
}

impl Span {
    /// No span: what every site records into when tracing is off.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether the span records: tracing is on and the sampler kept it. Attributes of a span that does not
    /// record are never computed.
    #[must_use]
    pub fn is_recording(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.cx.span().is_recording())
    }

    /// Whether the span records and content may go into it (`observability.log_content`): prompts, answers, tool
    /// arguments and results, error messages that may quote them.
    #[must_use]
    pub fn records_content(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.content) && self.is_recording()
    }

    /// The OpenTelemetry context holding the span, to parent spans of other instrumented code.
    #[must_use]
    pub fn context(&self) -> Option<&opentelemetry::Context> {
        self.inner.as_ref().map(|i| &i.cx)
    }

    /// Starts a child span; nothing when this span records nothing. `attributes` is called only for a real span.
    #[must_use]
    pub fn child(
        &self,
        name: impl FnOnce() -> Cow<'static, str>,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        match &self.inner {
            // A child of a span the sampler dropped carries the trace on, records nothing.
            Some(i) if !i.cx.span().is_recording() => {
                start(&i.tracer, name(), kind, &i.cx, Vec::new(), i.content)
            }
            Some(i) => start(&i.tracer, name(), kind, &i.cx, attributes(), i.content),
            None => Self::none(),
        }
    }

    /// Sets an attribute (a value that costs nothing to make: numbers, booleans, static strings; else
    /// [`Span::set_with`]).
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if self.is_recording()
            && let Some(Inner { cx, .. }) = &self.inner
        {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Sets attributes computed only when the span records.
    pub fn set_with(&self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if self.is_recording()
            && let Some(Inner { cx, .. }) = &self.inner
        {
            cx.span().set_attributes(attributes());
        }
    }

    /// Adds a timestamped event; its attributes are computed only when the span records.
    pub fn event(&self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if self.is_recording()
            && let Some(Inner { cx, .. }) = &self.inner
        {
            cx.span().add_event(name, attributes());
        }
    }

    /// Marks the span failed: `error.type` (a short, stable class) and the status message `message` makes, called
    /// only when the span records.
    pub fn fail(&self, error_type: &'static str, message: impl FnOnce() -> String) {
        if self.is_recording()
            && let Some(Inner { cx, .. }) = &self.inner
        {
            let span = cx.span();
            span.set_attribute(KeyValue::new(crate::names::ERROR_TYPE, error_type));
            span.set_status(Status::error(message()));
        }
    }

    /// Ends the span now (dropping the last clone does the same).
    pub fn end(&self) {
        if let Some(Inner { cx, .. }) = &self.inner {
            cx.span().end();
        }
    }

    /// The span as a W3C `traceparent` value, for a child process or a request to another service.
    #[must_use]
    pub fn traceparent(&self) -> Option<String> {
        let cx = &self.inner.as_ref()?.cx;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| TraceParent::from_span_context(sc).to_string())
    }
}
