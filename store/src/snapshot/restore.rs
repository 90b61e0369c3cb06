//! Restoring: [`SnapshotStore::prepare`] before a runtime starts on a work directory, and
//! [`SnapshotStore::extract`] for a person who wants a workspace out of the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt as _;

use super::Marker;
use super::Prepared;
use super::RestoreMode;
use super::SnapshotError;
use super::SnapshotStore;
use super::archive;
use crate::SessionId;
use crate::SessionRecord;

/// What [`SnapshotStore::prepare`] does with a work directory.
enum Decision {
    Restore,
    UpToDate,
    Refuse,
}

impl SnapshotStore {
    /// Makes `work_dir` hold `record`'s latest snapshot, per `mode`, before a runtime starts on it.
    ///
    /// [`RestoreMode::IfEmpty`] restores into a missing or empty directory, and over a directory that is exactly
    /// what this machine last saved or restored for the session (an older copy); anything else is refused.
    ///
    /// # Errors
    /// [`SnapshotError::NotEmpty`] (mode [`RestoreMode::IfEmpty`] and a directory holding something else),
    /// [`SnapshotError::Missing`], [`SnapshotError::Corrupt`], [`SnapshotError::Store`] (unreachable),
    /// [`SnapshotError::Interrupted`], [`SnapshotError::Io`].
    pub async fn prepare(
        &self,
        record: &SessionRecord,
        work_dir: &Path,
        mode: RestoreMode,
    ) -> Result<Prepared, SnapshotError> {
        let Some(key) = record.meta.snapshot.clone() else {
            return Ok(Prepared::NoSnapshot);
        };
        if mode == RestoreMode::Skip {
            return Ok(Prepared::Skipped { key });
        }
        let this = self.clone();
        let session = record.id.clone();
        let root = work_dir.to_path_buf();
        let wanted = key.clone();
        let decision = tokio::task::spawn_blocking(move || {
            let io = |source| SnapshotError::Io {
                op: "reading",
                path: root.clone(),
                source,
            };
            let marker = this.read_marker(&session).filter(|m| m.work_dir == root);
            if archive::is_empty_dir(&root).map_err(io)? {
                return Ok::<_, SnapshotError>(Decision::Restore);
            }
            let Some(marker) = marker else {
                return Ok(if mode == RestoreMode::Replace {
                    Decision::Restore
                } else {
                    Decision::Refuse
                });
            };
            if marker.key.as_deref() == Some(wanted.as_str()) {
                return Ok(Decision::UpToDate);
            }
            if mode == RestoreMode::Replace {
                return Ok(Decision::Restore);
            }
            // An older copy of this session's workspace, restored over only if nobody changed it since.
            let unchanged = match &marker.fingerprint {
                Some(fp) => archive::scan(&root).map_err(io)?.fingerprint == *fp,
                None => false,
            };
            Ok(if unchanged {
                Decision::Restore
            } else {
                Decision::Refuse
            })
        })
        .await
        .map_err(|e| SnapshotError::Io {
            op: "reading",
            path: work_dir.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
        match decision {
            Decision::Restore => self.restore(&record.id, &key, work_dir).await,
            Decision::UpToDate => Ok(Prepared::UpToDate { key }),
            Decision::Refuse => Err(SnapshotError::NotEmpty {
                work_dir: work_dir.to_path_buf(),
                session: record.id.clone(),
                key,
            }),
        }
    }

    /// Downloads snapshot `key` and puts its files into `work_dir`, recording it in the marker.
    async fn restore(
        &self,
        session: &SessionId,
        key: &str,
        work_dir: &Path,
    ) -> Result<Prepared, SnapshotError> {
        let started = Instant::now();
        let (tmp, size) = self.download(key).await?;
        let this = self.clone();
        let session = session.clone();
        let root = work_dir.to_path_buf();
        let key_owned = key.to_owned();
        let files = tokio::task::spawn_blocking(move || {
            let in_progress = Marker {
                work_dir: root.clone(),
                key: None,
                fingerprint: None,
            };
            this.unpack_file(tmp.path(), &key_owned, &root, || {
                this.write_marker(&session, &in_progress)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })?;
            let scan = archive::scan(&root).map_err(|source| SnapshotError::Io {
                op: "reading the restored workspace",
                path: root.clone(),
                source,
            })?;
            this.write_marker(
                &session,
                &Marker {
                    work_dir: root,
                    key: Some(key_owned),
                    fingerprint: Some(scan.fingerprint),
                },
            )?;
            Ok::<_, SnapshotError>(scan.files)
        })
        .await
        .map_err(|e| SnapshotError::Io {
            op: "restoring the workspace into",
            path: work_dir.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
        Ok(Prepared::Restored {
            key: key.to_owned(),
            files,
            size,
            elapsed: started.elapsed(),
        })
    }

    /// Unpacks the downloaded snapshot at `path` into `root` (blocking), telling archive errors from local ones.
    fn unpack_file(
        &self,
        path: &Path,
        key: &str,
        root: &Path,
        before_swap: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<(), SnapshotError> {
        let file = std::fs::File::open(path).map_err(|source| SnapshotError::Io {
            op: "opening",
            path: path.to_path_buf(),
            source,
        })?;
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = Flagged {
            inner: std::io::BufReader::new(file),
            failed: Arc::clone(&failed),
        };
        archive::restore_into(reader, &failed, root, self.opts.max_bytes, before_swap).map_err(
            |e| match e {
                archive::RestoreError::Archive(e) => SnapshotError::Corrupt {
                    store: self.url.clone(),
                    key: key.to_owned(),
                    reason: e.to_string(),
                },
                archive::RestoreError::Local(source) => SnapshotError::Io {
                    op: "restoring the workspace into",
                    path: root.to_path_buf(),
                    source,
                },
                archive::RestoreError::Midway { kept, source } => SnapshotError::Interrupted {
                    work_dir: root.to_path_buf(),
                    kept,
                    source,
                },
            },
        )
    }

    /// Downloads `key` into a scratch file.
    async fn download(&self, key: &str) -> Result<(tempfile::NamedTempFile, u64), SnapshotError> {
        let got = match self.objects.get(&ObjectPath::from(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(SnapshotError::Missing {
                    store: self.url.clone(),
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(self.store_error("downloading a snapshot")(e)),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(&self.state_dir)
            .map_err(|source| SnapshotError::Io {
                op: "creating a scratch file in",
                path: self.state_dir.clone(),
                source,
            })?;
        let io = |source| SnapshotError::Io {
            op: "writing",
            path: tmp.path().to_path_buf(),
            source,
        };
        let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let mut stream = got.into_stream();
        let mut size = 0_u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.store_error("downloading a snapshot"))?;
            size += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        Ok((tmp, size))
    }

    /// Puts the files of snapshot `key` into `dir` (created if missing; the files a snapshot would hold are
    /// replaced, `.gitignore`d ones stay), for a person who wants a workspace out of the store. Leaves no marker:
    /// the directory is not tied to a session. Returns the number of files.
    ///
    /// # Errors
    /// [`SnapshotError::Missing`], [`SnapshotError::Corrupt`], [`SnapshotError::Store`],
    /// [`SnapshotError::Interrupted`], [`SnapshotError::Io`].
    pub async fn extract(&self, key: &str, dir: &Path) -> Result<u64, SnapshotError> {
        let (tmp, _) = self.download(key).await?;
        let this = self.clone();
        let root = dir.to_path_buf();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            this.unpack_file(tmp.path(), &key, &root, || Ok(()))?;
            archive::scan(&root)
                .map(|s| s.files)
                .map_err(|source| SnapshotError::Io {
                    op: "reading",
                    path: root,
                    source,
                })
        })
        .await
        .map_err(|e| SnapshotError::Io {
            op: "extracting into",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e),
        })?
    }
}

/// A reader that notes when it failed, so an unpack error can be told apart: the archive (corrupt) or the disk.
struct Flagged<R> {
    inner: R,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl<R: std::io::Read> std::io::Read for Flagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        })
    }
}
