//! Why a model answer was rejected before anything ran.

/// A model answer that cannot be executed. Nothing of the answer runs; the runtime feeds
/// [`crate::parser_error_observation`] back to the model. `Display` is the precise reason, addressed to the model.
///
/// Line numbers called "answer line" are 1-based lines of the whole answer; "control block line" is 1-based
/// inside the control block's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// More than one ```` ```codepilot ```` block.
    #[error(
        "the answer has {} ```codepilot control blocks (opened on answer lines {}); exactly one is allowed per answer. Put all the code of this step in one control block",
        .lines.len(),
        join_numbers(.lines)
    )]
    MultipleControlBlocks {
        /// Answer lines of the opening fences.
        lines: Vec<usize>,
    },

    /// More than one ```` ```completion ```` block.
    #[error(
        "the answer has {} ```completion blocks (opened on answer lines {}); at most one is allowed. Write the whole task summary in one completion block",
        .lines.len(),
        join_numbers(.lines)
    )]
    MultipleCompletionBlocks {
        /// Answer lines of the opening fences.
        lines: Vec<usize>,
    },

    /// A control, payload or completion block has no closing fence (the answer may have been cut off).
    #[error(
        "the {what} opened with {fence} on answer line {line} is never closed, so it runs to the end of the answer (was the answer cut off?). Close it with a line holding only {fence}"
    )]
    UnclosedBlock {
        /// Which block, e.g. "```codepilot control block" or "payload block for 'a.py'".
        what: String,
        /// The opening fence characters.
        fence: String,
        /// Answer line of the opening fence.
        line: usize,
    },

    /// A fence line with an info string appears inside a block whose fence it cannot close: the block was left
    /// open by mistake, or its content holds a fence and needed a longer outer fence.
    #[error(
        "answer line {inner_line} (`{inner_text}`) is inside the {what} opened with {fence} on answer line {outer_line}, because a fence line with an info string cannot close a block; the next bare {fence} line will end that block early. If the block should have ended before line {inner_line}, close it there. If line {inner_line} is part of the block's content, open and close the block with a longer fence, e.g. {fence}`"
    )]
    NestedFence {
        /// Which block, e.g. "payload block for 'README.md'".
        what: String,
        /// The outer block's fence characters.
        fence: String,
        /// Answer line of the outer opening fence.
        outer_line: usize,
        /// Answer line of the inner fence line.
        inner_line: usize,
        /// The inner fence line, trimmed.
        inner_text: String,
    },

    /// A `filename=` block appears before the control block.
    #[error(
        "the payload block for '{filename}' (answer line {line}) comes before the ```codepilot control block (answer line {control_line}). Payload blocks must come after the control block, in the order of the write_file calls that consume them. Remove filename= from blocks meant only for display"
    )]
    PayloadBeforeControl {
        /// Its `filename=`.
        filename: String,
        /// Answer line of its opening fence.
        line: usize,
        /// Answer line of the control block's opening fence.
        control_line: usize,
    },

    /// A `filename=` block in an answer without a control block.
    #[error(
        "the payload block for '{filename}' (answer line {line}) has no ```codepilot control block to consume it. To write a file, add a control block that calls write_file('{filename}') and put the payload block after it. Remove filename= from blocks meant only for display"
    )]
    PayloadWithoutControl {
        /// Its `filename=`.
        filename: String,
        /// Answer line of its opening fence.
        line: usize,
    },

    /// `filename=` with an empty value.
    #[error(
        "the block on answer line {line} has an empty filename=. Give the path the write_file call uses, e.g. filename=src/main.py"
    )]
    EmptyFilename {
        /// Answer line of its opening fence.
        line: usize,
    },

    /// `write_file` given the content inline.
    #[error(
        "write_file on control block line {call_line} passes the file content inline ({argument}=). write_file never takes content inline: put the content in a payload block after the control block, annotated with filename=PATH, and call write_file(PATH) without it"
    )]
    InlineContent {
        /// Control block line of the call.
        call_line: usize,
        /// The rejected keyword argument.
        argument: String,
    },

    /// `write_file` with a literal mode that does not exist.
    #[error(
        "write_file on control block line {call_line} uses mode='{mode}'; the modes are 'w', 'a', 'edit', 'insert' and 'multi_edit'"
    )]
    InvalidMode {
        /// Control block line of the call.
        call_line: usize,
        /// The literal mode.
        mode: String,
    },

    /// A payload's `filename=` is not the path of the call that consumes it.
    #[error(
        "payload block #{index} (answer line {payload_line}) has filename='{got}', but the {} payload is consumed by {consumer}, which expects '{expected}'. Payload blocks must follow the order of the write_file calls, one per call and one per (start, end) range of a multi_edit, with a matching filename=",
        ordinal(*.index)
    )]
    PayloadFilenameMismatch {
        /// 1-based position among the payloads.
        index: usize,
        /// The path the call uses.
        expected: String,
        /// The payload's `filename=`.
        got: String,
        /// The consuming call, e.g. "write_file('a.py') on control block line 3".
        consumer: String,
        /// Answer line of the payload's opening fence.
        payload_line: usize,
    },

    /// Fewer payloads than the calls consume.
    #[error(
        "the control block needs at least {expected} payload blocks but the answer has {got} after it: the {} payload, for {consumer}, is missing. Add a payload block annotated with filename={path} after the others{}",
        ordinal(*.index),
        unannotated_hint(*.unannotated_blocks)
    )]
    MissingPayload {
        /// 1-based position of the first missing payload.
        index: usize,
        /// The path the call uses.
        path: String,
        /// The consuming call.
        consumer: String,
        /// Payloads the statically visible calls consume.
        expected: usize,
        /// Payloads in the answer.
        got: usize,
        /// Blocks without `filename=` after the control block (filled in by `parse`; 0 from `check_payloads`).
        unannotated_blocks: usize,
    },

    /// More payloads than the calls consume.
    #[error(
        "payload block #{index} (filename='{filename}', answer line {payload_line}) is not consumed by any write_file call: the control block's write_file calls consume {expected} payload block(s) and the answer has {got}. Add the missing write_file call, or remove filename= from blocks meant only for display"
    )]
    ExtraPayload {
        /// 1-based position of the first unconsumed payload.
        index: usize,
        /// Its `filename=`.
        filename: String,
        /// Answer line of its opening fence.
        payload_line: usize,
        /// Payloads the calls consume.
        expected: usize,
        /// Payloads in the answer.
        got: usize,
    },
}

/// `Result` with [`ParseError`].
pub type Result<T> = std::result::Result<T, ParseError>;

fn join_numbers(lines: &[usize]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unannotated_hint(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => {
            " (one block after the control block has no filename=: if it is a payload, annotate it)"
                .to_string()
        }
        n => format!(
            " ({n} blocks after the control block have no filename=: annotate the ones that are payloads)"
        ),
    }
}

/// "1st", "2nd", "3rd", "4th", "11th", "21st", ...
pub(crate) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
