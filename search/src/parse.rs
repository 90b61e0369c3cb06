//! One file's source into its definitions, calls, references and the chunks the ranked index scores.

use crate::FxMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::Serialize;
use streaming_iterator::StreamingIterator;
use tree_sitter::Node;
use tree_sitter::Parser;
use tree_sitter::Query;
use tree_sitter::QueryCursor;

use crate::lang::Lang;
use crate::model::SymbolKind;

/// Longest chunk, in lines: the rest of a longer definition is not scored.
const MAX_CHUNK_LINES: u32 = 120;
/// Lines per chunk of code outside definitions and of text files.
const WINDOW_LINES: u32 = 40;
/// Longest signature kept, in characters.
const MAX_SIGNATURE_CHARS: usize = 200;

/// A definition as stored: indices instead of strings where the file already has them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Def {
    pub(crate) name: String,
    pub(crate) kind: SymbolKind,
    pub(crate) container: Option<String>,
    pub(crate) line: u32,
    pub(crate) end_line: u32,
    pub(crate) signature: String,
}

/// A call: from a definition of this file (or top-level code) to a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) caller: Option<u32>,
    pub(crate) callee: String,
    pub(crate) line: u32,
}

/// Every name a file uses outside a definition's name, with the lines it is used on: one buffer of names (sorted)
/// and one of lines, so a file with thousands of identifiers costs a few allocations, not thousands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RefTable {
    text: String,
    /// Per name: where it ends in `text` and where its lines end in `lines`.
    ends: Vec<(u32, u32)>,
    lines: Vec<u32>,
}

impl RefTable {
    /// Each name with its lines, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u32])> {
        let mut from = (0usize, 0usize);
        self.ends.iter().map(move |&(text_end, line_end)| {
            let (t, l) = (text_end as usize, line_end as usize);
            let item = (
                self.text.get(from.0..t).unwrap_or(""),
                self.lines.get(from.1..l).unwrap_or_default(),
            );
            from = (t, l);
            item
        })
    }

    /// Name `i` and its lines.
    fn at(&self, i: usize) -> (&str, &[u32]) {
        let (from_text, from_line) = i
            .checked_sub(1)
            .and_then(|p| self.ends.get(p))
            .map_or((0, 0), |&(t, l)| (t as usize, l as usize));
        let (to_text, to_line) = self
            .ends
            .get(i)
            .map_or((0, 0), |&(t, l)| (t as usize, l as usize));
        (
            self.text.get(from_text..to_text).unwrap_or(""),
            self.lines.get(from_line..to_line).unwrap_or_default(),
        )
    }

    /// The lines `name` is used on.
    pub(crate) fn get(&self, name: &str) -> Option<&[u32]> {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = usize::midpoint(lo, hi);
            let (n, lines) = self.at(mid);
            match n.cmp(name) {
                std::cmp::Ordering::Equal => return Some(lines),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }
}

/// A stretch of lines scored as one document: a definition's own lines or a window of other lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) symbol: Option<u32>,
}

/// What parsing one file gives.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) defs: Vec<Def>,
    pub(crate) calls: Vec<Call>,
    pub(crate) refs: RefTable,
    pub(crate) spans: Vec<Span>,
}

fn query(lang: Lang) -> Result<&'static Query, String> {
    static QUERIES: [OnceLock<Result<Query, String>>; 9] = [const { OnceLock::new() }; 9];
    let slot = Lang::ALL.iter().position(|l| *l == lang).unwrap_or(0);
    QUERIES[slot]
        .get_or_init(|| {
            Query::new(&lang.grammar(), lang.query()).map_err(|e| format!("{}: {e}", lang.name()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks that every language's grammar loads and its query compiles.
///
/// # Errors
/// The first language whose query does not compile, with the reason.
pub fn check_grammars() -> Result<(), String> {
    Lang::ALL.into_iter().try_for_each(|l| query(l).map(|_| ()))
}

/// A parser per language, reused across files by one thread.
#[derive(Default)]
pub(crate) struct Parsers {
    parsers: FxMap<Lang, Parser>,
}

impl Parsers {
    /// Parses `src` as `lang`.
    pub(crate) fn parse(&mut self, lang: Lang, src: &str) -> Result<Parsed, String> {
        let query = query(lang)?;
        let parser = match self.parsers.entry(lang) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut parser = Parser::new();
                parser
                    .set_language(&lang.grammar())
                    .map_err(|e| format!("{}: {e}", lang.name()))?;
                e.insert(parser)
            }
        };
        let tree = parser
            .parse(src, None)
            .ok_or_else(|| format!("{}: the parser gave up", lang.name()))?;
        Ok(extract(lang, query, tree.root_node(), src))
    }
}

/// A definition or scope found by the query, before containers are known.
struct Found<'t> {
    node: Node<'t>,
    name: Node<'t>,
    /// `None` for a scope that only contains definitions (a Rust `impl`).
    kind: Option<SymbolKind>,
}

fn text<'s>(node: Node<'_>, src: &'s str) -> &'s str {
    src.get(node.byte_range()).unwrap_or("")
}

fn line_of(node: Node<'_>) -> u32 {
    u32::try_from(node.start_position().row).unwrap_or(u32::MAX - 1) + 1
}

fn end_line_of(node: Node<'_>) -> u32 {
    let end = node.end_position();
    // A node ending at column 0 ends on the line before (its trailing newline).
    let row = if end.column == 0 && end.row > node.start_position().row {
        end.row - 1
    } else {
        end.row
    };
    u32::try_from(row).unwrap_or(u32::MAX - 1) + 1
}

fn extract(lang: Lang, query: &Query, root: Node<'_>, src: &str) -> Parsed {
    let names = query.capture_names();
    let mut found: Vec<Found<'_>> = Vec::new();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, root, src.as_bytes());
    while let Some(m) = matches.next() {
        let mut whole: Option<(Node<'_>, Option<SymbolKind>)> = None;
        let mut name = None;
        for c in m.captures {
            let capture = names[c.index as usize];
            match capture {
                "name" => name = Some(c.node),
                "scope" => whole = Some((c.node, None)),
                _ => {
                    if let Some(kind) = capture
                        .strip_prefix("def.")
                        .and_then(SymbolKind::from_capture)
                    {
                        whole = Some((c.node, Some(kind)));
                    }
                }
            }
        }
        if let (Some((node, kind)), Some(name)) = (whole, name) {
            found.push(Found { node, name, kind });
        }
    }
    // One definition per name node (overlapping patterns), outermost first.
    found.sort_by_key(|f| {
        (
            f.node.start_byte(),
            std::cmp::Reverse(f.node.end_byte()),
            f.kind.is_none(),
        )
    });
    found.dedup_by_key(|f| f.name.start_byte());

    // Containers: the innermost definition or scope around each one.
    let mut defs: Vec<Def> = Vec::new();
    let mut def_nodes: Vec<Node<'_>> = Vec::new();
    let mut stack: Vec<(usize, Option<usize>)> = Vec::new(); // (index in found, index in defs)
    let mut parent_of: Vec<Option<usize>> = Vec::new(); // per def: the enclosing def's index
    for (i, f) in found.iter().enumerate() {
        while let Some(&(top, _)) = stack.last() {
            if found[top].node.end_byte() >= f.node.end_byte()
                && found[top].node.start_byte() <= f.node.start_byte()
            {
                break;
            }
            stack.pop();
        }
        let enclosing = stack.last().map(|&(top, _)| &found[top]);
        let enclosing_def = stack.iter().rev().find_map(|&(_, d)| d);
        let mut container = enclosing.map(|e| text(e.name, src).to_owned());
        let mut holds_methods =
            enclosing.is_some_and(|e| e.kind.is_none_or(SymbolKind::holds_methods));
        if let Some(own) = own_container(lang, f.node, f.name, src) {
            container = Some(own);
            holds_methods = true;
        }
        let pushed = f.kind.map(|kind| {
            let kind = if kind == SymbolKind::Function && holds_methods {
                SymbolKind::Method
            } else {
                kind
            };
            let line = line_of(f.node);
            let from = f.node.start_byte() - f.node.start_position().column;
            let line_text = src.get(from..).unwrap_or("");
            let signature = line_text[..line_text.find('\n').unwrap_or(line_text.len())].trim();
            defs.push(Def {
                name: text(f.name, src).to_owned(),
                kind,
                container,
                line,
                end_line: end_line_of(f.node).max(line),
                signature: truncate(signature, MAX_SIGNATURE_CHARS),
            });
            def_nodes.push(f.node);
            parent_of.push(enclosing_def);
            defs.len() - 1
        });
        stack.push((i, pushed));
    }

    let (refs, mut calls) = walk(lang, root, src, &found);
    // In reading order of the names called: `a.f().g()` calls `f`, then `g`.
    calls.sort_by_key(|(_, callee)| callee.start_byte());

    // Calls: from the innermost definition around them.
    let mut out_calls = Vec::with_capacity(calls.len());
    for (call, callee) in calls {
        // The last definition starting before the call, or the nearest of its ancestors that holds it.
        let at = call.start_byte();
        let mut candidate = def_nodes
            .partition_point(|n| n.start_byte() <= at)
            .checked_sub(1);
        while let Some(i) = candidate {
            if at < def_nodes[i].end_byte() {
                break;
            }
            candidate = parent_of[i];
        }
        let caller = candidate.and_then(|i| u32::try_from(i).ok());
        out_calls.push(Call {
            caller,
            callee: text(callee, src).to_owned(),
            // The name's line: in a chain over several lines, `.baz()` is on its own line.
            line: line_of(callee),
        });
    }

    let spans = spans(src, &defs, &parent_of);
    Parsed {
        defs,
        calls: out_calls,
        refs,
        spans,
    }
}

/// A container the syntax names outside the nesting: a Go method's receiver type, a C++ `Type::method`'s scope.
fn own_container(lang: Lang, node: Node<'_>, name: Node<'_>, src: &str) -> Option<String> {
    match lang {
        Lang::Go if node.kind() == "method_declaration" => {
            let receiver = node.child_by_field_name("receiver")?;
            let mut cursor = receiver.walk();
            let mut stack = vec![receiver];
            while let Some(n) = stack.pop() {
                if n.kind() == "type_identifier" {
                    return Some(text(n, src).to_owned());
                }
                stack.extend(n.named_children(&mut cursor));
            }
            None
        }
        Lang::Cpp => {
            let parent = name.parent()?;
            (parent.kind() == "qualified_identifier")
                .then(|| parent.child_by_field_name("scope"))
                .flatten()
                .map(|s| {
                    let scope = text(s, src);
                    scope.rsplit("::").next().unwrap_or(scope).to_owned()
                })
        }
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// The name a call calls: `f` of `f()`, `obj.f()`, `a::f()`, `new F()`, `f!()`.
fn callee(lang: Lang, call: Node<'_>) -> Option<Node<'_>> {
    let target = match (lang, call.kind()) {
        (Lang::Java, "method_invocation") => return call.child_by_field_name("name"),
        (Lang::Java, _) => call.child_by_field_name("type")?,
        (_, "new_expression") => call.child_by_field_name("constructor")?,
        (_, "macro_invocation") => call.child_by_field_name("macro")?,
        _ => call.child_by_field_name("function")?,
    };
    let mut node = target;
    // Down to the last name: `a.b.f` → `f`, `ns::f` → `f`, `f::<T>` → `f`.
    for _ in 0..4 {
        let next = match node.kind() {
            "attribute" => node.child_by_field_name("attribute"),
            "member_expression" => node.child_by_field_name("property"),
            "field_expression" | "selector_expression" => node.child_by_field_name("field"),
            "scoped_identifier" | "qualified_identifier" => node.child_by_field_name("name"),
            "generic_function" => node.child_by_field_name("function"),
            _ => {
                return lang
                    .identifier_kinds()
                    .contains(&node.kind())
                    .then_some(node);
            }
        };
        node = next?;
    }
    None
}

/// One walk over every node: each identifier outside a definition's name, grouped by name, and each call with the
/// name it calls.
fn walk<'t>(
    lang: Lang,
    root: Node<'t>,
    src: &str,
    found: &[Found<'_>],
) -> (RefTable, Vec<(Node<'t>, Node<'t>)>) {
    let grammar = root.language();
    let ids = |names: &[&str]| -> Vec<u16> {
        names
            .iter()
            .map(|k| grammar.id_for_node_kind(k, true))
            .filter(|id| *id != 0)
            .collect()
    };
    let kinds = ids(lang.identifier_kinds());
    let call_kinds = ids(lang.call_kinds());
    let mut calls = Vec::new();
    let mut def_names: Vec<usize> = found.iter().map(|f| f.name.start_byte()).collect();
    def_names.sort_unstable();
    let mut groups: FxMap<&str, Vec<u32>> = FxMap::default();
    let mut cursor = root.walk();
    let mut descend = true;
    loop {
        let node = cursor.node();
        if descend
            && call_kinds.contains(&node.kind_id())
            && let Some(name) = callee(lang, node)
        {
            calls.push((node, name));
        }
        if descend
            && kinds.contains(&node.kind_id())
            && def_names.binary_search(&node.start_byte()).is_err()
        {
            let name = text(node, src);
            if name.len() >= 2 {
                let lines = groups.entry(name).or_default();
                let line = line_of(node);
                if lines.last() != Some(&line) {
                    lines.push(line);
                }
            }
        }
        if descend && cursor.goto_first_child() {
            continue;
        }
        if cursor.goto_next_sibling() {
            descend = true;
            continue;
        }
        if !cursor.goto_parent() {
            break;
        }
        descend = false;
    }
    let mut names: Vec<(&str, Vec<u32>)> = groups.into_iter().collect();
    names.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut table = RefTable::default();
    for (name, mut lines) in names {
        lines.sort_unstable();
        lines.dedup();
        table.text.push_str(name);
        table.lines.extend(lines);
        table.ends.push((
            u32::try_from(table.text.len()).unwrap_or(u32::MAX),
            u32::try_from(table.lines.len()).unwrap_or(u32::MAX),
        ));
    }
    (table, calls)
}

/// The scored chunks: each definition's own lines (up to its first nested definition, which has a chunk of its own)
/// with the comments and decorators just above it, then windows over the lines no definition took.
fn spans(src: &str, defs: &[Def], parent_of: &[Option<usize>]) -> Vec<Span> {
    let lines: Vec<&str> = src.lines().collect();
    let total = u32::try_from(lines.len()).unwrap_or(u32::MAX);
    let mut covered = vec![false; lines.len() + 1];
    let mut out = Vec::new();
    let mut first_child: Vec<Option<u32>> = vec![None; defs.len()];
    for (i, parent) in parent_of.iter().enumerate() {
        if let Some(p) = *parent {
            let line = defs[i].line;
            first_child[p] = Some(first_child[p].map_or(line, |l| l.min(line)));
        }
    }
    for (i, def) in defs.iter().enumerate() {
        if def.kind == SymbolKind::Declaration {
            continue;
        }
        let mut start = def.line;
        while start > 1 && is_leading(lines.get(start as usize - 2).copied().unwrap_or("")) {
            start -= 1;
        }
        let own_end = first_child[i].map_or(def.end_line, |c| c.saturating_sub(1).max(def.line));
        let end = own_end.min(def.line + MAX_CHUNK_LINES).min(total.max(1));
        for l in start..=end {
            if let Some(c) = covered.get_mut(l as usize) {
                *c = true;
            }
        }
        out.push(Span {
            start,
            end,
            symbol: u32::try_from(i).ok(),
        });
    }
    windows(&lines, &covered, &mut out);
    out
}

fn is_leading(line: &str) -> bool {
    let t = line.trim_start();
    ["#", "//", "/*", "*", "@"].iter().any(|p| t.starts_with(p)) && !t.starts_with("#include")
}

/// Windows of at most [`WINDOW_LINES`] over the uncovered, non-blank lines.
pub(crate) fn windows(lines: &[&str], covered: &[bool], out: &mut Vec<Span>) {
    let mut start: Option<u32> = None;
    let mut last_text = 0;
    for (i, line) in lines.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let free = !covered.get(i + 1).copied().unwrap_or(false);
        if free {
            let s = *start.get_or_insert(n);
            if !line.trim().is_empty() {
                last_text = n;
            }
            if n + 1 - s >= WINDOW_LINES {
                if last_text >= s {
                    out.push(Span {
                        start: s,
                        end: last_text,
                        symbol: None,
                    });
                }
                start = None;
            }
        } else if let Some(s) = start.take()
            && last_text >= s
        {
            out.push(Span {
                start: s,
                end: last_text,
                symbol: None,
            });
        }
    }
    if let Some(s) = start
        && last_text >= s
    {
        out.push(Span {
            start: s,
            end: last_text,
            symbol: None,
        });
    }
}
