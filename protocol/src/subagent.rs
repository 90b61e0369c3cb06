//! Sub-agents (SPEC §20): the events a parent emits about its workers.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

/// [`crate::Event::SubagentSpawn`]: the control block started a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubagentSpawnEvent {
    /// The worker's number in this session, from 1; what `spawn_subagent` returned.
    pub agent_id: u32,
    /// The task's first 120 characters.
    pub task_summary: String,
    /// The model it runs on (the parent's, or the override).
    pub model: String,
    /// The tools it may call (`None`: the default worker set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// [`crate::Event::SubagentMessage`]: a worker asked the parent something (`ask_main_agent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubagentMessageEvent {
    /// The worker.
    pub agent_id: u32,
    /// Its message.
    pub message: String,
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubagentStatus {
    /// It finished with a completion (or a reply).
    Completed,
    /// It stopped short: its step limit, a limit on spend, or output that never matched.
    Stopped,
    /// It failed: its model or store failed, or it could not start.
    Failed,
    /// It was aborted with its parent's run.
    Aborted,
}

/// [`crate::Event::SubagentFinish`]: a worker ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubagentFinishEvent {
    /// The worker.
    pub agent_id: u32,
    /// How it ended.
    pub status: SubagentStatus,
    /// Its completion summary or reply; empty when it has none.
    pub summary: String,
    /// Files its `write_file` calls wrote, relative to the work directory, in order.
    pub files_written: Vec<String>,
    /// Seconds from spawn to end.
    pub elapsed_seconds: f64,
    /// Why it failed or stopped, for `failed` and `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
