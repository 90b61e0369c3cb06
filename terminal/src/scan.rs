//! Streaming scanner for the shell-integration markers `ESC ] 6973 ; <payload> BEL`.
//!
//! The shell prints (see `terminal.rs` for the integration script):
//! - `B` at the end of every prompt,
//! - `P` at the start of a continuation prompt (`PS2`),
//! - `C` when a command line starts executing (bash `PS0`),
//! - `D;<nonce>;<exit code>;<cwd>` before every prompt (bash `PROMPT_COMMAND`).
//!
//! Markers may be split across PTY reads; the scanner keeps the partial bytes.

/// Marker prefix: OSC 6973 (a private number, so VS Code's OSC 633 handling is not triggered).
pub(crate) const PREFIX: &[u8] = b"\x1b]6973;";
/// Longest payload accepted; anything longer is treated as ordinary output.
const MAX_PAYLOAD: usize = 8192;

/// One piece of PTY output.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    /// Ordinary bytes.
    Data(&'a [u8]),
    /// A marker payload (between the prefix and the terminator).
    Marker(&'a [u8]),
}

#[derive(Debug, Default)]
pub(crate) struct Scanner {
    pending: Vec<u8>,
}

impl Scanner {
    /// Splits `chunk` (after any bytes held back from the previous call) into segments.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Seg<'_>)) {
        if self.pending.is_empty() {
            self.pending = scan(chunk, &mut emit);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            self.pending = scan(&data, &mut emit);
        }
    }
}

/// Returns the bytes to hold back (a possibly incomplete marker at the end).
fn scan(data: &[u8], emit: &mut impl FnMut(Seg<'_>)) -> Vec<u8> {
    let mut start = 0;
    let mut i = 0;
    while let Some(off) = data[i..].iter().position(|&b| b == 0x1b) {
        let p = i + off;
        let rest = &data[p..];
        if rest.len() < PREFIX.len() {
            if PREFIX.starts_with(rest) {
                emit_data(&data[start..p], emit);
                return rest.to_vec();
            }
            i = p + 1;
            continue;
        }
        if !rest.starts_with(PREFIX) {
            i = p + 1;
            continue;
        }
        let body = &rest[PREFIX.len()..];
        match find_terminator(body) {
            Some((end, term_len)) => {
                emit_data(&data[start..p], emit);
                emit(Seg::Marker(&body[..end]));
                i = p + PREFIX.len() + end + term_len;
                start = i;
            }
            None if body.len() > MAX_PAYLOAD => i = p + 1,
            None => {
                emit_data(&data[start..p], emit);
                return rest.to_vec();
            }
        }
    }
    emit_data(&data[start..], emit);
    Vec::new()
}

fn emit_data(data: &[u8], emit: &mut impl FnMut(Seg<'_>)) {
    if !data.is_empty() {
        emit(Seg::Data(data));
    }
}

/// Position and length of the terminator (BEL or ESC \\); `None` when not yet seen.
fn find_terminator(body: &[u8]) -> Option<(usize, usize)> {
    let pos = body
        .iter()
        .take(MAX_PAYLOAD + 1)
        .position(|&b| b == 0x07 || b == 0x1b)?;
    if body[pos] == 0x07 {
        return Some((pos, 1));
    }
    match body.get(pos + 1) {
        Some(b'\\') => Some((pos, 2)),
        Some(_) => Some((pos, 0)),
        None => None,
    }
}

/// A parsed marker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    PromptEnd,
    Continuation,
    CommandStart,
    CommandDone {
        nonce: String,
        exit_code: i32,
        cwd: String,
    },
}

pub(crate) fn parse_marker(payload: &[u8]) -> Option<Marker> {
    let text = String::from_utf8_lossy(payload);
    let mut parts = text.splitn(4, ';');
    match parts.next()? {
        "B" => Some(Marker::PromptEnd),
        "C" => Some(Marker::CommandStart),
        "P" => Some(Marker::Continuation),
        "D" => {
            let nonce = parts.next()?.to_owned();
            let exit_code = parts.next()?.trim().parse().unwrap_or(0);
            let cwd = parts.next().unwrap_or_default().to_owned();
            Some(Marker::CommandDone {
                nonce,
                exit_code,
                cwd,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
