//! JSON file store: one file per session, `<dir>/<id>.json`, and its lease in `<dir>/<id>.lease`.
//!
//! Every checkpoint rewrites the whole session file atomically (temp file in the same directory, `fsync`,
//! `rename`, `fsync` of the directory), so its cost grows with the session (see the crate README for numbers).
//! Operations on the directory are serialised between threads and processes by an advisory lock on
//! `<dir>/.lock` (`flock`), held only for the duration of one operation. A file that does not parse is moved to
//! `<id>.json.corrupt-<unix ms>` and reported as [`StoreError::Corrupt`], never treated as empty.

use std::fs;
use std::fs::File;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use codepilot_protocol::ArchiveEntry;
use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use serde::Deserialize;
use serde::Serialize;

use crate::SessionStore;
use crate::error::Result;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::lease::Lease;
use crate::lease::LeaseHolder;
use crate::lease::StoreOptions;
use crate::lease::new_token;
use crate::lease::now_millis;
use crate::lease::now_secs;
use crate::types::AgentSource;
use crate::types::Checkpoint;
use crate::types::SessionMeta;
use crate::types::SessionRecord;
use crate::types::SessionSummary;
use crate::types::overlap_range;
use crate::types::plan_merge;

const FORMAT: u32 = 1;

/// The on-disk session document.
#[derive(Debug, Serialize, Deserialize)]
struct SessionFile {
    format: u32,
    id: SessionId,
    agent_name: String,
    title: Option<String>,
    created_at: i64,
    updated_at: i64,
    task_counter: u64,
    usage: Usage,
    message_count: u64,
    messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    archives: Vec<ArchiveEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_source: Option<AgentSource>,
    /// [`crate::RawAnswer`]s by message index.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    answers: std::collections::BTreeMap<u64, String>,
}

/// The same document without its messages (serde skips them), for `list`.
#[derive(Debug, Deserialize)]
struct SummaryFile {
    id: SessionId,
    agent_name: String,
    title: Option<String>,
    created_at: i64,
    updated_at: i64,
    task_counter: u64,
    usage: Usage,
    message_count: u64,
    #[serde(default)]
    snapshot: Option<String>,
    #[serde(default)]
    agent_source: Option<AgentSource>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseFile {
    token: String,
    holder: LeaseHolder,
    expires_at_ms: i64,
}

impl SessionFile {
    fn into_record(self) -> SessionRecord {
        SessionRecord {
            id: self.id,
            messages: self.messages,
            task_counter: self.task_counter,
            usage: self.usage,
            archives: self.archives,
            meta: SessionMeta {
                agent_name: self.agent_name,
                title: self.title,
                created_at: self.created_at,
                updated_at: self.updated_at,
                message_count: self.message_count,
                snapshot: self.snapshot,
                agent_source: self.agent_source,
            },
        }
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    opts: StoreOptions,
}

/// Sessions as JSON files in one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

impl FileStore {
    /// A store in `dir`, created (with parents) if missing.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>, opts: StoreOptions) -> Result<Self> {
        let dir = dir.into();
        crate::create_private_dir(&dir)
            .map_err(|e| StoreError::io("creating session directory", &dir, e))?;
        Ok(Self {
            inner: Arc::new(Inner { dir, opts }),
        })
    }

    /// The directory holding the session files.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Path of a session's JSON file.
    #[must_use]
    pub fn session_path(&self, id: &SessionId) -> PathBuf {
        self.inner.json_path(id)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

/// Holds the directory lock until dropped (closing the file releases the `flock`).
struct DirLock {
    _file: File,
}

impl Inner {
    fn json_path(&self, id: &SessionId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn lease_path(&self, id: &SessionId) -> PathBuf {
        self.dir.join(format!("{id}.lease"))
    }

    fn lock(&self) -> Result<DirLock> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("opening lock file", &path, e))?;
        file.lock()
            .map_err(|e| StoreError::io("locking", &path, e))?;
        Ok(DirLock { _file: file })
    }

    /// Reads a session file. A file that does not parse is moved aside (caller holds the lock).
    fn read_session(&self, id: &SessionId) -> Result<Option<SessionFile>> {
        let path = self.json_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("reading", &path, e)),
        };
        let reason = match serde_json::from_slice::<SessionFile>(&bytes) {
            Ok(f) if f.id != *id => format!("it holds session {} instead", f.id),
            Ok(f) if u64::try_from(f.messages.len()).ok() != Some(f.message_count) => format!(
                "message_count says {} but it holds {} messages",
                f.message_count,
                f.messages.len()
            ),
            Ok(f) if f.format > FORMAT => {
                return Err(StoreError::Config(format!(
                    "{} was written by a newer codepilot (format {}); upgrade to read it",
                    path.display(),
                    f.format
                )));
            }
            Ok(f) => return Ok(Some(f)),
            Err(e) => e.to_string(),
        };
        let kept_at = self.move_aside(id, &path)?;
        tracing::warn!(path = %path.display(), kept_at = %kept_at.display(), %reason, "corrupt session file moved aside");
        Err(StoreError::Corrupt {
            path,
            kept_at,
            reason,
        })
    }

    /// Moves a corrupt file to a fresh `<id>.json.corrupt-<ms>[-n]` (never over an earlier kept copy).
    fn move_aside(&self, id: &SessionId, path: &Path) -> Result<PathBuf> {
        let ms = now_millis();
        for n in 0..1000 {
            let name = if n == 0 {
                format!("{id}.json.corrupt-{ms}")
            } else {
                format!("{id}.json.corrupt-{ms}-{n}")
            };
            let kept_at = self.dir.join(name);
            // hard_link fails if the target exists, unlike rename which would replace it.
            match fs::hard_link(path, &kept_at) {
                Ok(()) => {
                    fs::remove_file(path).map_err(|e| StoreError::io("moving aside", path, e))?;
                    sync_dir(&self.dir)?;
                    return Ok(kept_at);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io("moving aside", path, e)),
            }
        }
        Err(StoreError::io(
            "moving aside",
            path,
            std::io::Error::other("too many corrupt copies with the same timestamp"),
        ))
    }

    fn write_session(&self, file: &SessionFile) -> Result<()> {
        let path = self.json_path(&file.id);
        let bytes = serde_json::to_vec(file)
            .map_err(|e| StoreError::Worker(format!("serialising session {}: {e}", file.id)))?;
        atomic_write(&self.dir, &path, &bytes)
    }

    /// Reads the lease file. An unreadable lease file counts as no lease (it protects nothing).
    fn read_lease(&self, id: &SessionId) -> Result<Option<LeaseFile>> {
        let path = self.lease_path(id);
        match fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(l) => Ok(Some(l)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable lease file");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading", &path, e)),
        }
    }

    /// Checks that `lease` is the current one.
    fn check_owned(&self, lease: &Lease) -> Result<LeaseFile> {
        match self.read_lease(lease.session())? {
            Some(l) if l.token == lease.token() => Ok(l),
            other => Err(StoreError::LeaseLost {
                session: lease.session().clone(),
                holder: other.map(|l| l.holder),
            }),
        }
    }

    /// The holder of a live lease on `id`, if any (unreadable lease files count as none).
    fn live_holder(&self, id: &SessionId) -> Option<LeaseHolder> {
        self.read_lease(id)
            .ok()
            .flatten()
            .filter(|l| !self.opts.is_stale(&l.holder, l.expires_at_ms))
            .map(|l| l.holder)
    }

    /// Fails with `LeaseHeld` when a live holder has the session.
    fn check_free(&self, id: &SessionId) -> Result<Option<LeaseFile>> {
        let current = self.read_lease(id)?;
        if let Some(l) = &current
            && !self.opts.is_stale(&l.holder, l.expires_at_ms)
        {
            return Err(StoreError::LeaseHeld {
                session: id.clone(),
                holder: l.holder.clone(),
            });
        }
        Ok(current)
    }

    fn open(&self, id: &SessionId, agent_name: &str) -> Result<(Lease, SessionRecord)> {
        let _lock = self.lock()?;
        let previous = self.check_free(id)?;
        let session = if let Some(s) = self.read_session(id)? {
            s
        } else {
            let now = now_secs();
            let s = SessionFile {
                format: FORMAT,
                id: id.clone(),
                agent_name: agent_name.to_owned(),
                title: None,
                created_at: now,
                updated_at: now,
                task_counter: 0,
                usage: Usage::default(),
                message_count: 0,
                messages: Vec::new(),
                archives: Vec::new(),
                snapshot: None,
                agent_source: None,
                answers: std::collections::BTreeMap::new(),
            };
            self.write_session(&s)?;
            s
        };
        let lease_path = self.lease_path(id);
        if let Some(prev) = previous {
            tracing::info!(session = %id, holder = %prev.holder, "taking over a stale lease");
        }
        let holder = self.opts.new_holder();
        let lease = LeaseFile {
            token: new_token(),
            holder: holder.clone(),
            expires_at_ms: self.opts.expires_at_ms(),
        };
        let bytes = serde_json::to_vec(&lease)
            .map_err(|e| StoreError::Worker(format!("serialising lease: {e}")))?;
        // Under the directory lock, with no live holder: replace whatever lease file is there (a stale one, or an
        // empty or torn one a crash left behind), atomically, so a crash now cannot leave an unreadable lease.
        atomic_write(&self.dir, &lease_path, &bytes)?;
        Ok((
            Lease::new(id.clone(), holder, lease.token),
            session.into_record(),
        ))
    }

    /// The session `lease` holds, read for an update; the caller holds the directory lock.
    fn read_owned(&self, lease: &Lease) -> Result<SessionFile> {
        self.check_owned(lease)?;
        let id = lease.session();
        self.read_session(id)?.ok_or_else(|| StoreError::LeaseLost {
            session: id.clone(),
            holder: None,
        })
    }

    fn checkpoint(&self, lease: &Lease, cp: &Checkpoint) -> Result<()> {
        let _lock = self.lock()?;
        let id = lease.session();
        let mut s = self.read_owned(lease)?;
        let stored = s.message_count;
        let range = overlap_range(stored, cp);
        let start = usize::try_from(range.start).unwrap_or(usize::MAX);
        let end = usize::try_from(range.end).unwrap_or(usize::MAX);
        let plan = plan_merge(id, stored, s.messages.get(start..end).unwrap_or(&[]), cp)?;
        if !plan.update_counters {
            return Ok(());
        }
        s.messages
            .extend(cp.messages.iter().skip(plan.skip).cloned());
        s.message_count = u64::try_from(s.messages.len()).unwrap_or(u64::MAX);
        s.task_counter = cp.task_counter;
        s.usage = cp.usage;
        if cp.title.is_some() {
            s.title.clone_from(&cp.title);
        }
        if let Some(archives) = &cp.archives {
            s.archives.clone_from(archives);
        }
        for a in &cp.answers {
            s.answers.insert(a.index, a.content.clone());
        }
        s.updated_at = now_secs();
        self.write_session(&s)
    }

    fn rewrite_history(&self, lease: &Lease, rewrite: &crate::HistoryRewrite) -> Result<()> {
        let _lock = self.lock()?;
        let mut s = self.read_owned(lease)?;
        rewrite.check(lease.session(), s.message_count)?;
        s.messages
            .truncate(usize::try_from(rewrite.keep).unwrap_or(usize::MAX));
        s.messages.extend(rewrite.append.iter().cloned());
        s.message_count = rewrite.end();
        s.archives.clone_from(&rewrite.archives);
        s.answers.retain(|index, _| *index < rewrite.keep);
        s.updated_at = now_secs();
        self.write_session(&s)
    }

    fn set_snapshot(&self, lease: &Lease, key: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut s = self.read_owned(lease)?;
        s.snapshot = Some(key.to_owned());
        self.write_session(&s)
    }

    fn set_agent_source(&self, lease: &Lease, source: &AgentSource) -> Result<()> {
        source.to_json()?;
        let _lock = self.lock()?;
        let mut s = self.read_owned(lease)?;
        s.agent_source = Some(source.clone());
        self.write_session(&s)
    }

    fn events_path(&self, id: &SessionId) -> PathBuf {
        self.dir.join(format!("{id}.events.jsonl"))
    }

    /// The stored events of `id` (an unreadable trailing line, from a crash mid-append, ends the list).
    fn read_events(&self, id: &SessionId) -> Result<Vec<crate::StoredEvent>> {
        let path = self.events_path(id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("reading", &path, e)),
        };
        Ok(text
            .lines()
            .map_while(|l| serde_json::from_str::<crate::StoredEvent>(l).ok())
            .collect())
    }

    fn append_events(&self, lease: &Lease, events: &[crate::StoredEvent]) -> Result<()> {
        let _lock = self.lock()?;
        self.check_owned(lease)?;
        let id = lease.session();
        let last = self.read_events(id)?.last().map_or(0, |e| e.seq);
        let mut bytes = Vec::new();
        let mut next = last;
        for event in events {
            if event.seq <= next {
                continue;
            }
            next = event.seq;
            serde_json::to_writer(&mut bytes, event)
                .map_err(|e| StoreError::Worker(format!("serialising an event: {e}")))?;
            bytes.push(b'\n');
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let path = self.events_path(id);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io("opening", &path, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io("appending to", &path, e))
    }

    fn renew(&self, lease: &Lease) -> Result<()> {
        let _lock = self.lock()?;
        let mut l = self.check_owned(lease)?;
        l.expires_at_ms = self.opts.expires_at_ms();
        let bytes = serde_json::to_vec(&l)
            .map_err(|e| StoreError::Worker(format!("serialising lease: {e}")))?;
        atomic_write(&self.dir, &self.lease_path(lease.session()), &bytes)
    }

    fn release(&self, lease: &Lease) -> Result<()> {
        let _lock = self.lock()?;
        if self.check_owned(lease).is_ok() {
            remove_if_exists(&self.lease_path(lease.session()))?;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let _lock = self.lock()?;
        Ok(self.read_session(id)?.map(SessionFile::into_record))
    }

    fn list(&self) -> Result<Vec<SessionSummary>> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| StoreError::io("listing", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("listing", &self.dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if SessionId::new(stem).is_err() {
                continue;
            }
            let path = entry.path();
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<SummaryFile>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(s) => out.push(SessionSummary {
                    holder: self.live_holder(&s.id),
                    id: s.id,
                    meta: SessionMeta {
                        agent_name: s.agent_name,
                        title: s.title,
                        created_at: s.created_at,
                        updated_at: s.updated_at,
                        message_count: s.message_count,
                        snapshot: s.snapshot,
                        agent_source: s.agent_source,
                    },
                    task_counter: s.task_counter,
                    usage: s.usage,
                }),
                // Gone since read_dir (deleted) or corrupt: `load`/`open` report the corrupt ones.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable session file")
                }
            }
        }
        crate::sort_newest_first(&mut out);
        Ok(out)
    }

    fn delete(&self, id: &SessionId) -> Result<bool> {
        let _lock = self.lock()?;
        self.check_free(id)?;
        let existed = remove_if_exists(&self.json_path(id))?;
        remove_if_exists(&self.events_path(id))?;
        remove_if_exists(&self.lease_path(id))?;
        sync_dir(&self.dir)?;
        Ok(existed)
    }
}

fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("removing", path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing directory", dir, e))
}

/// Temp file in `dir`, write, fsync, rename over `path`, fsync `dir`.
fn atomic_write(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io("creating temp file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| StoreError::io("writing", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io("replacing", path, e.error))?;
    sync_dir(dir)
}

#[async_trait]
impl SessionStore for FileStore {
    fn lease_ttl(&self) -> Duration {
        self.inner.opts.lease_ttl
    }

    async fn open(&self, id: &SessionId, agent_name: &str) -> Result<(Lease, SessionRecord)> {
        let id = id.clone();
        let agent_name = agent_name.to_owned();
        self.blocking(move |s| s.open(&id, &agent_name)).await
    }

    async fn checkpoint(&self, lease: &Lease, cp: &Checkpoint) -> Result<()> {
        let lease = lease.duplicate();
        let cp = cp.clone();
        self.blocking(move |s| s.checkpoint(&lease, &cp)).await
    }

    async fn append_events(&self, lease: &Lease, events: &[crate::StoredEvent]) -> Result<()> {
        let lease = lease.duplicate();
        let events = events.to_vec();
        self.blocking(move |s| s.append_events(&lease, &events))
            .await
    }

    async fn rewrite_history(&self, lease: &Lease, rewrite: &crate::HistoryRewrite) -> Result<()> {
        let lease = lease.duplicate();
        let rewrite = rewrite.clone();
        self.blocking(move |s| s.rewrite_history(&lease, &rewrite))
            .await
    }

    async fn set_snapshot(&self, lease: &Lease, key: &str) -> Result<()> {
        let lease = lease.duplicate();
        let key = key.to_owned();
        self.blocking(move |s| s.set_snapshot(&lease, &key)).await
    }

    async fn set_agent_source(&self, lease: &Lease, source: &AgentSource) -> Result<()> {
        let lease = lease.duplicate();
        let source = source.clone();
        self.blocking(move |s| s.set_agent_source(&lease, &source))
            .await
    }

    async fn load_answers(&self, id: &SessionId) -> Result<Vec<crate::RawAnswer>> {
        let id = id.clone();
        self.blocking(move |s| {
            Ok(s.read_session(&id)?.map_or_else(Vec::new, |f| {
                f.answers
                    .into_iter()
                    .map(|(index, content)| crate::RawAnswer { index, content })
                    .collect()
            }))
        })
        .await
    }

    async fn load_events(
        &self,
        id: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::StoredEvent>> {
        let id = id.clone();
        self.blocking(move |s| {
            let events = s.read_events(&id)?;
            let start = events.partition_point(|e| e.seq <= after_seq);
            Ok(events.into_iter().skip(start).take(limit).collect())
        })
        .await
    }

    async fn last_event_seq(&self, id: &SessionId) -> Result<u64> {
        let id = id.clone();
        self.blocking(move |s| Ok(s.read_events(&id)?.last().map_or(0, |e| e.seq)))
            .await
    }

    async fn renew(&self, lease: &Lease) -> Result<()> {
        let lease = lease.duplicate();
        self.blocking(move |s| s.renew(&lease)).await
    }

    async fn release(&self, lease: Lease) -> Result<()> {
        self.blocking(move |s| s.release(&lease)).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let id = id.clone();
        self.blocking(move |s| s.load(&id)).await
    }

    async fn list(&self) -> Result<Vec<SessionSummary>> {
        self.blocking(Inner::list).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let id = id.clone();
        self.blocking(move |s| s.delete(&id)).await
    }
}
