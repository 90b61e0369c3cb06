//! CommonMark fenced-code-block recognition, shared by the parser and the streaming filter so that both
//! always agree on where a block starts and ends.
//!
//! Rules (CommonMark 0.31, §4.5, restricted to top-level blocks):
//! - an opening fence is a line of at most 3 leading spaces, then at least 3 backticks or at least 3 tildes,
//!   then an info string; a backtick fence's info string may not contain a backtick;
//! - the closing fence is at most 3 leading spaces, then at least as many of the same character as the opening
//!   fence, then nothing but spaces or tabs;
//! - a block that is never closed runs to the end of the input;
//! - content lines lose up to as many leading spaces as the opening fence was indented.
//!
//! Lines end at `\n`; a `\r` just before it belongs to the line ending, so CRLF and LF input parse the same.

/// One physical line of the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// The line without its ending (`\n` or `\r\n`).
    pub text: &'a str,
    /// Byte offset of the line start.
    pub start: usize,
    /// Byte offset just after the line ending (equals the end of `text` for a last line without ending).
    pub end: usize,
    /// Whether the line has an ending.
    pub has_newline: bool,
    /// 1-based line number.
    pub number: usize,
}

/// Splits `s` into lines, keeping byte offsets.
pub(crate) fn lines(s: &str) -> impl Iterator<Item = Line<'_>> {
    let mut start = 0;
    let mut number = 0;
    std::iter::from_fn(move || {
        if start >= s.len() {
            return None;
        }
        let rest = &s[start..];
        number += 1;
        let line = match rest.find('\n') {
            Some(i) => {
                let raw = &rest[..i];
                let text = raw.strip_suffix('\r').unwrap_or(raw);
                Line {
                    text,
                    start,
                    end: start + i + 1,
                    has_newline: true,
                    number,
                }
            }
            None => Line {
                text: rest,
                start,
                end: s.len(),
                has_newline: false,
                number,
            },
        };
        start = line.end;
        Some(line)
    })
}

/// An opening fence line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    /// `` ` `` or `~`.
    pub ch: char,
    /// Number of fence characters.
    pub len: usize,
    /// Leading spaces before the fence (0..=3).
    pub indent: usize,
    /// The info string, trimmed.
    pub info: String,
}

impl Fence {
    /// The fence characters, e.g. "```" or "~~~~".
    pub fn marker(&self) -> String {
        std::iter::repeat_n(self.ch, self.len).collect()
    }
}

fn leading_spaces(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Recognises an opening fence line.
pub(crate) fn opening_fence(line: &str) -> Option<Fence> {
    let indent = leading_spaces(line);
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ch = rest.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = rest.len() - rest.trim_start_matches(ch).len();
    if len < 3 {
        return None;
    }
    let info = &rest[len..];
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some(Fence {
        ch,
        len,
        indent,
        info: info.trim().to_string(),
    })
}

/// Whether `line` closes a block opened by `fence`.
pub(crate) fn is_closing(line: &str, fence: &Fence) -> bool {
    let indent = leading_spaces(line);
    if indent > 3 {
        return false;
    }
    let rest = &line[indent..];
    let run = rest.len() - rest.trim_start_matches(fence.ch).len();
    run >= fence.len && rest[run..].chars().all(|c| c == ' ' || c == '\t')
}

/// Whether a line that so far reads `partial` (no line ending seen yet) may still turn out to be an opening
/// fence. Disqualification is monotonic: once this returns false, no continuation makes the line a fence.
pub(crate) fn may_become_opening_fence(partial: &str) -> bool {
    let indent = leading_spaces(partial);
    if indent > 3 {
        return false;
    }
    let rest = &partial[indent..];
    let Some(ch) = rest.chars().next() else {
        return true;
    };
    if ch != '`' && ch != '~' {
        return false;
    }
    let run = rest.len() - rest.trim_start_matches(ch).len();
    let info = &rest[run..];
    if info.is_empty() {
        return true;
    }
    run >= 3 && !(ch == '`' && info.contains('`'))
}

/// What a fenced block is for, decided by its info string alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// Info string `codepilot`: the control block, whose code runs.
    Control,
    /// Carries `filename=PATH`: a payload consumed by a `write_file` call.
    Payload,
    /// Info string `completion`: the task summary.
    Completion,
    /// Anything else: shown to the user, never executed.
    Display,
}

impl BlockKind {
    /// Whether the block is hidden from the user while streaming (everything but display blocks).
    #[must_use]
    pub fn is_hidden(self) -> bool {
        match self {
            BlockKind::Control | BlockKind::Payload | BlockKind::Completion => true,
            BlockKind::Display => false,
        }
    }
}

/// The parts of an info string the protocol cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    /// First word, lower-cased; empty if there is none or it is an attribute such as `filename=x`.
    pub lang: String,
    /// Value of `filename=`, unquoted; `Some("")` for `filename=` with an empty value.
    pub filename: Option<String>,
}

impl Info {
    pub fn parse(info: &str) -> Self {
        let first = info.split_whitespace().next().unwrap_or("");
        let lang = if first.contains('=') {
            String::new()
        } else {
            first.to_lowercase()
        };
        Self {
            lang,
            filename: filename_attr(info),
        }
    }

    pub fn kind(&self) -> BlockKind {
        if self.lang == "codepilot" {
            BlockKind::Control
        } else if self.lang == "completion" {
            BlockKind::Completion
        } else if self.filename.is_some() {
            BlockKind::Payload
        } else {
            BlockKind::Display
        }
    }
}

/// Finds `filename=x`, `filename="x"` or `filename='x'` at the start of a word of the info string.
fn filename_attr(info: &str) -> Option<String> {
    const KEY: &str = "filename=";
    for (at, _) in info.match_indices(KEY) {
        let word_start = info[..at]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace);
        if !word_start {
            continue;
        }
        let value = &info[at + KEY.len()..];
        let parsed = match value.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &value[1..];
                match inner.find(q) {
                    Some(end) => &inner[..end],
                    None => inner.trim_end(),
                }
            }
            _ => value.split(char::is_whitespace).next().unwrap_or(""),
        };
        return Some(parsed.to_string());
    }
    None
}

#[cfg(test)]
#[path = "fence_tests.rs"]
mod tests;
