//! Structured results (SPEC §21): a run given a JSON Schema ends only with a completion whose content is JSON valid
//! against it; other completions are refused with the validator's errors, a bounded number of times.

use codepilot_protocol::CompletionRefusal;
use serde_json::Value;

use crate::error::Error;
use crate::error::Result;

/// Errors shown to the model about one completion, at most.
const MAX_ERRORS: usize = 10;

/// Characters of one error shown, at most (a validator's message may quote the whole value).
const MAX_ERROR_CHARS: usize = 300;

/// A run's output schema and how many completions it refused.
pub(crate) struct OutputSchema {
    schema: Value,
    validator: jsonschema::Validator,
    retries: u32,
    refused: u32,
}

/// What a completion leads to.
#[derive(Debug)]
pub(crate) enum Judged {
    /// Valid: the parsed value.
    Valid(Value),
    /// Refused; the model is told why and tries again.
    Refused(CompletionRefusal),
    /// Refused once more than `runtime.output_retries` allows: the run ends as `invalid_output`.
    GaveUp {
        /// The validator's errors about this completion.
        errors: Vec<String>,
    },
}

impl OutputSchema {
    /// Compiles `schema` (draft 2020-12); `retries` refusals are allowed before the run ends.
    ///
    /// # Errors
    /// [`Error::OutputSchema`] when `schema` is not a valid JSON Schema.
    pub(crate) fn new(schema: Value, retries: u32) -> Result<Self> {
        // Formats (`date-time`, `email`, …) are checked too: a host's model class (pydantic) checks them.
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| Error::OutputSchema(e.to_string()))?;
        Ok(Self {
            schema,
            validator,
            retries,
            refused: 0,
        })
    }

    /// What the task message adds so the model knows the completion's format.
    pub(crate) fn instruction(&self) -> String {
        let schema = serde_json::to_string_pretty(&self.schema).unwrap_or_default();
        format!(
            "When you finish, the content of your ```completion block must be exactly one JSON value (no prose, no \
             code fence) that is valid against this JSON Schema (draft 2020-12):\n```json\n{schema}\n```"
        )
    }

    /// Judges a completion's content.
    pub(crate) fn judge(&mut self, completion: &str) -> Judged {
        let errors = match parse(completion) {
            Ok(value) => {
                let errors: Vec<String> = self
                    .validator
                    .iter_errors(&value)
                    .take(MAX_ERRORS)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        let message = shorten(&e.to_string());
                        if at.is_empty() {
                            format!("at the top: {message}")
                        } else {
                            format!("at {at}: {message}")
                        }
                    })
                    .collect();
                if errors.is_empty() {
                    return Judged::Valid(value);
                }
                errors
            }
            Err(e) => vec![format!("not JSON: {e}")],
        };
        match self.refuse(errors) {
            Ok(refusal) => Judged::Refused(refusal),
            Err(errors) => Judged::GaveUp { errors },
        }
    }

    /// Judges an answer that ended the task without a completion block (a reply): the refusal the model reads, or
    /// (past the retries) the errors the run ends with.
    pub(crate) fn judge_reply(&mut self) -> Result<CompletionRefusal, Vec<String>> {
        self.refuse(vec![
            "the answer has no ```completion block; end the task with one whose whole content is the JSON result"
                .to_owned(),
        ])
    }

    /// Counts a refusal of a completion with `errors`; `Err(errors)` once the retries are used up.
    fn refuse(&mut self, errors: Vec<String>) -> Result<CompletionRefusal, Vec<String>> {
        if self.refused >= self.retries {
            return Err(errors);
        }
        self.refused += 1;
        Ok(CompletionRefusal::InvalidOutput {
            errors,
            tries_left: self.retries - self.refused,
        })
    }
}

/// `text` cut to [`MAX_ERROR_CHARS`] characters, with a marker.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}… (cut)", &text[..at]),
        None => text.to_owned(),
    }
}

/// The completion's content as JSON; a ```json fence around it is forgiven.
fn parse(completion: &str) -> serde_json::Result<Value> {
    let text = completion.trim();
    let unfenced = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|t| t.strip_suffix("```"))
        .map_or(text, str::trim);
    serde_json::from_str(unfenced)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn schema() -> OutputSchema {
        OutputSchema::new(
            json!({
                "type": "object",
                "properties": {"files": {"type": "integer", "minimum": 0}},
                "required": ["files"],
                "additionalProperties": false
            }),
            2,
        )
        .unwrap()
    }

    #[test]
    fn valid_fenced_invalid_and_giving_up() {
        let mut s = schema();
        assert!(matches!(s.judge(r#"{"files": 3}"#), Judged::Valid(v) if v == json!({"files": 3})));
        assert!(matches!(
            s.judge("```json\n{\"files\": 0}\n```"),
            Judged::Valid(_)
        ));
        let Judged::Refused(CompletionRefusal::InvalidOutput { errors, tries_left }) =
            s.judge(r#"{"files": -1, "extra": true}"#)
        else {
            panic!("refused")
        };
        assert_eq!(tries_left, 1);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("at /files:")),
            "{errors:?}"
        );
        let Judged::Refused(CompletionRefusal::InvalidOutput { errors, .. }) = s.judge("done!")
        else {
            panic!("refused")
        };
        assert!(errors[0].starts_with("not JSON"), "{errors:?}");
        assert!(matches!(s.judge("{}"), Judged::GaveUp { errors } if errors.len() == 1));
    }

    #[test]
    fn replies_are_refused_formats_checked_and_long_errors_cut() {
        let mut s = OutputSchema::new(
            json!({"type": "object", "properties": {"at": {"type": "string", "format": "date-time"},
                   "name": {"type": "string", "maxLength": 1}}}),
            3,
        )
        .unwrap();
        let Ok(CompletionRefusal::InvalidOutput { errors, .. }) = s.judge_reply() else {
            panic!("refused")
        };
        assert!(errors[0].contains("no ```completion block"), "{errors:?}");
        assert!(matches!(
            s.judge(r#"{"at": "yesterday"}"#),
            Judged::Refused(_)
        ));
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(2_000));
        let Judged::Refused(CompletionRefusal::InvalidOutput { errors, .. }) = s.judge(&long)
        else {
            panic!("refused")
        };
        assert!(
            errors[0].chars().count() < 400 && errors[0].ends_with("(cut)"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused() {
        let e = OutputSchema::new(json!({"type": "banana"}), 3)
            .err()
            .unwrap();
        assert!(e.to_string().contains("output schema"), "{e}");
    }
}
