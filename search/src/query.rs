//! Questions the index answers: definitions, references, ranked search and call-graph traces.

use crate::FxMap;
use std::collections::HashSet;
use std::collections::VecDeque;

use serde::Deserialize;
use serde::Serialize;

use crate::CodeIndex;
use crate::model::CallEdge;
use crate::model::RefKind;
use crate::model::Reference;
use crate::model::SearchHit;
use crate::model::Symbol;
use crate::model::SymbolKind;
use crate::store::FileEntry;
use crate::store::Tables;
use crate::text;

/// BM25's term-frequency saturation.
const K1: f32 = 1.2;
/// BM25's length normalisation.
const B: f32 = 0.75;
/// Lines of a chunk a search hit shows.
const SNIPPET_LINES: u32 = 12;
/// Most edges a trace returns.
const MAX_EDGES: usize = 200;
/// Most references returned.
const MAX_REFERENCES: usize = 500;

/// Which way a trace follows calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceDirection {
    /// Who calls the name, and who calls them.
    Callers,
    /// What the name calls, and what those call.
    Callees,
    /// Both.
    Graph,
}

/// `Container.name` / `Container::name` / `name` → (container, name).
fn split_qualified(name: &str) -> (Option<&str>, &str) {
    let name = name.trim().trim_end_matches("()");
    for sep in ["::", ".", "#"] {
        if let Some((c, n)) = name.rsplit_once(sep)
            && !n.is_empty()
            && !c.is_empty()
        {
            let c = c.rsplit(sep).next().unwrap_or(c);
            return (Some(c), n);
        }
    }
    (None, name)
}

fn symbol(file: &FileEntry, def: &crate::parse::Def) -> Symbol {
    Symbol {
        name: def.name.clone(),
        kind: def.kind,
        container: def.container.clone(),
        file: file.path.clone(),
        line: def.line,
        end_line: def.end_line,
        signature: def.signature.clone(),
    }
}

fn qualified(def: &crate::parse::Def) -> String {
    match &def.container {
        Some(c) => format!("{c}.{}", def.name),
        None => def.name.clone(),
    }
}

/// The innermost definition of `file` around `line`.
fn enclosing(file: &FileEntry, line: u32) -> Option<&crate::parse::Def> {
    file.defs
        .iter()
        .filter(|d| d.kind != SymbolKind::Declaration && d.line <= line && line <= d.end_line)
        .min_by_key(|d| d.end_line - d.line)
}

fn definitions_of<'t>(
    tables: &'t Tables,
    name: &str,
) -> Vec<(&'t FileEntry, &'t crate::parse::Def)> {
    tables
        .defs
        .get(name)
        .into_iter()
        .flatten()
        .filter_map(|(f, d)| {
            let file = tables.file(*f)?;
            Some((file, file.defs.get(*d as usize)?))
        })
        .collect()
}

impl CodeIndex {
    /// Where `name` is defined. `Type.method` (or `Type::method`) narrows to that container; without an exact
    /// match, names that differ only in case are returned. Bodies before declarations, then by file and line.
    #[must_use]
    pub fn definition(&self, name: &str) -> Vec<Symbol> {
        let (container, name) = split_qualified(name);
        let tables = self.read_tables();
        let mut found = definitions_of(&tables, name);
        if found.is_empty() {
            let lower = name.to_lowercase();
            let mut names: Vec<&String> = tables
                .defs
                .keys()
                .filter(|k| k.to_lowercase() == lower)
                .collect();
            names.sort();
            found = names
                .into_iter()
                .flat_map(|n| definitions_of(&tables, n))
                .collect();
        }
        if let Some(c) = container {
            found.retain(|(_, d)| d.container.as_deref() == Some(c));
        }
        let mut out: Vec<Symbol> = found.into_iter().map(|(f, d)| symbol(f, d)).collect();
        out.sort_by(|a, b| {
            (a.kind == SymbolKind::Declaration)
                .cmp(&(b.kind == SymbolKind::Declaration))
                .then_with(|| a.file.cmp(&b.file))
                .then(a.line.cmp(&b.line))
        });
        out
    }

    /// Every use of `name` outside its definitions (the last part of `Type.method`), by file and line, calls marked.
    /// At most 500.
    #[must_use]
    pub fn references(&self, name: &str) -> Vec<Reference> {
        let (_, name) = split_qualified(name);
        let tables = self.read_tables();
        let mut files: Vec<&FileEntry> = tables
            .uses
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|f| tables.file(*f))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut out = Vec::new();
        for file in files {
            let Some(lines) = file.refs.get(name) else {
                continue;
            };
            let calls: HashSet<u32> = file
                .calls
                .iter()
                .filter(|c| c.callee == name)
                .map(|c| c.line)
                .collect();
            let (first, last) = (
                lines.first().copied().unwrap_or(1),
                lines.last().copied().unwrap_or(1),
            );
            let text = self.lines(&file.path, first, last);
            for &line in lines {
                if out.len() >= MAX_REFERENCES {
                    return out;
                }
                out.push(Reference {
                    name: name.to_owned(),
                    file: file.path.clone(),
                    line,
                    kind: if calls.contains(&line) {
                        RefKind::Call
                    } else {
                        RefKind::Reference
                    },
                    symbol: enclosing(file, line).map(qualified),
                    text: text
                        .get((line - first) as usize)
                        .map(|l| l.trim().to_owned())
                        .unwrap_or_default(),
                });
            }
        }
        out
    }

    /// The chunks that best match `query` by BM25 over their words (identifiers split into parts, the definition's
    /// name weighted), best first; `vector` adds similarity to the query's embedding when given.
    #[must_use]
    pub fn search(&self, query: &str, top_k: usize, vector: Option<&[f32]>) -> Vec<SearchHit> {
        let tables = self.read_tables();
        let lexical = bm25(&tables, query);
        let ranked: Vec<((u32, u32), f32)> = match vector {
            Some(v) => self.vectors.fuse(&tables, lexical, v),
            None => lexical,
        };
        let exact = query.trim();
        let mut ranked = ranked;
        // A query that is exactly a definition's name puts that definition first.
        if !exact.is_empty() && !exact.contains(char::is_whitespace) {
            let (_, name) = split_qualified(exact);
            for (f, d) in tables.defs.get(name).into_iter().flatten() {
                let Some(file) = tables.file(*f) else {
                    continue;
                };
                if let Some(c) = file.chunks.iter().position(|c| c.symbol == Some(*d)) {
                    let key = (*f, u32::try_from(c).unwrap_or(u32::MAX));
                    let best = ranked.first().map_or(1.0, |r| r.1);
                    match ranked.iter_mut().find(|r| r.0 == key) {
                        Some(r) => r.1 += best,
                        None => ranked.push((key, best)),
                    }
                }
            }
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        ranked
            .into_iter()
            .take(top_k)
            .filter_map(|((f, c), score)| {
                let file = tables.file(f)?;
                let chunk = file.chunks.get(c as usize)?;
                let def = chunk.symbol.and_then(|d| file.defs.get(d as usize));
                let snippet_end = chunk.end.min(chunk.start + SNIPPET_LINES - 1);
                Some(SearchHit {
                    file: file.path.clone(),
                    start_line: chunk.start,
                    end_line: chunk.end,
                    symbol: def.map(qualified),
                    kind: def.map(|d| d.kind),
                    score: (score * 1000.0).round() / 1000.0,
                    snippet: self.lines(&file.path, chunk.start, snippet_end).join("\n"),
                })
            })
            .collect()
    }

    /// The call graph around `name`, breadth first, `depth` calls deep (1–5): who calls it (callers), what it calls
    /// (callees) or both. Calls are matched by name, as the source spells them. At most 200 edges.
    #[must_use]
    pub fn trace(&self, name: &str, direction: TraceDirection, depth: u32) -> Vec<CallEdge> {
        let (_, name) = split_qualified(name);
        let depth = depth.clamp(1, 5);
        let tables = self.read_tables();
        let mut edges = Vec::new();
        if matches!(direction, TraceDirection::Callers | TraceDirection::Graph) {
            self.callers(&tables, name, depth, &mut edges);
        }
        if matches!(direction, TraceDirection::Callees | TraceDirection::Graph) {
            self.callees(&tables, name, depth, &mut edges);
        }
        edges
    }

    fn defined_at(tables: &Tables, name: &str) -> Option<String> {
        let mut defs = definitions_of(tables, name);
        defs.sort_by_key(|(f, d)| (d.kind == SymbolKind::Declaration, f.path.clone(), d.line));
        defs.first().map(|(f, d)| format!("{}:{}", f.path, d.line))
    }

    fn callers(&self, tables: &Tables, name: &str, depth: u32, edges: &mut Vec<CallEdge>) {
        let mut seen: HashSet<String> = HashSet::from([name.to_owned()]);
        let mut queue: VecDeque<(String, u32)> = VecDeque::from([(name.to_owned(), 1)]);
        let mut texts: FxMap<String, Vec<String>> = FxMap::default();
        while let Some((callee, d)) = queue.pop_front() {
            let mut files: Vec<&FileEntry> = tables
                .callers
                .get(&callee)
                .into_iter()
                .flatten()
                .filter_map(|f| tables.file(*f))
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let defined_at = Self::defined_at(tables, &callee);
            for file in files {
                for call in file.calls.iter().filter(|c| c.callee == callee) {
                    if edges.len() >= MAX_EDGES {
                        return;
                    }
                    let caller = call.caller.and_then(|i| file.defs.get(i as usize));
                    edges.push(CallEdge {
                        caller: caller.map_or_else(|| "<module>".to_owned(), qualified),
                        callee: callee.clone(),
                        file: file.path.clone(),
                        line: call.line,
                        depth: d,
                        defined_at: defined_at.clone(),
                        text: self.line_text(&mut texts, &file.path, call.line),
                    });
                    if let Some(caller) = caller
                        && d < depth
                        && seen.insert(caller.name.clone())
                    {
                        queue.push_back((caller.name.clone(), d + 1));
                    }
                }
            }
        }
    }

    fn callees(&self, tables: &Tables, name: &str, depth: u32, edges: &mut Vec<CallEdge>) {
        let mut seen: HashSet<String> = HashSet::from([name.to_owned()]);
        let mut queue: VecDeque<(String, u32)> = VecDeque::from([(name.to_owned(), 1)]);
        let mut texts: FxMap<String, Vec<String>> = FxMap::default();
        while let Some((caller, d)) = queue.pop_front() {
            let mut defs = definitions_of(tables, &caller);
            defs.sort_by(|a, b| a.0.path.cmp(&b.0.path).then(a.1.line.cmp(&b.1.line)));
            for (file, def) in defs {
                let Some(index) = file.defs.iter().position(|x| std::ptr::eq(x, def)) else {
                    continue;
                };
                let index = u32::try_from(index).ok();
                for call in file.calls.iter().filter(|c| c.caller == index) {
                    if edges.len() >= MAX_EDGES {
                        return;
                    }
                    let defined_at = Self::defined_at(tables, &call.callee);
                    edges.push(CallEdge {
                        caller: qualified(def),
                        callee: call.callee.clone(),
                        file: file.path.clone(),
                        line: call.line,
                        depth: d,
                        defined_at: defined_at.clone(),
                        text: self.line_text(&mut texts, &file.path, call.line),
                    });
                    if defined_at.is_some() && d < depth && seen.insert(call.callee.clone()) {
                        queue.push_back((call.callee.clone(), d + 1));
                    }
                }
            }
        }
    }

    fn line_text(&self, cache: &mut FxMap<String, Vec<String>>, file: &str, line: u32) -> String {
        let lines = cache
            .entry(file.to_owned())
            .or_insert_with(|| self.lines(file, 1, u32::MAX - 1));
        lines
            .get(line.saturating_sub(1) as usize)
            .map(|l| l.trim().to_owned())
            .unwrap_or_default()
    }
}

/// BM25 over the chunks: (file, chunk) ids with their scores, best first.
pub(crate) fn bm25(tables: &Tables, query: &str) -> Vec<((u32, u32), f32)> {
    let n = tables.chunk_count.max(1) as f32;
    #[allow(clippy::cast_precision_loss)]
    let avgdl = (tables.total_len as f32 / n).max(1.0);
    let mut scores: FxMap<(u32, u32), f32> = FxMap::default();
    for word in text::query_words(query) {
        let Some(postings) = tables
            .terms
            .get(&word)
            .and_then(|t| tables.postings.get(&t))
        else {
            continue;
        };
        #[allow(clippy::cast_precision_loss)]
        let df = postings.len() as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for p in postings {
            let Some(len) = tables
                .file(p.file)
                .and_then(|f| f.chunks.get(p.chunk as usize))
                .map(|c| c.len)
            else {
                continue;
            };
            let tf = f32::from(p.tf);
            #[allow(clippy::cast_precision_loss)]
            let norm = K1 * (1.0 - B + B * len as f32 / avgdl);
            *scores.entry((p.file, p.chunk)).or_default() += idf * tf * (K1 + 1.0) / (tf + norm);
        }
    }
    let mut ranked: Vec<((u32, u32), f32)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}
