//! Code search for CodePilot (SPEC §22): an index of a work dir that knows definitions, references and calls in
//! Python, JavaScript, TypeScript, Rust, Go, Java, C and C++ (tree-sitter), ranks chunks of code and text by BM25
//! over identifiers split into words, draws a repo map ranked by PageRank, and — only when an embeddings endpoint is
//! configured — fuses vector similarity into the ranking.
//!
//! The index respects `.gitignore`, never follows symlinks, skips binary, minified and oversized files, is built on
//! all cores, kept fresh by file fingerprints ([`CodeIndex::refresh`]) and stored under a folder the host names
//! (the runtime uses `CODEPILOT_HOME/index/`).
//!
//! ```no_run
//! use codepilot_search::{CodeIndex, IndexOptions, TraceDirection};
//!
//! let index = CodeIndex::new(std::path::Path::new("."), IndexOptions::default())?;
//! index.build()?;
//! for hit in index.search("parse the config file", 5, None) {
//!     println!("{}:{} {:?}", hit.file, hit.start_line, hit.symbol);
//! }
//! let callers = index.trace("load_config", TraceDirection::Callers, 2);
//! # Ok::<(), codepilot_search::SearchError>(())
//! ```

mod embed;
mod graph;
mod index;
mod lang;
mod model;
mod parse;
mod query;
pub mod render;
mod store;
mod text;
mod walk;

use std::path::PathBuf;

pub use embed::Embedder;
pub use embed::EmbeddingsConfig;
pub use graph::DEFAULT_REPO_MAP_TOKENS;
pub use index::BuildState;
pub use index::CodeIndex;
pub use index::DEFAULT_MAX_FILE_BYTES;
pub use index::IndexOptions;
pub use index::IndexStatus;
pub use index::RefreshStats;
pub use index::store_key;
pub use lang::Lang;
pub use model::CallEdge;
pub use model::RefKind;
pub use model::Reference;
pub use model::RepoMap;
pub use model::SearchHit;
pub use model::SkipReason;
pub use model::Symbol;
pub use model::SymbolKind;
pub use parse::check_grammars;
pub use query::TraceDirection;

/// What can go wrong building, storing or asking the index.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The work dir is missing or unreadable.
    #[error("cannot index {path}: {source}; check that the work dir exists and is readable")]
    WorkDir {
        /// The work dir.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the stored index failed.
    #[error("cannot store the code index at {path}: {source}; check CODEPILOT_HOME is writable")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The index could not be encoded.
    #[error("cannot encode the code index: {0}")]
    Encode(String),
    /// The embeddings endpoint failed or is misconfigured.
    #[error("embeddings: {0}")]
    Embeddings(String),
}

/// A fast, non-cryptographic hasher (rustc's Fx) for the index's many small string and integer keys; its maps are
/// never keyed by anything an attacker picks to collide on purpose beyond slowing their own index down.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        for b in chunks.remainder() {
            self.add(u64::from(*b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
