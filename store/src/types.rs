//! Stored values and the checkpoint merge rule shared by every backend.

use std::path::PathBuf;

use codepilot_protocol::ArchiveEntry;
use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use serde::Deserialize;
use serde::Serialize;

use crate::error::Result;
use crate::error::StoreError;
use crate::id::SessionId;

/// A whole session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// The conversation, oldest first (append-only).
    pub messages: Vec<Message>,
    /// Number of tasks run so far; a resumed session continues from it.
    pub task_counter: u64,
    /// Token usage totals.
    pub usage: Usage,
    /// Finished tasks replaced by a summary in the model's context (their messages stay in `messages`).
    #[serde(default)]
    pub archives: Vec<ArchiveEntry>,
    /// Metadata.
    pub meta: SessionMeta,
}

/// What `list` shows about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Name of the agent that created it.
    pub agent_name: String,
    /// The first task's first line, once the runtime set it.
    pub title: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Time of the last checkpoint, Unix seconds.
    pub updated_at: i64,
    /// Number of stored messages.
    pub message_count: u64,
    /// The key of the session's latest workspace snapshot (SPEC §17), once one was taken.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The agent the session was last opened with by a host that records it (the daemon), so another host can
    /// open it with the same agent; `None` for sessions no such host opened (the CLI, the Python package, or a
    /// version before this field).
    #[serde(default)]
    pub agent_source: Option<AgentSource>,
}

/// Where a session's agent came from, enough to build the same agent again: the agent file's text, the file it
/// was read from and the work directory it resolved to. Recorded with
/// [`SessionStore::set_agent_source`](crate::SessionStore::set_agent_source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSource {
    /// The agent file's YAML text, as it was read or given.
    pub yaml: String,
    /// The file the text was read from, absolute: its directory is the base of the text's relative paths
    /// (`system_prompt` files, `model.script`). `None` for text given directly, whose relative paths resolve
    /// against the current directory of the process that loads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The work directory the session ran in (`runtime.work_dir` after any override), absolute.
    pub work_dir: PathBuf,
}

impl AgentSource {
    /// The JSON every backend stores.
    ///
    /// # Errors
    /// [`StoreError::Encode`] when a path is not UTF-8 (JSON holds text only).
    pub(crate) fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| {
            StoreError::Encode(format!(
                "the session's agent source: {e}; give the agent file and the work directory UTF-8 paths"
            ))
        })
    }

    /// Reads what [`AgentSource::to_json`] wrote.
    ///
    /// # Errors
    /// [`StoreError::CorruptRow`] naming the session when the text is not an agent source.
    pub(crate) fn from_json(session: &SessionId, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| StoreError::CorruptRow {
            session: session.clone(),
            reason: format!("the agent_source column is not an agent source: {e}"),
        })
    }
}

/// One entry of [`SessionStore::list`](crate::SessionStore::list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Its id.
    pub id: SessionId,
    /// Metadata.
    pub meta: SessionMeta,
    /// Number of tasks run so far.
    pub task_counter: u64,
    /// Token usage totals.
    pub usage: Usage,
    /// Who drives the session now: the holder of a live lease. `None` when nobody does.
    #[serde(default)]
    pub holder: Option<crate::LeaseHolder>,
}

/// One event kept with its session: its number (the envelope's `seq`) and the envelope as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event's number in its session, from 1.
    pub seq: u64,
    /// The `EventEnvelope`, serialised.
    pub body: String,
}

/// What a step adds to a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Number of messages already stored before `messages` (the position of `messages[0]`).
    pub base_len: u64,
    /// The new messages.
    pub messages: Vec<Message>,
    /// The task counter after this step (a total, not a delta).
    pub task_counter: u64,
    /// Usage totals after this step (not a delta).
    pub usage: Usage,
    /// The session title; `None` keeps the stored one.
    pub title: Option<String>,
    /// The whole archive list when it changed; `None` keeps the stored one.
    pub archives: Option<Vec<ArchiveEntry>>,
    /// The model's answers among `messages` as it gave them, where the stored message differs (payload blocks are
    /// compacted out of the history): what a replay (SPEC §23) feeds back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<RawAnswer>,
}

/// An assistant message's text as the model gave it ([`Checkpoint::answers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAnswer {
    /// The message's position in the history.
    pub index: u64,
    /// The answer, payload blocks and all.
    pub content: String,
}

/// A rewind of a session's history (SPEC §19): the first `keep` messages stay, the rest are replaced by `append`,
/// and the archive list by `archives`. Counters (task counter, usage) are kept: turn numbers stay unique in a session
/// and tokens spent stay spent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRewrite {
    /// Messages kept from the start of the history.
    pub keep: u64,
    /// Messages stored after them.
    pub append: Vec<Message>,
    /// The session's archives afterwards.
    pub archives: Vec<ArchiveEntry>,
}

impl HistoryRewrite {
    /// The history's length afterwards.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.keep
            .saturating_add(u64::try_from(self.append.len()).unwrap_or(u64::MAX))
    }

    /// Checks `keep` against the `stored` length.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `keep` is past the stored end.
    pub(crate) fn check(&self, session: &SessionId, stored: u64) -> Result<()> {
        if self.keep > stored {
            return Err(StoreError::Conflict {
                session: session.clone(),
                base_len: self.keep,
                stored,
                reason: format!(
                    "a rewind keeps {} messages but only {stored} are stored",
                    self.keep
                ),
            });
        }
        Ok(())
    }
}

impl Checkpoint {
    /// Position just after the last message of this checkpoint.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.base_len
            .saturating_add(u64::try_from(self.messages.len()).unwrap_or(u64::MAX))
    }
}

impl SessionRecord {
    /// The summary `list` returns for this record, driven by `holder`.
    #[must_use]
    pub fn summary(&self, holder: Option<crate::LeaseHolder>) -> SessionSummary {
        SessionSummary {
            id: self.id.clone(),
            meta: self.meta.clone(),
            task_counter: self.task_counter,
            usage: self.usage,
            holder,
        }
    }
}

/// What a checkpoint does to a session holding `stored` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergePlan {
    /// How many leading messages of the checkpoint are already stored (and equal); append the rest.
    pub(crate) skip: usize,
    /// Whether to write the checkpoint's counters (false for a stale re-send that ends before the stored end).
    pub(crate) update_counters: bool,
}

/// The stored positions a checkpoint overlaps: `base_len..min(stored, end)`. Empty when there is no overlap.
pub(crate) fn overlap_range(stored: u64, cp: &Checkpoint) -> std::ops::Range<u64> {
    cp.base_len..stored.min(cp.end()).max(cp.base_len)
}

/// Decides how a checkpoint applies to a session with `stored` messages, given the stored messages in
/// [`overlap_range`].
///
/// Rules: a gap (`base_len > stored`) is an error; messages that overlap the stored history must equal it
/// (then they are skipped, which makes re-sending a checkpoint harmless); the rest is appended.
pub(crate) fn plan_merge(
    session: &SessionId,
    stored: u64,
    overlap: &[Message],
    cp: &Checkpoint,
) -> Result<MergePlan> {
    let conflict = |reason: String| StoreError::Conflict {
        session: session.clone(),
        base_len: cp.base_len,
        stored,
        reason,
    };
    if cp.base_len > stored {
        return Err(conflict(format!(
            "it starts at message {} but only {stored} are stored (a checkpoint is missing)",
            cp.base_len
        )));
    }
    for (i, (old, new)) in overlap.iter().zip(&cp.messages).enumerate() {
        if old != new {
            let pos = cp
                .base_len
                .saturating_add(u64::try_from(i).unwrap_or(u64::MAX));
            return Err(conflict(format!(
                "message {pos} differs from the stored one (stored {}, checkpoint {})",
                old.role.as_str(),
                new.role.as_str()
            )));
        }
    }
    let expected =
        usize::try_from(overlap_range(stored, cp).end - cp.base_len).unwrap_or(usize::MAX);
    if overlap.len() != expected {
        return Err(conflict(format!(
            "the store returned {} overlapping messages instead of {expected}",
            overlap.len()
        )));
    }
    Ok(MergePlan {
        skip: overlap.len(),
        update_counters: cp.end() >= stored,
    })
}

/// Converts a count to the BIGINT the SQL schema stores (saturating).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Converts a stored BIGINT back (negative values read as 0).
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Title rule: the first line of `text`, trimmed, at most 200 characters. `None` when that is empty.
#[must_use]
pub fn title_from_task(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn cp(base_len: u64, msgs: &[&str]) -> Checkpoint {
        Checkpoint {
            base_len,
            messages: msgs.iter().map(|m| Message::user(*m)).collect(),
            ..Checkpoint::default()
        }
    }

    fn msgs(m: &[&str]) -> Vec<Message> {
        m.iter().map(|m| Message::user(*m)).collect()
    }

    #[test]
    fn merge_rules() {
        let id = SessionId::new("s").unwrap();
        // plain append
        let c = cp(2, &["c", "d"]);
        assert_eq!(overlap_range(2, &c), 2..2);
        assert_eq!(
            plan_merge(&id, 2, &[], &c).unwrap(),
            MergePlan {
                skip: 0,
                update_counters: true
            }
        );
        // full re-send
        assert_eq!(overlap_range(4, &c), 2..4);
        assert_eq!(
            plan_merge(&id, 4, &msgs(&["c", "d"]), &c).unwrap(),
            MergePlan {
                skip: 2,
                update_counters: true
            }
        );
        // partial overlap
        assert_eq!(overlap_range(3, &c), 2..3);
        assert_eq!(
            plan_merge(&id, 3, &msgs(&["c"]), &c).unwrap(),
            MergePlan {
                skip: 1,
                update_counters: true
            }
        );
        // stale
        assert_eq!(overlap_range(9, &c), 2..4);
        assert!(
            !plan_merge(&id, 9, &msgs(&["c", "d"]), &c)
                .unwrap()
                .update_counters
        );
        // gap and mismatch
        assert!(plan_merge(&id, 1, &[], &c).unwrap_err().is_conflict());
        assert!(
            plan_merge(&id, 3, &msgs(&["x"]), &c)
                .unwrap_err()
                .is_conflict()
        );
    }

    #[test]
    fn titles() {
        assert_eq!(
            title_from_task("\n  fix the bug \nmore"),
            Some("fix the bug".into())
        );
        assert_eq!(title_from_task(" \n"), None);
    }
}
