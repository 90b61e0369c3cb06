//! Context management as the model reads it: archived tasks, the markers that stand in for dropped history, the
//! maintenance request, the context line of the prompt, and what the context tools return (SPEC §16).

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

use crate::message::Message;
use crate::message::Role;

/// Who wrote an archive's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveOrigin {
    /// The model, with `archive_context`.
    Agent,
    /// The runtime's summarising backstop.
    Summary,
}

/// Finished tasks replaced in the request by a summary. The original messages stay in the session's history, so
/// `reveal_context` can show them. Stored with the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArchiveEntry {
    /// First task covered.
    pub first_task: u64,
    /// Last task covered (equal to `first_task` for one task).
    pub last_task: u64,
    /// What stands in for the tasks.
    pub summary: String,
    /// Tokens the tasks took before, less the summary's, when archived.
    pub tokens_saved: u64,
    /// Who wrote the summary.
    pub origin: ArchiveOrigin,
}

impl ArchiveEntry {
    /// Whether task `n` is part of this archive.
    #[must_use]
    pub fn covers(&self, n: u64) -> bool {
        (self.first_task..=self.last_task).contains(&n)
    }

    /// The message that replaces the tasks: `[ARCHIVED TASK N]` (or `[ARCHIVED TASKS N-M]`) then the summary.
    #[must_use]
    pub fn message(&self) -> String {
        format!("{}\n{}", self.heading(), self.summary.trim())
    }

    fn heading(&self) -> String {
        if self.first_task == self.last_task {
            format!("[ARCHIVED TASK {}]", self.first_task)
        } else {
            format!("[ARCHIVED TASKS {}-{}]", self.first_task, self.last_task)
        }
    }
}

/// The task number of a task's opening message (`[Task N]…`), `None` for any other message.
#[must_use]
pub fn task_number(content: &str) -> Option<u64> {
    let rest = content.strip_prefix("[Task ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !rest[digits..].starts_with(']') {
        return None;
    }
    rest[..digits].parse().ok()
}

/// What stands in for whole finished tasks dropped to fit the context window.
#[must_use]
pub fn dropped_tasks_marker(first: u64, last: u64) -> String {
    if first == last {
        format!(
            "[TASK {first} DROPPED]\nThis finished task was dropped to fit the context window; reveal_context({first}) \
             shows it."
        )
    } else {
        format!(
            "[TASKS {first}-{last} DROPPED]\nThese finished tasks were dropped to fit the context window; \
             reveal_context(N) shows one."
        )
    }
}

/// What stands in for the oldest steps of a task, dropped whole to fit the context window.
#[must_use]
pub fn omitted_steps_marker(steps: u64) -> String {
    let s = if steps == 1 { "" } else { "s" };
    format!("[{steps} earlier step{s} of this task dropped to fit the context window]")
}

/// `X / MAX tokens (P%)`, the percentage rounded down.
fn usage_text(tokens: u64, budget: u64) -> String {
    format!("{tokens} / {budget} tokens ({}%)", percent(tokens, budget))
}

/// `tokens` as a whole percentage of `budget` (rounded down; 100 for an empty budget).
#[must_use]
pub fn percent(tokens: u64, budget: u64) -> u32 {
    if budget == 0 {
        return 100;
    }
    u32::try_from(u128::from(tokens) * 100 / u128::from(budget)).unwrap_or(u32::MAX)
}

/// The context lines of the prompt's dynamic part: `Context: X / MAX tokens (P%)`, and a warning from 70%.
#[must_use]
pub fn context_status(tokens: u64, budget: u64) -> String {
    let mut s = format!("Context: {}", usage_text(tokens, budget));
    if percent(tokens, budget) >= 70 {
        s.push_str(
            "\n⚡ Context stress elevated: archive finished tasks you no longer need in detail \
             (archive_context).",
        );
    }
    s
}

/// One finished task the maintenance message offers for archiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Task number.
    pub task: u64,
    /// Tokens it takes in the request.
    pub tokens: u64,
}

/// The user message of a maintenance step: how full the context is, which tasks can be archived, and how.
#[must_use]
pub fn maintenance_message(
    tokens: u64,
    budget: u64,
    candidates: &[Candidate],
    active: u64,
) -> String {
    let mut s = format!(
        "[INTERNAL CONTEXT MAINTENANCE]\nThe conversation uses {}. Before you continue, archive the finished tasks \
         you no longer need in detail: call archive_context(task, summary) in your control block, one call per \
         task, with a dense summary of what was done, decided and learned (files, commands, results, open \
         issues). The original stays retrievable with reveal_context(task).\nFinished tasks:\n",
        usage_text(tokens, budget)
    );
    for c in candidates {
        let _ = writeln!(s, "- Task {}: {} tokens", c.task, c.tokens);
    }
    let _ = write!(
        s,
        "- Task {active}: ACTIVE — protected\nThen continue with task {active}."
    );
    s
}

/// Whether `content` is a maintenance message.
#[must_use]
pub fn is_maintenance_message(content: &str) -> bool {
    content.starts_with("[INTERNAL CONTEXT MAINTENANCE]")
}

/// The system prompt of the summarising backstop's model call.
pub const SUMMARISER_PROMPT: &str = "You compress the history of an autonomous coding agent. You receive the \
    transcript of finished tasks. Write one dense summary of at most 300 words: per task, what was asked, what was \
    done (files changed, commands run, results), what was decided and anything left open. Plain text, no preamble.";

/// The user message of the backstop's call: the transcript of `messages` under `[ROLE]` headings.
#[must_use]
pub fn summariser_request(messages: &[Message]) -> String {
    let mut s = String::from("Summarise these finished tasks:\n\n");
    push_transcript(&mut s, messages);
    s
}

fn push_transcript(s: &mut String, messages: &[Message]) {
    for m in messages {
        let role = match m.role {
            Role::User => "[USER]",
            Role::Assistant => "[ASSISTANT]",
        };
        let _ = write!(s, "{role}\n{}\n\n", m.content.trim_end());
    }
}

/// `reveal_context`'s text: the task's original messages under `[ROLE]` headings.
#[must_use]
pub fn reveal_text(task: u64, messages: &[Message]) -> String {
    let mut s = format!("=== DETAILED HISTORY FOR TASK {task} ===\n");
    push_transcript(&mut s, messages);
    s.truncate(s.trim_end().len());
    s
}

/// `list_archived_context`'s text: one line per archive, with the start of its summary.
#[must_use]
pub fn archive_list_text(entries: &[ArchiveEntry]) -> String {
    if entries.is_empty() {
        return "No archived tasks.".to_owned();
    }
    let mut s = String::new();
    for e in entries {
        let summary: String = e.summary.trim().chars().take(150).collect();
        let cut = if summary.len() < e.summary.trim().len() {
            "…"
        } else {
            ""
        };
        let by = match e.origin {
            ArchiveOrigin::Agent => "archived",
            ArchiveOrigin::Summary => "summarised by the runtime",
        };
        let what = if e.first_task == e.last_task {
            format!("Task {}", e.first_task)
        } else {
            format!("Tasks {}-{}", e.first_task, e.last_task)
        };
        let _ = writeln!(
            s,
            "{what}: {by}, ~{} tokens saved — \"{summary}{cut}\"",
            e.tokens_saved
        );
    }
    s.truncate(s.trim_end().len());
    s
}

/// `archive_context`'s text after a success.
#[must_use]
pub fn archived_text(tasks: &[u64], saved: u64, tokens: u64, budget: u64) -> String {
    let list: Vec<String> = tasks.iter().map(u64::to_string).collect();
    let s = if tasks.len() == 1 { "" } else { "s" };
    format!(
        "Archived Task{s} {}. Context reduced by ~{saved} tokens. ({})",
        list.join(", "),
        usage_text(tokens, budget)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_numbers() {
        assert_eq!(task_number("[Task 12][USER INPUT]\nfix"), Some(12));
        assert_eq!(task_number("[Task ]"), None);
        assert_eq!(task_number("[Task 3"), None);
        assert_eq!(task_number("[EXECUTION RESULT]"), None);
    }

    #[test]
    fn archive_messages() {
        let mut e = ArchiveEntry {
            first_task: 2,
            last_task: 2,
            summary: " Fixed the parser. \n".into(),
            tokens_saved: 900,
            origin: ArchiveOrigin::Agent,
        };
        assert_eq!(e.message(), "[ARCHIVED TASK 2]\nFixed the parser.");
        assert!(e.covers(2) && !e.covers(3));
        e.last_task = 4;
        assert_eq!(e.message(), "[ARCHIVED TASKS 2-4]\nFixed the parser.");
        assert!(e.covers(3));
    }

    #[test]
    fn percentages_round_down_and_survive_zero() {
        assert_eq!(percent(799, 1000), 79);
        assert_eq!(percent(5, 0), 100);
        assert_eq!(
            context_status(100, 1000),
            "Context: 100 / 1000 tokens (10%)"
        );
        assert!(context_status(700, 1000).contains("stress elevated"));
    }
}
