//! The text fed back to the model as the next user message (SPEC §4.7, §4.9).

use crate::error::ParseError;

/// Tag of every observation.
pub const EXECUTION_RESULT_TAG: &str = "[EXECUTION RESULT]";

/// Rendered for a control block that ran without any output.
pub const NO_OUTPUT: &str = "[Control block executed with no output.]";

/// The results of one control block, in true call order: each tool's formatted result and each `print`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    entries: Vec<String>,
}

impl Observation {
    /// An empty observation.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry (a tool's formatted result, or printed text).
    pub fn push(&mut self, entry: impl Into<String>) {
        self.entries.push(entry.into());
    }

    /// Whether nothing was pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in order.
    #[must_use]
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// `[EXECUTION RESULT]`, a newline, then the entries separated by blank lines; with no entries,
    /// `[Control block executed with no output.]`.
    #[must_use]
    pub fn render(&self) -> String {
        if self.entries.is_empty() {
            format!("{EXECUTION_RESULT_TAG}\n{NO_OUTPUT}")
        } else {
            format!("{EXECUTION_RESULT_TAG}\n{}", self.entries.join("\n\n"))
        }
    }
}

/// How to write a valid answer, appended to every parser error.
pub const FIX_RULES: &str = "How to fix it:
1. Write at most one ```codepilot control block per answer.
2. Put payload blocks after the control block, never before it, each annotated with filename=PATH matching the write_file call that consumes it.
3. Order payload blocks like the write_file calls: one per call, and one per (start, end) range of a multi_edit. write_file never takes content inline.
4. Close every block with a fence line at least as long as its opening one; if a payload contains ``` lines, open and close it with ```` (or longer).
5. Do not add a ```completion block to the answer that fixes this: finish only after you have seen the result of a control block that ran.";

/// The observation for an answer that could not be parsed: nothing of it ran (SPEC §4.7).
#[must_use]
pub fn parser_error_observation(err: &ParseError) -> String {
    format!(
        "{EXECUTION_RESULT_TAG}\nPARSER ERROR: {err}.\n\n{FIX_RULES}\nNo tool code from the previous response ran."
    )
}

/// A control block that failed to compile or raised an exception.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFailure {
    /// Exception type, e.g. `NameError`, `SyntaxError`, `TimeoutError`.
    pub exc_type: String,
    /// Exception message.
    pub message: String,
    /// 1-based line within the control block, if known.
    pub line: Option<usize>,
    /// The text of that line, if known.
    pub line_text: Option<String>,
    /// The interpreter's traceback, if any.
    pub traceback: Option<String>,
    /// Whether any statement ran before the failure.
    pub ran_anything: bool,
    /// The block did not compile (nothing ran).
    pub compile_error: bool,
}

/// The observation for a failed control block (SPEC §4.7): the results of what already ran, then
/// `EXECUTION ERROR: …` naming the failing line and exception type and saying what ran.
#[must_use]
pub fn execution_error_observation(partial: &Observation, failure: &ExecutionFailure) -> String {
    let mut out = String::from(EXECUTION_RESULT_TAG);
    out.push('\n');
    for entry in &partial.entries {
        out.push_str(entry);
        out.push_str("\n\n");
    }
    let location = match (failure.line, failure.line_text.as_deref().map(str::trim)) {
        (Some(n), Some(text)) if !text.is_empty() => format!(" on line {n} of the block: `{text}`"),
        (Some(n), _) => format!(" on line {n} of the block"),
        (None, _) => String::new(),
    };
    let exc = if failure.exc_type.is_empty() {
        "Exception"
    } else {
        failure.exc_type.as_str()
    };
    if failure.compile_error {
        out.push_str(&format!(
            "EXECUTION ERROR: the ```codepilot control block did not compile ({exc}{location}).\n"
        ));
    } else {
        out.push_str(&format!(
            "EXECUTION ERROR: the ```codepilot control block raised {exc}{location}.\n"
        ));
    }
    if failure.message.is_empty() {
        out.push_str(exc);
    } else {
        out.push_str(&format!("{exc}: {}", failure.message));
    }
    out.push('\n');
    let what_ran = if failure.compile_error {
        "Nothing ran: fix the code and send the whole block again."
    } else if failure.ran_anything && !partial.entries.is_empty() {
        "The statements before the failing one ran; their results are above. Nothing after it ran."
    } else if failure.ran_anything {
        "The statements before the failing one ran, without output. Nothing after it ran."
    } else {
        "Nothing ran before the failing statement, and nothing after it."
    };
    out.push_str(what_ran);
    if let Some(tb) = failure
        .traceback
        .as_deref()
        .map(str::trim_end)
        .filter(|t| !t.is_empty())
    {
        out.push('\n');
        out.push_str(tb);
    }
    out
}

/// The first message of task `n`: `[Task N][USER INPUT]` then the task.
#[must_use]
pub fn task_message(n: u64, task: &str) -> String {
    format!("[Task {n}][USER INPUT]\n{task}")
}

/// A message the user sent while the task runs: `[USER MESSAGE]` then the text.
#[must_use]
pub fn user_message(text: &str) -> String {
    format!("[USER MESSAGE]\n{text}")
}

/// A change to the workspace made outside the agent: `[ENVIRONMENT CHANGE]` then the description.
#[must_use]
pub fn environment_change(text: &str) -> String {
    format!("[ENVIRONMENT CHANGE]\n{text}")
}

/// The entry added to the observation when a completion block is not honoured (SPEC §4.4), e.g. because the
/// control block failed. Push it onto the [`Observation`] (or append it after a blank line to a rendered error
/// observation); `reason` completes "because …".
#[must_use]
pub fn completion_rejected(reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    format!(
        "[COMPLETION NOT ACCEPTED] Your ```completion block was not accepted because {reason}. The task is not finished: fix the problem, check the result, and send the completion block again in a later answer."
    )
}

/// Longest observation fed back in one message; longer ones keep their head and tail ([`cap_observation`]).
pub const MAX_OBSERVATION_CHARS: usize = 60_000;

/// Keeps the head and tail of an over-long text (an observation, or a rejected answer kept in the history), with
/// a marker saying how much was cut.
#[must_use]
pub fn cap_observation(text: String) -> String {
    let total = text.chars().count();
    if total <= MAX_OBSERVATION_CHARS {
        return text;
    }
    let keep = MAX_OBSERVATION_CHARS / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(total - keep).collect();
    format!(
        "{head}\n\n[... {} characters of output cut: the observation is limited to {MAX_OBSERVATION_CHARS}; \
         print less, or read files in pages ...]\n\n{tail}",
        total - 2 * keep
    )
}

/// What replaces an old observation elided to fit the context window.
pub const ELIDED_OBSERVATION: &str =
    "[EXECUTION RESULT]\n[older output elided to fit the context window]";

/// The entry added when the host aborted the run while the block ran.
pub const ABORTED_ENTRY: &str = "[aborted by the user]";

/// The entry added when the run's time limit stopped the block (SPEC §21).
pub const OUT_OF_TIME_ENTRY: &str =
    "[stopped: the run's time limit (max_wall_s) was reached; the task is unfinished]";

/// A tool's failure as the model reads it: `[tool] ERROR: message`.
#[must_use]
pub fn tool_error_entry(tool: &str, message: &str) -> String {
    format!("[{tool}] ERROR: {message}")
}

/// A host tool's result when the tool gives no text of its own: `[tool] value` (strings without quotes).
#[must_use]
pub fn tool_value_entry(tool: &str, value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => format!("[{tool}] {s}"),
        other => format!("[{tool}] {other}"),
    }
}

/// Why a gated tool call did not run; the message of the `PermissionError` the block gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionRefusal {
    /// The host registered no permission handler, so nobody can grant it.
    NoHandler,
    /// The user (or the host's policy) said no, maybe with a reason.
    Denied(Option<String>),
}

impl PermissionRefusal {
    /// The message for the call described by `description`, e.g. "Execute in main: rm -rf build".
    #[must_use]
    pub fn message(&self, description: &str) -> String {
        match self {
            PermissionRefusal::NoHandler => format!(
                "permission denied for {description}: this tool requires permission and the host application has \
                 no way to grant it (no permission handler). Do without this action, or finish and tell the user \
                 what you need"
            ),
            PermissionRefusal::Denied(Some(reason)) => {
                format!("the user denied permission for {description}: {reason}")
            }
            PermissionRefusal::Denied(None) => {
                format!("the user denied permission for {description}")
            }
        }
    }
}

/// A refused gated call as the model reads it: `[tool] Permission denied: message`.
#[must_use]
pub fn permission_denied_entry(tool: &str, message: &str) -> String {
    format!("[{tool}] Permission denied: {message}")
}

/// What the model is told (as a [`user_message`]) about a command a person typed into an agent's terminal.
#[must_use]
pub fn human_command_text(terminal: &str, command: &str) -> String {
    format!("A person typed this command in terminal '{terminal}':\n$ {command}")
}

/// Why a completion block was not honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionRefusal {
    /// The control block raised an exception.
    BlockFailed,
    /// A user message arrived that the model has not read yet.
    UnreadUserMessage,
    /// With an output schema: the completion is not JSON valid against it.
    InvalidOutput {
        /// The parser's or the validator's errors.
        errors: Vec<String>,
        /// Completions that may still be refused before the task ends as `invalid_output`.
        tries_left: u32,
    },
}

impl CompletionRefusal {
    fn reason(&self) -> String {
        match self {
            CompletionRefusal::BlockFailed => {
                "the control block raised an exception, so the task is not complete".to_owned()
            }
            CompletionRefusal::UnreadUserMessage => {
                "a new message from the user arrived while you worked; it follows — take it into account before \
                 finishing"
                    .to_owned()
            }
            CompletionRefusal::InvalidOutput { errors, tries_left } => {
                let listed: Vec<String> = errors.iter().map(|e| format!("\n- {e}")).collect();
                format!(
                    "its content must be one JSON value valid against the output schema, and it is not:{}\n\
                     Send a completion block whose whole content is the corrected JSON ({tries_left} more \
                     refusal(s) end the task as invalid output)",
                    listed.concat()
                )
            }
        }
    }
}

/// How a control block ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEnd {
    /// It ran to its end.
    Finished,
    /// The host aborted the run while it ran.
    Aborted,
    /// The run's time limit stopped it.
    OutOfTime,
    /// It did not compile, raised an exception or hit a limit.
    Failed(ExecutionFailure),
}

/// What one control block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReport {
    /// Each tool's formatted result and each `print`, in call order.
    pub observation: Observation,
    /// Payload blocks (their filenames, quoted) that no `write_file` call consumed.
    pub unused_payloads: Vec<String>,
    /// How the block ended.
    pub end: BlockEnd,
    /// Set when the answer's completion block was not honoured.
    pub completion_refused: Option<CompletionRefusal>,
}

/// Everything the model is told about its last answer. [`Feedback::render`] is the next user message, built here
/// and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Feedback {
    /// The answer broke the protocol; nothing ran.
    ParseError(ParseError),
    /// The control block ran, failed or was aborted.
    Block(BlockReport),
    /// The answer had a completion block and no control block, and the completion was refused.
    CompletionRefused(CompletionRefusal),
}

impl Feedback {
    /// The observation text, capped at [`MAX_OBSERVATION_CHARS`].
    #[must_use]
    pub fn render(&self) -> String {
        match self {
            Feedback::ParseError(e) => parser_error_observation(e),
            Feedback::CompletionRefused(r) => completion_rejected(&r.reason()),
            Feedback::Block(report) => {
                let mut observation = report.observation.clone();
                if !report.unused_payloads.is_empty() {
                    observation.push(format!(
                        "[warning] {} payload block(s) were not used by any write_file call: {}. Nothing was \
                         written for them.",
                        report.unused_payloads.len(),
                        report.unused_payloads.join(", ")
                    ));
                }
                let mut text = match &report.end {
                    BlockEnd::Finished => cap_observation(observation.render()),
                    BlockEnd::Aborted => {
                        observation.push(ABORTED_ENTRY);
                        cap_observation(observation.render())
                    }
                    BlockEnd::OutOfTime => {
                        observation.push(OUT_OF_TIME_ENTRY);
                        cap_observation(observation.render())
                    }
                    BlockEnd::Failed(failure) => {
                        cap_observation(execution_error_observation(&observation, failure))
                    }
                };
                if let Some(refusal) = &report.completion_refused {
                    text.push_str("\n\n");
                    text.push_str(&completion_rejected(&refusal.reason()));
                }
                text
            }
        }
    }
}
