//! The engine's warnings and errors (tracing) as records of the Python logger `codepilot`.

use std::fmt::Write as _;

use pyo3::prelude::*;
use tracing::Level;
use tracing::field::Field;
use tracing::field::Visit;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::SubscriberExt as _;

/// Collects an event's message and fields as one line.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// Forwards `WARN` and `ERROR` events to `logging.getLogger("codepilot")`.
struct PythonLogging;

impl<S: tracing::Subscriber> Layer<S> for PythonLogging {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let method = match level {
            Level::ERROR => "error",
            Level::WARN => "warning",
            _ => return,
        };
        let mut line = Line::default();
        event.record(&mut line);
        Python::attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("codepilot",)))
                .and_then(|logger| logger.call_method1(method, (line.0,)));
            if let Err(e) = logged {
                e.print(py);
            }
        });
    }
}

/// Installs the forwarding as the process's tracing subscriber, unless the host already installed one.
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(PythonLogging);
    // Another extension module may have set one; its choice stands.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
