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

/// The checkpoints of one session.
#[derive(Debug)]
pub struct SessionCheckpoints {
    session: SessionId,
    dir: PathBuf,
    objects: Objects,
    opts: CheckpointOptions,
    index: Index,
    /// The newest manifest, so the next capture compares with it without reading it back.
    last: Option<(String, Arc<Manifest>)>,
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
        if !objects::is_hash(hash) {
            return Err(self.damaged(id, format!("{hash:?} is not an object name")));
        }
        let bytes = self
            .objects
            .get(hash)
            .map_err(|e| self.damaged(id, format!("object {hash}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| self.damaged(id, format!("object {hash}: {e}")))
    }

    /// The manifest of `record`.
    fn manifest(&self, record: &CheckpointRecord) -> Result<Arc<Manifest>, CheckpointError> {
        if let Some((hash, m)) = &self.last
            && *hash == record.manifest
        {
            return Ok(Arc::clone(m));
        }
        self.read_json(&record.info.id, &record.manifest)
            .map(Arc::new)
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
        let mut want = vec![
            record.manifest.clone(),
            record.conversation.archives.clone(),
        ];
        if let Some(tail) = &record.conversation.tail {
            want.push(tail.messages.clone());
        }
        if self.objects.has(&record.manifest) {
            let manifest = self.manifest(record)?;
            want.extend(
                manifest
                    .entries
                    .iter()
                    .filter(|e| e.kind == manifest::Kind::File)
                    .map(|e| e.target.clone()),
            );
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
        self.load_last();
        let previous = self.last.as_ref().map(|(_, m)| Arc::clone(m));
        let scanned = self.scan(work_dir, previous.as_deref(), true)?;
        let mut new_objects = scanned.new_objects;
        let mut stored_bytes = scanned.stored_bytes;
        let skipped = scanned.skipped;
        let entries = scanned.entries;
        // The same manifest serves again, unless it holds files it could not vouch for (changed just before it was
        // taken): a new one, taken later, can.
        let same_as_before = previous.as_ref().is_some_and(|m| {
            m.entries == entries
                && m.entries
                    .iter()
                    .all(|e| e.kind != manifest::Kind::File || m.trusted(e))
        });
        let (manifest_hash, manifest) = match (&self.last, same_as_before) {
            (Some((hash, m)), true) => (hash.clone(), Arc::clone(m)),
            _ => {
                let manifest = Manifest { taken_ns, entries };
                let json = serde_json::to_vec(&manifest).map_err(|e| CheckpointError::Io {
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
                (hash, Arc::new(manifest))
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
        };
        self.index.version = INDEX_VERSION;
        self.index.records.retain(|r| r.info.id != id);
        self.index.records.push(record);
        let keep = self.opts.keep.max(1);
        let excess = self.index.records.len().saturating_sub(keep);
        let pruned = excess > 0;
        self.index.records.drain(..excess);
        self.write_index()?;
        self.last = Some((manifest_hash, manifest));
        Ok(Captured {
            info,
            new_objects,
            pruned,
        })
    }

    /// Reads the newest checkpoint's manifest into memory if it is not there: the first capture since this process
    /// opened the session compares with it.
    fn load_last(&mut self) {
        if self.last.is_some() {
            return;
        }
        if let Some(newest) = self.index.records.last() {
            match self.manifest(newest) {
                Ok(m) => self.last = Some((newest.manifest.clone(), m)),
                Err(e) => tracing::debug!("not comparing with the last checkpoint: {e}"),
            }
        }
    }

    /// Walks `work_dir` and names each file's content: from `previous` when its metadata says it is unchanged,
    /// else by reading it (and storing it, when `store`).
    fn scan(
        &self,
        work_dir: &Path,
        previous: Option<&Manifest>,
        store: bool,
    ) -> Result<Scanned, CheckpointError> {
        let (found, unrecordable) = manifest::walk(work_dir)
            .map_err(CheckpointError::io("reading the work directory", work_dir))?;
        let by_path = previous.map(Manifest::by_path).unwrap_or_default();
        let mut out = Scanned {
            entries: Vec::with_capacity(found.len()),
            skipped: unrecordable.not_utf8,
            new_objects: Vec::new(),
            stored_bytes: 0,
        };
        for mut entry in found {
            if entry.kind == manifest::Kind::File {
                let known = by_path.get(entry.path.as_str()).filter(|old| {
                    old.kind == manifest::Kind::File
                        && old.size == entry.size
                        && old.mtime_ns == entry.mtime_ns
                        && old.ino == entry.ino
                        && previous.is_some_and(|m| m.trusted(old))
                });
                if let Some(old) = known {
                    entry.target.clone_from(&old.target);
                } else if entry.size > self.opts.max_file_bytes {
                    out.skipped.push(entry.path.clone());
                    continue;
                } else {
                    let path = work_dir.join(&entry.path);
                    let read = if store {
                        objects::put_file(&self.objects, &path)
                    } else {
                        objects::hash_file(&path).map(|(h, n)| (h, n, 0))
                    };
                    match read {
                        Ok((hash, read, written)) => {
                            if written > 0 {
                                out.new_objects.push(hash.clone());
                                out.stored_bytes += written;
                            }
                            entry.size = read;
                            entry.target = hash;
                        }
                        // Deleted (or replaced by a link) since the walk: not part of this checkpoint.
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                || e.raw_os_error() == Some(libc::ELOOP) =>
                        {
                            continue;
                        }
                        Err(e) => return Err(CheckpointError::io("reading", path)(e)),
                    }
                }
            }
            out.entries.push(entry);
        }
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
        self.load_last();
        let previous = self.last.as_ref().map(|(_, m)| Arc::clone(m));
        let scanned = self.scan(work_dir, previous.as_deref(), false)?;
        let now = Manifest {
            taken_ns: 0,
            entries: scanned.entries,
        };
        let target = self.manifest(record)?;
        Ok(apply::plan(
            &target,
            &now,
            &record.info.skipped,
            &scanned.skipped,
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
        for record in &self.index.records {
            live.insert(record.manifest.clone());
            live.insert(record.conversation.archives.clone());
            if let Some(tail) = &record.conversation.tail {
                live.insert(tail.messages.clone());
            }
            match self.manifest(record) {
                Ok(m) => live.extend(
                    m.entries
                        .iter()
                        .filter(|e| e.kind == manifest::Kind::File)
                        .map(|e| e.target.clone()),
                ),
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

    /// What rewinding `work_dir` to `record` changes, given `current`, the checkpoint just taken of it.
    ///
    /// # Errors
    /// [`CheckpointError::Damaged`] when a manifest or content is missing here.
    pub fn file_plan(
        &self,
        record: &CheckpointRecord,
        current: &CheckpointRecord,
    ) -> Result<FilePlan, CheckpointError> {
        let target = self.manifest(record)?;
        let now = self.manifest(current)?;
        let plan = apply::plan(&target, &now, &record.info.skipped, &current.info.skipped);
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
