//! What the runtime knows about a model without asking it: its context window and its prices.

use codepilot_protocol::Usage;

/// Context window assumed for a model with no known profile and no configured `context_window`.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 32_000;

/// Context windows of well-known model families, by name prefix. Conservative: the smallest window of the family.
const CONTEXT_WINDOWS: &[(&str, u64)] = &[
    ("claude-", 200_000),
    ("gpt-4.1", 1_000_000),
    ("gpt-4o", 128_000),
    ("gpt-5", 272_000),
    ("o1", 128_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("deepseek-", 64_000),
    ("gemini-", 1_000_000),
    ("qwen", 32_000),
    ("llama", 8_000),
    ("mistral", 32_000),
];

/// The context window of `model` in tokens, when its family is known. A router prefix (`openai/gpt-4o`) is
/// ignored, and case does not matter.
#[must_use]
pub fn known_context_window(model: &str) -> Option<u64> {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    CONTEXT_WINDOWS
        .iter()
        .find(|(prefix, _)| m.starts_with(prefix))
        .map(|(_, n)| *n)
}

/// A model's prices in US dollars per million tokens (`model.pricing` in agent.yaml, or [`known_pricing`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    /// Prompt tokens at the full rate.
    pub input_per_mtok: f64,
    /// Completion tokens (reasoning included).
    pub output_per_mtok: f64,
    /// Prompt tokens read from the provider's cache.
    pub cache_read_per_mtok: f64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_per_mtok: f64,
}

impl Pricing {
    /// What `usage` costs, in US dollars.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // token counts stay far below 2^52
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_mtok
            + usage.output_tokens as f64 * self.output_per_mtok
            + usage.cache_read_tokens as f64 * self.cache_read_per_mtok
            + usage.cache_write_tokens as f64 * self.cache_write_per_mtok)
            / 1_000_000.0
    }

    /// The most a call could cost: `prompt` tokens all at the full input rate (or the cache-write rate, if dearer)
    /// and `max_output` tokens of output.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn worst_case(&self, prompt: u64, max_output: u64) -> f64 {
        (prompt as f64 * self.input_per_mtok.max(self.cache_write_per_mtok)
            + max_output as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// When the built-in prices were taken from the providers' price lists.
pub const PRICES_AS_OF: &str = "2026-11-01";

/// List prices of the models this project names, by name prefix, most specific first: (prefix, input, output,
/// cache read, cache write), US dollars per million tokens, as of [`PRICES_AS_OF`]. `model.pricing` in agent.yaml
/// overrides them (a negotiated rate, a router's markup, a model not listed).
const PRICES: &[(&str, f64, f64, f64, f64)] = &[
    ("claude-opus-4-1", 15.0, 75.0, 1.5, 18.75),
    ("claude-opus-4-5", 5.0, 25.0, 0.5, 6.25),
    ("claude-opus-4", 15.0, 75.0, 1.5, 18.75),
    ("claude-sonnet-4", 3.0, 15.0, 0.3, 3.75),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.3, 3.75),
    ("claude-3-5-sonnet", 3.0, 15.0, 0.3, 3.75),
    ("claude-haiku-4-5", 1.0, 5.0, 0.1, 1.25),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08, 1.0),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.25),
    ("gpt-5-nano", 0.05, 0.4, 0.005, 0.05),
    ("gpt-5", 1.25, 10.0, 0.125, 1.25),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1, 0.4),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025, 0.1),
    ("gpt-4.1", 2.0, 8.0, 0.5, 2.0),
    ("gpt-4o-mini", 0.15, 0.6, 0.075, 0.15),
    ("gpt-4o", 2.5, 10.0, 1.25, 2.5),
    ("o4-mini", 1.1, 4.4, 0.275, 1.1),
    ("o3", 2.0, 8.0, 0.5, 2.0),
    ("deepseek-chat", 0.28, 0.42, 0.028, 0.28),
    ("deepseek-reasoner", 0.28, 0.42, 0.028, 0.28),
];

/// The built-in prices of `model`, when it is listed ([`PRICES_AS_OF`]). A router prefix (`anthropic/…`) is
/// ignored, and case does not matter.
#[must_use]
pub fn known_pricing(model: &str) -> Option<Pricing> {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    PRICES
        .iter()
        .find(|(prefix, ..)| m.starts_with(prefix))
        .map(|&(_, input, output, read, write)| Pricing {
            input_per_mtok: input,
            output_per_mtok: output,
            cache_read_per_mtok: read,
            cache_write_per_mtok: write,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn known_models_have_a_context_window() {
        assert_eq!(known_context_window("claude-sonnet-4-5"), Some(200_000));
        assert_eq!(known_context_window("openai/gpt-4o-mini"), Some(128_000));
        assert_eq!(known_context_window("my-finetune"), None);
    }

    #[test]
    fn known_models_have_prices_and_costs_add_up() {
        let sonnet = known_pricing("anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!((sonnet.input_per_mtok, sonnet.output_per_mtok), (3.0, 15.0));
        assert_eq!(known_pricing("gpt-4o-mini").unwrap().input_per_mtok, 0.15);
        assert_eq!(known_pricing("my-finetune"), None);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_tokens: 2_000_000,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            calls: 1,
        };
        assert!((sonnet.cost(&usage) - (3.0 + 1.5 + 0.6)).abs() < 1e-9);
        assert!((sonnet.worst_case(1_000_000, 1_000_000) - (3.75 + 15.0)).abs() < 1e-9);
    }
}
