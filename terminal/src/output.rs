//! Output capture (bounded head + tail), ANSI stripping, truncation and the observation text.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Whether a command has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// The command finished; `exit_code` is set.
    Completed,
    /// The command is still running; poll with `read_output`.
    Running,
}

/// The result of `execute`, `read_output` or `send_input`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandResult {
    /// Terminal name.
    pub terminal: String,
    /// The command's number in this terminal (`cmdN`), 0 when no command has run yet.
    pub command_index: u32,
    /// The command text.
    pub command: String,
    /// Completed or running.
    pub status: CommandStatus,
    /// Exit code when completed (128 + signal when killed by a signal, e.g. 130 for Ctrl-C).
    pub exit_code: Option<i32>,
    /// ANSI-stripped output, CRLF→LF, shell-integration markers removed, head+tail truncated.
    pub output: String,
    /// True when part of the output was cut.
    pub truncated: bool,
    /// The shell's working directory.
    pub cwd: PathBuf,
    /// The shell's process id.
    pub pid: u32,
    /// The resource limit the command ran into (SPEC §24), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<codepilot_sandbox::resources::LimitHit>,
}

impl CommandResult {
    /// The observation text (SPEC §6):
    /// `[terminal:T:cmdN] $ command`, the output, then
    /// `[status: completed | return_code: 0 | cwd: /x]` (no `return_code` while running).
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = format!(
            "[terminal:{}:cmd{}] $ {}\n",
            self.terminal, self.command_index, self.command
        );
        if !self.output.is_empty() {
            out.push_str(&self.output);
            out.push('\n');
        }
        if let Some(hit) = &self.limit {
            out.push_str(&hit.message);
            out.push('\n');
        }
        match (self.status, self.exit_code) {
            (CommandStatus::Completed, Some(code)) => {
                let _ = write!(
                    out,
                    "[status: completed | return_code: {code} | cwd: {}]",
                    self.cwd.display()
                );
            }
            (CommandStatus::Completed, None) => {
                let _ = write!(out, "[status: completed | cwd: {}]", self.cwd.display());
            }
            (CommandStatus::Running, _) => {
                let _ = write!(out, "[status: running | cwd: {}]", self.cwd.display());
            }
        }
        out
    }
}

/// Raw output of one command: the first `cap` bytes, a ring of the last `cap` bytes, and a
/// count of the bytes dropped in between. Memory stays at `2 * cap` whatever the output size.
#[derive(Debug)]
pub(crate) struct Capture {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
}

/// A slice of captured output: bytes before a gap, the number of bytes missing, bytes after.
pub(crate) struct Span {
    pub before: Vec<u8>,
    pub gap: u64,
    pub after: Vec<u8>,
}

impl Capture {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Total bytes ever pushed.
    pub(crate) fn total(&self) -> u64 {
        self.head.len() as u64 + self.dropped + self.tail.len() as u64
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        if self.head.len() < self.cap {
            let take = data.len().min(self.cap - self.head.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.cap {
            self.dropped += (self.tail.len() + data.len() - self.cap) as u64;
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(self.cap);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(data);
    }

    /// Whether the last `window` bytes hold `needle`.
    pub(crate) fn recent_contains(&self, needle: &[u8], window: u64) -> bool {
        let span = self.since(self.total().saturating_sub(window));
        [span.before, span.after]
            .iter()
            .any(|part| part.windows(needle.len()).any(|w| w == needle))
    }

    /// The bytes from absolute offset `from` to the end, with the size of any dropped gap.
    pub(crate) fn since(&self, from: u64) -> Span {
        let head_len = self.head.len() as u64;
        let tail_start = head_len + self.dropped;
        let mut before = Vec::new();
        let mut gap = 0;
        if from < head_len {
            before.extend_from_slice(&self.head[usize::try_from(from).unwrap_or(0)..]);
            gap = self.dropped;
        } else if from < tail_start {
            gap = tail_start - from;
        }
        let skip = usize::try_from(from.saturating_sub(tail_start)).unwrap_or(usize::MAX);
        let after: Vec<u8> = self.tail.iter().skip(skip).copied().collect();
        if gap == 0 {
            before.extend_from_slice(&after);
            return Span {
                before,
                gap,
                after: Vec::new(),
            };
        }
        Span { before, gap, after }
    }
}

/// Strips escape sequences and control characters from raw terminal bytes and applies
/// carriage-return / backspace overwrite per line, like a terminal would show it.
#[must_use]
pub fn clean(raw: &[u8]) -> String {
    let stripped = strip_ansi(raw);
    let text = String::from_utf8_lossy(&stripped);
    let mut out = String::with_capacity(text.len());
    let mut line: Vec<char> = Vec::new();
    let mut cursor = 0usize;
    for ch in text.chars() {
        match ch {
            '\n' => {
                out.extend(line.iter());
                out.push('\n');
                line.clear();
                cursor = 0;
            }
            '\r' => cursor = 0,
            '\u{8}' => cursor = cursor.saturating_sub(1),
            c => {
                if cursor < line.len() {
                    line[cursor] = c;
                } else {
                    line.push(c);
                }
                cursor += 1;
            }
        }
    }
    out.extend(line.iter());
    out
}

/// Removes CSI, OSC, DCS/SOS/PM/APC strings, two- and three-byte escapes and C0 controls
/// other than `\n`, `\r`, `\t` and backspace.
fn strip_ansi(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != 0x1b {
            if b >= 0x20 || matches!(b, b'\n' | b'\r' | b'\t' | 0x08) {
                out.push(b);
            }
            i += 1;
            continue;
        }
        let Some(&kind) = raw.get(i + 1) else {
            break;
        };
        i += 2;
        match kind {
            b'[' => {
                while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                    i += 1;
                }
                i += 1;
            }
            b']' | b'P' | b'X' | b'^' | b'_' => {
                while i < raw.len() {
                    if raw[i] == 0x07 {
                        i += 1;
                        break;
                    }
                    if raw[i] == 0x1b && raw.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
            }
            b'(' | b')' | b'*' | b'+' | b'#' | b'%' => i += 1,
            _ => {}
        }
    }
    out
}

/// Size of the truncation marker for the widest possible count, reserved in the budget.
fn marker(omitted: u64) -> String {
    format!(
        "\n[... {omitted} characters omitted: the output was too long, only its beginning and end are shown. To see more, re-run with the output redirected to a file and read parts of it, or filter it (grep, head, tail) ...]\n"
    )
}

/// Cleans a captured span and cuts it to `max_chars` (marker included), keeping head and tail.
pub(crate) fn render_span(span: &Span, max_chars: usize) -> (String, bool) {
    let mut text = clean(&span.before);
    let mut gap = span.gap;
    if gap > 0 {
        let mut after = clean(&span.after);
        // The tail ring starts at an arbitrary byte: begin it at a line boundary.
        if let Some(pos) = after.find('\n').filter(|pos| *pos < 2048) {
            gap += after[..=pos].chars().count() as u64;
            after.drain(..=pos);
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return truncate_parts(&text, gap, &after, max_chars);
    }
    let text = text.trim_end_matches('\n').to_owned();
    truncate_parts(&text, 0, "", max_chars)
}

/// Joins `head` and `tail` (with `gap` characters already missing between them) within `max_chars`.
fn truncate_parts(head: &str, gap: u64, tail: &str, max_chars: usize) -> (String, bool) {
    let tail = tail.trim_end_matches('\n');
    let head_chars = head.chars().count();
    let tail_chars = tail.chars().count();
    if gap == 0 && head_chars + tail_chars <= max_chars {
        return (format!("{head}{tail}"), false);
    }
    let budget = max_chars.saturating_sub(marker(u64::MAX).chars().count());
    let keep_head = (budget / 2).min(head_chars + tail_chars);
    let keep_tail = budget - budget / 2;
    let all: Vec<char>;
    let (kept_head, kept_tail, omitted): (String, String, u64) = if gap == 0 {
        all = head.chars().chain(tail.chars()).collect();
        let keep_tail = keep_tail.min(all.len().saturating_sub(keep_head));
        let omitted = (all.len() - keep_head - keep_tail) as u64;
        (
            all[..keep_head].iter().collect(),
            all[all.len() - keep_tail..].iter().collect(),
            omitted,
        )
    } else {
        let keep_head = keep_head.min(head_chars);
        let keep_tail = keep_tail.min(tail_chars);
        (
            head.chars().take(keep_head).collect(),
            tail.chars().skip(tail_chars - keep_tail).collect(),
            gap + (head_chars - keep_head) as u64 + (tail_chars - keep_tail) as u64,
        )
    };
    let kept_head = kept_head.trim_end_matches('\n');
    (format!("{kept_head}{}{kept_tail}", marker(omitted)), true)
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
