//! What the agent file says about traces, and how it combines with the standard `OTEL_*` variables.
//!
//! The variables win over the file: the file carries a project's defaults, the environment says where this
//! deployment's collector is.

use std::time::Duration;

use opentelemetry_sdk::Resource;

use crate::TelemetryError;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Protobuf over HTTP, `POST {endpoint}/v1/traces` (the default; port 4318).
    #[default]
    HttpProtobuf,
    /// gRPC (port 4317).
    Grpc,
}

impl Protocol {
    /// The name the `OTEL_EXPORTER_OTLP_PROTOCOL` variable and `observability.protocol` use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }

    /// Reads a protocol name; `None` for one this runtime does not speak.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "http/protobuf" | "http" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

/// `observability:` in agent.yaml.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSettings {
    /// `Some(false)` turns traces off whatever the environment says; `Some(true)` turns them on with the default
    /// endpoint when nothing names one; `None`: on when an endpoint is configured.
    pub enabled: Option<bool>,
    /// The collector's base URL (`/v1/traces` is appended for HTTP), as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// The transport, as `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<Protocol>,
    /// Headers sent with every export (an API key for a hosted backend), as `OTEL_EXPORTER_OTLP_HEADERS`.
    pub headers: Vec<(String, String)>,
    /// `service.name` of the spans, as `OTEL_SERVICE_NAME`; default `codepilot`.
    pub service_name: Option<String>,
    /// Whether prompts, answers, tool arguments and results go into spans. Off by default.
    pub log_content: bool,
}

/// Settings and environment combined: where spans go and how. Equal values share one exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The full traces URL (HTTP) or the gRPC endpoint.
    pub(crate) endpoint: String,
    pub(crate) protocol: Protocol,
    /// Headers from the agent file (the exporter adds `OTEL_EXPORTER_OTLP_HEADERS` itself).
    pub(crate) headers: Vec<(String, String)>,
    /// The file's service name, used when the environment names none.
    pub(crate) service_name: Option<String>,
    pub(crate) timeout: Option<Duration>,
}

const DEFAULT_HTTP: &str = "http://localhost:4318";
const DEFAULT_GRPC: &str = "http://localhost:4317";
const DEFAULT_SERVICE: &str = "codepilot";

/// Combines `settings` with the environment; `None` when traces are off.
pub(crate) fn resolve(
    settings: &TraceSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Resolved>, TelemetryError> {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if settings.enabled == Some(false)
        || var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(None);
    }
    // The variables may be set for the host application (a Python app's own SDK), so values this runtime cannot
    // use turn its traces off with a warning rather than stopping it.
    let exporter = var("OTEL_TRACES_EXPORTER");
    if let Some(list) = &exporter {
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        if !names.contains(&"otlp") {
            if !names.iter().all(|n| *n == "none") {
                tracing::warn!(
                    "OTEL_TRACES_EXPORTER={list}: CodePilot exports traces only over OTLP, so its traces are off; \
                     add `otlp` to the list to send them"
                );
            }
            return Ok(None);
        }
    }
    let signal_endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base_endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let file_endpoint = settings
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let asked = settings.enabled == Some(true)
        || exporter.is_some()
        || signal_endpoint.is_some()
        || base_endpoint.is_some()
        || file_endpoint.is_some();
    if !asked {
        return Ok(None);
    }
    let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v)))
    {
        Some((name, value)) => Protocol::parse(&value).unwrap_or_else(|| {
            // OTLP/HTTP collectors take protobuf on the same URL as JSON.
            tracing::warn!(
                "{name}={value}: CodePilot speaks http/protobuf or grpc; sending http/protobuf to the same endpoint"
            );
            Protocol::HttpProtobuf
        }),
        None => settings.protocol.unwrap_or_default(),
    };
    let endpoint = match (&signal_endpoint, &base_endpoint, file_endpoint) {
        (Some(url), _, _) => check_url(url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?.to_owned(),
        (None, Some(base), _) => {
            signal_url(check_url(base, "OTEL_EXPORTER_OTLP_ENDPOINT")?, protocol)
        }
        (None, None, Some(base)) => {
            signal_url(check_url(base, "observability.endpoint")?, protocol)
        }
        (None, None, None) => signal_url(
            match protocol {
                Protocol::HttpProtobuf => DEFAULT_HTTP,
                Protocol::Grpc => DEFAULT_GRPC,
            },
            protocol,
        ),
    };
    let timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    Ok(Some(Resolved {
        endpoint,
        protocol,
        headers: settings.headers.clone(),
        service_name: settings.service_name.clone(),
        timeout,
    }))
}

/// The URL spans are sent to, from a base endpoint: `/v1/traces` appended for HTTP, the base itself for gRPC.
fn signal_url(base: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        Protocol::Grpc => base.to_owned(),
    }
}

/// `url` when it is an http(s) URL; else the error naming `source`.
fn check_url<'a>(url: &'a str, source: &str) -> Result<&'a str, TelemetryError> {
    let ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
    if ok {
        Ok(url)
    } else {
        Err(TelemetryError::Config(format!(
            "{source} `{url}` is not an http:// or https:// URL; write the collector's address, e.g. \
             http://localhost:4318"
        )))
    }
}

/// The resource every span carries: `service.name` (the environment's, else the file's, else `codepilot`),
/// `service.version`, and what `OTEL_RESOURCE_ATTRIBUTES` adds.
pub(crate) fn resource(resolved: &Resolved) -> Resource {
    let from_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if from_env {
        builder.build()
    } else {
        builder
            .with_service_name(
                resolved
                    .service_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SERVICE.to_owned()),
            )
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn endpoint(
        settings: &TraceSettings,
        vars: &'static [(&'static str, &'static str)],
    ) -> Option<String> {
        resolve(settings, &env_of(vars))
            .ok()
            .flatten()
            .map(|r| format!("{} {}", r.protocol.as_str(), r.endpoint))
    }

    #[test]
    fn nothing_configured_is_off() {
        assert_eq!(endpoint(&TraceSettings::default(), &[]), None);
    }

    #[test]
    fn the_environment_beats_the_file() {
        let file = TraceSettings {
            endpoint: Some("http://file:4318".to_owned()),
            ..TraceSettings::default()
        };
        assert_eq!(
            endpoint(&file, &[]).as_deref(),
            Some("http/protobuf http://file:4318/v1/traces")
        );
        assert_eq!(
            endpoint(
                &file,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/")]
            )
            .as_deref(),
            Some("http/protobuf http://env:4318/v1/traces")
        );
        assert_eq!(
            endpoint(
                &file,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://signal:9/x"),
                ]
            )
            .as_deref(),
            Some("http/protobuf http://signal:9/x")
        );
        assert_eq!(
            endpoint(&file, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).as_deref(),
            Some("grpc http://file:4318")
        );
    }

    #[test]
    fn off_switches_win() {
        let on = TraceSettings {
            enabled: Some(true),
            ..TraceSettings::default()
        };
        assert_eq!(
            endpoint(&on, &[]).as_deref(),
            Some("http/protobuf http://localhost:4318/v1/traces")
        );
        assert_eq!(endpoint(&on, &[("OTEL_SDK_DISABLED", "true")]), None);
        assert_eq!(endpoint(&on, &[("OTEL_TRACES_EXPORTER", "none")]), None);
        let off = TraceSettings {
            enabled: Some(false),
            ..TraceSettings::default()
        };
        assert_eq!(
            endpoint(&off, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")]),
            None
        );
    }

    #[test]
    fn a_bad_endpoint_is_named_and_what_only_another_sdk_uses_is_set_aside() {
        let env_only = |vars| resolve(&TraceSettings::default(), &env_of(vars));
        let err = env_only(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_ENDPOINT `localhost:4318`"),
            "{err}"
        );
        assert!(matches!(
            env_only(&[("OTEL_TRACES_EXPORTER", "console")]),
            Ok(None)
        ));
        assert!(matches!(
            env_only(&[("OTEL_TRACES_EXPORTER", "console, otlp")]),
            Ok(Some(_))
        ));
        assert_eq!(
            endpoint(
                &TraceSettings::default(),
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                ]
            )
            .as_deref(),
            Some("http/protobuf http://x:4318/v1/traces")
        );
    }
}
