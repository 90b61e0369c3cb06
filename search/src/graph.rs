//! The repo map: files ranked by PageRank over a graph of who uses whose definitions (Aider's idea), personalised
//! toward focus files, each with its most important definitions, cut to a token budget.

use crate::FxMap;
use std::fmt::Write as _;

use crate::CodeIndex;
use crate::model::RepoMap;
use crate::model::SymbolKind;
use crate::store::Tables;

const DAMPING: f64 = 0.85;
const ITERATIONS: usize = 30;
/// The repo map's token budget unless one is asked for (`repo_map(max_tokens=…)`, `codepilot index map`).
pub const DEFAULT_REPO_MAP_TOKENS: usize = 1024;
/// Characters per token, for the budget (a close enough estimate for code).
const CHARS_PER_TOKEN: usize = 4;

/// Definition ranks computed for one version of the index and one focus.
#[derive(Debug)]
pub(crate) struct RankCache {
    generation: u64,
    focus: Vec<String>,
    /// (file id, def index, rank), best first.
    ranked: Vec<(u32, u32, f64)>,
}

/// How much a use of `name` says about the file that defines it.
fn weight(name: &str, definers: usize, uses: usize) -> f64 {
    let mut w = f64::from(u32::try_from(uses).unwrap_or(u32::MAX)).sqrt();
    let distinctive = name.len() >= 8
        && (name.contains('_')
            || name.chars().any(char::is_uppercase) && name.chars().any(char::is_lowercase));
    if distinctive {
        w *= 10.0;
    }
    if name.starts_with('_') || definers > 5 {
        w *= 0.1;
    }
    w
}

fn rank(tables: &Tables, focus: &[String]) -> Vec<(u32, u32, f64)> {
    let ids: Vec<u32> = tables.entries().map(|(id, _)| id).collect();
    let slot: FxMap<u32, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let n = ids.len();
    if n == 0 {
        return Vec::new();
    }
    // Edges: user file → (definer file, def index), weighted.
    let mut edges: Vec<Vec<(usize, u32, u32, f64)>> = vec![Vec::new(); n];
    for (i, id) in ids.iter().enumerate() {
        let Some(file) = tables.file(*id) else {
            continue;
        };
        for (name, lines) in file.refs.iter() {
            let Some(defs) = tables.defs.get(name) else {
                continue;
            };
            let definers: Vec<&(u32, u32)> = defs
                .iter()
                .filter(|(f, d)| {
                    *f != *id
                        && tables
                            .file(*f)
                            .and_then(|x| x.defs.get(*d as usize))
                            .is_some_and(|x| x.kind != SymbolKind::Declaration)
                })
                .collect();
            if definers.is_empty() {
                continue;
            }
            let w = weight(name, definers.len(), lines.len());
            for (f, d) in definers {
                if let Some(&j) = slot.get(f) {
                    edges[i].push((j, *f, *d, w));
                }
            }
        }
    }
    // Personalisation: the focus files (by path or path suffix), else every file alike.
    let mut personal = vec![0.0f64; n];
    for (i, id) in ids.iter().enumerate() {
        if let Some(file) = tables.file(*id)
            && focus
                .iter()
                .any(|f| file.path == *f || file.path.ends_with(&format!("/{f}")))
        {
            personal[i] = 1.0;
        }
    }
    let total: f64 = personal.iter().sum();
    if total == 0.0 {
        personal.fill(1.0);
    }
    let total: f64 = personal.iter().sum();
    personal.iter_mut().for_each(|p| *p /= total);
    let out_weight: Vec<f64> = edges.iter().map(|e| e.iter().map(|x| x.3).sum()).collect();
    let mut pr = personal.clone();
    for _ in 0..ITERATIONS {
        let mut next: Vec<f64> = personal.iter().map(|p| (1.0 - DAMPING) * p).collect();
        let mut dangling = 0.0;
        for i in 0..n {
            if out_weight[i] == 0.0 {
                dangling += pr[i];
                continue;
            }
            for &(j, _, _, w) in &edges[i] {
                next[j] += DAMPING * pr[i] * w / out_weight[i];
            }
        }
        for (x, p) in next.iter_mut().zip(&personal) {
            *x += DAMPING * dangling * p;
        }
        pr = next;
    }
    // A definition's rank: the share of rank its users send it.
    let mut defs: FxMap<(u32, u32), f64> = FxMap::default();
    for i in 0..n {
        for &(_, f, d, w) in &edges[i] {
            *defs.entry((f, d)).or_default() += pr[i] * w / out_weight[i];
        }
    }
    // Files nobody uses still show their top-level definitions, below the used ones.
    for (i, id) in ids.iter().enumerate() {
        let Some(file) = tables.file(*id) else {
            continue;
        };
        for (d, def) in file.defs.iter().enumerate() {
            if def.container.is_none() && def.kind != SymbolKind::Declaration {
                defs.entry((*id, u32::try_from(d).unwrap_or(u32::MAX)))
                    .or_insert(pr[i] * 1e-3);
            }
        }
    }
    let mut ranked: Vec<(u32, u32, f64)> = defs.into_iter().map(|((f, d), r)| (f, d, r)).collect();
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    ranked
}

impl CodeIndex {
    /// The repo map: the files most used by others (or by the `focus` files) with their most important definitions'
    /// signatures, within about `max_tokens` tokens (4 characters each).
    #[must_use]
    pub fn repo_map(&self, max_tokens: usize, focus: &[String]) -> RepoMap {
        let tables = self.read_tables();
        let mut focus: Vec<String> = focus
            .iter()
            .map(|f| f.trim_start_matches("./").to_owned())
            .collect();
        focus.sort();
        let ranked = {
            let mut cache = self
                .rank_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match cache.as_ref() {
                Some(c) if c.generation == tables.generation && c.focus == focus => {
                    c.ranked.clone()
                }
                _ => {
                    let ranked = rank(&tables, &focus);
                    *cache = Some(RankCache {
                        generation: tables.generation,
                        focus: focus.clone(),
                        ranked: ranked.clone(),
                    });
                    ranked
                }
            }
        };
        let budget = max_tokens.max(1) * CHARS_PER_TOKEN;
        // Definitions in rank order, grouped by file in the order files first appear.
        let mut order: Vec<u32> = Vec::new();
        let mut chosen: FxMap<u32, Vec<u32>> = FxMap::default();
        let mut used = 0usize;
        for (f, d, _) in ranked {
            let Some(file) = tables.file(f) else { continue };
            let Some(def) = file.defs.get(d as usize) else {
                continue;
            };
            let header = if chosen.contains_key(&f) {
                0
            } else {
                file.path.len() + 2
            };
            let line = def.signature.len() + 10;
            if used + header + line > budget {
                if used > 0 {
                    break;
                }
                continue;
            }
            used += header + line;
            if header > 0 {
                order.push(f);
            }
            chosen.entry(f).or_default().push(d);
        }
        let mut text = String::new();
        let mut files = Vec::new();
        for f in order {
            let Some(file) = tables.file(f) else { continue };
            let mut defs = chosen.remove(&f).unwrap_or_default();
            defs.sort_unstable_by_key(|d| file.defs.get(*d as usize).map_or(0, |x| x.line));
            let _ = writeln!(text, "{}:", file.path);
            for d in defs {
                if let Some(def) = file.defs.get(d as usize) {
                    let indent = if def.container.is_some() {
                        "    "
                    } else {
                        "  "
                    };
                    let _ = writeln!(text, "{:>5}│{indent}{}", def.line, def.signature);
                }
            }
            files.push(file.path.clone());
        }
        RepoMap {
            text,
            files,
            total_files: tables.by_path.len(),
        }
    }
}
