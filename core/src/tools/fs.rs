//! `read_file` and `write_file` (SPEC §6): synchronous functions the registry runs off the async runtime.
//!
//! Rules that hold for every write:
//! - every argument and line range is checked before anything touches the disk; an error changes nothing;
//! - edits by line number (`edit`, `insert`, `multi_edit`) need the agent to have seen the file's current
//!   state, as recorded in the [`ReadLedger`] by `read_file` or by its own last write (no silent line drift);
//! - the new content goes to a temporary file in the same directory that is renamed over the target, so a
//!   reader never sees half a file; an existing file keeps its permission bits (a new one gets 0644);
//! - a CRLF file stays CRLF (payload line endings are converted); a file without a final newline keeps that
//!   state through `edit`/`insert`/`multi_edit`; `w` and `a` end what they write with a newline.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::sync::Weak;

use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolError;
use codepilot_protocol::sync::lock;
use serde_json::Value;

use super::ToolOutput;
use super::workspace::Workspace;

/// Largest file `read_file` and the line-based writes load.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Characters of one line `read_file` shows before cutting it.
const MAX_LINE_CHARS: usize = 2000;
/// Bytes inspected for a NUL byte to decide a file is binary.
const BINARY_SNIFF_BYTES: usize = 8192;

/// An I/O failure as the tool reports it: `FileNotFoundError`, `PermissionError`, else `RuntimeError`.
fn io_error(what: &str, err: &io::Error) -> ToolError {
    let kind = match err.kind() {
        io::ErrorKind::NotFound => ExcKind::FileNotFoundError,
        io::ErrorKind::PermissionDenied => ExcKind::PermissionError,
        _ => ExcKind::RuntimeError,
    };
    ToolError::new(kind, format!("{what}: {err}"))
}

/// What the agent last saw of a file: its length and a hash of its bytes. The modification time is
/// deliberately not part of it: a `touch` or a rewrite with the same bytes does not move any line, and
/// mtimes are too coarse on some file systems to catch a quick rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    hash: u64,
}

impl Stamp {
    fn of(bytes: &[u8]) -> Self {
        let mut h = std::hash::DefaultHasher::new();
        h.write(bytes);
        Self {
            len: bytes.len() as u64,
            hash: h.finish(),
        }
    }
}

/// Per canonical path, the state of the file the agent last saw (through `read_file` or its own write).
#[derive(Debug, Default)]
pub(crate) struct ReadLedger {
    seen: Mutex<HashMap<PathBuf, Stamp>>,
}

impl ReadLedger {
    /// Forgets everything: after a session reset the agent has read nothing.
    pub(crate) fn clear(&self) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
        }
    }

    fn record(&self, path: &Path, stamp: Stamp) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(path.to_path_buf(), stamp);
        }
    }

    fn matches(&self, path: &Path, current: &Stamp) -> bool {
        self.seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(path).copied())
            .is_some_and(|s| s == *current)
    }
}

/// Reads a whole file the tools may show or change. The file tools handle regular files only: a directory, a
/// FIFO, a socket or a device (`/dev/zero`, which never ends; a FIFO, which blocks until someone writes) is
/// refused before it is read, and so is a file over [`MAX_FILE_BYTES`]. `Ok(None)` when `path` does not exist.
fn read_regular(ws: &Workspace, path: &Path, shown: &str) -> Result<Option<Vec<u8>>, ToolError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&format!("cannot open '{shown}'"), &e)),
    };
    check_regular(&meta, shown)?;
    // Opened without blocking, beneath the root, and checked again: the path may have been swapped for a FIFO
    // or a symlink meanwhile.
    let file = std::fs::File::from(
        ws.open(
            path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| io_error(&format!("cannot open '{shown}'"), &e))?,
    );
    let meta = file
        .metadata()
        .map_err(|e| io_error(&format!("cannot read '{shown}'"), &e))?;
    check_regular(&meta, shown)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE_BYTES + 1), &mut bytes)
        .map_err(|e| io_error(&format!("cannot read '{shown}'"), &e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(shown, bytes.len() as u64));
    }
    Ok(Some(bytes))
}

fn too_large(shown: &str, size: u64) -> ToolError {
    ToolError::new(
        ExcKind::ValueError,
        format!(
            "'{shown}' is {size} bytes; the file tools handle files up to {MAX_FILE_BYTES} bytes. Use \
             execute(...) with a command such as head or sed instead."
        ),
    )
}

/// Refuses anything but a regular file of at most [`MAX_FILE_BYTES`].
fn check_regular(meta: &std::fs::Metadata, shown: &str) -> Result<(), ToolError> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return if meta.len() > MAX_FILE_BYTES {
            Err(too_large(shown, meta.len()))
        } else {
            Ok(())
        };
    } else if kind.is_dir() {
        return Err(ToolError::new(
            ExcKind::ValueError,
            format!("'{shown}' is a directory, not a file. Use find(...) to look inside it."),
        ));
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Err(ToolError::new(
        ExcKind::ValueError,
        format!(
            "'{shown}' is {what}; the file tools read and write regular files only. Use execute(...) if you \
             really need it."
        ),
    ))
}

/// Reads a whole file the tools may show; a missing file is a `FileNotFoundError`.
fn load(ws: &Workspace, path: &Path, shown: &str) -> Result<Vec<u8>, ToolError> {
    read_regular(ws, path, shown)?.ok_or_else(|| {
        ToolError::new(
            ExcKind::FileNotFoundError,
            format!("'{shown}' was not found in the workspace. Use find(...) to locate files."),
        )
    })
}

/// Lines of `text` without their terminators (`\n` or `\r\n`); a final line without newline counts.
fn split_lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// `read_file(path, start_line=1, end_line=None)`: numbered lines, at most `max_lines` per call.
pub(crate) fn read_file(
    ws: &Workspace,
    ledger: &ReadLedger,
    path: &str,
    start_line: i64,
    end_line: Option<i64>,
    max_lines: usize,
) -> Result<ToolOutput, ToolError> {
    if start_line < 1 {
        return Err(ToolError::new(
            ExcKind::ValueError,
            format!("start_line must be 1 or more (got {start_line}); lines are numbered from 1."),
        ));
    }
    if let Some(end) = end_line
        && end < start_line
    {
        return Err(ToolError::new(
            ExcKind::ValueError,
            format!("end_line ({end}) is before start_line ({start_line})."),
        ));
    }
    let resolved = ws.resolve(path)?;
    let bytes = load(ws, &resolved, path)?;
    let sniff = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    if sniff.contains(&0) {
        return Err(ToolError::new(
            ExcKind::ValueError,
            format!(
                "'{path}' looks like a binary file ({} bytes); read_file shows text files only.",
                bytes.len()
            ),
        ));
    }
    ledger.record(&resolved, Stamp::of(&bytes));
    let text = String::from_utf8_lossy(&bytes);
    let lines = split_lines(&text);
    let total = lines.len();
    if total == 0 {
        return Ok(ToolOutput {
            observation: Some(format!("[read_file] '{path}' is empty.\n[END OF FILE]")),
            value: Value::String("[END OF FILE]".to_string()),
        });
    }
    let start = usize::try_from(start_line).unwrap_or(usize::MAX);
    if start > total {
        return Err(ToolError::new(
            ExcKind::ValueError,
            format!(
                "start_line {start_line} is past the end of '{path}', which has {total} lines."
            ),
        ));
    }
    let wanted_end = end_line.map_or(total, |e| {
        usize::try_from(e).unwrap_or(usize::MAX).min(total)
    });
    let end = wanted_end.min(start.saturating_add(max_lines.max(1)) - 1);
    let mut body = String::new();
    for (i, line) in lines[start - 1..end].iter().enumerate() {
        let n = start + i;
        body.push_str(&format!("{n:>5} | "));
        push_cut(&mut body, line);
        body.push('\n');
    }
    if end < total {
        body.push_str(&format!(
            "[TRUNCATED: {} lines remaining — use start_line={}]",
            total - end,
            end + 1
        ));
    } else {
        body.push_str("[END OF FILE]");
    }
    Ok(ToolOutput {
        observation: Some(format!(
            "[read_file] '{path}' (lines {start}–{end} of {total})\n{body}"
        )),
        value: Value::String(body),
    })
}

/// Appends `line`, cut to [`MAX_LINE_CHARS`] characters with a marker saying how much was left out.
fn push_cut(out: &mut String, line: &str) {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((idx, _)) => {
            out.push_str(&line[..idx]);
            let rest = line[idx..].chars().count();
            out.push_str(&format!(" … [line cut: {rest} more characters]"));
        }
        None => out.push_str(line),
    }
}

/// `write_file` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// `w`: create or overwrite; parent directories are created.
    Write,
    /// `a`: append (a newline is added first if the file does not end with one).
    Append,
    /// `edit`: replace `start_line..=end_line`.
    Edit,
    /// `insert`: insert after `after_line` (0 = top).
    Insert,
    /// `multi_edit`: several non-overlapping `edit`s, one payload each.
    MultiEdit,
}

const VALID_MODES: &str = "'w' (create or overwrite), 'a' (append), 'edit' (replace start_line..end_line), \
                           'insert' (after after_line), 'multi_edit' (edits=[(start, end), ...])";

impl WriteMode {
    /// Parses `"w"`, `"a"`, `"edit"`, `"insert"` or `"multi_edit"`.
    pub(crate) fn parse(mode: &str) -> Result<Self, ToolError> {
        match mode {
            "w" => Ok(Self::Write),
            "a" => Ok(Self::Append),
            "edit" => Ok(Self::Edit),
            "insert" => Ok(Self::Insert),
            "multi_edit" => Ok(Self::MultiEdit),
            other => Err(ToolError::new(
                ExcKind::ValueError,
                format!("unknown mode '{other}'; valid modes: {VALID_MODES}. No file was changed."),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Write => "w",
            Self::Append => "a",
            Self::Edit => "edit",
            Self::Insert => "insert",
            Self::MultiEdit => "multi_edit",
        }
    }
}

/// One `write_file` call with its payload(s) already taken from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteRequest {
    pub(crate) path: String,
    pub(crate) mode: WriteMode,
    pub(crate) start_line: Option<i64>,
    pub(crate) end_line: Option<i64>,
    pub(crate) after_line: Option<i64>,
    pub(crate) edits: Option<Vec<(i64, i64)>>,
    /// One payload, or one per edit for `multi_edit`.
    pub(crate) payloads: Vec<String>,
}

const UNCHANGED: &str = "No file was changed.";

fn bad(message: String) -> ToolError {
    ToolError::new(ExcKind::ValueError, format!("{message} {UNCHANGED}"))
}

/// Newline convention of a file: CRLF when its first line ends in `\r\n`.
fn is_crlf(text: &str) -> bool {
    text.find('\n')
        .is_some_and(|i| i > 0 && text.as_bytes()[i - 1] == b'\r')
}

/// Payload text as lines each ending in `nl` (a missing final newline is added; empty stays empty).
fn payload_lines(payload: &str, nl: &str) -> Vec<String> {
    let normalized = payload.replace("\r\n", "\n");
    split_lines(&normalized)
        .into_iter()
        .map(|l| format!("{l}{nl}"))
        .collect()
}

/// Text with every line terminator converted to `nl`, ending in `nl` unless empty.
fn whole_text(payload: &str, nl: &str) -> String {
    payload_lines(payload, nl).concat()
}

/// Validates `a..=b` against a file of `total` lines; `what` names the range in the message.
fn check_range(what: &str, a: i64, b: i64, total: usize) -> Result<(usize, usize), ToolError> {
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    if a < 1 || b < a || b > total_i {
        let hint = if total == 0 {
            "The file is empty; use mode='w', or mode='insert' with after_line=0.".to_string()
        } else {
            format!("Valid lines are 1–{total}, start ≤ end.")
        };
        return Err(bad(format!(
            "{what} is not a valid line range for a file of {total} lines. {hint}"
        )));
    }
    Ok((
        usize::try_from(a).unwrap_or(0),
        usize::try_from(b).unwrap_or(0),
    ))
}

fn reject_args(req: &WriteRequest, allowed: &[&str]) -> Result<(), ToolError> {
    let given = [
        ("start_line", req.start_line.is_some()),
        ("end_line", req.end_line.is_some()),
        ("after_line", req.after_line.is_some()),
        ("edits", req.edits.is_some()),
    ];
    if let Some((name, _)) = given
        .iter()
        .find(|(name, set)| *set && !allowed.contains(name))
    {
        return Err(bad(format!(
            "{name} is not used with mode='{}'; modes: {VALID_MODES}.",
            req.mode.name()
        )));
    }
    Ok(())
}

fn count_lines(text: &str) -> usize {
    split_lines(text).len()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The lock writers of `path` take turns on, for as long as someone holds it.
fn write_lock(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut locks = lock(&LOCKS);
    if let Some(held) = locks.get(path).and_then(Weak::upgrade) {
        return held;
    }
    locks.retain(|_, l| l.strong_count() > 0);
    let fresh = Arc::new(Mutex::new(()));
    locks.insert(path.to_path_buf(), Arc::downgrade(&fresh));
    fresh
}

/// `write_file(path, mode="w", start_line=None, end_line=None, after_line=None, edits=None)`.
pub(crate) fn write_file(
    ws: &Workspace,
    ledger: &ReadLedger,
    req: WriteRequest,
) -> Result<ToolOutput, ToolError> {
    let path = req.path.as_str();
    let wanted_payloads = match req.mode {
        WriteMode::MultiEdit => req.edits.as_ref().map_or(0, Vec::len),
        WriteMode::Write | WriteMode::Append | WriteMode::Edit | WriteMode::Insert => 1,
    };
    match req.mode {
        WriteMode::Write | WriteMode::Append => reject_args(&req, &[])?,
        WriteMode::Edit => reject_args(&req, &["start_line", "end_line"])?,
        WriteMode::Insert => reject_args(&req, &["after_line"])?,
        WriteMode::MultiEdit => reject_args(&req, &["edits"])?,
    }
    if req.mode == WriteMode::MultiEdit && wanted_payloads == 0 {
        return Err(bad(
            "mode='multi_edit' needs edits=[(start_line, end_line), ...] with at least one range."
                .to_string(),
        ));
    }
    if req.payloads.len() != wanted_payloads {
        return Err(bad(format!(
            "mode='{}' needs {wanted_payloads} payload block(s) but got {}.",
            req.mode.name(),
            req.payloads.len()
        )));
    }
    let resolved = ws.resolve(path).map_err(|f| f.with_suffix(UNCHANGED))?;
    ws.check_write(&resolved, path)
        .map_err(|f| f.with_suffix(UNCHANGED))?;
    if resolved.is_dir() {
        return Err(bad(format!("'{path}' is a directory, not a file.")));
    }
    // Agents of one process (a parent and its workers, SPEC §20) writing one file take turns: the second sees the
    // first's change through the stale-read check below instead of overwriting it.
    let turn = write_lock(&resolved);
    let _writing = lock(&turn);
    match req.mode {
        WriteMode::Write => write_whole(ws, ledger, &req, &resolved),
        WriteMode::Append => append(ws, ledger, &req, &resolved),
        WriteMode::Edit | WriteMode::Insert | WriteMode::MultiEdit => {
            edit_lines(ws, ledger, &req, &resolved)
        }
    }
}

fn write_whole(
    ws: &Workspace,
    ledger: &ReadLedger,
    req: &WriteRequest,
    target: &Path,
) -> Result<ToolOutput, ToolError> {
    let path = req.path.as_str();
    let existing = read_regular(ws, target, path).map_err(|e| e.with_suffix(UNCHANGED))?;
    let nl = match &existing {
        Some(bytes) if is_crlf(&String::from_utf8_lossy(bytes)) => "\r\n",
        _ => "\n",
    };
    let payload = req.payloads.first().map_or("", String::as_str);
    let content = whole_text(payload, nl);
    ensure_parent(target, path)?;
    atomic_write(ws, target, content.as_bytes(), path)?;
    ledger.record(target, Stamp::of(content.as_bytes()));
    let msg = format!(
        "[write_file] '{path}' written ({}, {}).",
        plural(content.len(), "byte"),
        plural(count_lines(&content), "line")
    );
    Ok(ToolOutput::message(msg))
}

/// Creates the missing parent directories of `target`.
fn ensure_parent(target: &Path, path: &str) -> Result<(), ToolError> {
    if let Some(parent) = target.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            io_error(&format!("cannot create the directories for '{path}'"), &e)
                .with_suffix(UNCHANGED)
        })?;
    }
    Ok(())
}

fn append(
    ws: &Workspace,
    ledger: &ReadLedger,
    req: &WriteRequest,
    target: &Path,
) -> Result<ToolOutput, ToolError> {
    let path = req.path.as_str();
    let existing = read_regular(ws, target, path).map_err(|e| e.with_suffix(UNCHANGED))?;
    let old = existing.unwrap_or_default();
    let known = old.is_empty() || ledger.matches(target, &Stamp::of(&old));
    let old_text = String::from_utf8_lossy(&old);
    let nl = if is_crlf(&old_text) { "\r\n" } else { "\n" };
    let added = whole_text(req.payloads.first().map_or("", String::as_str), nl);
    let mut content = old.clone();
    if !content.is_empty() && !content.ends_with(b"\n") {
        content.extend_from_slice(nl.as_bytes());
    }
    content.extend_from_slice(added.as_bytes());
    ensure_parent(target, path)?;
    atomic_write(ws, target, &content, path)?;
    if known {
        ledger.record(target, Stamp::of(&content));
    }
    let total = count_lines(&String::from_utf8_lossy(&content));
    let msg = format!(
        "[write_file] '{path}' appended ({}, {}). File now has {total} lines total.",
        plural(added.len(), "byte"),
        plural(count_lines(&added), "line")
    );
    Ok(ToolOutput::message(msg))
}

fn edit_lines(
    ws: &Workspace,
    ledger: &ReadLedger,
    req: &WriteRequest,
    target: &Path,
) -> Result<ToolOutput, ToolError> {
    let path = req.path.as_str();
    let bytes = load(ws, target, path).map_err(|f| f.with_suffix(UNCHANGED))?;
    if !ledger.matches(target, &Stamp::of(&bytes)) {
        return Err(ToolError::new(
            ExcKind::ValueError,
            format!(
                "'{path}' changed on disk since you last read it (or you never read it); re-read it with \
                 read_file before editing by line number. {UNCHANGED}"
            ),
        ));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let nl = if is_crlf(&text) { "\r\n" } else { "\n" };
    let had_final_newline = text.is_empty() || text.ends_with('\n');
    // Lines with their terminators, so untouched lines are kept byte for byte.
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let total = lines.len();
    // Replacements as (start index, count to remove, new lines), validated before anything changes.
    let mut ops: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let summary = match req.mode {
        WriteMode::Edit => {
            let (Some(a), Some(b)) = (req.start_line, req.end_line) else {
                return Err(bad(
                    "mode='edit' needs start_line and end_line (1-based, inclusive).".to_string(),
                ));
            };
            let (a, b) = check_range(&format!("start_line={a}, end_line={b}"), a, b, total)?;
            let new = payload_lines(&req.payloads[0], nl);
            let summary = (a, b, new.len());
            ops.push((a - 1, b - a + 1, new));
            Summary::Edit(summary)
        }
        WriteMode::Insert => {
            let Some(after) = req.after_line else {
                return Err(bad(
                    "mode='insert' needs after_line (0 inserts at the top).".to_string(),
                ));
            };
            let after = usize::try_from(after)
                .ok()
                .filter(|n| *n <= total)
                .ok_or_else(|| {
                    bad(format!(
                        "after_line {after} is not valid for a file of {total} lines; use 0 (top) to {total} (end)."
                    ))
                })?;
            let new = payload_lines(&req.payloads[0], nl);
            let count = new.len();
            ops.push((after, 0, new));
            Summary::Insert { after, count }
        }
        WriteMode::MultiEdit => {
            let edits = req.edits.as_deref().unwrap_or_default();
            let mut ranges: Vec<(usize, usize, usize)> = Vec::with_capacity(edits.len());
            for (i, (a, b)) in edits.iter().enumerate() {
                let (a, b) = check_range(&format!("edits[{i}] = ({a}, {b})"), *a, *b, total)?;
                ranges.push((a, b, i));
            }
            let mut sorted = ranges.clone();
            sorted.sort_unstable();
            for pair in sorted.windows(2) {
                let ((a1, b1, _), (a2, b2, _)) = (pair[0], pair[1]);
                if a2 <= b1 {
                    return Err(bad(format!(
                        "edits ({a1}, {b1}) and ({a2}, {b2}) overlap; each line may be replaced by one edit only."
                    )));
                }
            }
            let mut parts = Vec::with_capacity(sorted.len());
            for (a, b, i) in &sorted {
                let new = payload_lines(&req.payloads[*i], nl);
                parts.push(format!("[L{a}–{b} → {}]", plural(new.len(), "line")));
                ops.push((a - 1, b - a + 1, new));
            }
            Summary::Multi(parts)
        }
        WriteMode::Write | WriteMode::Append => {
            return Err(bad(format!(
                "mode='{}' is not a line edit.",
                req.mode.name()
            )));
        }
    };
    // Bottom-up so earlier indices stay valid.
    ops.sort_by_key(|op| std::cmp::Reverse(op.0));
    for (start, remove, new) in ops {
        // Inserting after a last line that has no newline: give it one first.
        if start == lines.len()
            && let Some(last) = lines.last_mut()
            && !last.ends_with('\n')
        {
            last.push_str(nl);
        }
        lines.splice(start..start + remove, new);
    }
    let mut content = lines.concat();
    if !had_final_newline && content.ends_with('\n') {
        content.truncate(content.len() - 1);
        if content.ends_with('\r') {
            content.truncate(content.len() - 1);
        }
    }
    atomic_write(ws, target, content.as_bytes(), path)?;
    ledger.record(target, Stamp::of(content.as_bytes()));
    let now = count_lines(&content);
    let msg = match summary {
        Summary::Edit((a, b, n)) => format!(
            "[write_file] '{path}' edited: replaced lines {a}–{b} ({} → {}). File now has {now} lines total.",
            b - a + 1,
            plural(n, "line")
        ),
        Summary::Insert { after, count } => {
            let mut m = format!(
                "[write_file] '{path}' inserted {count} line(s) after line {after}. File now has {now} lines total."
            );
            if after < total {
                m.push_str(&format!(
                    " Former line {} is now line {}.",
                    after + 1,
                    after + 1 + count
                ));
            }
            m
        }
        Summary::Multi(parts) => format!(
            "[write_file] '{path}' multi-edited: applied {} block replacements ({}). File now has {now} lines total.",
            parts.len(),
            parts.join(", ")
        ),
    };
    Ok(ToolOutput::message(msg))
}

enum Summary {
    Edit((usize, usize, usize)),
    Insert { after: usize, count: usize },
    Multi(Vec<String>),
}

/// Writes `bytes` to a temp file beside `target` and renames it over `target`, keeping `target`'s mode bits
/// (new files get 0644).
fn atomic_write(ws: &Workspace, target: &Path, bytes: &[u8], shown: &str) -> Result<(), ToolError> {
    use rustix::fs::Mode;
    use rustix::fs::OFlags;

    let fail =
        |e: &io::Error| io_error(&format!("cannot write '{shown}'"), e).with_suffix(UNCHANGED);
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    let Some(name) = target.file_name() else {
        return Err(fail(&io::Error::other("the path has no file name")));
    };
    // The new content keeps the file's permission bits (never set-id bits) and, when the runtime runs as root,
    // its owner.
    let existing = std::fs::metadata(target).ok();
    let mode = existing.as_ref().map_or(0o644, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
    });
    let owner = existing.as_ref().map(|m| {
        (
            std::os::unix::fs::MetadataExt::uid(m),
            std::os::unix::fs::MetadataExt::gid(m),
        )
    });
    // The folder is opened beneath the root, and the temporary file is created and renamed relative to that
    // descriptor: a symlink swapped into the path after the check cannot redirect the write.
    let dir_fd = ws
        .open(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| fail(&e))?;
    let tmp_name = temp_name();
    let tmp = rustix::fs::openat(
        &dir_fd,
        &tmp_name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| fail(&e.into()))?;
    let mut file = std::fs::File::from(tmp);
    let written = file
        .write_all(bytes)
        .and_then(|()| {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(io::Error::from)
        })
        .and_then(|()| match owner {
            Some((uid, gid)) if rustix::process::geteuid().is_root() => rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(io::Error::from),
            Some(_) | None => Ok(()),
        })
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            rustix::fs::renameat(&dir_fd, &tmp_name, &dir_fd, name).map_err(io::Error::from)
        });
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir_fd, &tmp_name, rustix::fs::AtFlags::empty());
        return Err(fail(&e));
    }
    Ok(())
}

/// A fresh, short name for the temporary file a write goes through, beside its target (short, so a target
/// whose name is near the file system's limit can still be written).
fn temp_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".cp-{:x}-{n:x}.tmp", std::process::id())
}

#[cfg(test)]
#[path = "fs_tests.rs"]
mod tests;
