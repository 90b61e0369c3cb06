//! `find(pattern, scope="codebase", target=None, include=None, max_results=50)` on ripgrep's crates.
//!
//! The walk honours `.gitignore`, `.ignore` and git excludes even outside a git repository, skips hidden
//! files and does not follow symlinks (so it cannot wander out of the workspace); explicit targets go
//! through [`Workspace::resolve`]. Files are searched with binary detection: a file with a NUL byte is
//! skipped and any match already seen in it is dropped. The pattern is a regex handed to the regex engine,
//! never a command line, so a pattern such as `--pre=x` is just text to look for.

use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use globset::GlobBuilder;
use globset::GlobMatcher;
use grep_regex::RegexMatcher;
use grep_regex::RegexMatcherBuilder;
use grep_searcher::BinaryDetection;
use grep_searcher::Searcher;
use grep_searcher::SearcherBuilder;
use grep_searcher::Sink;
use grep_searcher::SinkMatch;
use ignore::WalkBuilder;
use serde_json::Value;
use serde_json::json;

use super::ToolOutput;
use super::workspace::Workspace;
use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolError;

/// Characters of a matching line shown before it is cut.
const MAX_TEXT_CHARS: usize = 300;
/// Files searched between two looks at the stop flag are at most this many (plus one per match batch).
const STOP_CHECK_MATCHES: u64 = 1024;
/// Files larger than this are not searched.
const MAX_SEARCH_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// One `find` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FindRequest {
    /// A regex (Rust `regex` syntax).
    pub(crate) pattern: String,
    /// `codebase` (the workspace, or the directories in `target`), `file` (one path) or `files` (a list).
    pub(crate) scope: String,
    /// Paths for `file`/`files`; optional directories for `codebase`.
    pub(crate) target: Option<Vec<String>>,
    /// Glob such as `*.rs` or `src/**/*.py`, matched against the file name and the workspace-relative path.
    pub(crate) include: Option<String>,
    /// Matches listed; the total is still counted.
    pub(crate) max_results: usize,
}

/// One matching line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FindMatch {
    /// Workspace-relative path (absolute if outside, which needs `unsafe_mode`).
    pub(crate) path: String,
    /// 1-based line number.
    pub(crate) line: u64,
    /// The line, without its terminator, cut to a few hundred characters.
    pub(crate) text: String,
}

fn invalid(message: String) -> ToolError {
    ToolError::new(ExcKind::ValueError, message)
}

/// Runs a search. Checks `stop` between files and every so often inside one; when set, returns what was
/// found so far.
pub(crate) fn find(
    ws: &Workspace,
    req: &FindRequest,
    stop: &AtomicBool,
) -> Result<(ToolOutput, Vec<FindMatch>), ToolError> {
    if req.pattern.is_empty() {
        return Err(invalid(
            "the pattern is empty; give a regex such as 'def main'.".to_string(),
        ));
    }
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(&req.pattern)
        .map_err(|e| invalid(format!("invalid regex '{}': {e}", req.pattern)))?;
    let include = match &req.include {
        Some(glob) if !glob.trim().is_empty() => Some(
            GlobBuilder::new(glob)
                .literal_separator(false)
                .build()
                .map_err(|e| invalid(format!("invalid include glob '{glob}': {e}")))?
                .compile_matcher(),
        ),
        _ => None,
    };
    let targets = req.target.clone().unwrap_or_default();
    let roots: Vec<(PathBuf, bool)> = match req.scope.as_str() {
        "codebase" if targets.is_empty() => vec![(ws.root().to_path_buf(), false)],
        "codebase" | "files" => resolve_all(ws, &targets)?,
        "file" => {
            if targets.len() != 1 {
                return Err(invalid(format!(
                    "scope='file' needs exactly one target path (got {}); use scope='files' for a list.",
                    targets.len()
                )));
            }
            resolve_all(ws, &targets)?
        }
        other => {
            return Err(invalid(format!(
                "unknown scope '{other}'; use 'codebase' (the whole workspace), 'file' (target=path) or 'files' \
                 (target=[paths])."
            )));
        }
    };
    if req.scope == "files" && roots.is_empty() {
        return Err(invalid("scope='files' needs target=[paths].".to_string()));
    }

    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(b'\x00'))
        .line_number(true)
        .build();
    let mut state = Collect {
        max: req.max_results.max(1),
        matches: Vec::new(),
        total: 0,
    };
    for (root, explicit) in &roots {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut walk = WalkBuilder::new(root);
        walk.require_git(false)
            .follow_links(false)
            .max_filesize(Some(MAX_SEARCH_FILE_BYTES))
            .sort_by_file_name(std::cmp::Ord::cmp);
        for entry in walk.build() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            let shown = ws.display(path);
            // An explicitly named file is searched even if an include glob would skip it.
            let named = *explicit && path == root;
            if !named
                && let Some(glob) = &include
                && !glob_matches(glob, path, &shown)
            {
                continue;
            }
            search_file(&mut searcher, &matcher, path, shown, &mut state, stop);
        }
    }
    let shown_n = state.matches.len();
    let observation = if state.total == 0 {
        "[find] No matches found.".to_string()
    } else {
        let mut out = if state.total > shown_n as u64 {
            format!(
                "[find] {} match(es) (showing {shown_n} of {}):\n",
                state.total, state.total
            )
        } else {
            format!("[find] {} match(es):\n", state.total)
        };
        for m in &state.matches {
            out.push_str(&format!("{}:{}:{}\n", m.path, m.line, m.text));
        }
        out.pop();
        out
    };
    let value = Value::Array(
        state
            .matches
            .iter()
            .map(|m| json!({"path": m.path, "line": m.line, "text": m.text}))
            .collect(),
    );
    Ok((
        ToolOutput {
            observation: Some(observation),
            value,
        },
        state.matches,
    ))
}

fn resolve_all(ws: &Workspace, targets: &[String]) -> Result<Vec<(PathBuf, bool)>, ToolError> {
    targets
        .iter()
        .map(|t| {
            let p = ws.resolve(t)?;
            if !p.exists() {
                return Err(ToolError::new(
                    ExcKind::FileNotFoundError,
                    format!("'{t}' was not found in the workspace."),
                ));
            }
            Ok((p, true))
        })
        .collect()
}

fn glob_matches(glob: &GlobMatcher, path: &Path, shown: &str) -> bool {
    glob.is_match(shown) || path.file_name().is_some_and(|n| glob.is_match(n))
}

struct Collect {
    max: usize,
    matches: Vec<FindMatch>,
    total: u64,
}

fn search_file(
    searcher: &mut Searcher,
    matcher: &RegexMatcher,
    path: &Path,
    shown: String,
    state: &mut Collect,
    stop: &AtomicBool,
) {
    let mut sink = FileSink {
        shown,
        found: Vec::new(),
        count: 0,
        room: state.max.saturating_sub(state.matches.len()),
        binary: false,
        stop,
    };
    // A file that cannot be read (permissions, vanished) is skipped like ripgrep does with a warning.
    if searcher.search_path(matcher, path, &mut sink).is_err() || sink.binary {
        return;
    }
    state.total += sink.count;
    state.matches.extend(sink.found);
}

/// Collects one file's matches so a binary file discovered late can be dropped whole.
struct FileSink<'a> {
    shown: String,
    found: Vec<FindMatch>,
    count: u64,
    room: usize,
    binary: bool,
    stop: &'a AtomicBool,
}

impl Sink for FileSink<'_> {
    type Error = io::Error;

    fn matched(&mut self, _searcher: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, io::Error> {
        self.count += 1;
        if self.found.len() < self.room {
            let raw = String::from_utf8_lossy(mat.bytes());
            let line = raw.trim_end_matches(['\n', '\r']);
            self.found.push(FindMatch {
                path: self.shown.clone(),
                line: mat.line_number().unwrap_or(0),
                text: cut(line),
            });
        }
        Ok(!(self.count.is_multiple_of(STOP_CHECK_MATCHES) && self.stop.load(Ordering::Relaxed)))
    }

    fn binary_data(&mut self, _searcher: &Searcher, _offset: u64) -> Result<bool, io::Error> {
        self.binary = true;
        Ok(false)
    }
}

fn cut(line: &str) -> String {
    match line.char_indices().nth(MAX_TEXT_CHARS) {
        Some((idx, _)) => format!("{} …", &line[..idx]),
        None => line.to_string(),
    }
}

#[cfg(test)]
#[path = "find_tests.rs"]
mod tests;
