//! A trace receiver for tests: OTLP over HTTP/protobuf (served by [`crate::ScriptedServer`] at `/v1/traces`) and
//! over gRPC ([`OtlpGrpcReceiver`]), decoded with the official protobuf definitions (`opentelemetry-proto`) into
//! [`ReceivedSpan`]s a test can assert on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

/// One span as a collector received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedSpan {
    /// The span's name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// `internal`, `client`, `server`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    /// Attributes, their values as JSON (strings, numbers, booleans, arrays).
    pub attributes: BTreeMap<String, Value>,
    /// Names of the span's events, in order.
    pub events: Vec<String>,
    /// The status message when the span failed.
    pub error: Option<String>,
    /// The resource's `service.name`.
    pub service: String,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
}

impl ReceivedSpan {
    /// An attribute as a string (strings as they are, other values as JSON).
    #[must_use]
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attributes.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// Decodes an OTLP/HTTP protobuf body (`ExportTraceServiceRequest`).
///
/// # Errors
/// When the body is not one.
pub fn decode(body: &[u8]) -> Result<Vec<ReceivedSpan>, prost::DecodeError> {
    ExportTraceServiceRequest::decode(body).map(|r| spans_of(&r))
}

fn spans_of(request: &ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .map(|v| match json(v) {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .unwrap_or_default();
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                out.push(ReceivedSpan {
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    }
                    .to_owned(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
                        .collect(),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                    error: span
                        .status
                        .as_ref()
                        .filter(|s| s.code == 2)
                        .map(|s| s.message.clone()),
                    service: service.clone(),
                    duration_ns: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn json(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

/// Spans received so far, shared by a receiver and its handle.
#[derive(Debug, Default, Clone)]
pub(crate) struct Received(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Received {
    pub(crate) fn extend(&self, spans: Vec<ReceivedSpan>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(spans);
    }

    pub(crate) fn all(&self) -> Vec<ReceivedSpan> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until `done` holds for the spans received (polling every 20 ms), at most `timeout`; returns them.
    pub(crate) async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.all();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An OTLP/gRPC trace receiver on `127.0.0.1`.
#[derive(Debug)]
pub struct OtlpGrpcReceiver {
    addr: SocketAddr,
    received: Received,
    task: tokio::task::JoinHandle<()>,
}

struct Service(Received);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.extend(spans_of(request.get_ref()));
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl OtlpGrpcReceiver {
    /// Binds and starts serving.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Received::default();
        let service = TraceServiceServer::new(Service(received.clone()));
        let task = tokio::spawn(async move {
            // Serving ends only with the test; a failure shows as the exporter's connection error.
            let _served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `OTEL_EXPORTER_OTLP_ENDPOINT` with `grpc`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    #[must_use]
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.all()
    }

    /// Waits until `done` holds for the spans received, at most `timeout`; returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        self.received.wait_for(timeout, done).await
    }
}

impl Drop for OtlpGrpcReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
