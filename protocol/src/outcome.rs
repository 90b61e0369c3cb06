//! How a task ended.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

/// How a task (one turn) ended. Serialized with a `status` tag: `{"status":"completed","summary":…,"steps":3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The model finished with a completion block.
    Completed {
        /// The completion text.
        summary: String,
        /// Steps taken.
        steps: u32,
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
}

impl Outcome {
    /// Steps the task took (or had started, for an abort).
    #[must_use]
    pub fn steps(&self) -> u32 {
        match self {
            Outcome::Completed { steps, .. }
            | Outcome::Replied { steps, .. }
            | Outcome::MaxSteps { steps }
            | Outcome::Aborted { steps } => *steps,
        }
    }

    /// The completion summary or the reply; `None` when the task ended without one.
    #[must_use]
    pub fn text(&self) -> Option<&str> {
        match self {
            Outcome::Completed { summary, .. } => Some(summary),
            Outcome::Replied { text, .. } => Some(text),
            Outcome::MaxSteps { .. } | Outcome::Aborted { .. } => None,
        }
    }
}
