//! The code index on real trees: cold build, warm start, one-edit update, query latency per mode, size and memory.
//!
//! `cargo bench -p codepilot-search --bench search -- DIR…` (`scripts/bench-search.sh` fetches Django's sdist and runs
//! it on that and on this repository, beside aider's repo map and ripgrep). Prints one Markdown table row per tree.
// A benchmark stops at its first failure, and prints its table.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use codepilot_search::CodeIndex;
use codepilot_search::IndexOptions;
use codepilot_search::TraceDirection;

/// Natural-language queries for `search` mode; the same ten on every tree.
const QUESTIONS: [&str; 10] = [
    "parse the configuration file",
    "validate user password",
    "open a database connection",
    "render a template with context",
    "handle http request errors",
    "read a file from disk",
    "compute a hash of the content",
    "register a command line argument",
    "serialize the object to json",
    "cache the result of a function",
];

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let at = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[at]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 0.1 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.0}")
    }
}

fn open(root: &Path, store: &Path) -> CodeIndex {
    CodeIndex::new(
        root,
        IndexOptions {
            store_dir: Some(store.to_path_buf()),
            ..IndexOptions::default()
        },
    )
    .expect("the tree can be indexed")
}

fn time_queries(mut f: impl FnMut(usize), n: usize) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i);
        samples.push(started.elapsed());
    }
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.95),
    )
}

/// The names most called in the index that it also defines: what a trace would be asked about.
fn busy_names(index: &CodeIndex) -> Vec<String> {
    let map = index.repo_map(4096, &[]);
    let mut names: Vec<String> = map
        .text
        .lines()
        .filter_map(|l| l.split('│').nth(1))
        .filter_map(|sig| {
            let sig = sig.trim();
            let rest = sig
                .strip_prefix("def ")
                .or_else(|| sig.strip_prefix("pub fn "))
                .or_else(|| sig.strip_prefix("fn "))?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (name.len() > 3).then_some(name)
        })
        .collect();
    names.dedup();
    names.truncate(10);
    names
}

fn bench(root: &Path) {
    let store = tempfile::tempdir().expect("a temporary folder");
    // Cold: nothing stored; the best of three (each from scratch).
    let mut cold = Vec::new();
    let mut files = 0;
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(store.path());
        let index = open(root, store.path());
        let started = Instant::now();
        let stats = index.build().expect("the build");
        cold.push(started.elapsed());
        files = stats.scanned;
    }
    let cold_p50 = percentile(&mut cold, 0.5);
    // Warm: a new runtime on the same tree loads the stored index and checks every file's fingerprint.
    std::thread::sleep(Duration::from_millis(100));
    let index = open(root, store.path());
    let started = Instant::now();
    let stats = index.build().expect("the warm start");
    let warm = started.elapsed();
    assert!(stats.loaded && stats.updated == 0, "{stats:?}");
    let status = index.status();
    let bytes = status.bytes.unwrap_or(0);

    // One edit: a new function appended to a file, then the refresh a search does first (walk + re-parse), and
    // the agent's own write path (`update_paths`).
    let target = busy_file(&index, root);
    let original = std::fs::read_to_string(&target).expect("the edited file");
    let mut refresh = Vec::new();
    let mut own = Vec::new();
    for i in 0..20 {
        std::fs::write(
            &target,
            format!("{original}\n\ndef bench_added_{i}(x):\n    return x\n"),
        )
        .expect("edit");
        std::thread::sleep(Duration::from_millis(60));
        let started = Instant::now();
        let s = index.refresh().expect("refresh");
        refresh.push(started.elapsed());
        assert_eq!(s.updated, 1, "{s:?}");
        std::fs::write(
            &target,
            format!("{original}\n\ndef bench_own_{i}(x):\n    return x\n"),
        )
        .expect("edit");
        let started = Instant::now();
        index.update_paths(std::slice::from_ref(&target));
        own.push(started.elapsed());
    }
    std::fs::write(&target, &original).expect("restore the edited file");
    index.refresh().expect("refresh");
    let (refresh_p50, refresh_p95) = (
        percentile(&mut refresh, 0.5),
        percentile(&mut refresh, 0.95),
    );
    let (own_p50, _) = (percentile(&mut own, 0.5), ());

    let names = busy_names(&index);
    let name = |i: usize| {
        names
            .get(i % names.len().max(1))
            .cloned()
            .unwrap_or_else(|| "main".to_owned())
    };
    let search = time_queries(
        |i| drop(index.search(QUESTIONS[i % QUESTIONS.len()], 5, None)),
        50,
    );
    let callers = time_queries(
        |i| drop(index.trace(&name(i), TraceDirection::Callers, 2)),
        50,
    );
    let callees = time_queries(
        |i| drop(index.trace(&name(i), TraceDirection::Callees, 2)),
        50,
    );
    let graph = time_queries(
        |i| drop(index.trace(&name(i), TraceDirection::Graph, 2)),
        50,
    );
    let definition = time_queries(|i| drop(index.definition(&name(i))), 50);
    let references = time_queries(|i| drop(index.references(&name(i))), 50);
    let fresh = open(root, store.path());
    fresh.build().expect("load");
    let started = Instant::now();
    drop(fresh.repo_map(1024, &[]));
    let map_first = started.elapsed();
    let map = time_queries(|_| drop(index.repo_map(1024, &[])), 20);

    println!(
        "| {} | {files} | {} | {} | {} / {} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {} (cached {}) | {:.1} |",
        root.file_name().map_or_else(
            || root.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        ),
        ms(cold_p50),
        ms(warm),
        ms(refresh_p50),
        ms(refresh_p95),
        ms(own_p50),
        ms(search.0),
        ms(search.1),
        ms(callers.0),
        ms(callers.1),
        ms(callees.0),
        ms(callees.1),
        ms(graph.0),
        ms(graph.1),
        ms(definition.0),
        ms(definition.1),
        ms(references.0),
        ms(references.1),
        ms(map_first),
        ms(map.0),
        bytes as f64 / (1024.0 * 1024.0),
    );
}

/// A Python (or any parsed) file of the tree that the index knows, to edit.
fn busy_file(index: &CodeIndex, root: &Path) -> PathBuf {
    let map = index.repo_map(256, &[]);
    let file = map
        .files
        .iter()
        .find(|f| f.ends_with(".py"))
        .or(map.files.first())
        .expect("a parsed file");
    root.join(file)
}

fn main() {
    let trees: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if trees.is_empty() {
        eprintln!("usage: cargo bench -p codepilot-search --bench search -- DIR…");
        return;
    }
    println!(
        "| tree | files | cold build ms | warm start ms | one edit: refresh p50 / p95 ms | agent's write ms | search p50 / p95 | trace_callers | trace_callees | trace_graph | definition | references | repo_map ms | index MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for tree in trees {
        bench(&tree);
    }
}
