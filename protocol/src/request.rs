//! Questions the runtime puts to its host while a task runs: may a gated tool call run, and what does the user
//! answer to the agent's question.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

/// A gated tool call (a tool configured with `require_permission: true`) waiting for a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PermissionRequest {
    /// The tool asking, e.g. `execute`.
    pub tool: String,
    /// The call's arguments, by parameter name.
    #[serde(default)]
    pub args: serde_json::Value,
    /// What it wants to do, e.g. "Execute in main: cargo test".
    pub description: String,
}

/// The host's answer to a [`PermissionRequest`]: `{"decision":"allow"}` or `{"decision":"deny","reason":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum PermissionDecision {
    /// Run it.
    Allow,
    /// Don't; `reason` is shown to the model.
    Deny {
        /// Why, if the host says.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// The agent's `ask_user(question)`, waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AskUserRequest {
    /// The question.
    pub question: String,
}

/// The answer to an [`AskUserRequest`]; `None` when the user gave none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AskUserResponse {
    /// The answer.
    #[serde(default)]
    pub answer: Option<String>,
    /// The filled-in form, for a question that came with a `schema` (an MCP server's form): an object of the
    /// schema's fields. Absent with no `answer`: the person declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
}
