//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = LlmError> = std::result::Result<T, E>;

/// Everything that can go wrong when configuring a provider or calling a model.
///
/// Messages are written for the person running the agent: each says what went wrong and what to do next.
/// Use [`LlmError::is_retryable`] rather than matching on messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The provider needs an API key and none was configured.
    #[error(
        "no API key for provider `{provider}`: set the {var} environment variable (or point model.api_key_env at the variable that holds the key)"
    )]
    MissingApiKey {
        /// Canonical provider name.
        provider: String,
        /// The environment variable expected to hold the key.
        var: String,
    },
    /// A provider name that is not known.
    #[error("unknown provider `{name}`; valid providers are: {valid}")]
    UnknownProvider {
        /// What was given.
        name: String,
        /// Comma-separated list of valid names.
        valid: String,
    },
    /// The configuration cannot work (missing base URL, bad thinking budget, ...).
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The server answered with an error status that is not a rate limit.
    #[error("the model server answered HTTP {status}: {body}{hint}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The first few hundred characters of the response body, trimmed.
        body: String,
        /// Advice for the user (may be empty), starting with a separator.
        hint: String,
        /// The `retry-after` delay the server asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The server answered HTTP 429.
    #[error(
        "the model server is rate limiting requests (HTTP 429): {body}; wait a moment or lower the request rate"
    )]
    RateLimited {
        /// The `retry-after` delay the server asked for, if any.
        retry_after: Option<Duration>,
        /// The first few hundred characters of the response body, trimmed.
        body: String,
    },
    /// The request could not be sent or the connection failed (DNS, refused, reset, timeout).
    #[error(
        "could not reach the model server at {url}: {message}; check base_url and that the server is running"
    )]
    Network {
        /// The URL that was requested (never contains a key).
        url: String,
        /// What failed.
        message: String,
    },
    /// The response stream broke off or ended before the provider's final event.
    #[error("the model's response stream was interrupted: {0}")]
    Stream(String),
    /// The provider reported an error inside an otherwise successful response (for example `overloaded_error`).
    #[error("the model server reported `{kind}`: {message}")]
    Api {
        /// The provider's error type, e.g. `overloaded_error`.
        kind: String,
        /// The provider's message.
        message: String,
    },
    /// The response was not in the expected format.
    #[error(
        "could not understand the model server's response: {0}; check that base_url points at the right kind of server"
    )]
    Decode(String),
    /// The scripted provider has replayed all of its answers.
    #[error(
        "the scripted model has no answers left (all {answers} were used); add more answers to the script or lower the step limit"
    )]
    ScriptExhausted {
        /// How many answers the script had.
        answers: usize,
    },
    /// A script file could not be read or parsed.
    #[error("cannot load the model script {path}: {message}")]
    Script {
        /// The script file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl LlmError {
    /// Whether retrying the same request may succeed: rate limits, 408, 5xx (incl. 529), network failures,
    /// interrupted streams and the provider's own overload errors.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. } | LlmError::Network { .. } | LlmError::Stream(_) => true,
            LlmError::Http { status, .. } => *status == 408 || *status >= 500,
            LlmError::Api { kind, .. } => matches!(
                kind.as_str(),
                "overloaded_error" | "api_error" | "rate_limit_error" | "server_error" | "timeout"
            ),
            LlmError::MissingApiKey { .. }
            | LlmError::UnknownProvider { .. }
            | LlmError::InvalidConfig(_)
            | LlmError::Decode(_)
            | LlmError::ScriptExhausted { .. }
            | LlmError::Script { .. } => false,
        }
    }

    /// The delay the server asked for with `retry-after`, if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } | LlmError::Http { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The HTTP status, for errors that came with one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::RateLimited { .. } => Some(429),
            LlmError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}
