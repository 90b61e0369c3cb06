//! Trajectories (SPEC §23): a session written out as JSON lines — the agent, the workspace it started from, every
//! message and stored event, its checkpoints and the tree it ended with — enough to re-run it with the recorded
//! answers (`codepilot replay`).

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

use crate::CheckpointInfo;
use crate::Role;

/// The format's name and version, in every trajectory's header.
pub const TRAJECTORY_FORMAT: &str = "codepilot-trajectory/1";

/// One line of a trajectory file. The first is a [`TrajectoryLine::Header`]; then the workspace before each turn
/// (the first one is where a replay starts; the others let it start at a later turn), the messages in order, the
/// stored events, the checkpoints; the last is a [`TrajectoryLine::End`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrajectoryLine {
    /// What was run, by what.
    Header(TrajectoryHeader),
    /// The work directory before a turn (first: before the first task).
    Workspace(TrajectoryWorkspace),
    /// A message of the conversation, in order.
    Message(TrajectoryMessage),
    /// An event of the session's stored event log (sessions whose host stores events: the daemon), in order.
    Event(TrajectoryEvent),
    /// A checkpoint the session took.
    Checkpoint(CheckpointInfo),
    /// The last line: what the session ended with.
    End(TrajectoryEnd),
}

/// [`TrajectoryLine::Header`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrajectoryHeader {
    /// [`TRAJECTORY_FORMAT`].
    pub format: String,
    /// The session.
    pub session_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// The agent file's YAML text, when the session recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_yaml: Option<String>,
    /// The file it was read from: its folder is the base of the text's relative paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_file: Option<String>,
    /// The work directory the session ran in.
    pub work_dir: String,
    /// The CodePilot version that exported it.
    pub codepilot_version: String,
    /// When the session was created (Unix seconds).
    pub created_at: i64,
    /// When it was exported (Unix seconds).
    pub exported_at: i64,
    /// Tasks run.
    pub tasks: u64,
}

/// One file of [`TrajectoryWorkspace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrajectoryFile {
    /// Relative to the work directory, `/`-separated.
    pub path: String,
    /// Unix permission bits.
    pub mode: u32,
    /// The content, base64 (regular files), unless an earlier workspace line of the file already held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The content's sha256 (hex), by which a later workspace line names the same content without repeating it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the link points (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// [`TrajectoryLine::Workspace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrajectoryWorkspace {
    /// The checkpoint the files come from (`"1"`: before the first task, `"3"`: before the third).
    pub checkpoint: String,
    /// The files (what `.gitignore` leaves), sorted by path.
    pub files: Vec<TrajectoryFile>,
    /// Their tree hash.
    pub tree_hash: String,
}

/// [`TrajectoryLine::Message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrajectoryMessage {
    /// Its position in the conversation, from 0.
    pub index: u64,
    /// Its author.
    pub role: Role,
    /// Its text as the history keeps it (and as it is sent back to the model).
    pub content: String,
    /// For an answer stored compacted (its payload blocks left out of the history), the answer as the model gave
    /// it: what a replay feeds back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// [`TrajectoryLine::Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrajectoryEvent {
    /// Its number in the session.
    pub seq: u64,
    /// The event envelope as it was streamed.
    pub envelope: serde_json::Value,
}

/// [`TrajectoryLine::End`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrajectoryEnd {
    /// Messages in the conversation.
    pub messages: u64,
    /// The tree hash of the work directory when it was exported.
    pub tree_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_by_type() {
        let line = TrajectoryLine::Message(TrajectoryMessage {
            index: 0,
            role: Role::User,
            content: "hi".to_owned(),
            raw: None,
        });
        let text = serde_json::to_string(&line).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"type":"message","index":0,"role":"user","content":"hi"}"#
        );
        let back: TrajectoryLine =
            serde_json::from_str(&text).unwrap_or(TrajectoryLine::End(TrajectoryEnd {
                messages: 9,
                tree_hash: String::new(),
            }));
        assert_eq!(back, line);
    }
}
