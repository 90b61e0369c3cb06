//! Streaming filter: which part of a model answer may be shown to the user while it arrives (SPEC §4.1).

use crate::fence::Fence;
use crate::fence::Info;
use crate::fence::is_closing;
use crate::fence::may_become_opening_fence;
use crate::fence::opening_fence;

/// Feeds model text chunks as they arrive and returns the text safe to show the user now.
///
/// Shows prose and display-only fenced blocks; hides the control block, payload blocks and the completion block
/// (fence lines included; the runtime shows the completion after execution). It holds back only a line that may
/// still become an opening fence (so far e.g. `` `` `` or ```` ```codep ````; an opening fence line is held until
/// its line ending, since its info string decides whether the block is hidden) and a trailing `\r` (it may be
/// half of a CRLF). CRLF is shown as LF.
///
/// The concatenated output does not depend on how the answer is split into chunks, and equals
/// [`crate::visible_text`] of the whole answer (and [`crate::Action::text`] when it parses).
///
/// ```
/// use codepilot_protocol::StreamFilter;
///
/// let mut f = StreamFilter::new();
/// let mut shown = f.push("Reading it.\n``");
/// shown += &f.push("`codepilot\nread_file('a')\n```\nDone soon.");
/// shown += &f.finish();
/// assert_eq!(shown, "Reading it.\nDone soon.");
/// ```
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    /// A `\r` at the end of the previous chunk, not yet known to be part of a CRLF.
    pending_cr: bool,
    /// The current line so far (LF-normalised, no ending).
    line: String,
    /// Bytes of `line` already returned.
    emitted: usize,
    /// The open block, and whether it is hidden.
    open: Option<(Fence, bool)>,
}

impl StreamFilter {
    /// A filter at the start of an answer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; returns the text that may be shown now (possibly empty).
    pub fn push(&mut self, chunk: &str) -> String {
        let normalised;
        let input = if self.pending_cr || chunk.contains('\r') {
            let mut joined = String::with_capacity(chunk.len() + 1);
            if std::mem::take(&mut self.pending_cr) {
                joined.push('\r');
            }
            joined.push_str(chunk);
            if joined.ends_with('\r') {
                joined.pop();
                self.pending_cr = true;
            }
            normalised = joined.replace("\r\n", "\n");
            normalised.as_str()
        } else {
            chunk
        };
        let mut out = String::new();
        let mut rest = input;
        while let Some(i) = rest.find('\n') {
            self.line.push_str(&rest[..i]);
            self.end_line(/*newline*/ true, &mut out);
            rest = &rest[i + 1..];
        }
        self.line.push_str(rest);
        let show_partial = match &self.open {
            None => !may_become_opening_fence(&self.line),
            Some((_, hidden)) => !hidden,
        };
        if show_partial {
            out.push_str(self.line.get(self.emitted..).unwrap_or(""));
            self.emitted = self.line.len();
        }
        out
    }

    /// Ends the answer: returns whatever was held back. The filter is then ready for a new answer.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if std::mem::take(&mut self.pending_cr) {
            self.line.push('\r');
        }
        if !self.line.is_empty() {
            self.end_line(/*newline*/ false, &mut out);
        }
        *self = Self::default();
        out
    }

    fn end_line(&mut self, newline: bool, out: &mut String) {
        let line = std::mem::take(&mut self.line);
        let emitted = std::mem::take(&mut self.emitted);
        let shown = match self.open.take() {
            None => match opening_fence(&line) {
                Some(fence) => {
                    let hidden = Info::parse(&fence.info).kind().is_hidden();
                    self.open = Some((fence, hidden));
                    !hidden
                }
                None => true,
            },
            Some((fence, hidden)) => {
                if !is_closing(&line, &fence) {
                    self.open = Some((fence, hidden));
                }
                !hidden
            }
        };
        if shown {
            out.push_str(line.get(emitted..).unwrap_or(""));
            if newline {
                out.push('\n');
            }
        }
    }
}
