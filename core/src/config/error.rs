//! Everything that can be wrong with an agent file.

use std::io;
use std::path::PathBuf;

/// Result alias for configuration loading.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Everything that can be wrong with an agent file. Each message names the file (and line when
/// known) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read agent file '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is larger than [`super::MAX_AGENT_FILE_BYTES`] or the prompt file than [`super::MAX_SYSTEM_PROMPT_BYTES`].
    #[error("'{}' is {size} bytes; the limit is {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The text is not valid YAML, has the wrong type somewhere, or exceeds the parser's budget.
    #[error("invalid agent file {}: {message}", at(file, *line))]
    Yaml {
        /// The file name as given (or `<agent config>`).
        file: String,
        /// 1-based line, if known.
        line: Option<u64>,
        /// What the parser said.
        message: String,
    },
    /// A key that is not part of the schema (typo or unsupported option).
    #[error("unknown key '{key}' in {}; {}", at(file, *line), suggest(suggestion.as_deref(), valid))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The file name.
        file: String,
        /// 1-based line, if known.
        line: Option<u64>,
        /// The closest valid key, when one is close enough.
        suggestion: Option<String>,
        /// Every key valid at that place.
        valid: Vec<String>,
    },
    /// A required key is absent.
    #[error("missing required key '{key}' in {}: {hint}", at(file, *line))]
    MissingKey {
        /// Dotted key path, e.g. `model.name`.
        key: String,
        /// The file name.
        file: String,
        /// Line of the enclosing section, if known.
        line: Option<u64>,
        /// How to fix it.
        hint: String,
    },
    /// A key has a value that is well-typed but not acceptable.
    #[error("invalid value for '{key}' in {}: {message}", at(file, *line))]
    Invalid {
        /// Dotted key path, e.g. `model.temperature`.
        key: String,
        /// The file name.
        file: String,
        /// 1-based line, if known.
        line: Option<u64>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `system_prompt` names a `.md`/`.txt` file that cannot be read.
    #[error(
        "system_prompt file '{}' (from {}) cannot be read: {source}. Fix the path (it is relative to the agent file) or write the prompt text inline",
        path.display(),
        at(file, *line)
    )]
    SystemPromptFile {
        /// The resolved path.
        path: PathBuf,
        /// The agent file name.
        file: String,
        /// Line of the `system_prompt` key, if known.
        line: Option<u64>,
        /// The I/O error.
        source: io::Error,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, if any.
    #[must_use]
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Read { .. } | Self::TooLarge { .. } => None,
            Self::Yaml { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::MissingKey { line, .. }
            | Self::Invalid { line, .. }
            | Self::SystemPromptFile { line, .. } => *line,
        }
    }
}

pub(super) fn at(file: &str, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    }
}

pub(super) fn suggest(suggestion: Option<&str>, valid: &[String]) -> String {
    match suggestion {
        Some(s) => format!("did you mean '{s}'?"),
        None => format!("valid keys here: {}", valid.join(", ")),
    }
}
