//! The HTTP provider shared by every wire format: request execution, status mapping and retries. What differs
//! between the formats comes from a [`Dialect`].

use std::sync::Once;
use std::time::Duration;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::header::HeaderValue;

use crate::ChatRequest;
use crate::Completion;
use crate::Provider;
use crate::StreamDelta;
use crate::config::ProviderConfig;
use crate::config::RetryPolicy;
use crate::dialect::Dialect;
use crate::error::LlmError;
use crate::error::Result;
use crate::sse;

/// Longest excerpt of an error body kept in an error message.
const BODY_EXCERPT_CHARS: usize = 400;

static CRYPTO: Once = Once::new();

/// Installs rustls' ring crypto provider as the process default, once. Harmless when the host program (or
/// another crate) already installed one.
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        // An `Err` means a provider is already installed, which is what we want.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The HTTP clients of the process, by (https, connect timeout): every provider (a runtime's, its workers', other
/// runtimes') shares one and its connection pool. A client for `http://` (a local model server) never reads the
/// system's CA roots — reading them (the bundle and the certificate folder) was most of a run's start; an https one
/// reads them once per process.
static CLIENTS: std::sync::Mutex<Vec<(bool, Duration, reqwest::Client)>> =
    std::sync::Mutex::new(Vec::new());

fn shared_client(https: bool, connect_timeout: Duration) -> Result<reqwest::Client> {
    let mut clients = CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, client)) = clients
        .iter()
        .find(|(h, t, _)| *h == https && *t == connect_timeout)
    {
        return Ok(client.clone());
    }
    install_crypto_provider();
    let mut builder = reqwest::Client::builder().connect_timeout(connect_timeout);
    if !https {
        // No roots: a plain-HTTP server needs none (a redirect to https fails, naming the certificate).
        builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
    }
    let client = builder
        .build()
        .map_err(|e| LlmError::InvalidConfig(format!("cannot build the HTTP client: {e}")))?;
    clients.push((https, connect_timeout, client.clone()));
    Ok(client)
}

/// A provider that speaks one [`Dialect`] over HTTP.
pub(crate) struct HttpProvider {
    cfg: ProviderConfig,
    client: reqwest::Client,
    url: String,
    dialect: &'static dyn Dialect,
}

impl HttpProvider {
    pub(crate) fn new(cfg: ProviderConfig, dialect: &'static dyn Dialect) -> Result<Self> {
        let base = cfg.effective_base_url().ok_or_else(|| {
            LlmError::InvalidConfig(format!(
                "provider `{}` needs a base_url (e.g. http://localhost:8000/v1)",
                cfg.kind
            ))
        })?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LlmError::InvalidConfig(format!(
                "base_url `{base}` must start with http:// or https://"
            )));
        }
        let url = dialect.url(&base);
        let client = shared_client(
            base.starts_with("https://"),
            cfg.request_timeout.min(Duration::from_secs(30)),
        )?;
        Ok(Self {
            cfg,
            client,
            url,
            dialect,
        })
    }

    fn headers(&self) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.cfg.stream {
            headers.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        let key = self
            .cfg
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        self.dialect.add_headers(&mut headers, key)?;
        Ok(headers)
    }

    fn network_error(&self, message: impl Into<String>) -> LlmError {
        LlmError::Network {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    /// One attempt, without retries.
    async fn attempt(
        &self,
        body: Bytes,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<Completion> {
        let timeout = self.cfg.request_timeout;
        let send = self
            .client
            .post(&self.url)
            .headers(self.headers()?)
            .body(body)
            .send();
        let response = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| {
                self.network_error(format!("no response within {} s", timeout.as_secs_f32()))
            })?
            .map_err(|e| self.network_error(describe_reqwest(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = parse_retry_after(response.headers(), SystemTime::now());
            let text = tokio::time::timeout(timeout, response.text())
                .await
                .ok()
                .and_then(std::result::Result::ok)
                .unwrap_or_default();
            return Err(status_error(&self.cfg, status.as_u16(), &text, retry_after));
        }
        if self.cfg.stream {
            let bytes = timed_stream(response.bytes_stream(), timeout);
            sse::read_events(bytes, self.dialect, on_delta).await
        } else {
            let bytes = tokio::time::timeout(timeout, response.bytes())
                .await
                .map_err(|_| {
                    LlmError::Stream(format!(
                        "the response body did not arrive within {} s",
                        timeout.as_secs_f32()
                    ))
                })?
                .map_err(|e| LlmError::Stream(describe_reqwest(&e)))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                LlmError::Decode(format!(
                    "the body is not JSON ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&bytes))
                ))
            })?;
            self.dialect.parse_response(&value, on_delta)
        }
    }
}

#[async_trait::async_trait]
impl Provider for HttpProvider {
    async fn complete(
        &self,
        req: ChatRequest<'_>,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<Completion> {
        let body = Bytes::from(self.dialect.request_body(&self.cfg, &req)?);
        let mut attempt: u32 = 1;
        loop {
            match self.attempt(body.clone(), on_delta).await {
                Ok(mut completion) => {
                    completion.attempts = attempt;
                    return Ok(completion);
                }
                Err(err) if err.is_retryable() && attempt <= self.cfg.retry.max_retries => {
                    let delay = backoff_delay(&self.cfg.retry, attempt, err.retry_after());
                    let reason = err.to_string();
                    // The caller hears of it through `StreamDelta::Retry`; this is for RUST_LOG.
                    tracing::debug!(
                        provider = %self.cfg.kind,
                        model = %self.cfg.model,
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "model call failed, retrying: {reason}"
                    );
                    attempt += 1;
                    on_delta(StreamDelta::Retry {
                        attempt,
                        delay,
                        reason: &reason,
                    });
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.cfg.kind, self.cfg.model);
        if let Some(base) = self.cfg.base_url.as_deref()
            && self.cfg.kind.default_base_url() != Some(base.trim_end_matches('/'))
        {
            s.push_str(" at ");
            s.push_str(base);
        }
        s
    }
}

/// Error from the timed byte stream.
#[derive(Debug)]
pub(crate) enum ChunkError {
    Transport(String),
    Idle(Duration),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::Transport(m) => f.write_str(m),
            ChunkError::Idle(d) => write!(f, "the server sent nothing for {} s", d.as_secs_f32()),
        }
    }
}

/// Wraps a body stream so that a silence longer than `idle` becomes an error. One timer for the whole stream,
/// moved on only when it fires: a chunk costs a clock read, not a timer of its own (a stream of tiny chunks has
/// thousands).
fn timed_stream(
    inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    idle: Duration,
) -> impl Stream<Item = std::result::Result<Bytes, ChunkError>> + Send {
    let quiet = Box::pin(tokio::time::sleep(idle));
    let state = Some((Box::pin(inner), quiet, tokio::time::Instant::now()));
    futures_util::stream::unfold(state, move |state| async move {
        let (mut inner, mut quiet, mut last) = state?;
        loop {
            tokio::select! {
                biased;
                item = inner.next() => {
                    last = tokio::time::Instant::now();
                    return match item {
                        Some(Ok(bytes)) => Some((Ok(bytes), Some((inner, quiet, last)))),
                        Some(Err(e)) => Some((Err(ChunkError::Transport(describe_reqwest(&e))), None)),
                        None => None,
                    };
                }
                () = &mut quiet => {
                    if last.elapsed() >= idle {
                        return Some((Err(ChunkError::Idle(idle)), None));
                    }
                    quiet.as_mut().reset(last + idle);
                }
            }
        }
    })
}

/// A reqwest error with its causes, which carry the useful part ("connection refused").
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// The first [`BODY_EXCERPT_CHARS`] characters of `body`, trimmed, whitespace runs collapsed.
pub(crate) fn excerpt(body: &str) -> String {
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > BODY_EXCERPT_CHARS {
        let cut: String = collapsed.chars().take(BODY_EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else if collapsed.is_empty() {
        "(empty body)".to_owned()
    } else {
        collapsed
    }
}

/// Maps a non-success status to an error with a hint.
pub(crate) fn status_error(
    cfg: &ProviderConfig,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> LlmError {
    let body = excerpt(body);
    if status == 429 {
        return LlmError::RateLimited { retry_after, body };
    }
    let hint = match status {
        401 | 403 => match cfg.kind.default_api_key_env() {
            Some(var) => format!(
                " (the key was refused: check that {var}, or the variable named by model.api_key_env, holds a valid {} key)",
                cfg.kind
            ),
            None => format!(
                " (check the API key configured for provider `{}`)",
                cfg.kind
            ),
        },
        404 => format!(
            " (check the model name `{}` and base_url `{}`)",
            cfg.model,
            cfg.effective_base_url().unwrap_or_default()
        ),
        400 | 422 => " (the server rejected the request; check the model name and settings such as max_tokens and thinking)".to_owned(),
        408 | 500..=599 => " (the server had a problem; try again later)".to_owned(),
        _ => String::new(),
    };
    LlmError::Http {
        status,
        body,
        hint,
        retry_after,
    }
}

/// Parses `retry-after` as seconds or an HTTP date relative to `now`.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Duration::try_from_secs_f64(secs).ok();
        }
        return None;
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay before the retry that follows failed attempt number `attempt` (1-based): the server's
/// `retry-after` if given, else exponential backoff with jitter; capped at `max_backoff`.
pub(crate) fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(policy.max_backoff);
    }
    let exp = attempt.saturating_sub(1).min(20);
    let base = policy
        .initial_backoff
        .saturating_mul(1_u32 << exp)
        .min(policy.max_backoff);
    // "Equal jitter": half fixed, half random, so concurrent clients spread out but never retry instantly.
    let half = base / 2;
    let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let jitter = if jitter_ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(rand::random_range(0..=jitter_ms))
    };
    (half + jitter).min(policy.max_backoff)
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
