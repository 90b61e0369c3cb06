//! Model providers for CodePilot: Anthropic Messages, OpenAI Chat Completions and any compatible server
//! (Ollama, vLLM, llama.cpp, OpenRouter, DeepSeek, Groq, Together, Gemini), hand-rolled on `reqwest` with an
//! incremental event-stream decoder, plus a `scripted` provider for demos and tests.
//!
//! Every call streams deltas to a callback, retries rate limits, server errors and broken streams with
//! exponential backoff (honouring `retry-after`), and returns the whole answer with its token usage.
//!
//! ```no_run
//! # async fn demo() -> Result<(), codepilot_llm::LlmError> {
//! use codepilot_llm::ChatRequest;
//! use codepilot_llm::ProviderConfig;
//! use codepilot_llm::ProviderKind;
//! use codepilot_llm::StreamDelta;
//! use codepilot_llm::WireMessage;
//! use codepilot_llm::build_provider;
//! use codepilot_protocol::Role;
//!
//! let cfg = ProviderConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5").with_api_key_from_env(None);
//! let provider = build_provider(cfg)?;
//! let messages = [WireMessage::new(Role::User, "Say hi")];
//! let req = ChatRequest { system: "Be brief.", system_dynamic: "", messages: &messages, cache_marks: None };
//! let done = provider
//!     .complete(req, &mut |d| {
//!         if let StreamDelta::Text(t) = d { print!("{t}") }
//!     })
//!     .await?;
//! println!("\n{} tokens", done.usage.total());
//! # Ok(()) }
//! ```
#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod anthropic;
mod config;
mod dialect;
mod error;
mod http;
mod openai;
mod profile;
mod scripted;
mod sse;
mod tokens;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use codepilot_protocol::Usage;
use dialect::Dialect;

pub use config::DEFAULT_MAX_TOKENS;
pub use config::DEFAULT_REQUEST_TIMEOUT_S;
pub use config::ProviderConfig;
pub use config::ProviderKind;
pub use config::RetryPolicy;
pub use config::WireFormat;
pub use error::LlmError;
pub use error::Result;
pub use http::install_crypto_provider;
pub use profile::DEFAULT_CONTEXT_WINDOW;
pub use profile::PRICES_AS_OF;
pub use profile::Pricing;
pub use profile::known_context_window;
pub use profile::known_pricing;
pub use scripted::SCRIPT_SEPARATOR;
pub use scripted::ScriptedProvider;
pub use scripted::load_script;
pub use tokens::TokenCounter;
pub use wire::WireMessage;

/// One model call's input. The system prompt is separate because it is rebuilt every step.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    /// The stable part of the system prompt (omitted from the request when empty). Anthropic caches it.
    pub system: &'a str,
    /// The part of the system prompt that changes every step (step counter, live terminals), sent after `system`.
    /// Anthropic receives it as a second, uncached system block so the cached prefix stays valid across steps;
    /// OpenAI-format servers get one system message with both parts. May be empty.
    pub system_dynamic: &'a str,
    /// The conversation so far, oldest first, each message serialised once ([`WireMessage`]).
    pub messages: &'a [WireMessage],
    /// Indices of `messages` that get an Anthropic prompt-cache breakpoint (at most 2 are used; the system block
    /// has its own). `None`: the provider picks them (the last assistant message, the last one before the current
    /// task, and one every 5 steps of the task). Ignored by the OpenAI format, whose servers cache prefixes
    /// themselves.
    pub cache_marks: Option<&'a [usize]>,
}

/// A piece of a model call in progress, passed to the `on_delta` callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamDelta<'a> {
    /// Answer text. The pieces of one attempt concatenate to [`Completion::text`].
    Text(&'a str),
    /// Reasoning text (Anthropic thinking, `reasoning_content` of compatible servers). Not part of the answer.
    Thinking(&'a str),
    /// The call failed and is being retried: all text streamed so far for this call must be discarded.
    Retry {
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// How long the provider waits before that attempt.
        delay: Duration,
        /// Why the previous attempt failed.
        reason: &'a str,
    },
}

/// The result of a successful model call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The whole answer text (without thinking).
    pub text: String,
    /// Token usage of the successful attempt; `calls` is 1.
    pub usage: Usage,
    /// Why the model stopped (`end_turn`, `stop`, `max_tokens`, `length`, ...), when the server said so.
    pub stop_reason: Option<String>,
    /// How many attempts it took (1 when the first one succeeded).
    pub attempts: u32,
}

/// A model endpoint.
///
/// The future returned by [`Provider::complete`] is cancel-safe: dropping it aborts the HTTP request and any
/// pending retry.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Sends `req`, streaming deltas to `on_delta`, retrying per the configured [`RetryPolicy`].
    ///
    /// # Errors
    /// The last attempt's error when retries are exhausted, or the first non-retryable error
    /// (see [`LlmError::is_retryable`]).
    async fn complete(
        &self,
        req: ChatRequest<'_>,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<Completion>;

    /// A short human description, e.g. `anthropic claude-sonnet-4-5` or `scripted (3 answers)`. Never
    /// contains a key.
    fn describe(&self) -> String;
}

/// The dialect of an HTTP wire format; `None` for [`WireFormat::Scripted`], which sends nothing over HTTP.
fn dialect_of(wire: WireFormat) -> Option<&'static dyn Dialect> {
    match wire {
        WireFormat::Anthropic => Some(&anthropic::Anthropic),
        WireFormat::OpenAiChat => Some(&openai::OpenAiChat),
        WireFormat::Scripted => None,
    }
}

/// Builds the provider described by `cfg`.
///
/// # Errors
/// [`LlmError::MissingApiKey`] for a hosted provider without a key, [`LlmError::InvalidConfig`] for a
/// missing/invalid `base_url`, a thinking budget under 1024 tokens, `max_tokens` of 0, or a `scripted` provider
/// without answers.
pub fn build_provider(cfg: ProviderConfig) -> Result<Arc<dyn Provider>> {
    let Some(dialect) = dialect_of(cfg.kind.wire()) else {
        let Some(answers) = cfg.scripted_answers else {
            return Err(LlmError::InvalidConfig(
                "provider `scripted` needs answers: give a script file (load it with load_script)"
                    .into(),
            ));
        };
        return Ok(Arc::new(ScriptedProvider::new(answers)));
    };
    if cfg.model.trim().is_empty() {
        return Err(LlmError::InvalidConfig(format!(
            "provider `{}` needs a model name",
            cfg.kind
        )));
    }
    if cfg.max_tokens == 0 {
        return Err(LlmError::InvalidConfig(
            "max_tokens must be greater than 0".into(),
        ));
    }
    dialect.check(&cfg)?;
    let has_key = cfg.api_key.as_deref().is_some_and(|k| !k.trim().is_empty());
    if !has_key
        && cfg.kind.requires_api_key()
        && let Some(var) = cfg.kind.default_api_key_env()
    {
        return Err(LlmError::MissingApiKey {
            provider: cfg.kind.to_string(),
            var: var.to_owned(),
        });
    }
    Ok(Arc::new(http::HttpProvider::new(cfg, dialect)?))
}
