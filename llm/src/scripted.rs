//! The `scripted` provider: replays prepared answers, for demos and tests. Never a real model.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use crate::ChatRequest;
use crate::Completion;
use crate::Provider;
use crate::StreamDelta;
use crate::error::LlmError;
use crate::error::Result;

/// The line that separates answers in a text script.
pub const SCRIPT_SEPARATOR: &str = "--- next answer ---";

/// Replays answers in order, one per call; when they are used up every call fails with
/// [`LlmError::ScriptExhausted`].
///
/// Each answer is streamed line by line as [`StreamDelta::Text`] pieces. Usage counts the call but no tokens.
#[derive(Debug)]
pub struct ScriptedProvider {
    answers: Vec<String>,
    next: AtomicUsize,
}

impl ScriptedProvider {
    /// A provider replaying `answers`.
    #[must_use]
    pub fn new(answers: Vec<String>) -> Self {
        Self {
            answers,
            next: AtomicUsize::new(0),
        }
    }

    /// How many answers have not been replayed yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.answers
            .len()
            .saturating_sub(self.next.load(Ordering::SeqCst))
    }
}

#[async_trait::async_trait]
impl Provider for ScriptedProvider {
    async fn complete(
        &self,
        _req: ChatRequest<'_>,
        on_delta: &mut (dyn for<'d> FnMut(StreamDelta<'d>) + Send),
    ) -> Result<Completion> {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        let Some(answer) = self.answers.get(index) else {
            return Err(LlmError::ScriptExhausted {
                answers: self.answers.len(),
            });
        };
        for line in answer.split_inclusive('\n') {
            on_delta(StreamDelta::Text(line));
        }
        Ok(Completion {
            text: answer.clone(),
            usage: codepilot_protocol::Usage {
                calls: 1,
                ..Default::default()
            },
            stop_reason: Some("end_turn".to_owned()),
            attempts: 1,
        })
    }

    fn describe(&self) -> String {
        let n = self.answers.len();
        format!("scripted ({n} answer{})", if n == 1 { "" } else { "s" })
    }
}

/// Loads the answers of a script file.
///
/// Two formats are accepted:
/// - a JSON array of strings (the file's first non-blank character is `[`);
/// - plain text, where answers are separated by lines consisting of exactly `--- next answer ---`
///   ([`SCRIPT_SEPARATOR`]; a trailing `\r` is tolerated). The line breaks around a separator belong to the
///   separator, and answers that are empty or only whitespace are skipped.
///
/// # Errors
/// [`LlmError::Script`] when the file cannot be read, is not valid JSON of the expected shape, or holds no
/// answers.
pub fn load_script(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let fail = |message: String| LlmError::Script {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let answers = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
            fail(format!(
                "a script starting with `[` must be a JSON array of strings: {e}"
            ))
        })?
    } else {
        split_script(&text)
    };
    if answers.is_empty() {
        return Err(fail(format!(
            "it holds no answers; write a JSON array of strings, or answers separated by lines reading `{SCRIPT_SEPARATOR}`"
        )));
    }
    Ok(answers)
}

/// Splits a text script at separator lines.
fn split_script(text: &str) -> Vec<String> {
    let mut answers = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut flush = |lines: &mut Vec<&str>| {
        let answer = lines.join("\n");
        if !answer.trim().is_empty() {
            answers.push(answer);
        }
        lines.clear();
    };
    for line in text.split('\n') {
        if line.strip_suffix('\r').unwrap_or(line) == SCRIPT_SEPARATOR {
            flush(&mut current);
        } else {
            current.push(line);
        }
    }
    // A final newline ends the last line; it does not start an empty one.
    if current.last() == Some(&"") {
        current.pop();
    }
    flush(&mut current);
    answers
}
