//! Checkpoints and rewind (SPEC §19): what a host is told about a session's checkpoints, and what a rewind
//! changes.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

/// When a checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Before a turn's first step; its id is the turn number (`"3"`).
    Turn,
    /// Before a later step of a turn (`runtime.checkpoints: step`); its id is `turn.step` (`"3.2"`).
    Step,
    /// The state a rewind replaced, recorded before it changed anything, so the rewind can itself be undone; its
    /// id is `rewind-N`.
    Rewind,
}

/// One checkpoint of a session, as `checkpoints()`, `codepilot checkpoints list` and `session/checkpoints` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointInfo {
    /// What `rewind` takes: `"3"` (before turn 3), `"3.2"` (before step 2 of turn 3) or `"rewind-1"`.
    pub id: String,
    /// When it was taken.
    pub kind: CheckpointKind,
    /// The turn (task number) it belongs to: the turn about to start, or the last one before a rewind.
    pub turn: u64,
    /// The step about to start, for a step checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Messages in the conversation at that point.
    pub messages: u64,
    /// Files in the work directory it recorded.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Bytes this checkpoint added to storage (compressed contents not stored before, and its manifest).
    pub stored_bytes: u64,
    /// Files left out because they are over the size cap (`runtime.checkpoint_max_file_mb`), by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// What a rewind brings back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewindScope {
    /// The work directory only.
    Files,
    /// The conversation only.
    Conversation,
    /// Both.
    #[default]
    Both,
}

impl RewindScope {
    /// Whether the work directory is rewound.
    #[must_use]
    pub fn files(self) -> bool {
        matches!(self, Self::Files | Self::Both)
    }

    /// Whether the conversation is rewound.
    #[must_use]
    pub fn conversation(self) -> bool {
        matches!(self, Self::Conversation | Self::Both)
    }

    /// The name used on the wire and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::Conversation => "conversation",
            Self::Both => "both",
        }
    }
}

impl fmt::Display for RewindScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RewindScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "files" => Ok(Self::Files),
            "conversation" => Ok(Self::Conversation),
            "both" => Ok(Self::Both),
            other => Err(format!(
                "unknown rewind scope {other:?}; use files, conversation or both"
            )),
        }
    }
}

/// What a rewind did (and, for a preview, would do): the `rewound` event's data and `rewind`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewoundEvent {
    /// The checkpoint rewound to.
    pub checkpoint: String,
    /// What was rewound.
    pub scope: RewindScope,
    /// Files and links written back (changed or deleted since the checkpoint), modes included.
    pub files_restored: u64,
    /// Files and links created since the checkpoint, deleted.
    pub files_deleted: u64,
    /// Files the checkpoint has that were left as they are: something not recorded now (a file `.gitignore`
    /// excludes now, or one too large to record) stands there, which a rewind could not bring back.
    #[serde(default)]
    pub files_left: Vec<String>,
    /// Messages in the conversation afterwards.
    pub messages: u64,
    /// The checkpoint that holds the state before the rewind (`rewind-N`): rewinding to it undoes this one.
    /// Empty for a preview.
    pub saved_as: String,
}
