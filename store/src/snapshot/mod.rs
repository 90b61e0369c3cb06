//! Workspace snapshots (SPEC §17): a session's work directory archived (tar + zstd, `.gitignore` respected, size
//! cap) into an object store — a local directory (`file:///dir`) or an S3-compatible bucket
//! (`s3://bucket/prefix`) — so the session can resume on another machine with its files.
//!
//! The session store records each session's latest snapshot ([`SessionMeta::snapshot`](crate::SessionMeta)), so
//! history and workspace stay linked: [`SnapshotStore::save`] uploads first and records second, and
//! [`SnapshotStore::prepare`] restores the recorded snapshot into a work directory that lacks it. A small marker
//! per session under the state directory remembers which snapshot a local work directory holds, so an unchanged
//! workspace is neither archived again nor restored over.
//!
//! Objects are named `<session>/<unix-ms>-<random>.tar.zst` under the store's prefix.

mod archive;
mod error;
mod marker;
mod open;
mod options;
mod restore;

use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures_util::StreamExt as _;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;

pub use error::SnapshotError;
use marker::Marker;
pub use options::DEFAULT_KEEP;
pub use options::DEFAULT_MAX_BYTES;
pub use options::Prepared;
pub use options::RestoreMode;
pub use options::Saved;
pub use options::SnapshotInfo;
pub use options::SnapshotOptions;

use crate::Lease;
use crate::SessionId;
use crate::SessionStore;

/// Size of the parts of a multipart upload (S3 wants at least 5 MiB for all but the last).
const PART_BYTES: usize = 10 << 20;

/// Object name suffix.
const SUFFIX: &str = ".tar.zst";

/// Snapshots in one object store. Cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    objects: Arc<dyn ObjectStore>,
    url: String,
    opts: SnapshotOptions,
    state_dir: PathBuf,
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("url", &self.url)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl SnapshotStore {
    /// The store's URL, as given.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same store as a mirror of sessions' checkpoints (SPEC §19), so they follow the workspace to another
    /// machine.
    #[must_use]
    pub fn checkpoint_mirror(&self) -> crate::checkpoint::CheckpointMirror {
        crate::checkpoint::CheckpointMirror::new(Arc::clone(&self.objects), self.url.clone())
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &SnapshotOptions {
        &self.opts
    }

    fn store_error(&self, op: &'static str) -> impl FnOnce(object_store::Error) -> SnapshotError {
        let store = self.url.clone();
        move |source| SnapshotError::Store { store, op, source }
    }
    /// Archives `work_dir` and stores it as session `lease.session()`'s latest snapshot, unless it is unchanged
    /// since snapshot `recorded` (the session's current one, [`SessionMeta::snapshot`](crate::SessionMeta)) was
    /// taken or restored here. Old snapshots beyond [`SnapshotOptions::keep`] are pruned; the new one never is.
    ///
    /// Upload first, record second: a failure leaves the recorded snapshot as it was.
    ///
    /// # Errors
    /// [`SnapshotError::TooLarge`] over the cap, [`SnapshotError::Store`] when the upload fails,
    /// [`SnapshotError::Session`] when the session store does not take the record (the upload is deleted when the
    /// lease was lost; after an ambiguous database error it is left for pruning), [`SnapshotError::Io`].
    pub async fn save(
        &self,
        sessions: &dyn SessionStore,
        lease: &Lease,
        work_dir: &Path,
        recorded: Option<&str>,
    ) -> Result<Saved, SnapshotError> {
        let started = Instant::now();
        let session = lease.session().clone();
        let this = self.clone();
        let root = work_dir.to_path_buf();
        let id = session.clone();
        let recorded_key = recorded.map(str::to_owned);
        let packed = tokio::task::spawn_blocking(move || {
            let io = |op, path: &Path| {
                let path = path.to_path_buf();
                move |source| SnapshotError::Io { op, path, source }
            };
            // Unchanged only against what this directory held when the recorded snapshot was taken or restored.
            let previous = this
                .read_marker(&id)
                .filter(|m| m.work_dir == root && m.key.is_some() && m.key == recorded_key)
                .and_then(|m| m.fingerprint);
            let scan = archive::scan(&root).map_err(io("reading the workspace", &root))?;
            if previous.as_deref() == Some(scan.fingerprint.as_str()) {
                return Ok((scan, None));
            }
            if scan.content_bytes > this.opts.max_bytes {
                return Err(SnapshotError::TooLarge {
                    work_dir: root,
                    bytes: scan.content_bytes,
                    limit: this.opts.max_bytes,
                    largest: scan.largest,
                });
            }
            let tmp = tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(&this.state_dir)
                .map_err(io("creating a scratch file in", &this.state_dir))?;
            let changed = archive::pack(&scan, std::io::BufWriter::new(tmp.as_file()))
                .map_err(io("archiving the workspace", &root))?;
            Ok((scan, Some((tmp, changed))))
        })
        .await
        .map_err(|e| SnapshotError::Io {
            op: "archiving the workspace",
            path: work_dir.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
        let (scan, Some((tmp, changed))) = packed else {
            return Ok(Saved::Unchanged {
                key: recorded.unwrap_or_default().to_owned(),
            });
        };
        let key = new_key(&session, recorded);
        let size = self.upload(tmp.path(), &key).await?;
        drop(tmp);
        if let Err(e) = sessions.set_snapshot(lease, &key).await {
            // Only a lost lease proves the record did not happen; after any other error it may have committed.
            if e.is_lease_lost() || e.is_lease_held() {
                if let Err(cleanup) = self.objects.delete(&ObjectPath::from(key.as_str())).await {
                    tracing::warn!("deleting unrecorded snapshot {key}: {cleanup}");
                }
            } else {
                tracing::warn!("snapshot {key} may not be recorded ({e}); it stays until pruned");
            }
            return Err(e.into());
        }
        // A workspace that changed while it was read is not an exact copy: leave no fingerprint, so the next
        // save archives it again.
        let marker = Marker {
            work_dir: work_dir.to_path_buf(),
            key: Some(key.clone()),
            fingerprint: (!changed).then_some(scan.fingerprint),
        };
        let this = self.clone();
        let id = session.clone();
        tokio::task::spawn_blocking(move || this.write_marker(&id, &marker))
            .await
            .map_err(|e| SnapshotError::Io {
                op: "writing the snapshot marker",
                path: self.marker_path(&session),
                source: std::io::Error::other(e),
            })??;
        if let Err(e) = self
            .prune(Some(&session), self.opts.keep, None, &[key.as_str()])
            .await
        {
            tracing::warn!("pruning old snapshots of session {session}: {e}");
        }
        Ok(Saved::Stored {
            info: SnapshotInfo {
                created_ms: created_ms(&key).unwrap_or(0),
                key,
                session: session.to_string(),
                size,
            },
            files: scan.files,
            content_bytes: scan.content_bytes,
            elapsed: started.elapsed(),
        })
    }

    /// Uploads the file at `path` as `key`, in one request up to [`PART_BYTES`], else in parts of that size (an
    /// unfinished multipart upload is aborted); returns its size.
    async fn upload(&self, path: &Path, key: &str) -> Result<u64, SnapshotError> {
        use tokio::io::AsyncReadExt as _;
        let io = |source| SnapshotError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source,
        };
        let location = ObjectPath::from(key);
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut bytes).await.map_err(io)?;
            self.objects
                .put(&location, bytes.into())
                .await
                .map_err(self.store_error("uploading a snapshot"))?;
            return Ok(size);
        }
        let upload = self
            .objects
            .put_multipart(&location)
            .await
            .map_err(self.store_error("starting a snapshot upload"))?;
        let mut parts = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let written = async {
            let mut buf = vec![0_u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok(());
                }
                parts
                    .wait_for_capacity(4)
                    .await
                    .map_err(self.store_error("uploading a snapshot"))?;
                parts.write(&buf[..n]);
            }
        }
        .await;
        match written {
            Ok(()) => {
                parts
                    .finish()
                    .await
                    .map_err(self.store_error("uploading a snapshot"))?;
                Ok(size)
            }
            Err(e) => {
                if let Err(abort) = parts.abort().await {
                    tracing::debug!("aborting the upload of {key}: {abort}");
                }
                Err(e)
            }
        }
    }
    /// The snapshots of `session` (all sessions when `None`), newest first.
    ///
    /// # Errors
    /// [`SnapshotError::Store`].
    pub async fn list(
        &self,
        session: Option<&SessionId>,
    ) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let prefix = session.map(|s| ObjectPath::from(s.as_str()));
        let mut stream = self.objects.list(prefix.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(self.store_error("listing snapshots"))?;
            let key = meta.location.to_string();
            let Some((session, _)) = key.split_once('/') else {
                continue;
            };
            let Some(created_ms) = created_ms(&key) else {
                continue;
            };
            out.push(SnapshotInfo {
                session: session.to_owned(),
                created_ms,
                key,
                size: meta.size,
            });
        }
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.key.cmp(&a.key)));
        Ok(out)
    }

    /// Deletes snapshot `key`.
    ///
    /// # Errors
    /// [`SnapshotError::Missing`] when there is none, [`SnapshotError::Store`].
    pub async fn delete(&self, key: &str) -> Result<(), SnapshotError> {
        let path = ObjectPath::from(key);
        match self.objects.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(SnapshotError::Missing {
                    store: self.url.clone(),
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(self.store_error("looking up a snapshot")(e)),
        }
        self.objects
            .delete(&path)
            .await
            .map_err(self.store_error("deleting a snapshot"))
    }

    /// Deletes old snapshots of `session` (of every session when `None`): each session keeps its `keep` newest
    /// (at least one) and every key in `protect` (pass the keys sessions record, [`SessionMeta::snapshot`](crate::SessionMeta::snapshot)
    /// (crate::SessionMeta), when known); of the rest, those older than `older_than` are deleted, or all of them
    /// when `older_than` is `None`. Returns the deleted snapshots.
    ///
    /// # Errors
    /// [`SnapshotError::Store`].
    pub async fn prune(
        &self,
        session: Option<&SessionId>,
        keep: usize,
        older_than: Option<Duration>,
        protect: &[&str],
    ) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let all = self.list(session).await?;
        let cutoff = older_than.map(|age| {
            crate::lease::now_millis()
                .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
        });
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut deleted = Vec::new();
        for info in all {
            let n = seen.entry(info.session.clone()).or_default();
            *n += 1;
            if *n <= keep.max(1)
                || cutoff.is_some_and(|c| info.created_ms > c)
                || protect.contains(&info.key.as_str())
            {
                continue;
            }
            self.objects
                .delete(&ObjectPath::from(info.key.as_str()))
                .await
                .map_err(self.store_error("deleting a snapshot"))?;
            deleted.push(info);
        }
        Ok(deleted)
    }
}
/// A fresh object key for `session`, after `previous` (its current snapshot): ordered by time, and always after
/// `previous` even when this machine's clock is behind the one that took it, so "newest" stays the current one.
fn new_key(session: &SessionId, previous: Option<&str>) -> String {
    let random = uuid::Uuid::now_v7().simple().to_string();
    let after = previous
        .and_then(created_ms)
        .map_or(0, |ms| ms.saturating_add(1));
    format!(
        "{session}/{:013}-{}{SUFFIX}",
        crate::lease::now_millis().max(after),
        &random[random.len() - 8..]
    )
}

/// The creation time a key carries.
fn created_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?.strip_suffix(SUFFIX)?;
    name.split_once('-')?.0.parse().ok()
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn keys_carry_their_time() {
        let id = SessionId::new("s-1").unwrap();
        let key = new_key(&id, None);
        assert!(key.starts_with("s-1/"));
        let ms = created_ms(&key).unwrap();
        assert!((ms - crate::lease::now_millis()).abs() < 60_000);
        // A key from a machine whose clock is ahead: the next one still sorts after it.
        let ahead = format!("s-1/{:013}-00000000.tar.zst", ms + 3_600_000);
        assert_eq!(
            created_ms(&new_key(&id, Some(&ahead))),
            Some(ms + 3_600_001)
        );
        assert_eq!(created_ms("s/notatime.tar.zst"), None);
    }

    #[test]
    fn restore_modes_parse() {
        assert_eq!("if-empty".parse::<RestoreMode>(), Ok(RestoreMode::IfEmpty));
        assert_eq!("skip".parse::<RestoreMode>(), Ok(RestoreMode::Skip));
        assert!("always".parse::<RestoreMode>().is_err());
    }
}
