//! OpenTelemetry traces for CodePilot (SPEC §23).
//!
//! The runtime records a span for each run, step, model call, control block, tool call, MCP call, checkpoint and
//! worker, with the OpenTelemetry GenAI semantic conventions ([`names`]), and exports them over OTLP (HTTP/protobuf
//! or gRPC) to whatever collector the standard `OTEL_*` variables or the agent file's `observability:` name.
//!
//! - [`TraceSettings`] is what the agent file says; [`Telemetry::new`] resolves it against the environment and
//!   returns `None` when nothing asks for traces, so an unconfigured runtime creates no span and pays one `Option`
//!   check per site.
//! - Runtimes of one process that export to the same place share one exporter (one batch thread, one connection).
//!   Spans are exported in batches by that thread, never on the step's path; a collector that cannot be reached is
//!   reported once as a warning (and once more when it answers again), never as an error of the run.
//! - [`Span`] is the handle the runtime records with: cheap to clone, a no-op when tracing is off, ended when its
//!   last clone drops.
//! - [`TraceParent`] reads and writes W3C `traceparent` values: a host's span parents the run, and the agent's
//!   shells get the run's as `TRACEPARENT`.

mod exporter;
pub mod names;
mod settings;
mod span;
mod traceparent;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::time::Duration;

pub use opentelemetry::KeyValue;
pub use opentelemetry::StringValue;
pub use opentelemetry::Value;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracer;
use opentelemetry_sdk::trace::SdkTracerProvider;
pub use settings::Protocol;
pub use settings::TraceSettings;
pub use span::Span;
pub use traceparent::BadTraceParent;
pub use traceparent::TraceParent;

/// The longest a host's flush (`close()`, `flush_traces()`) or the last runtime's drop waits for spans to leave.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A setting or variable has a value that cannot work.
    #[error("{0}")]
    Config(String),
    /// The OTLP exporter refused its configuration.
    #[error("cannot set up the OTLP trace exporter for {endpoint}: {message}")]
    Exporter {
        /// Where traces were to go.
        endpoint: String,
        /// The exporter's reason.
        message: String,
    },
}

/// Traces of one runtime: the shared exporter and whether prompts and answers go into spans.
#[derive(Clone)]
pub struct Telemetry {
    exporting: Arc<Exporting>,
    log_content: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("endpoint", &self.exporting.endpoint)
            .field("protocol", &self.exporting.protocol)
            .field("log_content", &self.log_content)
            .finish()
    }
}

/// One exporter with its tracer, shared by every runtime of the process that exports to the same place.
struct Exporting {
    endpoint: String,
    protocol: Protocol,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Drop for Exporting {
    fn drop(&mut self) {
        // Sends what is left, off the dropping thread (often an async runtime's worker): hosts flush before they
        // exit (`close()` does), so this only catches spans that ended since.
        let provider = self.provider.clone();
        let _ = std::thread::Builder::new()
            .name("codepilot-otel-shutdown".to_owned())
            .spawn(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT));
    }
}

/// The exporters alive in this process, by what they were built for.
static EXPORTERS: Mutex<Vec<(settings::Resolved, Weak<Exporting>)>> = Mutex::new(Vec::new());

impl Telemetry {
    /// Traces as `settings` and the process environment ask for them; `None` when nothing asks (no
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT`, no `OTEL_TRACES_EXPORTER=otlp`, no `observability.endpoint`, no
    /// `observability.enabled: true`), or when `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` or
    /// `observability.enabled: false` turn them off.
    ///
    /// # Errors
    /// [`TelemetryError`] for an endpoint that is not a URL, an unknown protocol, or an exporter that cannot be
    /// built; each names the setting or variable to fix.
    pub fn new(settings: &TraceSettings) -> Result<Option<Self>, TelemetryError> {
        Self::with_env(settings, |name| std::env::var(name).ok())
    }

    /// [`Telemetry::new`] with the environment read through `env`.
    ///
    /// # Errors
    /// As [`Telemetry::new`].
    pub fn with_env(
        settings: &TraceSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TelemetryError> {
        let Some(resolved) = settings::resolve(settings, &env)? else {
            return Ok(None);
        };
        let exporting = shared(resolved)?;
        Ok(Some(Self {
            exporting,
            log_content: settings.log_content,
        }))
    }

    /// Whether prompts, answers, tool arguments and results go into spans (`observability.log_content`).
    #[must_use]
    pub fn log_content(&self) -> bool {
        self.log_content
    }

    /// Where spans go: the OTLP traces URL.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.exporting.endpoint
    }

    /// Starts a root span (a run's), the child of `remote` when a host passed its trace context. Its descendants
    /// come from [`Span::child`].
    #[must_use]
    pub fn start_root(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        remote: Option<&TraceParent>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let parent = remote.map_or_else(opentelemetry::Context::new, TraceParent::context);
        span::start(
            &self.exporting.tracer,
            name.into(),
            SpanKind::Internal,
            &parent,
            attributes,
            self.log_content,
        )
    }

    /// Sends the spans that ended so far, waiting at most `timeout` (a host that is about to exit, a Python
    /// `close()`).
    pub fn flush(&self, timeout: Duration) {
        let provider = self.exporting.provider.clone();
        // The SDK's flush blocks until the batch thread answers; bound it from outside.
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("codepilot-otel-flush".to_owned())
            .spawn(move || {
                let _ = tx.send(provider.force_flush());
            });
        if spawned.is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// The process's exporter for `resolved`, built on first use.
fn shared(resolved: settings::Resolved) -> Result<Arc<Exporting>, TelemetryError> {
    let mut exporters = EXPORTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    exporters.retain(|(_, w)| w.strong_count() > 0);
    // Compared before upgrading: no other exporter's last reference is made (and dropped) under the lock.
    if let Some(found) = exporters
        .iter()
        .find(|(key, _)| *key == resolved)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(found);
    }
    let endpoint = resolved.endpoint.clone();
    let protocol = resolved.protocol;
    let exporter = exporter::build(&resolved)?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(settings::resource(&resolved))
        .build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("codepilot")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(names::SCHEMA_URL)
            .build(),
    );
    let exporting = Arc::new(Exporting {
        endpoint,
        protocol,
        provider,
        tracer,
    });
    exporters.push((resolved, Arc::downgrade(&exporting)));
    Ok(exporting)
}
