//! The OTLP exporter, wrapped so a collector that cannot be reached costs one warning.

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::trace::SpanExporter;

use crate::Protocol;
use crate::TelemetryError;
use crate::settings::Resolved;

/// An OTLP exporter that reports failures once per outage.
#[derive(Debug)]
pub(crate) struct Reporting {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    /// The runtime gRPC exports run in (tonic needs one; HTTP brings its own).
    runtime: Option<tokio::runtime::Handle>,
    failing: AtomicBool,
}

/// Builds the exporter `resolved` describes.
pub(crate) fn build(resolved: &Resolved) -> Result<Reporting, TelemetryError> {
    // HTTPS needs a TLS provider; the process may not have chosen one yet.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let failed = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: resolved.endpoint.clone(),
        message: e.to_string(),
    };
    let (inner, runtime) = match resolved.protocol {
        Protocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(resolved.endpoint.clone())
                .with_headers(resolved.headers.iter().cloned().collect());
            if let Some(timeout) = resolved.timeout {
                builder = builder.with_timeout(timeout);
            }
            (builder.build().map_err(|e| failed(&e))?, None)
        }
        Protocol::Grpc => {
            let runtime = grpc_runtime().map_err(|e| failed(&e))?;
            let mut metadata = http::HeaderMap::new();
            for (name, value) in &resolved.headers {
                let name = http::HeaderName::try_from(name.as_str()).map_err(|e| {
                    TelemetryError::Config(format!(
                        "observability.headers: `{name}` is not a header name: {e}"
                    ))
                })?;
                let value = http::HeaderValue::try_from(value.as_str()).map_err(|e| {
                    TelemetryError::Config(format!(
                        "observability.headers: the value of `{name}` is not a header value: {e}"
                    ))
                })?;
                metadata.insert(name, value);
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(resolved.endpoint.clone())
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(metadata),
                );
            if resolved.endpoint.starts_with("https://") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            if let Some(timeout) = resolved.timeout {
                builder = builder.with_timeout(timeout);
            }
            // The channel's connection task lives in the runtime it is built in.
            let _entered = runtime.enter();
            (
                builder.build().map_err(|e| failed(&e))?,
                Some(runtime.clone()),
            )
        }
    };
    Ok(Reporting {
        inner,
        endpoint: resolved.endpoint.clone(),
        runtime,
        failing: AtomicBool::new(false),
    })
}

/// One small runtime for the process's gRPC exporters, so they work whatever runtime (or none) the host has. It runs
/// on a thread of its own for the rest of the process.
fn grpc_runtime() -> std::io::Result<tokio::runtime::Handle> {
    static HANDLE: Mutex<Option<tokio::runtime::Handle>> = Mutex::new(None);
    let mut handle = HANDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(h) = handle.as_ref() {
        return Ok(h.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("codepilot-otlp".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
    let h = rx.recv().map_err(|_| {
        std::io::Error::other("the gRPC exporter's thread ended before it started")
    })??;
    *handle = Some(h.clone());
    Ok(h)
}

impl SpanExporter for Reporting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        let result = {
            let mut export = pin!(self.inner.export(batch));
            let runtime = self.runtime.as_ref();
            // gRPC's timers and retries need the runtime's context while they are polled.
            std::future::poll_fn(|cx| {
                let _entered = runtime.map(tokio::runtime::Handle::enter);
                export.as_mut().poll(cx)
            })
            .await
        };
        match &result {
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "traces cannot be exported to {}: {e}; {count} spans dropped. Runs go on; this \
                         is reported again only after the collector has answered",
                        self.endpoint
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("traces reach {} again", self.endpoint);
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
