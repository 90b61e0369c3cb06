//! Optional embeddings: an OpenAI-compatible `/embeddings` client, the chunk vectors (kept beside the index, keyed
//! by a hash of each chunk's text so only changed chunks are embedded again) and their fusion with the lexical ranking.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::CodeIndex;
use crate::SearchError;
use crate::store::Tables;

/// Characters of a chunk sent to be embedded.
const MAX_EMBED_CHARS: usize = 6000;
/// Candidates each ranking contributes to the fusion.
const FUSE_DEPTH: usize = 200;
/// Reciprocal-rank fusion's constant.
const RRF_K: f32 = 60.0;
const MAGIC: &[u8; 8] = b"CPVECS1\0";

/// Where embeddings come from (`search.embeddings` in the agent file).
#[derive(Clone)]
pub struct EmbeddingsConfig {
    /// The API's base URL, e.g. `https://api.openai.com/v1`; `/embeddings` is appended.
    pub base_url: String,
    /// The embedding model.
    pub model: String,
    /// The key, sent as a bearer token (never logged or shown).
    pub api_key: Option<String>,
    /// Texts per request.
    pub batch_size: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for EmbeddingsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// A client of an OpenAI-compatible embeddings endpoint.
#[derive(Debug, Clone)]
pub struct Embedder {
    cfg: EmbeddingsConfig,
    url: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

impl Embedder {
    /// A client for `cfg`.
    ///
    /// # Errors
    /// [`SearchError::Embeddings`] when the base URL is not `http(s)://…` or the client cannot be built.
    pub fn new(cfg: EmbeddingsConfig) -> Result<Self, SearchError> {
        let base = cfg.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SearchError::Embeddings(format!(
                "search.embeddings.base_url `{base}` must start with http:// or https://"
            )));
        }
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| SearchError::Embeddings(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            url: format!("{base}/embeddings"),
            cfg,
            client,
        })
    }

    /// The endpoint embeddings are asked of (`…/embeddings`).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The model's name.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// Texts per request.
    #[must_use]
    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size.max(1)
    }

    /// Embeds `texts`, one vector each, in order.
    ///
    /// # Errors
    /// [`SearchError::Embeddings`] when the endpoint cannot be reached, answers with an error or with a body that
    /// is not one embedding per text.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, SearchError> {
        let mut request = self.client.post(&self.url).json(&Request {
            model: &self.cfg.model,
            input: texts,
        });
        if let Some(key) = self.cfg.api_key.as_deref().filter(|k| !k.trim().is_empty()) {
            request = request.bearer_auth(key.trim());
        }
        let response = request.send().await.map_err(|e| {
            SearchError::Embeddings(format!(
                "{} cannot be reached: {}",
                self.url,
                e.without_url()
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let excerpt: String = body.chars().take(300).collect();
            return Err(SearchError::Embeddings(format!(
                "{} answered {status}: {excerpt}",
                self.url
            )));
        }
        let body: Response = response.json().await.map_err(|e| {
            SearchError::Embeddings(format!(
                "{} sent a body that is not an embeddings list: {e}",
                self.url
            ))
        })?;
        if body.data.len() != texts.len() {
            return Err(SearchError::Embeddings(format!(
                "{} sent {} embeddings for {} texts",
                self.url,
                body.data.len(),
                texts.len()
            )));
        }
        let mut data = body.data;
        if data.iter().all(|d| d.index.is_some()) {
            data.sort_by_key(|d| d.index);
        }
        Ok(data.into_iter().map(|d| normalized(d.embedding)).collect())
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Vectors {
    model: String,
    map: HashMap<u64, Vec<f32>>,
}

/// The chunk vectors of one index, by chunk-text hash, for one model.
#[derive(Debug)]
pub(crate) struct VectorStore {
    path: Option<PathBuf>,
    inner: RwLock<Vectors>,
}

impl VectorStore {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            inner: RwLock::new(Vectors::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vectors> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vectors> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Chunks (of `tables`) that have a vector / in all.
    fn coverage(&self, tables: &Tables) -> (usize, usize) {
        let vectors = self.read();
        let mut have = 0;
        let mut all = 0;
        for (_, f) in tables.entries() {
            for c in &f.chunks {
                all += 1;
                have += usize::from(vectors.map.contains_key(&c.hash));
            }
        }
        (have, all)
    }

    /// Reciprocal-rank fusion of the lexical ranking with cosine similarity to `query`.
    pub(crate) fn fuse(
        &self,
        tables: &Tables,
        lexical: Vec<((u32, u32), f32)>,
        query: &[f32],
    ) -> Vec<((u32, u32), f32)> {
        let query = normalized(query.to_vec());
        let vectors = self.read();
        let mut similar: Vec<((u32, u32), f32)> = Vec::new();
        for (id, f) in tables.entries() {
            for (c, chunk) in f.chunks.iter().enumerate() {
                if let Some(v) = vectors.map.get(&chunk.hash)
                    && v.len() == query.len()
                {
                    let sim: f32 = v.iter().zip(&query).map(|(a, b)| a * b).sum();
                    similar.push(((id, u32::try_from(c).unwrap_or(u32::MAX)), sim));
                }
            }
        }
        similar.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut fused: HashMap<(u32, u32), f32> = HashMap::new();
        for list in [&lexical, &similar] {
            for (rank, (key, _)) in list.iter().take(FUSE_DEPTH).enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let r = rank as f32;
                *fused.entry(*key).or_default() += 1.0 / (RRF_K + r + 1.0);
            }
        }
        let mut out: Vec<((u32, u32), f32)> = fused.into_iter().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// A chunk to embed: its text hash, its lines, its definition's name.
type Wanted = (u64, u32, u32, Option<String>);

impl CodeIndex {
    /// Loads the stored vectors of `model` (vectors of another model are dropped); nothing to do when they are
    /// loaded already.
    pub fn load_vectors(&self, model: &str) {
        if self.vectors.read().model == model {
            return;
        }
        let stored = self
            .vectors
            .path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| b.strip_prefix(MAGIC.as_slice()).map(<[u8]>::to_vec))
            .and_then(|rest| zstd::decode_all(rest.as_slice()).ok())
            .and_then(|raw| postcard::from_bytes::<Vectors>(&raw).ok())
            .filter(|v| v.model == model);
        let mut vectors = self.vectors.write();
        *vectors = stored.unwrap_or_else(|| Vectors {
            model: model.to_owned(),
            map: HashMap::new(),
        });
    }

    /// Chunks without a vector yet: (text hash, text to embed), at most `limit`.
    #[must_use]
    pub fn pending_embeddings(&self, limit: usize) -> Vec<(u64, String)> {
        let tables = self.read_tables();
        let vectors = self.vectors.read();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut by_file: Vec<(&str, Vec<Wanted>)> = Vec::new();
        for (_, f) in tables.entries() {
            let wanted: Vec<Wanted> = f
                .chunks
                .iter()
                .filter(|c| !vectors.map.contains_key(&c.hash) && seen.insert(c.hash))
                .map(|c| {
                    let symbol = c
                        .symbol
                        .and_then(|d| f.defs.get(d as usize))
                        .map(|d| d.name.clone());
                    (c.hash, c.start, c.end, symbol)
                })
                .collect();
            if !wanted.is_empty() {
                by_file.push((f.path.as_str(), wanted));
            }
            if seen.len() >= limit {
                break;
            }
        }
        for (path, chunks) in by_file {
            let lines = self.lines(path, 1, u32::MAX - 1);
            for (hash, start, end, symbol) in chunks {
                if out.len() >= limit {
                    return out;
                }
                let body_lines = lines
                    .get(start.saturating_sub(1) as usize..(end as usize).min(lines.len()))
                    .unwrap_or_default();
                // The file changed since it was indexed: its vector would be stored under text it no longer has.
                // The next refresh re-reads it, and the chunk gets its turn then.
                let mut check = crate::index::TextHash::default();
                body_lines.iter().for_each(|l| check.line(l));
                if check.finish() != hash {
                    continue;
                }
                let body = body_lines.join("\n");
                let mut text = match symbol {
                    Some(s) => format!("{path}: {s}\n{body}"),
                    None => format!("{path}\n{body}"),
                };
                if let Some((at, _)) = text.char_indices().nth(MAX_EMBED_CHARS) {
                    text.truncate(at);
                }
                out.push((hash, text));
            }
        }
        out
    }

    /// Stores vectors computed for [`CodeIndex::pending_embeddings`].
    pub fn add_vectors(&self, vectors: impl IntoIterator<Item = (u64, Vec<f32>)>) {
        let mut store = self.vectors.write();
        store
            .map
            .extend(vectors.into_iter().map(|(h, v)| (h, normalized(v))));
    }

    /// Chunks with a vector, and chunks in all.
    #[must_use]
    pub fn vector_coverage(&self) -> (usize, usize) {
        self.vectors.coverage(&self.read_tables())
    }

    /// Writes the vectors beside the index, dropping those of chunks no longer in it.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save_vectors(&self) -> Result<(), SearchError> {
        let Some(path) = self.vectors.path.clone() else {
            return Ok(());
        };
        // Never loaded: writing would replace the stored vectors with nothing.
        if self.vectors.read().model.is_empty() {
            return Ok(());
        }
        let live: std::collections::HashSet<u64> = {
            let tables = self.read_tables();
            tables
                .entries()
                .flat_map(|(_, f)| f.chunks.iter().map(|c| c.hash))
                .collect()
        };
        let raw = {
            let mut vectors = self.vectors.write();
            vectors.map.retain(|h, _| live.contains(h));
            postcard::to_stdvec(&*vectors).map_err(|e| SearchError::Encode(e.to_string()))?
        };
        let io = |source| SearchError::Io {
            path: path.clone(),
            source,
        };
        let mut packed = MAGIC.to_vec();
        packed.extend(zstd::encode_all(raw.as_slice(), 1).map_err(io)?);
        crate::index::write_atomically(&path, &packed).map_err(io)
    }
}
