//! Provider kinds, their presets, and the configuration of one model endpoint.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::Deserializer;
use serde::Serialize;
use serde::Serializer;

use crate::error::LlmError;

/// Maximum tokens of one answer when the configuration sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Seconds to wait for the model server when the configuration sets none (see [`ProviderConfig::request_timeout`]):
/// ten minutes, for slow local models and long reasoning.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 600;

/// The HTTP dialect a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// Anthropic Messages API (`POST {base}/v1/messages`).
    Anthropic,
    /// OpenAI Chat Completions (`POST {base}/chat/completions`), also spoken by compatible servers.
    OpenAiChat,
    /// No HTTP at all: answers are replayed from a script.
    Scripted,
}

/// A model provider. Serialized as its canonical kebab-case name (see [`ProviderKind::name`]); parsing also
/// accepts common aliases such as `openai_compatible`, `llamacpp` or `claude`, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions.
    OpenAi,
    /// Any OpenAI-compatible server; `base_url` is required.
    OpenAiCompatible,
    /// A local Ollama server (`http://localhost:11434/v1`).
    Ollama,
    /// A local vLLM server (`http://localhost:8000/v1`).
    Vllm,
    /// A local llama.cpp server (`http://localhost:8080/v1`).
    LlamaCpp,
    /// OpenRouter.
    OpenRouter,
    /// DeepSeek.
    DeepSeek,
    /// Groq.
    Groq,
    /// Together AI.
    Together,
    /// Google Gemini through its OpenAI-compatible endpoint.
    Gemini,
    /// Replays answers from a script; for demos and tests, never a real model.
    Scripted,
}

const ALL: &[ProviderKind] = &[
    ProviderKind::Anthropic,
    ProviderKind::OpenAi,
    ProviderKind::OpenAiCompatible,
    ProviderKind::Ollama,
    ProviderKind::Vllm,
    ProviderKind::LlamaCpp,
    ProviderKind::OpenRouter,
    ProviderKind::DeepSeek,
    ProviderKind::Groq,
    ProviderKind::Together,
    ProviderKind::Gemini,
    ProviderKind::Scripted,
];

impl ProviderKind {
    /// Every provider, in documentation order.
    #[must_use]
    pub fn all() -> &'static [ProviderKind] {
        ALL
    }

    /// The canonical name, as written in `agent.yaml`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Vllm => "vllm",
            ProviderKind::LlamaCpp => "llama-cpp",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Groq => "groq",
            ProviderKind::Together => "together",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Scripted => "scripted",
        }
    }

    /// The wire format this provider speaks.
    #[must_use]
    pub fn wire(&self) -> WireFormat {
        match self {
            ProviderKind::Anthropic => WireFormat::Anthropic,
            ProviderKind::OpenAi
            | ProviderKind::OpenAiCompatible
            | ProviderKind::Ollama
            | ProviderKind::Vllm
            | ProviderKind::LlamaCpp
            | ProviderKind::OpenRouter
            | ProviderKind::DeepSeek
            | ProviderKind::Groq
            | ProviderKind::Together
            | ProviderKind::Gemini => WireFormat::OpenAiChat,
            ProviderKind::Scripted => WireFormat::Scripted,
        }
    }

    /// The base URL used when the configuration sets none. `None` for `openai-compatible` (which needs one)
    /// and `scripted`.
    ///
    /// For [`WireFormat::Anthropic`] the base excludes `/v1`; for [`WireFormat::OpenAiChat`] it includes the
    /// version segment, and `/chat/completions` is appended.
    #[must_use]
    pub fn default_base_url(&self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::OpenAiCompatible | ProviderKind::Scripted => None,
            ProviderKind::Ollama => Some("http://localhost:11434/v1"),
            ProviderKind::Vllm => Some("http://localhost:8000/v1"),
            ProviderKind::LlamaCpp => Some("http://localhost:8080/v1"),
            ProviderKind::OpenRouter => Some("https://openrouter.ai/api/v1"),
            ProviderKind::DeepSeek => Some("https://api.deepseek.com/v1"),
            ProviderKind::Groq => Some("https://api.groq.com/openai/v1"),
            ProviderKind::Together => Some("https://api.together.xyz/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        }
    }

    /// The environment variable that conventionally holds this provider's key. Never another provider's
    /// variable (so an ambient `OPENAI_API_KEY` is not sent to a third-party server); `None` for local servers,
    /// `openai-compatible` and `scripted`.
    #[must_use]
    pub fn default_api_key_env(&self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderKind::OpenAi => Some("OPENAI_API_KEY"),
            ProviderKind::OpenRouter => Some("OPENROUTER_API_KEY"),
            ProviderKind::DeepSeek => Some("DEEPSEEK_API_KEY"),
            ProviderKind::Groq => Some("GROQ_API_KEY"),
            ProviderKind::Together => Some("TOGETHER_API_KEY"),
            ProviderKind::Gemini => Some("GEMINI_API_KEY"),
            ProviderKind::OpenAiCompatible
            | ProviderKind::Ollama
            | ProviderKind::Vllm
            | ProviderKind::LlamaCpp
            | ProviderKind::Scripted => None,
        }
    }

    /// The environment variable the provider's official SDK reads its base URL from (`ANTHROPIC_BASE_URL`,
    /// `OPENAI_BASE_URL`), so gateways and proxies such as LiteLLM work without editing the agent file. A
    /// `base_url` in the configuration wins over it.
    #[must_use]
    pub fn base_url_env(&self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("ANTHROPIC_BASE_URL"),
            ProviderKind::OpenAi => Some("OPENAI_BASE_URL"),
            ProviderKind::OpenAiCompatible
            | ProviderKind::Ollama
            | ProviderKind::Vllm
            | ProviderKind::LlamaCpp
            | ProviderKind::OpenRouter
            | ProviderKind::DeepSeek
            | ProviderKind::Groq
            | ProviderKind::Together
            | ProviderKind::Gemini
            | ProviderKind::Scripted => None,
        }
    }

    /// Whether a call without an API key is certain to fail (hosted services).
    #[must_use]
    pub fn requires_api_key(&self) -> bool {
        self.default_api_key_env().is_some()
    }

    fn valid_names() -> String {
        ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProviderKind {
    type Err = LlmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| match c {
                '_' | '.' | ' ' => '-',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        let kind = match norm.as_str() {
            "anthropic" | "claude" => ProviderKind::Anthropic,
            "openai" | "open-ai" => ProviderKind::OpenAi,
            "openai-compatible" | "open-ai-compatible" | "openaicompatible" | "compatible"
            | "custom" | "local" => ProviderKind::OpenAiCompatible,
            "ollama" => ProviderKind::Ollama,
            "vllm" => ProviderKind::Vllm,
            "llama-cpp" | "llamacpp" | "llama-cpp-server" | "llama-server" => {
                ProviderKind::LlamaCpp
            }
            "openrouter" | "open-router" => ProviderKind::OpenRouter,
            "deepseek" | "deep-seek" => ProviderKind::DeepSeek,
            "groq" => ProviderKind::Groq,
            "together" | "together-ai" | "togetherai" => ProviderKind::Together,
            "gemini" | "google" => ProviderKind::Gemini,
            "scripted" | "script" => ProviderKind::Scripted,
            _ => {
                return Err(LlmError::UnknownProvider {
                    name: s.to_owned(),
                    valid: Self::valid_names(),
                });
            }
        };
        Ok(kind)
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ProviderKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How failed calls are retried: exponential backoff with jitter, honouring `retry-after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts). Default 4.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time. Default 500 ms.
    pub initial_backoff: Duration,
    /// Upper bound for any delay, including one asked for with `retry-after`. Default 30 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }
}

/// Everything needed to talk to one model.
#[derive(Clone, PartialEq)]
pub struct ProviderConfig {
    /// Which provider.
    pub kind: ProviderKind,
    /// The model name, e.g. `claude-sonnet-4-5` or `gpt-4o`.
    pub model: String,
    /// The API key. Resolved by the caller (see [`ProviderConfig::with_api_key_from_env`]); never logged.
    pub api_key: Option<String>,
    /// Overrides [`ProviderKind::default_base_url`].
    pub base_url: Option<String>,
    /// Sampling temperature. Forced to 1 when Anthropic thinking is on.
    pub temperature: f32,
    /// Maximum tokens of the answer.
    pub max_tokens: u32,
    /// Anthropic extended thinking budget in tokens (at least 1024). Ignored by other wire formats.
    pub thinking: Option<u32>,
    /// Stream the answer (SSE) instead of waiting for one JSON body.
    pub stream: bool,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// For a non-streamed call, the limit for the whole request; for a streamed call, the limit for the
    /// response headers and for each silence between two chunks.
    pub request_timeout: Duration,
    /// The answers of the `scripted` provider (see [`crate::load_script`]).
    pub scripted_answers: Option<Vec<String>>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("thinking", &self.thinking)
            .field("stream", &self.stream)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field(
                "scripted_answers",
                &self.scripted_answers.as_ref().map(Vec::len),
            )
            .finish()
    }
}

impl ProviderConfig {
    /// A configuration with the documented defaults: temperature 0, [`DEFAULT_MAX_TOKENS`] max tokens, no
    /// thinking, streaming, default retries, a timeout of [`DEFAULT_REQUEST_TIMEOUT_S`], no key and the provider's
    /// default base URL.
    #[must_use]
    pub fn new(kind: ProviderKind, model: impl Into<String>) -> Self {
        Self {
            kind,
            model: model.into(),
            api_key: None,
            base_url: None,
            temperature: 0.0,
            max_tokens: DEFAULT_MAX_TOKENS,
            thinking: None,
            stream: true,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_S),
            scripted_answers: None,
        }
    }

    /// A `scripted` configuration replaying `answers`.
    #[must_use]
    pub fn scripted(answers: Vec<String>) -> Self {
        let mut cfg = Self::new(ProviderKind::Scripted, "scripted");
        cfg.scripted_answers = Some(answers);
        cfg
    }

    /// Fills `api_key` from the environment when it is not set: from `var` if given (the config's
    /// `api_key_env`), else from [`ProviderKind::default_api_key_env`]. Empty values count as unset.
    #[must_use]
    pub fn with_api_key_from_env(mut self, var: Option<&str>) -> Self {
        if self.api_key.is_none() {
            let name = var
                .filter(|v| !v.is_empty())
                .or(self.kind.default_api_key_env());
            if let Some(name) = name {
                self.api_key = std::env::var(name).ok().filter(|v| !v.trim().is_empty());
            }
        }
        self
    }

    /// The base URL in effect, without a trailing slash.
    #[must_use]
    pub fn effective_base_url(&self) -> Option<String> {
        self.base_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .or(self.kind.default_base_url())
            .map(|u| u.trim().trim_end_matches('/').to_owned())
    }
}
