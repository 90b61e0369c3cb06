//! The runtime's code index (SPEC §22): built in the background when the runtime starts, refreshed before each
//! search, told about the agent's own writes, and (when `search.embeddings` is set) embedded in the background.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot_protocol::ErrorKind;
use codepilot_protocol::Event;
use codepilot_protocol::RuntimeErrorEvent;
use codepilot_search::BuildState;
use codepilot_search::CodeIndex;
use codepilot_search::Embedder;
use codepilot_search::IndexOptions;

use crate::events::EventBus;

/// How long a search waits for the first build before answering that the index is still being built.
const FIRST_BUILD_WAIT: Duration = Duration::from_secs(60);
/// Chunks embedded per background round before the vectors are stored.
const EMBED_ROUND: usize = 1024;
/// The least time between two background saves of the index.
const SAVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a query's own embedding may take before search answers lexically.
const QUERY_EMBED_TIMEOUT: Duration = Duration::from_secs(10);

/// What makes two runtimes' indexes the same index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    root: PathBuf,
    store_dir: PathBuf,
    max_file_bytes: u64,
    embeddings: Option<(String, String)>,
}

/// The indexes alive in this process: runtimes on one work dir (a daemon's sessions, a runtime and its workers)
/// share one index instead of each building and holding its own.
static LIVE: Mutex<Vec<(Key, Weak<CodeSearch>)>> = Mutex::new(Vec::new());

/// The index of one work dir and what feeds it; shared by every runtime of this process on that work dir.
pub(crate) struct CodeSearch {
    pub(crate) index: Arc<CodeIndex>,
    embedder: Option<Embedder>,
    /// The event buses of the runtimes using it (not workers': theirs reach their parent's anyway).
    events: Mutex<Vec<Weak<EventBus>>>,
    /// Whether the embeddings endpoint failed (warned once; later searches are lexical).
    embeddings_down: AtomicBool,
    embedding: AtomicBool,
    /// A background save of the index is running.
    saving: AtomicBool,
    /// When the index was last stored by [`CodeSearch::save_soon`].
    saved_at: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for CodeSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeSearch")
            .field("root", &self.index.root())
            .finish_non_exhaustive()
    }
}

impl CodeSearch {
    /// The index of `root` stored under `store_dir`, with `embedder` if configured: the one this process already
    /// has for them, or a new one whose first build starts at once on a thread of its own.
    pub(crate) fn start(
        root: &std::path::Path,
        store_dir: PathBuf,
        max_file_bytes: u64,
        embedder: Option<Embedder>,
    ) -> Result<Arc<Self>, codepilot_search::SearchError> {
        let key = Key {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
            store_dir: store_dir.clone(),
            max_file_bytes,
            embeddings: embedder
                .as_ref()
                .map(|e| (e.url().to_owned(), e.model().to_owned())),
        };
        let mut live = LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|(_, search)| search.strong_count() > 0);
        if let Some(search) = live
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, s)| s.upgrade())
        {
            return Ok(search);
        }
        let search = Self::new(root, store_dir, max_file_bytes, embedder)?;
        live.push((key, Arc::downgrade(&search)));
        Ok(search)
    }

    fn new(
        root: &std::path::Path,
        store_dir: PathBuf,
        max_file_bytes: u64,
        embedder: Option<Embedder>,
    ) -> Result<Arc<Self>, codepilot_search::SearchError> {
        let index = Arc::new(CodeIndex::new(
            root,
            IndexOptions {
                store_dir: Some(store_dir),
                max_file_bytes,
                ..IndexOptions::default()
            },
        )?);
        let search = Arc::new(Self {
            index,
            embedder,
            events: Mutex::new(Vec::new()),
            embeddings_down: AtomicBool::new(false),
            embedding: AtomicBool::new(false),
            saving: AtomicBool::new(false),
            saved_at: Mutex::new(None),
        });
        let building = Arc::clone(&search);
        let handle = tokio::runtime::Handle::try_current().ok();
        let spawned = std::thread::Builder::new()
            .name("codepilot-index".to_owned())
            .spawn(move || {
                if let Err(e) = building.index.build() {
                    building.warn(format!(
                        "the code index could not be built: {e}; the search tools will say so"
                    ));
                    return;
                }
                if let (Some(embedder), Some(handle)) = (&building.embedder, handle) {
                    building.index.load_vectors(embedder.model());
                    drop(handle.spawn(Self::embed_pending(Arc::downgrade(&building))));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the code index thread: {e}");
        }
        Ok(search)
    }

    /// Sends warnings to this runtime's events too.
    pub(crate) fn attach(&self, events: &Arc<EventBus>) {
        let mut buses = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buses.retain(|b| b.strong_count() > 0);
        buses.push(Arc::downgrade(events));
    }

    fn warn(&self, message: String) {
        tracing::warn!("{message}");
        let buses: Vec<Arc<EventBus>> = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for bus in buses {
            bus.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Search,
                message: message.clone(),
            }));
        }
    }

    /// Embeds the chunks that have no vector yet, a round at a time, storing the vectors after each round. Stops
    /// (with one warning) when the endpoint fails.
    async fn embed_pending(this: Weak<Self>) {
        let Some(me) = this.upgrade() else { return };
        if me.embedder.is_none() || me.embedding.swap(true, Ordering::AcqRel) {
            return;
        }
        drop(me);
        // A round at a time, holding the index only while working on it: a runtime that is gone stops this.
        while let Some(me) = this.upgrade() {
            let Some(embedder) = me.embedder.clone() else {
                break;
            };
            let index = Arc::clone(&me.index);
            let model = embedder.model().to_owned();
            // The stored vectors first (once): embedding without them would pay for vectors already on disk.
            let loading = Arc::clone(&index);
            if tokio::task::spawn_blocking(move || loading.load_vectors(&model))
                .await
                .is_err()
            {
                break;
            }
            let Ok(pending) =
                tokio::task::spawn_blocking(move || index.pending_embeddings(EMBED_ROUND)).await
            else {
                break;
            };
            if pending.is_empty() {
                break;
            }
            let mut failed = None;
            for batch in pending.chunks(embedder.batch_size()) {
                let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
                match embedder.embed(&texts).await {
                    Ok(vectors) => me
                        .index
                        .add_vectors(batch.iter().map(|(h, _)| *h).zip(vectors)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let index = Arc::clone(&me.index);
            let saved = tokio::task::spawn_blocking(move || index.save_vectors()).await;
            if let Ok(Err(e)) = saved {
                tracing::warn!("{e}");
            }
            if let Some(e) = failed {
                me.endpoint_down(&e);
                break;
            }
        }
        if let Some(me) = this.upgrade() {
            me.embedding.store(false, Ordering::Release);
        }
    }

    fn endpoint_down(&self, e: &codepilot_search::SearchError) {
        if !self.embeddings_down.swap(true, Ordering::AcqRel) {
            self.warn(format!(
                "{e}; code search goes on with lexical and structural ranking only"
            ));
        }
    }

    /// Waits for the first build, then brings the index up to date with the work dir (files changed by the shell
    /// or anyone else). An error message for the model when the index is not there.
    pub(crate) async fn fresh(self: &Arc<Self>) -> Result<(), String> {
        let me = Arc::clone(self);
        let outcome = tokio::task::spawn_blocking(move || {
            // Never started (the build thread could not be spawned) or failed: build here, now.
            if matches!(me.index.state().0, BuildState::NotBuilt | BuildState::Failed) {
                return me.index.build().map(|_| ()).map_err(|e| {
                    format!("the code index could not be built: {e}; use find() instead")
                });
            }
            if !me.index.wait_ready(FIRST_BUILD_WAIT) {
                let (state, progress, error) = me.index.state();
                return Err(match (state, progress, error) {
                    (_, _, Some(e)) => format!("the code index could not be built: {e}; use find() instead"),
                    (_, Some((done, total)), _) => format!(
                        "the code index is still being built ({done} of {total} files); use find() meanwhile or \
                         try again shortly"
                    ),
                    _ => "the code index is still being built; use find() meanwhile or try again shortly".to_owned(),
                });
            }
            me.index.refresh().map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the code index task failed: {e}"))?;
        if outcome.is_ok() {
            self.save_soon();
            if self.embedder.is_some() && !self.embeddings_down.load(Ordering::Acquire) {
                drop(tokio::spawn(Self::embed_pending(Arc::downgrade(self))));
            }
        }
        outcome
    }

    /// Stores the index (when it changed) on a blocking thread, one save at a time and at most once per
    /// [`SAVE_INTERVAL`], so no step waits for it and an agent writing a file every step does not re-store a large
    /// index every step. What is not stored yet costs the next start only a re-read of the changed files.
    fn save_soon(self: &Arc<Self>) {
        {
            let saved_at = self
                .saved_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if saved_at.is_some_and(|t| t.elapsed() < SAVE_INTERVAL) {
                return;
            }
        }
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        *self
            .saved_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        let me = Arc::clone(self);
        drop(tokio::task::spawn_blocking(move || {
            if let Err(e) = me.index.save_if_dirty() {
                tracing::warn!("{e}");
            }
            me.saving.store(false, Ordering::Release);
        }));
    }

    /// The query's embedding, when embeddings are configured and the endpoint answers.
    pub(crate) async fn query_vector(&self, query: &str) -> Option<Vec<f32>> {
        let embedder = self.embedder.as_ref()?;
        if self.embeddings_down.load(Ordering::Acquire) {
            return None;
        }
        match tokio::time::timeout(QUERY_EMBED_TIMEOUT, embedder.embed(&[query.to_owned()])).await {
            Ok(Ok(mut v)) => v.pop(),
            Ok(Err(e)) => {
                self.endpoint_down(&e);
                None
            }
            Err(_) => {
                self.endpoint_down(&codepilot_search::SearchError::Embeddings(format!(
                    "embedding the query took over {}s",
                    QUERY_EMBED_TIMEOUT.as_secs()
                )));
                None
            }
        }
    }

    /// The note a search result carries about how it ranked: given once per runtime (`told`) when there are no
    /// embeddings.
    pub(crate) fn ranking_note(&self, told: &AtomicBool) -> Option<String> {
        if let Some(embedder) = &self.embedder {
            if self.embeddings_down.load(Ordering::Acquire) {
                return (!told.swap(true, Ordering::AcqRel)).then(|| {
                    "embeddings unavailable: lexical and structural ranking only".to_owned()
                });
            }
            let (have, all) = self.index.vector_coverage();
            return (have < all).then(|| {
                format!(
                    "{have} of {all} chunks embedded so far ({})",
                    embedder.model()
                )
            });
        }
        (!told.swap(true, Ordering::AcqRel)).then(|| {
            "lexical and structural ranking; set search.embeddings for vector similarity".to_owned()
        })
    }

    /// Reads files the agent just wrote into the index, off the step's path.
    pub(crate) fn wrote(self: &Arc<Self>, path: PathBuf) {
        let me = Arc::clone(self);
        drop(tokio::task::spawn_blocking(move || {
            me.index.update_paths(&[path]);
            me.save_soon();
        }));
    }
}
