//! Token counts for budgeting a request: exact for OpenAI models (their tiktoken encoding, embedded, no
//! download), an estimate that errs high for every other model. The runtime corrects the estimate per session from
//! the token counts the provider reports.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::Tokenizer;

use crate::config::ProviderKind;

/// Bytes of ASCII text per token the estimate assumes. Real tokenizers average 3.5–4.5 on English and code, so
/// the estimate is high until the provider's own counts correct it.
const ASCII_BYTES_PER_TOKEN: f64 = 3.2;

/// Counts the tokens of text for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCounter {
    /// OpenAI's `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o-series).
    O200k,
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5).
    Cl100k,
    /// An estimate from the text's bytes: ASCII at 3.2 bytes per token, every other character one token.
    Estimate,
}

impl TokenCounter {
    /// The counter for `model` on `provider`: tiktoken for the models OpenAI's tokenizers are known for (also
    /// through OpenRouter as `openai/…`), the estimate otherwise.
    #[must_use]
    pub fn for_model(provider: ProviderKind, model: &str) -> Self {
        let name = model.strip_prefix("openai/").unwrap_or(model);
        let openai_hosted = matches!(provider, ProviderKind::OpenAi | ProviderKind::OpenRouter)
            || name.starts_with("gpt-")
            || name.starts_with("chatgpt-");
        if !openai_hosted {
            return Self::Estimate;
        }
        match tiktoken_rs::tokenizer::get_tokenizer(name) {
            Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Self::O200k,
            Some(Tokenizer::Cl100kBase) => Self::Cl100k,
            Some(
                Tokenizer::P50kBase | Tokenizer::P50kEdit | Tokenizer::R50kBase | Tokenizer::Gpt2,
            )
            | None => Self::Estimate,
        }
    }

    /// Whether counts are exact (a tokenizer) rather than estimated.
    #[must_use]
    pub fn is_exact(self) -> bool {
        match self {
            Self::O200k | Self::Cl100k => true,
            Self::Estimate => false,
        }
    }

    /// A short name for logs: `tiktoken o200k_base`, `tiktoken cl100k_base` or `estimate`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::O200k => "tiktoken o200k_base",
            Self::Cl100k => "tiktoken cl100k_base",
            Self::Estimate => "estimate",
        }
    }

    /// Loads the tokenizer now (it takes ~0.1 s once per process) rather than at the first count. Cheap when
    /// already loaded; nothing to do for the estimate.
    pub fn warm_up(self) {
        let _ = self.bpe();
    }

    /// Tokens of `text` (special tokens are counted as ordinary text).
    #[must_use]
    pub fn count(self, text: &str) -> u64 {
        match self.bpe() {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => estimate(text),
        }
    }

    fn bpe(self) -> Option<&'static CoreBPE> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        let loaded = match self {
            Self::O200k => O200K.get_or_init(|| {
                load(
                    tiktoken_rs::o200k_base().map_err(|e| e.to_string()),
                    "o200k_base",
                )
            }),
            Self::Cl100k => CL100K.get_or_init(|| {
                load(
                    tiktoken_rs::cl100k_base().map_err(|e| e.to_string()),
                    "cl100k_base",
                )
            }),
            Self::Estimate => return None,
        };
        loaded.as_ref()
    }
}

fn load(loaded: Result<CoreBPE, String>, name: &str) -> Option<CoreBPE> {
    match loaded {
        Ok(bpe) => Some(bpe),
        Err(e) => {
            // The data is embedded, so this is a build defect; budgeting goes on with the estimate.
            tracing::warn!(
                "cannot load the {name} tokenizer, estimating token counts instead: {e}"
            );
            None
        }
    }
}

/// The estimate: ASCII bytes at [`ASCII_BYTES_PER_TOKEN`], other characters one token each, rounded up.
fn estimate(text: &str) -> u64 {
    let ascii = text.bytes().filter(u8::is_ascii).count();
    let other = text.chars().filter(|c| !c.is_ascii()).count();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let ascii_tokens = (ascii as f64 / ASCII_BYTES_PER_TOKEN).ceil() as u64;
    ascii_tokens + other as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_per_model() {
        assert_eq!(
            TokenCounter::for_model(ProviderKind::OpenAi, "gpt-4o-mini"),
            TokenCounter::O200k
        );
        assert_eq!(
            TokenCounter::for_model(ProviderKind::OpenAi, "gpt-4"),
            TokenCounter::Cl100k
        );
        assert_eq!(
            TokenCounter::for_model(ProviderKind::OpenRouter, "openai/gpt-5"),
            TokenCounter::O200k
        );
        assert_eq!(
            TokenCounter::for_model(ProviderKind::Anthropic, "claude-sonnet-4-5"),
            TokenCounter::Estimate
        );
        assert_eq!(
            TokenCounter::for_model(ProviderKind::Ollama, "llama3"),
            TokenCounter::Estimate
        );
    }

    #[test]
    fn exact_counts_match_tiktoken() {
        // Reference counts from OpenAI's tiktoken.
        assert_eq!(TokenCounter::O200k.count("hello world"), 2);
        assert_eq!(TokenCounter::Cl100k.count("hello world"), 2);
        assert_eq!(TokenCounter::O200k.count(""), 0);
    }

    #[test]
    fn estimate_errs_high_on_code_and_counts_other_scripts_per_char() {
        let code = "fn main() {\n    println!(\"hello, world\");\n}\n";
        let exact = TokenCounter::O200k.count(code);
        let est = TokenCounter::Estimate.count(code);
        assert!(est >= exact, "estimate {est} < exact {exact}");
        assert_eq!(TokenCounter::Estimate.count("日本語"), 3);
        assert_eq!(TokenCounter::Estimate.count("abcd"), 2);
    }
}
