//! What the runtime knows about a model without asking it: its context window.

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
}
