//! How a task ended.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

use crate::limits::LimitKind;
use crate::limits::LimitScope;

/// How a task (one turn) ended. Serialized with a `status` tag: `{"status":"completed","summary":…,"steps":3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The model finished with a completion block.
    Completed {
        /// The completion text.
        summary: String,
        /// Steps taken.
        steps: u32,
        /// With an output schema: the completion parsed as JSON, valid against it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        structured: Option<serde_json::Value>,
    },
    /// The model answered without acting (a chat reply).
    Replied {
        /// The reply.
        text: String,
        /// Steps taken.
        steps: u32,
    },
    /// The step limit was reached first.
    MaxSteps {
        /// Steps taken.
        steps: u32,
    },
    /// The host aborted the run.
    Aborted {
        /// Steps started.
        steps: u32,
    },
    /// A limit on tokens, cost or time was reached (checked before every model call, and the wall time
    /// throughout).
    LimitExceeded {
        /// The limit.
        limit: LimitKind,
        /// Whether it bounds the run or the session.
        scope: LimitScope,
        /// Its value (tokens, US dollars or seconds).
        max: f64,
        /// What was spent, in the same unit; for tokens and cost, what the next call could have added is not in
        /// it (that call was not made).
        spent: f64,
        /// Steps taken.
        steps: u32,
    },
    /// With an output schema: the model's completions did not validate, after every retry.
    InvalidOutput {
        /// The validator's errors about the last completion.
        errors: Vec<String>,
        /// The last completion, as written.
        last: String,
        /// Steps taken.
        steps: u32,
    },
}

impl Outcome {
    /// Steps the task took (or had started, for an abort).
    #[must_use]
    pub fn steps(&self) -> u32 {
        match self {
            Outcome::Completed { steps, .. }
            | Outcome::Replied { steps, .. }
            | Outcome::MaxSteps { steps }
            | Outcome::Aborted { steps }
            | Outcome::LimitExceeded { steps, .. }
            | Outcome::InvalidOutput { steps, .. } => *steps,
        }
    }

    /// The structured result, when an output schema was asked for and the completion matched it.
    #[must_use]
    pub fn structured(&self) -> Option<&serde_json::Value> {
        match self {
            Outcome::Completed { structured, .. } => structured.as_ref(),
            _ => None,
        }
    }

    /// The snake_case name of the variant, as the `status` tag spells it.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::Replied { .. } => "replied",
            Outcome::MaxSteps { .. } => "max_steps",
            Outcome::Aborted { .. } => "aborted",
            Outcome::LimitExceeded { .. } => "limit_exceeded",
            Outcome::InvalidOutput { .. } => "invalid_output",
        }
    }

    /// The completion summary or the reply; `None` when the task ended without one.
    #[must_use]
    pub fn text(&self) -> Option<&str> {
        match self {
            Outcome::Completed { summary, .. } => Some(summary),
            Outcome::Replied { text, .. } => Some(text),
            Outcome::MaxSteps { .. }
            | Outcome::Aborted { .. }
            | Outcome::LimitExceeded { .. }
            | Outcome::InvalidOutput { .. } => None,
        }
    }
}
