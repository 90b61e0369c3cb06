mod embeddings;
mod languages;
mod updates;

use std::path::Path;

use codepilot_search::CodeIndex;
use codepilot_search::IndexOptions;

/// Writes `files` (path, content) under `root`, then [`settle`]s.
pub(crate) fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    settle();
}

/// Waits out the index's racy window (a file changed within 50 ms of a scan is read again at the next one), so
/// counts of files read are exact.
pub(crate) fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(60));
}

/// An index of `root`, stored in `store` when given, built.
pub(crate) fn built(root: &Path, store: Option<&Path>) -> CodeIndex {
    let index = CodeIndex::new(
        root,
        IndexOptions {
            store_dir: store.map(Path::to_path_buf),
            threads: 2,
            ..IndexOptions::default()
        },
    )
    .unwrap();
    index.build().unwrap();
    index
}

/// `file:line kind qualified` for each definition of `name`.
pub(crate) fn defs(index: &CodeIndex, name: &str) -> Vec<String> {
    index
        .definition(name)
        .iter()
        .map(|s| {
            format!(
                "{}:{} {} {}",
                s.file,
                s.line,
                s.kind.as_str(),
                s.qualified()
            )
        })
        .collect()
}

/// `caller → callee @line` for each edge.
pub(crate) fn edges(edges: &[codepilot_search::CallEdge]) -> Vec<String> {
    edges
        .iter()
        .map(|e| {
            format!(
                "{} → {} @{}:{} d{}",
                e.caller, e.callee, e.file, e.line, e.depth
            )
        })
        .collect()
}
