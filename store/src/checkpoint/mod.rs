//! Checkpoints (SPEC §19): a session's work directory and conversation position recorded before each turn (or
//! step), so a host can rewind files, conversation or both to any of them.
//!
//! A checkpoint is a record in the session's index (`index.json`) naming a manifest of the work directory (see
//! [`manifest`] for what it holds) and the conversation position: message count, a digest of those messages, the
//! archive list, and — for the checkpoint a rewind takes of the state it replaces — the messages it cuts.
//! Contents, manifests, archive lists and cut messages are content-addressed objects, stored once per session
//! (compressed), so a checkpoint costs what changed. Unchanged files are recognised by their metadata (size,
//! modification time, inode) and not read again.
//!
//! Everything lives under `checkpoints/<session>/` in [`codepilot_home`](crate::codepilot_home);
//! [`CheckpointMirror`] copies it to the object store that keeps workspace snapshots, so a session resumed on
//! another machine can still rewind. The newest [`DEFAULT_KEEP`] checkpoints of a session are kept; objects no
//! kept checkpoint needs are collected.
//!
//! The blocking methods here run on a blocking thread; one [`SessionCheckpoints`] serves one session (whose lease
//! its runtime holds).

mod apply;
mod error;
mod manifest;
mod mirror;
mod objects;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use codepilot_protocol::ArchiveEntry;
use codepilot_protocol::CheckpointInfo;
use codepilot_protocol::CheckpointKind;
use codepilot_protocol::Message;
use serde::Deserialize;
use serde::Serialize;
use sha2::Digest as _;

pub use apply::FilePlan;
pub use error::CheckpointError;
pub use mirror::CheckpointMirror;
pub use mirror::Upload;

use crate::SessionId;
use manifest::Manifest;
use objects::Objects;

/// Checkpoints kept per session by default.
pub const DEFAULT_KEEP: usize = 50;

/// Files larger than this are left out of checkpoints by default: 16 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;

/// Index format version.
const INDEX_VERSION: u32 = 1;

/// How checkpoints are kept.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// Checkpoints kept per session, newest first (at least 1). Default [`DEFAULT_KEEP`].
    pub keep: usize,
    /// Files larger than this are left out (with a warning naming them). Default [`DEFAULT_MAX_FILE_BYTES`].
    pub max_file_bytes: u64,
    /// The folder holding every session's checkpoints. Default: `checkpoints/` in
    /// [`codepilot_home`](crate::codepilot_home).
    pub dir: Option<PathBuf>,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        Self {
            keep: DEFAULT_KEEP,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            dir: None,
        }
    }
}

impl CheckpointOptions {
    /// The folder holding every session's checkpoints.
    ///
    /// # Errors
    /// [`crate::StoreError::Config`] when there is no home directory.
    pub fn root(&self) -> crate::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(crate::codepilot_home()?.join("checkpoints")),
        }
    }
}

/// A digest of a conversation, built as messages are added: equal digests mean equal histories.
#[derive(Clone, Default)]
pub struct HistoryDigest {
    hasher: sha2::Sha256,
    count: u64,
}

impl std::fmt::Debug for HistoryDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryDigest")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl HistoryDigest {
    /// The digest of `messages`.
    #[must_use]
    pub fn of(messages: &[Message]) -> String {
        let mut d = Self::default();
        d.advance(messages)
    }

    /// Adds the messages of `history` not seen yet (`history` must extend what was seen) and returns the digest of
    /// all of it. A history shorter than what was seen starts over.
    pub fn advance(&mut self, history: &[Message]) -> String {
        let seen = usize::try_from(self.count).unwrap_or(usize::MAX);
        if seen > history.len() {
            *self = Self::default();
        }
        let seen = usize::try_from(self.count).unwrap_or(usize::MAX);
        for m in history.get(seen..).unwrap_or(&[]) {
            let json = serde_json::to_vec(m).unwrap_or_default();
            self.hasher.update((json.len() as u64).to_le_bytes());
            self.hasher.update(&json);
            self.count += 1;
        }
        objects::hex(&self.hasher.clone().finalize())
    }
}

/// A checkpoint's conversation position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationMark {
    /// [`HistoryDigest`] of the first [`CheckpointInfo::messages`] messages.
    pub digest: String,
    /// Object holding the archive list (JSON).
    pub archives: String,
    /// For a rewind's checkpoint: the messages the rewind cut, so rewinding to it restores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Tail>,
}

/// The messages a rewind cut: `messages[base..]` of the history it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// Messages kept by the rewind.
    pub base: u64,
    /// [`HistoryDigest`] of those.
    pub base_digest: String,
    /// Object holding the cut messages (JSON).
    pub messages: String,
}

/// A file of a checkpoint ([`SessionCheckpoints::files_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    /// Relative to the work directory, `/`-separated.
    pub path: String,
    /// Unix permission bits.
    pub mode: u32,
    /// What it holds.
    pub content: RecordedContent,
}

/// What a [`RecordedFile`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedContent {
    /// A regular file's bytes.
    Bytes(Vec<u8>),
    /// A symlink's target.
    Link(String),
}

/// The sha256 of `bytes`, lower-case hex: a file's content hash, as [`tree_hash`] and trajectories name it.
#[must_use]
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    objects::hex(&sha2::Sha256::digest(bytes))
}

/// The tree hash of `files` (sorted by path): sha256 over each file's path, mode and the sha256 of its bytes (or its
/// link target). Two work directories with the same hash hold the same files.
#[must_use]
pub fn tree_hash(files: &[RecordedFile]) -> String {
    use sha2::Digest;
    let mut tree = sha2::Sha256::new();
    for f in files {
        let (kind, digest) = match &f.content {
            RecordedContent::Bytes(b) => ("f", content_hash(b)),
            RecordedContent::Link(t) => ("l", t.clone()),
        };
        tree.update(format!("{kind} {:o} {} {digest}\n", f.mode & 0o7777, f.path).as_bytes());
    }
    objects::hex(&tree.finalize())
}

/// The files of `work_dir` a checkpoint would record (what `.gitignore` leaves, never `.git`), sorted by path.
///
/// # Errors
/// When the work directory cannot be walked or a file cannot be read.
pub fn read_tree(work_dir: &Path) -> std::io::Result<Vec<RecordedFile>> {
    let (entries, _) = manifest::walk(work_dir)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let content = match e.kind {
            manifest::Kind::Dir => continue,
            manifest::Kind::File => RecordedContent::Bytes(std::fs::read(work_dir.join(&e.path))?),
            manifest::Kind::Link => RecordedContent::Link(
                std::fs::read_link(work_dir.join(&e.path))?
                    .to_string_lossy()
                    .into_owned(),
            ),
        };
        out.push(RecordedFile {
            path: e.path,
            mode: e.mode,
            content,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// One checkpoint as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// What hosts are shown.
    #[serde(flatten)]
    pub info: CheckpointInfo,
    /// Object holding the work directory's manifest.
    pub manifest: String,
    /// The conversation position.
    pub conversation: ConversationMark,
    /// When the capture started (nanoseconds since the epoch): files modified just before it are read again by
    /// the next capture rather than trusted by their metadata.
    #[serde(default)]
    pub taken_ns: i64,
}

/// The session's index file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// The number the next rewind checkpoint gets.
    next_rewind: u64,
    /// Oldest first.
    records: Vec<CheckpointRecord>,
}

/// Where the conversation stands when a checkpoint is taken.
#[derive(Debug, Clone)]
pub struct Position {
    /// Why it is taken.
    pub kind: CheckpointKind,
    /// The turn about to start (or, for a rewind's checkpoint, the last one).
    pub turn: u64,
    /// The step about to start, for [`CheckpointKind::Step`].
    pub step: Option<u32>,
    /// Messages in the conversation.
    pub messages: u64,
    /// Their [`HistoryDigest`].
    pub digest: String,
    /// The archive list.
    pub archives: Vec<ArchiveEntry>,
    /// For a rewind's checkpoint that cuts the conversation: what it cuts.
    pub cut: Option<Cut>,
}

/// The messages a rewind is about to cut.
#[derive(Debug, Clone)]
pub struct Cut {
    /// Messages it keeps.
    pub base: u64,
    /// Their [`HistoryDigest`].
    pub base_digest: String,
    /// The messages after them.
    pub messages: Vec<Message>,
}

/// What [`SessionCheckpoints::capture`] did.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The new checkpoint.
    pub info: CheckpointInfo,
    /// Objects written for it (for a mirror to copy).
    pub new_objects: Vec<String>,
    /// Whether older checkpoints were dropped, so [`SessionCheckpoints::collect_garbage`] has work.
    pub pruned: bool,
}

/// How the conversation changes when rewound to a checkpoint: keep `keep` messages, then add `append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPlan {
    /// Messages kept.
    pub keep: u64,
    /// Messages added after them (a rewind's checkpoint restores what it cut).
    pub append: Vec<Message>,
    /// The archive list afterwards.
    pub archives: Vec<ArchiveEntry>,
}

/// A work directory as [`SessionCheckpoints::scan`] found it.
struct Scanned {
    entries: Vec<manifest::Entry>,
    skipped: Vec<String>,
    new_objects: Vec<String>,
    stored_bytes: u64,
}

/// The newest checkpoint's manifest, kept in memory.
#[derive(Debug)]
struct Last {
    hash: String,
    depth: u32,
    taken_ns: i64,
    manifest: Arc<Manifest>,
    /// The objects of the session the manifest was borrowed from (another session's last checkpoint of the same
    /// work directory): its contents are linked from there instead of read again.
    foreign: Option<Objects>,
}

/// What `workdirs/<digest of the path>.json` remembers of a work directory: the session that last checkpointed it,
/// so a new session on it starts from that checkpoint instead of reading every file.
#[derive(Debug, Serialize, Deserialize)]
struct WorkDirMark {
    session: String,
    manifest: String,
    taken_ns: i64,
}

/// The checkpoints of one session.
#[derive(Debug)]
pub struct SessionCheckpoints {
    session: SessionId,
    dir: PathBuf,
    objects: Objects,
    opts: CheckpointOptions,
    index: Index,
    /// The newest manifest, so the next capture compares with it without reading it back.
    last: Option<Last>,
}

impl SessionCheckpoints {
    /// Opens session `session`'s checkpoints (none yet is fine).
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the folder cannot be made or the index read; a damaged index is moved aside
    /// (with a warning) and the session starts over with none.
    pub fn open(session: &SessionId, opts: CheckpointOptions) -> Result<Self, CheckpointError> {
        let root = opts.root().map_err(|e| CheckpointError::Io {
            op: "finding the checkpoint folder",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let dir = root.join(session.as_str());
        crate::create_private_dir(&dir).map_err(CheckpointError::io("creating", &dir))?;
        let mut this = Self {
            session: session.clone(),
            objects: Objects::new(dir.join("objects")),
            dir,
            opts,
            index: Index::default(),
            last: None,
        };
        this.index = this.read_index()?;
        Ok(this)
    }

    /// The session.
    #[must_use]
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The session's checkpoint folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn read_index(&self) -> Result<Index, CheckpointError> {
        let path = self.index_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(CheckpointError::io("reading", &path)(e)),
        };
        match serde_json::from_slice::<Index>(&bytes) {
            Ok(index) if index.version == INDEX_VERSION => Ok(index),
            Ok(index) => {
                tracing::warn!(
                    "{} has format {}, not {INDEX_VERSION}; starting a new one",
                    path.display(),
                    index.version
                );
                self.set_aside(&path);
                Ok(Index::default())
            }
            Err(e) => {
                tracing::warn!("{} is damaged ({e}); starting a new one", path.display());
                self.set_aside(&path);
                Ok(Index::default())
            }
        }
    }

    fn set_aside(&self, path: &Path) {
        let aside = self
            .dir
            .join(format!("index.damaged-{}.json", crate::lease::now_millis()));
        if let Err(e) = std::fs::rename(path, &aside) {
            tracing::warn!("moving {} aside: {e}", path.display());
        }
    }

    /// The index as JSON (what is written to disk and mirrored).
    fn index_json(&self) -> Result<Vec<u8>, CheckpointError> {
        serde_json::to_vec(&self.index).map_err(|e| CheckpointError::Io {
            op: "encoding the checkpoint index of",
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })
    }

    fn write_index(&self) -> Result<(), CheckpointError> {
        let path = self.index_path();
        let bytes = self.index_json()?;
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut tmp = tempfile::Builder::new()
                .prefix(".index-")
                .tempfile_in(&self.dir)?;
            tmp.write_all(&bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(CheckpointError::io("writing", &path))
    }

    /// The checkpoints, oldest first.
    #[must_use]
    pub fn records(&self) -> &[CheckpointRecord] {
        &self.index.records
    }

    /// What hosts are shown of each checkpoint, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<CheckpointInfo> {
        self.index.records.iter().map(|r| r.info.clone()).collect()
    }

    /// The checkpoint `id` names: `"3"`, `"3.2"` (`"3.1"` is `"3"` unless step 1 has its own) or `"rewind-1"`.
    ///
    /// # Errors
    /// [`CheckpointError::Unknown`] listing the ids there are.
    pub fn find(&self, id: &str) -> Result<&CheckpointRecord, CheckpointError> {
        let id = id.trim();
        let exact = self.index.records.iter().rev().find(|r| r.info.id == id);
        let alias = || {
            let turn = id.strip_suffix(".1")?;
            self.index.records.iter().rev().find(|r| r.info.id == turn)
        };
        exact
            .or_else(alias)
            .ok_or_else(|| CheckpointError::Unknown {
                session: self.session.to_string(),
                id: id.to_owned(),
                available: self
                    .index
                    .records
                    .iter()
                    .map(|r| r.info.id.clone())
                    .collect(),
            })
    }

    /// The files checkpoint `id` recorded — regular files with their contents, symlinks with their targets —
    /// sorted by path (folders are implied by the paths).
    ///
    /// # Errors
    /// [`CheckpointError::Unknown`] for an id the session does not have; [`CheckpointError::Damaged`] when its
    /// manifest or a file's contents cannot be read.
    pub fn files_of(&self, id: &str) -> Result<Vec<RecordedFile>, CheckpointError> {
        let record = self.find(id)?;
        let manifest = self.manifest(record)?;
        let mut out = Vec::with_capacity(manifest.entries.len());
        for e in &manifest.entries {
            let content = match e.kind {
                manifest::Kind::Dir => continue,
                manifest::Kind::File => RecordedContent::Bytes(
                    self.objects
                        .get(&e.target)
                        .map_err(|err| self.damaged(id, format!("{}: {err}", e.path)))?,
                ),
                manifest::Kind::Link => RecordedContent::Link(e.target.clone()),
            };
            out.push(RecordedFile {
                path: e.path.clone(),
                mode: e.mode,
                content,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn damaged(&self, id: &str, reason: impl std::fmt::Display) -> CheckpointError {
        CheckpointError::Damaged {
            session: self.session.to_string(),
            id: id.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Reads object `hash` of checkpoint `id` as JSON.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        hash: &str,
    ) -> Result<T, CheckpointError> {
        self.read_json_in(&self.objects, id, hash)
    }

    /// Reads object `hash` of `objects` (this session's or, to borrow a manifest, another's) as JSON.
    fn read_json_in<T: serde::de::DeserializeOwned>(
        &self,
        objects: &Objects,
        id: &str,
        hash: &str,
    ) -> Result<T, CheckpointError> {
        if !objects::is_hash(hash) {
            return Err(self.damaged(id, format!("{hash:?} is not an object name")));
        }
        let bytes = objects
            .get(hash)
            .map_err(|e| self.damaged(id, format!("object {hash}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| self.damaged(id, format!("object {hash}: {e}")))
    }

    /// The manifest of `record`.
    fn manifest(&self, record: &CheckpointRecord) -> Result<Arc<Manifest>, CheckpointError> {
        if let Some(last) = &self.last
            && last.hash == record.manifest
        {
            return Ok(Arc::clone(&last.manifest));
        }
        self.load_manifest(&record.info.id, &record.manifest)
            .map(|(m, _, _)| Arc::new(m))
    }

    /// Manifest `hash` (of checkpoint `id`), its chain's depth and the objects of the chain, newest first.
    fn load_manifest(
        &self,
        id: &str,
        hash: &str,
    ) -> Result<(Manifest, u32, Vec<String>), CheckpointError> {
        self.load_manifest_in(&self.objects, id, hash)
    }

    /// [`Self::load_manifest`] from `objects`.
    fn load_manifest_in(
        &self,
        objects: &Objects,
        id: &str,
        hash: &str,
    ) -> Result<(Manifest, u32, Vec<String>), CheckpointError> {
        let mut chain = vec![hash.to_owned()];
        let mut links: Vec<manifest::Stored> = vec![self.read_json_in(objects, id, hash)?];
        while let Some(base) = links.last().and_then(|l| l.base.clone()) {
            if links.len() > manifest::MAX_DEPTH as usize + 1 {
                return Err(self.damaged(id, "its manifest chain does not end"));
            }
            links.push(self.read_json_in(objects, id, &base)?);
            chain.push(base);
        }
        let depth = links.first().map_or(0, |l| l.depth);
        let mut manifest = Manifest::default();
        for link in links.into_iter().rev() {
            manifest = if link.base.is_some() {
                link.apply(&manifest)
            } else {
                Manifest {
                    entries: link.entries,
                }
            };
        }
        manifest::validate(&manifest).map_err(|reason| self.damaged(id, reason))?;
        Ok((manifest, depth, chain))
    }

    /// The objects checkpoint `record` needs that are not stored here (none once its manifest is here and
    /// complete). A mirror fetches them before a rewind on a machine that did not take the checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::Damaged`] when the manifest is here but unreadable.
    pub fn missing_objects(
        &self,
        record: &CheckpointRecord,
    ) -> Result<Vec<String>, CheckpointError> {
        let mut want = vec![record.conversation.archives.clone()];
        if let Some(tail) = &record.conversation.tail {
            want.push(tail.messages.clone());
        }
        // The manifest chain as far as it is here; its files once all of it is.
        let mut next = Some(record.manifest.clone());
        let mut links = 0;
        while let Some(hash) = next.take() {
            if !objects::is_hash(&hash) || links > manifest::MAX_DEPTH + 1 {
                break;
            }
            links += 1;
            if !self.objects.has(&hash) {
                want.push(hash);
                break;
            }
            let link: manifest::Stored = self.read_json(&record.info.id, &hash)?;
            match link.base {
                Some(base) => next = Some(base),
                None => {
                    let m = self.manifest(record)?;
                    want.extend(
                        m.entries
                            .iter()
                            .filter(|e| e.kind == manifest::Kind::File)
                            .map(|e| e.target.clone()),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        Ok(want
            .into_iter()
            .filter(|h| objects::is_hash(h) && !self.objects.has(h) && seen.insert(h.clone()))
            .collect())
    }

    /// Records `work_dir` and the conversation position `at` as a new checkpoint (replacing one with the same id),
    /// then drops the oldest beyond [`CheckpointOptions::keep`].
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the work directory cannot be read or the checkpoint written.
    pub fn capture(&mut self, work_dir: &Path, at: &Position) -> Result<Captured, CheckpointError> {
        let taken_ns = manifest::now_ns();
        self.load_last(work_dir);
        let scanned = self.scan(work_dir, true)?;
        let mut new_objects = scanned.new_objects;
        let mut stored_bytes = scanned.stored_bytes;
        let skipped = scanned.skipped;
        let entries = scanned.entries;
        // An unchanged tree reuses the newest manifest; otherwise the changes to it are stored (a whole manifest
        // every MAX_DEPTH captures, so reading one back stays cheap).
        let (manifest_hash, depth, manifest) = match &self.last {
            Some(last) if last.foreign.is_none() && last.manifest.entries == entries => {
                (last.hash.clone(), last.depth, Arc::clone(&last.manifest))
            }
            previous => {
                let stored = match previous {
                    Some(last) if last.depth < manifest::MAX_DEPTH && last.foreign.is_none() => {
                        manifest::Stored::delta(&last.manifest, &last.hash, last.depth, &entries)
                    }
                    _ => manifest::Stored {
                        base: None,
                        depth: 0,
                        entries: entries.clone(),
                        removed: Vec::new(),
                    },
                };
                let json = serde_json::to_vec(&stored).map_err(|e| CheckpointError::Io {
                    op: "encoding the manifest of",
                    path: work_dir.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
                let (hash, written) = self
                    .objects
                    .put(&json)
                    .map_err(CheckpointError::io("writing into", self.objects.dir()))?;
                if written > 0 {
                    new_objects.push(hash.clone());
                    stored_bytes += written;
                }
                (hash, stored.depth, Arc::new(Manifest { entries }))
            }
        };
        let mut put_json = |value: &dyn erased::Json| -> Result<String, CheckpointError> {
            let json = value.to_json().map_err(|e| CheckpointError::Io {
                op: "encoding a checkpoint of",
                path: self.dir.clone(),
                source: std::io::Error::other(e),
            })?;
            let (hash, written) = self
                .objects
                .put(&json)
                .map_err(CheckpointError::io("writing into", self.objects.dir()))?;
            if written > 0 {
                new_objects.push(hash.clone());
                stored_bytes += written;
            }
            Ok(hash)
        };
        let archives = put_json(&at.archives)?;
        let tail = match &at.cut {
            Some(cut) => Some(Tail {
                base: cut.base,
                base_digest: cut.base_digest.clone(),
                messages: put_json(&cut.messages)?,
            }),
            None => None,
        };
        let id = match at.kind {
            CheckpointKind::Turn => at.turn.to_string(),
            CheckpointKind::Step => format!("{}.{}", at.turn, at.step.unwrap_or(1)),
            CheckpointKind::Rewind => {
                self.index.next_rewind += 1;
                format!("rewind-{}", self.index.next_rewind)
            }
        };
        let (files, bytes) = manifest.totals();
        let info = CheckpointInfo {
            id: id.clone(),
            kind: at.kind,
            turn: at.turn,
            step: at.step,
            created_ms: crate::lease::now_millis(),
            messages: at.messages,
            files,
            bytes,
            stored_bytes,
            skipped,
        };
        let record = CheckpointRecord {
            info: info.clone(),
            manifest: manifest_hash.clone(),
            conversation: ConversationMark {
                digest: at.digest.clone(),
                archives,
                tail,
            },
            taken_ns,
        };
        self.index.version = INDEX_VERSION;
        self.index.records.retain(|r| r.info.id != id);
        self.index.records.push(record);
        let keep = self.opts.keep.max(1);
        let excess = self.index.records.len().saturating_sub(keep);
        let pruned = excess > 0;
        self.index.records.drain(..excess);
        self.write_index()?;
        // The mark already names this manifest when it was reused (its older time only makes a borrower read
        // a few recent files again).
        let reused = self
            .last
            .as_ref()
            .is_some_and(|l| l.foreign.is_none() && l.hash == manifest_hash);
        if !reused {
            self.mark_work_dir(work_dir, &manifest_hash, taken_ns);
        }
        self.last = Some(Last {
            hash: manifest_hash,
            depth,
            taken_ns,
            manifest,
            foreign: None,
        });
        Ok(Captured {
            info,
            new_objects,
            pruned,
        })
    }

    /// Reads the newest checkpoint's manifest into memory if it is not there: the first capture since this process
    /// opened the session compares with it.
    fn load_last(&mut self, work_dir: &Path) {
        if self.last.is_some() {
            return;
        }
        let Some(newest) = self.index.records.last() else {
            self.last = self.borrow_last(work_dir);
            return;
        };
        match self.load_manifest(&newest.info.id, &newest.manifest) {
            Ok((manifest, depth, _)) => {
                self.last = Some(Last {
                    hash: newest.manifest.clone(),
                    depth,
                    taken_ns: newest.taken_ns,
                    manifest: Arc::new(manifest),
                    foreign: None,
                });
            }
            Err(e) => tracing::debug!("not comparing with the last checkpoint: {e}"),
        }
    }

    /// Where the root remembers which session last checkpointed `work_dir`.
    fn work_dir_mark(&self, work_dir: &Path) -> Option<PathBuf> {
        let root = self.dir.parent()?;
        let key = objects::hash_bytes(work_dir.as_os_str().as_encoded_bytes());
        Some(root.join("workdirs").join(format!("{key}.json")))
    }

    /// Remembers this session's newest checkpoint of `work_dir` for the next session on it. Best effort.
    fn mark_work_dir(&self, work_dir: &Path, manifest: &str, taken_ns: i64) {
        let Some(path) = self.work_dir_mark(work_dir) else {
            return;
        };
        let mark = WorkDirMark {
            session: self.session.to_string(),
            manifest: manifest.to_owned(),
            taken_ns,
        };
        let written = (|| -> std::io::Result<()> {
            use std::io::Write as _;
            let dir = path.parent().unwrap_or(&self.dir);
            crate::create_private_dir(dir)?;
            let mut tmp = tempfile::Builder::new().prefix(".mark-").tempfile_in(dir)?;
            tmp.write_all(&serde_json::to_vec(&mark).map_err(std::io::Error::other)?)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(e) = written {
            tracing::debug!("remembering the checkpoint of {}: {e}", work_dir.display());
        }
    }

    /// The newest checkpoint another session took of `work_dir`, if it is still there: a first capture compares
    /// with it and links its contents instead of reading every file again.
    fn borrow_last(&self, work_dir: &Path) -> Option<Last> {
        let bytes = std::fs::read(self.work_dir_mark(work_dir)?).ok()?;
        let mark: WorkDirMark = serde_json::from_slice(&bytes).ok()?;
        let other = crate::SessionId::new(mark.session).ok()?;
        if other == self.session {
            return None;
        }
        let objects = Objects::new(self.dir.parent()?.join(other.as_str()).join("objects"));
        match self.load_manifest_in(&objects, "borrowed", &mark.manifest) {
            Ok((manifest, depth, _)) => Some(Last {
                hash: mark.manifest,
                depth,
                taken_ns: mark.taken_ns,
                manifest: Arc::new(manifest),
                foreign: Some(objects),
            }),
            Err(e) => {
                tracing::debug!("not starting from session {other}'s checkpoint: {e}");
                None
            }
        }
    }

    /// Walks `work_dir` and names each file's content: from `previous` when its metadata says it is unchanged,
    /// else by reading it (and storing it, when `store`).
    fn scan(&self, work_dir: &Path, store: bool) -> Result<Scanned, CheckpointError> {
        let previous = self.last.as_ref();
        let (mut found, unrecordable) = manifest::walk(work_dir)
            .map_err(CheckpointError::io("reading the work directory", work_dir))?;
        let old_entries = previous.map_or(&[][..], |l| &l.manifest.entries[..]);
        let mut old = old_entries.iter().peekable();
        let mut skipped = unrecordable.not_utf8;
        // Files whose metadata vouches for them keep their hash; the others are read (on two threads when many).
        // Both lists are sorted by path: one pass matches them.
        let mut to_read = Vec::new();
        let mut linked = Vec::new();
        for (i, entry) in found.iter_mut().enumerate() {
            while old.next_if(|o| o.path < entry.path).is_some() {}
            if entry.kind != manifest::Kind::File {
                continue;
            }
            let known = old.peek().filter(|old| {
                old.path == entry.path
                    && old.kind == manifest::Kind::File
                    && old.size == entry.size
                    && old.mtime_ns == entry.mtime_ns
                    && old.ino == entry.ino
                    && previous.is_some_and(|l| manifest::trusted(old, l.taken_ns))
            });
            // A content borrowed from another session's checkpoint is linked into this session's objects (a hard
            // link: nothing is copied, and each session can drop its own); one that is gone there is read again.
            let borrowed = match (known, previous.and_then(|l| l.foreign.as_ref())) {
                (Some(old), Some(foreign)) if store && !self.objects.has(&old.target) => {
                    match self.objects.link_from(foreign, &old.target) {
                        Ok(()) => {
                            linked.push(old.target.clone());
                            true
                        }
                        Err(e) => {
                            tracing::debug!("reading {} again: {e}", entry.path);
                            false
                        }
                    }
                }
                (Some(_), _) => true,
                (None, _) => false,
            };
            if let (Some(old), true) = (known, borrowed) {
                entry.target.clone_from(&old.target);
            } else if entry.size > self.opts.max_file_bytes {
                skipped.push(entry.path.clone());
            } else {
                to_read.push(i);
            }
        }
        let read_one = |i: usize| {
            let path = work_dir.join(&found[i].path);
            let read = if store {
                objects::put_file(&self.objects, &path)
            } else {
                objects::hash_file(&path).map(|(h, n)| (h, n, 0))
            };
            (i, path, read)
        };
        let results: Vec<_> = if to_read.len() < 64 {
            to_read.iter().map(|&i| read_one(i)).collect()
        } else {
            let (a, b) = to_read.split_at(to_read.len() / 2);
            std::thread::scope(|scope| {
                let other = scope.spawn(|| b.iter().map(|&i| read_one(i)).collect::<Vec<_>>());
                let mut mine: Vec<_> = a.iter().map(|&i| read_one(i)).collect();
                match other.join() {
                    Ok(theirs) => mine.extend(theirs),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                mine
            })
        };
        let mut out = Scanned {
            entries: Vec::with_capacity(found.len()),
            skipped,
            new_objects: linked,
            stored_bytes: 0,
        };
        let mut keep = vec![true; found.len()];
        let mut written_now = HashSet::new();
        for (i, path, read) in results {
            match read {
                Ok((hash, size, written)) => {
                    // Two threads may store one content (two equal files) at once: count it once.
                    if written > 0 && written_now.insert(hash.clone()) {
                        out.new_objects.push(hash.clone());
                        out.stored_bytes += written;
                    }
                    found[i].size = size;
                    found[i].target = hash;
                }
                // Deleted (or replaced by a link) since the walk: not part of this checkpoint.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ELOOP) =>
                {
                    keep[i] = false;
                }
                Err(e) => return Err(CheckpointError::io("reading", path)(e)),
            }
        }
        let skipped: HashSet<&str> = out.skipped.iter().map(String::as_str).collect();
        let entries: Vec<_> = found
            .into_iter()
            .zip(keep)
            .filter(|(e, keep)| {
                *keep && !(e.kind == manifest::Kind::File && skipped.contains(e.path.as_str()))
            })
            .map(|(e, _)| e)
            .collect();
        out.entries = entries;
        Ok(out)
    }

    /// What rewinding `work_dir` to `record` would change now, without recording anything (a preview).
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the work directory cannot be read; [`CheckpointError::Damaged`].
    pub fn preview_files(
        &mut self,
        record: &CheckpointRecord,
        work_dir: &Path,
    ) -> Result<FilePlan, CheckpointError> {
        self.load_last(work_dir);
        let scanned = self.scan(work_dir, false)?;
        let now = Manifest {
            entries: scanned.entries,
        };
        let target = self.manifest(record)?;
        Ok(apply::plan(
            &target,
            &now,
            &record.info.skipped,
            &scanned.skipped,
            &on_disk(work_dir),
        ))
    }

    /// Deletes the objects no kept checkpoint needs (after [`Captured::pruned`]). Objects written after `since`
    /// are kept whatever happens.
    ///
    /// # Errors
    /// [`CheckpointError::Io`].
    pub fn collect_garbage(&self) -> Result<u64, CheckpointError> {
        let started = std::time::SystemTime::now();
        let mut live = HashSet::new();
        let mut heads = HashSet::new();
        for record in &self.index.records {
            live.insert(record.conversation.archives.clone());
            if let Some(tail) = &record.conversation.tail {
                live.insert(tail.messages.clone());
            }
            // Records often share a manifest: resolve each once.
            if !heads.insert(record.manifest.clone()) {
                continue;
            }
            match self.load_manifest(&record.info.id, &record.manifest) {
                Ok((m, _, chain)) => {
                    live.extend(chain);
                    live.extend(
                        m.entries
                            .into_iter()
                            .filter(|e| e.kind == manifest::Kind::File)
                            .map(|e| e.target),
                    );
                }
                // Taken elsewhere and known from a mirror's index: its objects are there, not here.
                Err(_) if !self.objects.has(&record.manifest) => {}
                // Collect nothing rather than something a checkpoint may need.
                Err(e) => {
                    tracing::warn!("not collecting checkpoint objects: {e}");
                    return Ok(0);
                }
            }
        }
        let mut removed = 0;
        for (hash, modified) in self
            .objects
            .all()
            .map_err(CheckpointError::io("listing", self.objects.dir()))?
        {
            if !live.contains(&hash) && modified < started {
                self.objects
                    .remove(&hash)
                    .map_err(CheckpointError::io("deleting from", self.objects.dir()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// How the conversation `history` changes when rewound to `record`.
    ///
    /// # Errors
    /// [`CheckpointError::OtherBranch`] when `history` no longer starts with the checkpoint's conversation;
    /// [`CheckpointError::Damaged`].
    pub fn conversation_plan(
        &self,
        record: &CheckpointRecord,
        history: &[Message],
    ) -> Result<ConversationPlan, CheckpointError> {
        let id = &record.info.id;
        let archives: Vec<ArchiveEntry> = self.read_json(id, &record.conversation.archives)?;
        let prefix_is = |len: u64, digest: &str| {
            usize::try_from(len)
                .ok()
                .and_then(|n| history.get(..n))
                .is_some_and(|p| HistoryDigest::of(p) == digest)
        };
        if prefix_is(record.info.messages, &record.conversation.digest) {
            return Ok(ConversationPlan {
                keep: record.info.messages,
                append: Vec::new(),
                archives,
            });
        }
        if let Some(tail) = &record.conversation.tail
            && prefix_is(tail.base, &tail.base_digest)
        {
            let append: Vec<Message> = self.read_json(id, &tail.messages)?;
            return Ok(ConversationPlan {
                keep: tail.base,
                append,
                archives,
            });
        }
        let hint = self
            .index
            .records
            .iter()
            .rev()
            .find(|r| {
                r.conversation
                    .tail
                    .as_ref()
                    .is_some_and(|t| prefix_is(t.base, &t.base_digest))
            })
            .map_or_else(|| "an earlier checkpoint".to_owned(), |r| r.info.id.clone());
        Err(CheckpointError::OtherBranch {
            id: id.clone(),
            hint,
        })
    }

    /// What rewinding `work_dir` to `record` changes, given `current`, the checkpoint just taken of it. Files
    /// `current` does not record but that exist are left alone ([`FilePlan::left_alone`]).
    ///
    /// # Errors
    /// [`CheckpointError::Damaged`] when a manifest or content is missing here.
    pub fn file_plan(
        &self,
        record: &CheckpointRecord,
        current: &CheckpointRecord,
        work_dir: &Path,
    ) -> Result<FilePlan, CheckpointError> {
        let target = self.manifest(record)?;
        let now = self.manifest(current)?;
        let plan = apply::plan(
            &target,
            &now,
            &record.info.skipped,
            &current.info.skipped,
            &on_disk(work_dir),
        );
        for hash in plan.contents() {
            if !self.objects.has(hash) {
                return Err(self.damaged(&record.info.id, format!("the content {hash} is missing")));
            }
        }
        Ok(plan)
    }

    /// Makes `work_dir` what `plan` says. Staging first (nothing in the work directory is replaced until every
    /// file's new content is written beside it), then renames and deletions.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when staging failed (nothing was changed); [`CheckpointError::Interrupted`] when a
    /// change failed after others were made (`saved_as` names the checkpoint holding the state before).
    pub fn apply_files(
        &self,
        work_dir: &Path,
        plan: &FilePlan,
        saved_as: &str,
    ) -> Result<(), CheckpointError> {
        apply::apply(&self.objects, work_dir, plan, saved_as)
    }

    /// Forgets the in-memory copy of the newest manifest (after something else changed the index).
    fn forget_last(&mut self) {
        self.last = None;
    }

    /// Merges `other`'s records (a mirror's index) into this one: records this index lacks are added, in creation
    /// order. Returns how many were added.
    fn merge(&mut self, other: Index) -> Result<usize, CheckpointError> {
        let known: HashSet<String> = self
            .index
            .records
            .iter()
            .map(|r| r.info.id.clone())
            .collect();
        let mut added = 0;
        for record in other.records {
            if !known.contains(&record.info.id) {
                self.index.records.push(record);
                added += 1;
            }
        }
        self.index.next_rewind = self.index.next_rewind.max(other.next_rewind);
        if added > 0 {
            self.index.version = INDEX_VERSION;
            self.index.records.sort_by_key(|r| r.info.created_ms);
            let excess = self
                .index
                .records
                .len()
                .saturating_sub(self.opts.keep.max(1));
            self.index.records.drain(..excess);
            self.write_index()?;
            self.forget_last();
        }
        Ok(added)
    }
}

/// Deletes session `session`'s checkpoints (when the session is deleted). Returns whether there were any.
///
/// # Errors
/// [`CheckpointError::Io`].
pub fn delete_session(
    session: &SessionId,
    opts: &CheckpointOptions,
) -> Result<bool, CheckpointError> {
    let root = opts.root().map_err(|e| CheckpointError::Io {
        op: "finding the checkpoint folder",
        path: PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let dir = root.join(session.as_str());
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CheckpointError::io("deleting", dir)(e)),
    }
}

/// JSON encoding behind a trait object, so one closure stores values of different types.
mod erased {
    pub(super) trait Json {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}

/// Whether something (anything, a link not followed) is at `rel` under `work_dir`.
fn on_disk(work_dir: &Path) -> impl Fn(&str) -> bool + '_ {
    move |rel| fs::symlink_metadata(work_dir.join(rel)).is_ok()
}
