//! One model answer parsed into an [`Action`] (SPEC §4.1–§4.6, §4.8).

use std::ops::Range;

use crate::error::ParseError;
use crate::fence::BlockKind;
use crate::fence::Fence;
use crate::fence::Info;
use crate::fence::is_closing;
use crate::fence::lines;
use crate::fence::opening_fence;
use crate::payload::Payload;
use crate::payload_check::check_payloads;

/// What one model answer asks for. Built by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The text for the user: the answer without its control, payload and completion blocks (fence lines
    /// included); display-only blocks stay. Line endings are LF. Equal to what [`crate::StreamFilter`] shows.
    pub text: String,
    /// The control block, if any.
    pub control: Option<ControlBlock>,
    /// The `filename=` blocks after the control block, in order.
    pub payloads: Vec<Payload>,
    /// The text of the ```` ```completion ```` block, trimmed, if any.
    pub completion: Option<String>,
    /// Every fenced block of the answer, in order, with its byte spans in the answer.
    pub blocks: Vec<Block>,
}

/// The ```` ```codepilot ```` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlBlock {
    /// The code: every line followed by `\n`, line endings normalised to LF.
    pub code: String,
    /// 1-based line in the answer of the first code line (the line after the opening fence). Add
    /// `first_line - 1` to a line number inside the block to get the answer line.
    pub first_line: usize,
}

/// One fenced block of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What it is for.
    pub kind: BlockKind,
    /// The info string, trimmed.
    pub info: String,
    /// The `filename=` value, if any.
    pub filename: Option<String>,
    /// The opening fence characters, e.g. "```" or "````".
    pub fence: String,
    /// 1-based answer line of the opening fence.
    pub fence_line: usize,
    /// Byte range of the whole block in the answer: opening fence line to the end of the closing fence line
    /// (with its line ending), or to the end of the answer when unclosed.
    pub span: Range<usize>,
    /// Byte range of the content lines in the answer, line endings included.
    pub body: Range<usize>,
    /// Number of content lines.
    pub line_count: usize,
    /// The content, normalised as [`Payload::content`].
    pub content: String,
    /// Whether a closing fence was found.
    pub closed: bool,
}

impl Block {
    fn describe(&self) -> String {
        match self.kind {
            BlockKind::Control => "```codepilot control block".to_string(),
            BlockKind::Completion => "```completion block".to_string(),
            BlockKind::Payload => {
                format!(
                    "payload block for '{}'",
                    self.filename.as_deref().unwrap_or("")
                )
            }
            BlockKind::Display => {
                if self.info.is_empty() {
                    "display block".to_string()
                } else {
                    format!("{}{} block", self.fence, self.info)
                }
            }
        }
    }
}

/// Result of the structural scan, before the protocol rules.
struct Scan {
    blocks: Vec<Block>,
    text: String,
    /// First suspicious nested fence: (index of the outer block, answer line, line text).
    nested: Option<(usize, usize, String)>,
}

struct Open {
    fence: Fence,
    info: Info,
    kind: BlockKind,
    line: usize,
    start: usize,
    body_start: usize,
    body_end: usize,
    content: String,
    line_count: usize,
}

impl Open {
    fn finish(self, end: usize, closed: bool) -> Block {
        Block {
            kind: self.kind,
            filename: self.info.filename,
            fence: self.fence.marker(),
            info: self.fence.info,
            fence_line: self.line,
            span: self.start..end,
            body: self.body_start..self.body_end,
            line_count: self.line_count,
            content: self.content,
            closed,
        }
    }
}

fn scan(answer: &str) -> Scan {
    let mut blocks = Vec::new();
    let mut text = String::with_capacity(answer.len());
    let mut nested = None;
    let mut open: Option<Open> = None;
    let mut last_end = 0;
    for line in lines(answer) {
        last_end = line.end;
        let nl = if line.has_newline { "\n" } else { "" };
        match open.take() {
            None => {
                if let Some(fence) = opening_fence(line.text) {
                    let info = Info::parse(&fence.info);
                    let kind = info.kind();
                    if !kind.is_hidden() {
                        text.push_str(line.text);
                        text.push_str(nl);
                    }
                    open = Some(Open {
                        fence,
                        info,
                        kind,
                        line: line.number,
                        start: line.start,
                        body_start: line.end,
                        body_end: line.end,
                        content: String::new(),
                        line_count: 0,
                    });
                } else {
                    text.push_str(line.text);
                    text.push_str(nl);
                }
            }
            Some(mut block) => {
                if !block.kind.is_hidden() {
                    text.push_str(line.text);
                    text.push_str(nl);
                }
                if is_closing(line.text, &block.fence) {
                    blocks.push(block.finish(line.end, true));
                    continue;
                }
                if nested.is_none()
                    && let Some(inner) = opening_fence(line.text)
                    && inner.ch == block.fence.ch
                    && inner.len >= block.fence.len
                    && !inner.info.is_empty()
                    && (block.kind.is_hidden()
                        || Info::parse(&inner.info).kind() == BlockKind::Control)
                {
                    nested = Some((blocks.len(), line.number, line.text.trim().to_string()));
                }
                let mut content = line.text;
                for _ in 0..block.fence.indent {
                    content = content.strip_prefix(' ').unwrap_or(content);
                }
                block.content.push_str(content);
                block.content.push('\n');
                block.body_end = line.end;
                block.line_count += 1;
                open = Some(block);
            }
        }
    }
    if let Some(block) = open {
        let end = last_end.max(block.body_end);
        blocks.push(block.finish(end, false));
    }
    Scan {
        blocks,
        text,
        nested,
    }
}

/// The text of `answer` meant for the user: everything but the control, payload and completion blocks, with LF
/// line endings. Works on any answer, including one that [`parse`] rejects; equals [`Action::text`] when it
/// parses, and the concatenated output of [`crate::StreamFilter`].
#[must_use]
pub fn visible_text(answer: &str) -> String {
    scan(answer).text
}

/// Parses one model answer.
///
/// Rules, checked in this order (the first failure is returned, and nothing of the answer may run):
/// 1. A fence line with an info string inside a block it cannot close is rejected when the outer block is a
///    control, payload or completion block (its content was cut at the next bare fence: use a longer outer
///    fence), or when it opens a control block inside a display block (the display block was left open).
/// 2. At most one control block.
/// 3. Control, payload and completion blocks must be closed (an unclosed one means a cut-off answer, and a
///    truncated payload must never be written). An unclosed display block is fine.
/// 4. At most one completion block.
/// 5. `filename=` blocks must come after the control block; with no control block they are an error.
///    `filename=` must not be empty.
/// 6. [`check_payloads`] on the control code and the payloads.
///
/// A completion block without a control block is accepted: it is a completion-only answer (there is nothing to
/// fail, so SPEC §4.4 honours it). With neither a control block nor a completion it is a chat reply
/// ([`Action::is_chat_reply`]).
///
/// # Errors
/// A [`ParseError`] naming the problem, addressed to the model.
pub fn parse(answer: &str) -> Result<Action, ParseError> {
    let Scan {
        blocks,
        text,
        nested,
    } = scan(answer);
    if let Some((outer, inner_line, inner_text)) = nested
        && let Some(b) = blocks.get(outer)
    {
        return Err(ParseError::NestedFence {
            what: b.describe(),
            fence: b.fence.clone(),
            outer_line: b.fence_line,
            inner_line,
            inner_text,
        });
    }
    let lines_of = |kind: BlockKind| -> Vec<usize> {
        blocks
            .iter()
            .filter(|b| b.kind == kind)
            .map(|b| b.fence_line)
            .collect()
    };
    let control_lines = lines_of(BlockKind::Control);
    if control_lines.len() > 1 {
        return Err(ParseError::MultipleControlBlocks {
            lines: control_lines,
        });
    }
    if let Some(b) = blocks.iter().find(|b| !b.closed && b.kind.is_hidden()) {
        return Err(ParseError::UnclosedBlock {
            what: b.describe(),
            fence: b.fence.clone(),
            line: b.fence_line,
        });
    }
    let completion_lines = lines_of(BlockKind::Completion);
    if completion_lines.len() > 1 {
        return Err(ParseError::MultipleCompletionBlocks {
            lines: completion_lines,
        });
    }
    let control_index = blocks.iter().position(|b| b.kind == BlockKind::Control);
    let mut payloads = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        if b.kind != BlockKind::Payload {
            continue;
        }
        let filename = b.filename.clone().unwrap_or_default();
        match control_index {
            None => {
                return Err(ParseError::PayloadWithoutControl {
                    filename,
                    line: b.fence_line,
                });
            }
            Some(c) if i < c => {
                return Err(ParseError::PayloadBeforeControl {
                    filename,
                    line: b.fence_line,
                    control_line: blocks[c].fence_line,
                });
            }
            Some(_) => {}
        }
        if filename.trim().is_empty() {
            return Err(ParseError::EmptyFilename { line: b.fence_line });
        }
        payloads.push(Payload {
            filename,
            content: b.content.clone(),
            line: b.fence_line,
        });
    }
    let control = control_index
        .and_then(|c| blocks.get(c))
        .map(|b| ControlBlock {
            code: b.content.clone(),
            first_line: b.fence_line + 1,
        });
    if let (Some(control), Some(c)) = (&control, control_index) {
        check_payloads(&control.code, &payloads).map_err(|err| match err {
            ParseError::MissingPayload {
                index,
                path,
                consumer,
                expected,
                got,
                unannotated_blocks: _,
            } => ParseError::MissingPayload {
                index,
                path,
                consumer,
                expected,
                got,
                unannotated_blocks: blocks[c..]
                    .iter()
                    .filter(|b| b.kind == BlockKind::Display)
                    .count(),
            },
            other => other,
        })?;
    }
    let completion = blocks
        .iter()
        .find(|b| b.kind == BlockKind::Completion)
        .map(|b| b.content.trim().to_string());
    Ok(Action {
        text,
        control,
        payloads,
        completion,
        blocks,
    })
}

impl Action {
    /// A chat reply: neither a control block nor a completion (SPEC §4.5).
    #[must_use]
    pub fn is_chat_reply(&self) -> bool {
        self.control.is_none() && self.completion.is_none()
    }

    /// The assistant message to store in history (SPEC §4.8): `answer` with the body of each non-empty payload
    /// block replaced by one marker line, `[payload for 'PATH' — N lines, not kept in history; use read_file
    /// to view the file]`, using the parsed spans (never substring replacement). Fences, prose and every other
    /// block stay byte-identical, including CRLF line endings; an empty payload is left as it is.
    ///
    /// `answer` must be the string this action was parsed from; if the spans do not fit it, it is returned
    /// unchanged.
    #[must_use]
    pub fn compacted(&self, answer: &str) -> String {
        let mut out = String::with_capacity(answer.len());
        let mut pos = 0;
        for b in &self.blocks {
            if b.kind != BlockKind::Payload || b.body.is_empty() {
                continue;
            }
            let (Some(before), Some(body)) =
                (answer.get(pos..b.body.start), answer.get(b.body.clone()))
            else {
                return answer.to_string();
            };
            out.push_str(before);
            let ending = if body.ends_with("\r\n") {
                "\r\n"
            } else if body.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let plural = if b.line_count == 1 { "line" } else { "lines" };
            out.push_str(&format!(
                "[payload for '{}' — {} {plural}, not kept in history; use read_file to view the file]{ending}",
                b.filename.as_deref().unwrap_or(""),
                b.line_count
            ));
            pos = b.body.end;
        }
        match answer.get(pos..) {
            Some(rest) => out.push_str(rest),
            None => return answer.to_string(),
        }
        out
    }
}
