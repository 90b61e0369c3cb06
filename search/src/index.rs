//! [`CodeIndex`]: the index of one work dir, built in the background, kept fresh by file fingerprints, stored on disk.

use crate::FxMap;
use std::io::Read;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;

use crate::SearchError;
use crate::lang::FileKind;
use crate::lang::Lang;
use crate::model::SkipReason;
use crate::parse::Parsers;
use crate::parse::RefTable;
use crate::parse::Span;
use crate::store::Chunk;
use crate::store::FileEntry;
use crate::store::Tables;
use crate::store::Terms;
use crate::text;
use crate::walk::Candidate;
use crate::walk::fingerprint;

/// Format version of the stored index: a stored index of another version is rebuilt.
const STORE_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"CPINDEX\0";
/// A file whose lines longer than this make up most of it, and whose lines are longer than
/// [`MAX_AVERAGE_LINE_BYTES`] on average, is minified or generated.
const MAX_LINE_BYTES: usize = 4096;
const MAX_AVERAGE_LINE_BYTES: usize = 400;
/// How often a symbol's name counts in its chunk: a match on the name outranks one in the body.
const NAME_WEIGHT: u16 = 3;

/// Files larger than this are listed as skipped, not read, unless the host says otherwise (`search.max_file_kb`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 20;

/// How the index is built and where it is kept.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// The folder stored indexes live in (one sub-folder per work dir); `None` keeps the index in memory only.
    pub store_dir: Option<PathBuf>,
    /// Files larger than this are listed as skipped, not read. Default [`DEFAULT_MAX_FILE_BYTES`].
    pub max_file_bytes: u64,
    /// Threads for parsing; default: the machine's cores.
    pub threads: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            store_dir: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            threads: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        }
    }
}

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Nothing built or loaded yet.
    NotBuilt,
    /// The first build is running.
    Building,
    /// Built (later updates happen on demand).
    Ready,
    /// The first build failed; see [`IndexStatus::error`].
    Failed,
}

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStats {
    /// Files looked at.
    pub scanned: usize,
    /// Files read and parsed again (new or changed).
    pub updated: usize,
    /// Files gone from the index.
    pub removed: usize,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// Whether the index came from disk before this refresh.
    pub loaded: bool,
}

/// What `codepilot index status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStatus {
    /// The work dir indexed.
    pub work_dir: String,
    /// Where the stored index is (absent when it is kept in memory only).
    pub path: Option<String>,
    /// Its size on disk, in bytes.
    pub bytes: Option<u64>,
    /// Where the build stands.
    pub state: BuildState,
    /// Files the first build has parsed so far, and of how many (while building).
    pub progress: Option<(usize, usize)>,
    /// Files in the index (skipped ones included).
    pub files: usize,
    /// Files parsed, per language.
    pub languages: Vec<(String, usize)>,
    /// Definitions.
    pub symbols: usize,
    /// Call sites.
    pub calls: usize,
    /// Ranked chunks.
    pub chunks: u64,
    /// Files not indexed and why (the first 20).
    pub skipped: Vec<(String, SkipReason)>,
    /// How many files were skipped in all.
    pub skipped_total: usize,
    /// What the last refresh did.
    pub last_refresh: Option<RefreshStats>,
    /// Why the first build failed.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Progress {
    state: BuildState,
    error: Option<String>,
    last: Option<RefreshStats>,
}

/// The index of one work dir. Cheap to share (`Arc`); queries run concurrently, refreshes one at a time.
#[derive(Debug)]
pub struct CodeIndex {
    root: PathBuf,
    options: IndexOptions,
    store_path: Option<PathBuf>,
    pub(crate) tables: RwLock<Tables>,
    refresh_lock: Mutex<()>,
    progress: Mutex<Progress>,
    ready: Condvar,
    done: AtomicUsize,
    total: AtomicUsize,
    pub(crate) rank_cache: Mutex<Option<crate::graph::RankCache>>,
    walker: Mutex<crate::walk::Walker>,
    /// One save at a time.
    save_lock: Mutex<()>,
    /// The tables changed since they were last stored.
    dirty: std::sync::atomic::AtomicBool,
    pub(crate) vectors: crate::embed::VectorStore,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    version: u32,
    root: &'a str,
    terms: &'a [String],
    files: Vec<&'a FileEntry>,
}

#[derive(Deserialize)]
struct Stored {
    version: u32,
    root: String,
    terms: Vec<String>,
    files: Vec<FileEntry>,
}

/// Writes `bytes` to `path` through a temporary file of its own in the same folder, renamed over `path`: a reader
/// sees the old file or the new one, and two writers never share a temporary file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// The sub-folder of `store_dir` that keeps the index of `root`: a hash of its path.
#[must_use]
pub fn store_key(root: &Path) -> String {
    let digest = sha2::Sha256::digest(root.to_string_lossy().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl CodeIndex {
    /// An index of `root` (made absolute), empty until [`CodeIndex::build`] loads or builds it.
    ///
    /// # Errors
    /// [`SearchError::WorkDir`] when `root` is not a readable folder.
    pub fn new(root: &Path, options: IndexOptions) -> Result<Self, SearchError> {
        let root = root.canonicalize().map_err(|e| SearchError::WorkDir {
            path: root.to_path_buf(),
            source: e,
        })?;
        if !root.is_dir() {
            return Err(SearchError::WorkDir {
                path: root,
                source: std::io::Error::other("not a folder"),
            });
        }
        // An index built with another size limit decided differently which files to skip: it is kept apart.
        let key = if options.max_file_bytes == DEFAULT_MAX_FILE_BYTES {
            store_key(&root)
        } else {
            format!("{}-{}k", store_key(&root), options.max_file_bytes / 1024)
        };
        let store_path = options.store_dir.as_ref().map(|d| d.join(key));
        Ok(Self {
            vectors: crate::embed::VectorStore::new(
                store_path.as_ref().map(|p| p.join("vectors.bin")),
            ),
            root,
            options,
            store_path,
            tables: RwLock::new(Tables::default()),
            refresh_lock: Mutex::new(()),
            progress: Mutex::new(Progress {
                state: BuildState::NotBuilt,
                error: None,
                last: None,
            }),
            ready: Condvar::new(),
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            rank_cache: Mutex::new(None),
            dirty: std::sync::atomic::AtomicBool::new(false),
            walker: Mutex::new(crate::walk::Walker::default()),
            save_lock: Mutex::new(()),
        })
    }

    /// The work dir indexed.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the stored index is kept, if anywhere.
    #[must_use]
    pub fn store_path(&self) -> Option<&Path> {
        self.store_path.as_deref()
    }

    fn index_file(&self) -> Option<PathBuf> {
        self.store_path.as_ref().map(|p| p.join("index.bin"))
    }

    pub(crate) fn read_tables(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_tables(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first build: loads the stored index (if any), brings it up to date with the work dir and stores it.
    /// Later calls (and calls made while another thread builds, once it is done) only refresh; a failed build is
    /// tried again. Queries made meanwhile wait in [`CodeIndex::wait_ready`].
    ///
    /// # Errors
    /// When the work dir cannot be walked or the index cannot be stored; the index is then [`BuildState::Failed`].
    pub fn build(&self) -> Result<RefreshStats, SearchError> {
        {
            let mut p = self.progress();
            match p.state {
                BuildState::Ready => {
                    drop(p);
                    return self.refresh();
                }
                // Another thread is building: wait for it, then bring it up to date.
                BuildState::Building => {
                    drop(p);
                    self.wait_ready(Duration::from_secs(24 * 3600));
                    return self.refresh();
                }
                BuildState::NotBuilt | BuildState::Failed => p.state = BuildState::Building,
            }
        }
        let result = (|| -> Result<RefreshStats, SearchError> {
            let loaded = self.load()?;
            let mut stats = self.refresh_inner(true)?;
            stats.loaded = loaded;
            if !loaded {
                self.dirty.store(true, Ordering::Release);
            }
            // The index in memory is complete; not being able to store it only costs the next start a rebuild.
            if let Err(e) = self.save_if_dirty() {
                tracing::warn!("{e}");
            }
            Ok(stats)
        })();
        let mut p = self.progress();
        match &result {
            Ok(stats) => {
                p.state = BuildState::Ready;
                p.last = Some(stats.clone());
                p.error = None;
            }
            Err(e) => {
                p.state = BuildState::Failed;
                p.error = Some(e.to_string());
            }
        }
        drop(p);
        self.ready.notify_all();
        result
    }

    /// Waits until the first build is done (or failed), at most `timeout`. Whether it is ready.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.progress();
        loop {
            match p.state {
                BuildState::Ready => return true,
                BuildState::Failed => return false,
                BuildState::NotBuilt | BuildState::Building => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self
                .ready
                .wait_timeout(p, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Where the build stands, and (while building) how far it is.
    #[must_use]
    pub fn state(&self) -> (BuildState, Option<(usize, usize)>, Option<String>) {
        let p = self.progress();
        let progress = (p.state == BuildState::Building).then(|| {
            (
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
            )
        });
        (p.state, progress, p.error.clone())
    }

    /// Brings the index up to date with the work dir: files whose size, modification time or inode changed are
    /// read again, new files added, deleted ones dropped. Not stored: [`CodeIndex::save_if_dirty`] does that (the
    /// runtime calls it off the step's path).
    ///
    /// # Errors
    /// When the work dir cannot be walked.
    pub fn refresh(&self) -> Result<RefreshStats, SearchError> {
        let stats = self.refresh_inner(false)?;
        self.progress().last = Some(stats.clone());
        Ok(stats)
    }

    /// Stores the index if it changed since it was last stored. Whether it wrote.
    ///
    /// # Errors
    /// When the index cannot be written (it stays marked changed).
    pub fn save_if_dirty(&self) -> Result<bool, SearchError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        self.save()
            .inspect_err(|_| self.dirty.store(true, Ordering::Release))?;
        Ok(true)
    }

    /// Reads `paths` (absolute, or relative to the work dir) again at once, e.g. after the agent wrote them; paths
    /// outside the work dir or of files the index does not take are ignored. Not stored until the next refresh.
    pub fn update_paths(&self, paths: &[PathBuf]) {
        let _guard = self
            .refresh_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let scan_ns = now_ns();
        let mut parsers = Parsers::default();
        let mut removed = Vec::new();
        let mut entries = Vec::new();
        for path in paths {
            let abs = if path.is_absolute() {
                path.clone()
            } else {
                self.root.join(path)
            };
            let Ok(rel) = abs.strip_prefix(&self.root) else {
                continue;
            };
            if !rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                continue;
            }
            let Some(rel) = rel.to_str().map(str::to_owned) else {
                continue;
            };
            let Some(kind) = crate::lang::classify(&abs) else {
                continue;
            };
            match std::fs::symlink_metadata(&abs) {
                Ok(meta) if meta.file_type().is_file() => {
                    let candidate = Candidate {
                        rel,
                        fp: fingerprint(&meta),
                        kind,
                    };
                    entries.push(self.read_file(&candidate, &mut parsers, scan_ns));
                }
                _ => removed.push(rel),
            }
        }
        if entries.is_empty() && removed.is_empty() {
            return;
        }
        let mut tables = self.write_tables();
        for rel in removed {
            tables.remove(&rel);
        }
        for entry in entries {
            finish_entry(&mut tables, entry);
        }
        self.dirty.store(true, Ordering::Release);
    }

    fn walk(&self, scan_ns: i64) -> Result<Vec<Candidate>, SearchError> {
        if std::fs::read_dir(&self.root).is_err() {
            return Err(SearchError::WorkDir {
                path: self.root.clone(),
                source: std::io::Error::other("cannot be read"),
            });
        }
        let mut walker = self
            .walker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(walker.scan(&self.root, scan_ns))
    }

    fn refresh_inner(&self, first: bool) -> Result<RefreshStats, SearchError> {
        let _guard = self
            .refresh_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let scan_ns = now_ns();
        let candidates = self.walk(scan_ns)?;
        let (changed, removed): (Vec<&Candidate>, Vec<String>) = {
            let tables = self.read_tables();
            let changed = candidates
                .iter()
                .filter(|c| {
                    tables
                        .by_path
                        .get(&c.rel)
                        .and_then(|id| tables.file(*id))
                        .is_none_or(|f| f.racy || f.fp != c.fp)
                })
                .collect();
            let present: std::collections::HashSet<&str> =
                candidates.iter().map(|c| c.rel.as_str()).collect();
            let removed = tables
                .by_path
                .keys()
                .filter(|p| !present.contains(p.as_str()))
                .cloned()
                .collect();
            (changed, removed)
        };
        if first {
            self.done.store(0, Ordering::Relaxed);
            self.total.store(changed.len(), Ordering::Relaxed);
        }
        // Files gone first; then the changed ones, added batch by batch as the parsing threads deliver them.
        if !removed.is_empty() {
            let mut tables = self.write_tables();
            for path in &removed {
                tables.remove(path);
            }
        }
        let updated = self.read_files(&changed, scan_ns, |batch| {
            let mut tables = self.write_tables();
            for entry in batch {
                finish_entry(&mut tables, entry);
            }
        });
        if updated > 0 || !removed.is_empty() {
            self.dirty.store(true, Ordering::Release);
        }
        let stats = RefreshStats {
            scanned: candidates.len(),
            updated,
            removed: removed.len(),
            millis: 0,
            loaded: false,
        };
        Ok(RefreshStats {
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..stats
        })
    }

    /// Reads and parses `files` on up to [`IndexOptions::threads`] threads, handing them to `add` in batches while
    /// the threads go on. How many were read.
    fn read_files(
        &self,
        files: &[&Candidate],
        scan_ns: i64,
        mut add: impl FnMut(Vec<Parsed>),
    ) -> usize {
        const BATCH: usize = 64;
        let threads = self
            .options
            .threads
            .clamp(1, 16)
            .min(files.len().div_ceil(8).max(1));
        if threads <= 1 {
            let mut parsers = Parsers::default();
            for chunk in files.chunks(BATCH) {
                let batch = chunk
                    .iter()
                    .map(|c| {
                        let p = self.read_file(c, &mut parsers, scan_ns);
                        self.done.fetch_add(1, Ordering::Relaxed);
                        p
                    })
                    .collect();
                add(batch);
            }
            return files.len();
        }
        let next = AtomicUsize::new(0);
        let mut read = 0;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(BATCH * 4);
            for _ in 0..threads {
                let tx = tx.clone();
                let next = &next;
                s.spawn(move || {
                    let mut parsers = Parsers::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = files.get(i) else { break };
                        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.read_file(c, &mut parsers, scan_ns)
                        }));
                        self.done.fetch_add(1, Ordering::Relaxed);
                        let Ok(parsed) = parsed else {
                            tracing::warn!(
                                "index: reading {} failed unexpectedly; it is left out",
                                c.rel
                            );
                            parsers = Parsers::default();
                            continue;
                        };
                        if tx.send(parsed).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut batch = Vec::with_capacity(BATCH);
            for parsed in rx {
                batch.push(parsed);
                read += 1;
                if batch.len() == BATCH {
                    add(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
            if !batch.is_empty() {
                add(batch);
            }
        });
        if read < files.len() {
            tracing::warn!(
                "{} files of the index could not be read; the next refresh tries again",
                files.len() - read
            );
        }
        read
    }

    fn read_file(&self, c: &Candidate, parsers: &mut Parsers, scan_ns: i64) -> Parsed {
        let mut entry = FileEntry {
            path: c.rel.clone(),
            fp: c.fp,
            racy: crate::walk::is_racy(c.fp.mtime_ns, scan_ns),
            lang: match c.kind {
                FileKind::Code(l) => Some(l),
                FileKind::Text => None,
            },
            skipped: None,
            defs: Vec::new(),
            calls: Vec::new(),
            refs: RefTable::default(),
            chunks: Vec::new(),
        };
        if c.fp.size > self.options.max_file_bytes {
            entry.skipped = Some(SkipReason::TooLarge);
            return Parsed::bare(entry);
        }
        let mut bytes = Vec::with_capacity(usize::try_from(c.fp.size).unwrap_or(0));
        let read = crate::walk::open_beneath(&self.root, &c.rel).and_then(|f| {
            f.take(self.options.max_file_bytes + 1)
                .read_to_end(&mut bytes)
        });
        if let Err(e) = read {
            tracing::debug!("index: cannot read {}: {e}", c.rel);
            entry.racy = true;
            return Parsed::bare(entry);
        }
        if bytes.iter().take(8192).any(|b| *b == 0) {
            entry.skipped = Some(SkipReason::Binary);
            return Parsed::bare(entry);
        }
        let Ok(text) = String::from_utf8(bytes) else {
            entry.skipped = Some(SkipReason::NotUtf8);
            return Parsed::bare(entry);
        };
        // Minified or generated: most of it in lines no person writes, which are long on average. One long line
        // (a data URI, a table) in a hand-written file does not count.
        let (mut long, mut lines) = (0usize, 0usize);
        for line in text.lines() {
            lines += 1;
            if line.len() > MAX_LINE_BYTES {
                long += line.len();
            }
        }
        if long * 2 > text.len() && text.len() / lines.max(1) > MAX_AVERAGE_LINE_BYTES {
            entry.skipped = Some(SkipReason::Minified);
            return Parsed::bare(entry);
        }
        let spans = match c.kind {
            FileKind::Code(lang) => match parsers.parse(lang, &text) {
                Ok(parsed) => {
                    entry.defs = parsed.defs;
                    entry.calls = parsed.calls;
                    entry.refs = parsed.refs;
                    parsed.spans
                }
                Err(e) => {
                    tracing::warn!("index: {}: {e}", c.rel);
                    text_spans(&text)
                }
            },
            FileKind::Text => text_spans(&text),
        };
        let (vocab, chunks) = count_words(&entry, spans, &text);
        Parsed {
            entry,
            vocab,
            chunks,
        }
    }

    fn load(&self) -> Result<bool, SearchError> {
        let Some(path) = self.index_file() else {
            return Ok(false);
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(SearchError::Io { path, source: e }),
        };
        let stored = bytes
            .strip_prefix(MAGIC.as_slice())
            .and_then(|rest| zstd::decode_all(rest).ok())
            .and_then(|raw| postcard::from_bytes::<Stored>(&raw).ok());
        let Some(stored) =
            stored.filter(|s| s.version == STORE_VERSION && Path::new(&s.root) == self.root)
        else {
            tracing::info!(
                "the stored index at {} is of another version or damaged: rebuilding it",
                path.display()
            );
            return Ok(false);
        };
        let mut tables = Tables {
            terms: Terms::from_names(stored.terms),
            ..Tables::default()
        };
        for entry in stored.files {
            tables.insert(entry);
        }
        *self.write_tables() = tables;
        Ok(true)
    }

    /// Writes the index to its store folder (atomically: a temporary file renamed over the old one).
    ///
    /// # Errors
    /// When the folder cannot be created or written.
    pub fn save(&self) -> Result<(), SearchError> {
        let Some(path) = self.index_file() else {
            return Ok(());
        };
        let _saving = self
            .save_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut tables = self.write_tables();
            if tables.terms.names.len() > 2 * tables.postings.len() + 4096 {
                tables.compact_terms();
            }
        }
        let raw = {
            let tables = self.read_tables();
            let root = self.root.to_string_lossy();
            let stored = StoredRef {
                version: STORE_VERSION,
                root: &root,
                terms: &tables.terms.names,
                files: tables.entries().map(|(_, f)| f).collect(),
            };
            postcard::to_stdvec(&stored).map_err(|e| SearchError::Encode(e.to_string()))?
        };
        let io = |source| SearchError::Io {
            path: path.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut packed = MAGIC.to_vec();
        packed.extend(zstd::encode_all(raw.as_slice(), 1).map_err(io)?);
        write_atomically(&path, &packed).map_err(io)?;
        // For people looking at the folder: which work dir it is.
        let _ = std::fs::write(dir.join("work_dir"), self.root.to_string_lossy().as_bytes());
        Ok(())
    }

    /// Deletes the stored index and builds it again from scratch.
    ///
    /// # Errors
    /// As [`CodeIndex::build`].
    pub fn rebuild(&self) -> Result<RefreshStats, SearchError> {
        {
            let _guard = self
                .refresh_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *self.write_tables() = Tables::default();
            *self
                .walker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                crate::walk::Walker::default();
            if let Some(path) = self.index_file() {
                let _ = std::fs::remove_file(path);
            }
        }
        self.progress().state = BuildState::NotBuilt;
        self.build()
    }

    /// Counts and state for `codepilot index status`.
    #[must_use]
    pub fn status(&self) -> IndexStatus {
        let (state, progress, error) = self.state();
        let last_refresh = self.progress().last.clone();
        let tables = self.read_tables();
        let mut languages: FxMap<Lang, usize> = FxMap::default();
        let mut skipped = Vec::new();
        let mut skipped_total = 0;
        let (mut symbols, mut calls) = (0, 0);
        for (_, f) in tables.entries() {
            if let Some(reason) = f.skipped {
                skipped_total += 1;
                if skipped.len() < 20 {
                    skipped.push((f.path.clone(), reason));
                }
            } else if let Some(lang) = f.lang {
                *languages.entry(lang).or_default() += 1;
            }
            symbols += f.defs.len();
            calls += f.calls.len();
        }
        skipped.sort_by(|a, b| a.0.cmp(&b.0));
        let mut languages: Vec<(String, usize)> = languages
            .into_iter()
            .map(|(l, n)| (l.name().to_owned(), n))
            .collect();
        languages.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let path = self.index_file();
        IndexStatus {
            work_dir: self.root.to_string_lossy().into_owned(),
            bytes: path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len()),
            path: path.map(|p| p.to_string_lossy().into_owned()),
            state,
            progress,
            files: tables.by_path.len(),
            languages,
            symbols,
            calls,
            chunks: tables.chunk_count,
            skipped,
            skipped_total,
            last_refresh,
            error,
        }
    }

    /// Reads lines `start..=end` (1-based) of `file` from the work dir; empty when it is gone.
    pub(crate) fn lines(&self, file: &str, start: u32, end: u32) -> Vec<String> {
        let mut text = String::new();
        let read = crate::walk::open_beneath(&self.root, file)
            .and_then(|mut f| f.read_to_string(&mut text));
        if read.is_err() {
            return Vec::new();
        }
        text.lines()
            .skip(start.saturating_sub(1) as usize)
            .take((end + 1).saturating_sub(start.max(1)) as usize)
            .map(str::to_owned)
            .collect()
    }
}

/// A file read for the index, before its chunks' words are given ids.
struct Parsed {
    entry: FileEntry,
    /// The file's distinct words; chunks refer to them by position.
    vocab: Vec<String>,
    chunks: Vec<PendingChunk>,
}

/// A chunk whose words are positions in its file's `vocab` (global ids are given under the write lock, once per
/// distinct word of the file; the counting happens before, on the parsing thread).
struct PendingChunk {
    span: Span,
    words: Vec<(u32, u16)>,
    len: u32,
    hash: u64,
}

impl Parsed {
    fn bare(entry: FileEntry) -> Self {
        Self {
            entry,
            vocab: Vec::new(),
            chunks: Vec::new(),
        }
    }
}

fn text_spans(text: &str) -> Vec<Span> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    crate::parse::windows(&lines, &[], &mut out);
    out
}

/// Counts the words of each span: its lines, the file's path and (weighted) the name of the definition it is.
fn count_words(
    entry: &FileEntry,
    spans: Vec<Span>,
    text: &str,
) -> (Vec<String>, Vec<PendingChunk>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut vocab: Vec<String> = Vec::new();
    let mut ids: FxMap<String, u32> = FxMap::default();
    let mut id_of = |word: &str| -> u32 {
        if let Some(id) = ids.get(word) {
            return *id;
        }
        let id = u32::try_from(vocab.len()).unwrap_or(u32::MAX);
        vocab.push(word.to_owned());
        ids.insert(word.to_owned(), id);
        id
    };
    let mut path_words = Vec::new();
    text::words(&entry.path, |w| path_words.push(id_of(w)));
    let mut counts: FxMap<u32, u16> = FxMap::default();
    let mut out = Vec::with_capacity(spans.len());
    for span in spans {
        counts.clear();
        let mut len = 0u32;
        let mut add = |id: u32, weight: u16| {
            let c = counts.entry(id).or_default();
            *c = c.saturating_add(weight);
            len = len.saturating_add(u32::from(weight));
        };
        let from = span.start.saturating_sub(1) as usize;
        let to = (span.end as usize).min(lines.len());
        let mut hash = TextHash::default();
        for line in lines.get(from..to).unwrap_or_default() {
            hash.line(line);
            text::words(line, |w| add(id_of(w), 1));
        }
        for w in &path_words {
            add(*w, 1);
        }
        if let Some(def) = span.symbol.and_then(|i| entry.defs.get(i as usize)) {
            text::words(&def.name, |w| add(id_of(w), NAME_WEIGHT));
            if let Some(c) = &def.container {
                text::words(c, |w| add(id_of(w), NAME_WEIGHT));
            }
        }
        out.push(PendingChunk {
            span,
            words: counts.iter().map(|(k, v)| (*k, *v)).collect(),
            len,
            hash: hash.0,
        });
    }
    (vocab, out)
}

/// A stable 64-bit hash (FNV-1a) of a chunk's lines joined by newlines: the key of its embedding.
pub(crate) struct TextHash(u64, bool);

impl Default for TextHash {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325, false)
    }
}

impl TextHash {
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }

    pub(crate) fn line(&mut self, line: &str) {
        let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        if self.1 {
            self.0 = step(self.0, b'\n');
        }
        self.0 = line.bytes().fold(self.0, step);
        self.1 = true;
    }
}

/// Gives the chunks' words their ids and adds the file.
fn finish_entry(tables: &mut Tables, parsed: Parsed) {
    let Parsed {
        mut entry,
        vocab,
        chunks,
    } = parsed;
    let global: Vec<u32> = vocab.iter().map(|w| tables.terms.id(w)).collect();
    for chunk in chunks {
        let mut terms: Vec<(u32, u16)> = chunk
            .words
            .iter()
            .map(|(w, c)| (global.get(*w as usize).copied().unwrap_or(u32::MAX), *c))
            .collect();
        terms.sort_unstable();
        entry.chunks.push(Chunk {
            start: chunk.span.start,
            end: chunk.span.end,
            symbol: chunk.span.symbol,
            terms,
            len: chunk.len,
            hash: chunk.hash,
        });
    }
    tables.insert(entry);
}
