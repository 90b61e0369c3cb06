//! The index's answers as the model (and `codepilot search`) reads them.

use std::fmt::Write as _;

use crate::model::CallEdge;
use crate::model::RefKind;
use crate::model::Reference;
use crate::model::SearchHit;
use crate::model::Symbol;

/// Lines of each hit's snippet shown.
const SHOWN_SNIPPET_LINES: usize = 8;
/// References listed before the rest are counted only.
const SHOWN_REFERENCES: usize = 60;

/// Ranked hits, each with its place, symbol, score and first lines.
#[must_use]
pub fn search(query: &str, hits: &[SearchHit]) -> String {
    let mut out = String::new();
    if hits.is_empty() {
        let _ = write!(
            out,
            "no code matches {query:?}; try other words, or find() for an exact pattern"
        );
        return out;
    }
    for (i, hit) in hits.iter().enumerate() {
        let what = match (&hit.symbol, hit.kind) {
            (Some(s), Some(k)) => format!("  {s} ({})", k.as_str()),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{}. {}:{}-{}{what}  score {:.2}",
            i + 1,
            hit.file,
            hit.start_line,
            hit.end_line,
            hit.score
        );
        let lines: Vec<&str> = hit.snippet.lines().collect();
        for (n, line) in lines.iter().take(SHOWN_SNIPPET_LINES).enumerate() {
            let _ = writeln!(out, "   {:>5}│ {line}", hit.start_line as usize + n);
        }
        if hit.end_line - hit.start_line + 1
            > u32::try_from(SHOWN_SNIPPET_LINES).unwrap_or(u32::MAX)
        {
            let _ = writeln!(out, "        ⋮");
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Definitions, one a line.
#[must_use]
pub fn definitions(name: &str, symbols: &[Symbol]) -> String {
    if symbols.is_empty() {
        return format!(
            "no definition of {name:?} in the index; try semantic_search({name:?}) or find()"
        );
    }
    let mut out = String::new();
    for s in symbols {
        let _ = writeln!(
            out,
            "{}:{}-{}  {} {}\n    {}",
            s.file,
            s.line,
            s.end_line,
            s.kind.as_str(),
            s.qualified(),
            s.signature
        );
    }
    out.truncate(out.trim_end().len());
    out
}

/// Uses of a name, one a line, calls marked; the first 60, then a count.
#[must_use]
pub fn references(name: &str, refs: &[Reference]) -> String {
    if refs.is_empty() {
        return format!("no references to {name:?} in the index");
    }
    let mut out = String::new();
    let calls = refs.iter().filter(|r| r.kind == RefKind::Call).count();
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let _ = writeln!(
        out,
        "{} ({}):",
        plural(refs.len(), "reference"),
        plural(calls, "call")
    );
    for r in refs.iter().take(SHOWN_REFERENCES) {
        let kind = match r.kind {
            RefKind::Call => "call",
            RefKind::Reference => "ref",
        };
        let inside = r
            .symbol
            .as_deref()
            .map(|s| format!(" in {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "{}:{} {kind}{inside}: {}", r.file, r.line, r.text);
    }
    if refs.len() > SHOWN_REFERENCES {
        let _ = writeln!(
            out,
            "… {} more (the returned list has them all)",
            refs.len() - SHOWN_REFERENCES
        );
    }
    out.truncate(out.trim_end().len());
    out
}

/// Call-graph edges, by depth.
#[must_use]
pub fn trace(name: &str, mode: &str, edges: &[CallEdge]) -> String {
    if edges.is_empty() {
        let what = if mode == "trace_callees" {
            "calls made by"
        } else {
            "calls of"
        };
        return format!("no {what} {name:?} in the index");
    }
    let mut out = String::new();
    for e in edges {
        let indent = "  ".repeat(e.depth.saturating_sub(1) as usize);
        let at = e
            .defined_at
            .as_deref()
            .map(|d| format!("  [{} at {d}]", e.callee))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}{} → {}  {}:{}  {}{at}",
            e.caller, e.callee, e.file, e.line, e.text
        );
    }
    out.truncate(out.trim_end().len());
    out
}
