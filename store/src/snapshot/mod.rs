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

use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures_util::StreamExt as _;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

use crate::Lease;
use crate::SessionId;
use crate::SessionRecord;
use crate::SessionStore;
use crate::StoreError;

/// Default cap on the size of the files a snapshot holds: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Default number of snapshots kept per session.
pub const DEFAULT_KEEP: usize = 10;

/// Size of the parts of a multipart upload (S3 wants at least 5 MiB for all but the last).
const PART_BYTES: usize = 10 << 20;

/// Object name suffix.
const SUFFIX: &str = ".tar.zst";

/// Everything snapshots can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The store URL is not one this build understands.
    #[error("bad snapshot store {url:?}: {reason}; use file:///ABSOLUTE/DIR or s3://BUCKET/PREFIX")]
    Url {
        /// The URL given.
        url: String,
        /// What was wrong.
        reason: String,
    },

    /// The workspace holds more than the cap.
    #[error(
        "the workspace {} holds {} of files, more than the snapshot cap of {}{}; add large paths to .gitignore or raise the cap (--snapshot-max-mb)",
        work_dir.display(),
        human(*bytes),
        human(*limit),
        largest_list(largest)
    )]
    TooLarge {
        /// The work directory.
        work_dir: PathBuf,
        /// Its size.
        bytes: u64,
        /// The cap.
        limit: u64,
        /// Its largest files, biggest first.
        largest: Vec<(String, u64)>,
    },

    /// The recorded snapshot is not in the store.
    #[error(
        "snapshot {key} of this session is missing from {store}; the session's history is intact: start it with restore `skip` to go on with the work_dir as it is (restore an older snapshot into it first with `codepilot snapshots restore`), or point --snapshots at the store that holds it"
    )]
    Missing {
        /// The store.
        store: String,
        /// The object key.
        key: String,
    },

    /// The snapshot could not be unpacked.
    #[error(
        "snapshot {key} in {store} is corrupt ({reason}); the session's history is intact: start it with restore `skip` to go on with the work_dir as it is (restore an older snapshot into it first with `codepilot snapshots restore`)"
    )]
    Corrupt {
        /// The store.
        store: String,
        /// The object key.
        key: String,
        /// What the decoder said.
        reason: String,
    },

    /// The object store failed (unreachable, refused, full).
    #[error("the snapshot store {store} failed while {op}: {source}")]
    Store {
        /// The store.
        store: String,
        /// What was being done.
        op: &'static str,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    /// The work directory holds files that are not an unchanged copy of this session's workspace.
    #[error(
        "the work_dir {} is not empty and is not an unchanged copy of session {session}'s workspace, so its snapshot {key} was not restored over it; resume into an empty or missing directory, or start the session with restore `replace` (replaces the files a snapshot holds; .gitignored files stay) or `skip` (keeps the directory as it is)",
        work_dir.display()
    )]
    NotEmpty {
        /// The work directory.
        work_dir: PathBuf,
        /// The session.
        session: SessionId,
        /// The snapshot that was not restored.
        key: String,
    },

    /// A restore failed after it had started moving files; none were deleted.
    #[error(
        "restoring into {} failed midway ({source}); the files it had moved aside are in {}, nothing was deleted: move back what you need, then start the session again",
        work_dir.display(),
        kept.display()
    )]
    Interrupted {
        /// The work directory.
        work_dir: PathBuf,
        /// Where the replaced files are.
        kept: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },

    /// Recording the snapshot with the session failed.
    #[error(transparent)]
    Session(#[from] StoreError),
}

fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mib = bytes as f64 / f64::from(1 << 20);
    format!("{mib:.1} MiB")
}

fn largest_list(largest: &[(String, u64)]) -> String {
    if largest.is_empty() {
        return String::new();
    }
    let list: Vec<String> = largest
        .iter()
        .map(|(p, n)| format!("{p} ({})", human(*n)))
        .collect();
    format!(" (largest: {})", list.join(", "))
}

/// What [`SnapshotStore::prepare`] does with a work directory when the session has a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMode {
    /// Restore into a missing or empty work directory, or over an older copy of this session's workspace; refuse
    /// ([`SnapshotError::NotEmpty`]) to restore over anything else.
    #[default]
    IfEmpty,
    /// Restore whatever the work directory holds: the files a snapshot would hold are replaced (files
    /// `.gitignore` excludes stay).
    Replace,
    /// Never restore: use the work directory as it is.
    Skip,
}

impl FromStr for RestoreMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "if-empty" => Ok(Self::IfEmpty),
            "replace" => Ok(Self::Replace),
            "skip" => Ok(Self::Skip),
            other => Err(format!(
                "unknown restore mode {other:?}; use if-empty, replace or skip"
            )),
        }
    }
}

/// How a [`SnapshotStore`] behaves.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Largest total size of the files a snapshot may hold. Default [`DEFAULT_MAX_BYTES`].
    pub max_bytes: u64,
    /// Snapshots kept per session after each save (the newest; at least 1). Default [`DEFAULT_KEEP`].
    pub keep: usize,
    /// Where markers and upload scratch files live. Default: `workspaces/` in [`codepilot_home`](crate::codepilot_home).
    pub state_dir: Option<PathBuf>,
    /// The `AWS_*` settings an `s3://` store reads, instead of the process environment (for hosts that keep
    /// credentials elsewhere, and tests).
    pub env: Option<Vec<(String, String)>>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
            state_dir: None,
            env: None,
        }
    }
}

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The object key, `<session>/<unix-ms>-<random>.tar.zst`.
    pub key: String,
    /// The session.
    pub session: String,
    /// When it was taken, Unix milliseconds.
    pub created_ms: i64,
    /// Compressed size in bytes.
    pub size: u64,
}

/// What [`SnapshotStore::save`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// The workspace is unchanged since snapshot `key` (or since it was restored from it): nothing uploaded.
    Unchanged {
        /// The snapshot that still holds it.
        key: String,
    },
    /// A new snapshot.
    Stored {
        /// It.
        info: SnapshotInfo,
        /// Files it holds.
        files: u64,
        /// Their total size.
        content_bytes: u64,
        /// Time taken, archive and upload.
        elapsed: Duration,
    },
}

/// What [`SnapshotStore::prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The session has no snapshot: the work directory is used as it is.
    NoSnapshot,
    /// The work directory already holds snapshot `key`.
    UpToDate {
        /// The snapshot.
        key: String,
    },
    /// Snapshot `key` was restored.
    Restored {
        /// The snapshot.
        key: String,
        /// Files restored.
        files: u64,
        /// Compressed bytes downloaded.
        size: u64,
        /// Time taken, download and unpack.
        elapsed: Duration,
    },
    /// [`RestoreMode::Skip`]: snapshot `key` was not restored.
    Skipped {
        /// The snapshot.
        key: String,
    },
}

/// What [`SnapshotStore::prepare`] does with a work directory.
enum Decision {
    Restore,
    UpToDate,
    Refuse,
}

/// Which snapshot a local work directory holds, kept in the state directory per session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    work_dir: PathBuf,
    /// `None` while a restore swaps the directory's contents.
    key: Option<String>,
    fingerprint: Option<String>,
}

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

/// Retries for a store that does not answer: a few quick ones, so a turn's end is never held for minutes.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
    }
}

impl SnapshotStore {
    /// Opens the store at `url`: `file:///absolute/dir` (created if missing) or `s3://bucket/prefix`, configured
    /// from the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL` for S3-compatible stores; an `http://` endpoint is allowed as given).
    ///
    /// # Errors
    /// [`SnapshotError::Url`] for a URL of another kind or a bad S3 configuration, [`SnapshotError::Io`] when a
    /// directory cannot be created.
    pub fn open(url: &str, opts: SnapshotOptions) -> Result<Self, SnapshotError> {
        let bad = |reason: String| SnapshotError::Url {
            url: url.to_owned(),
            reason,
        };
        let objects: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            let dir = PathBuf::from(path);
            if !dir.is_absolute() {
                return Err(bad("a file:// store needs an absolute path".to_owned()));
            }
            crate::create_private_dir(&dir).map_err(|source| SnapshotError::Io {
                op: "creating the snapshot directory",
                path: dir.clone(),
                source,
            })?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true),
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("the bucket name is missing".to_owned()));
            }
            crate::install_tls_provider();
            let vars: Vec<(String, String)> = match &opts.env {
                Some(vars) => vars.clone(),
                None => std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect(),
            };
            let var = |name: &str| {
                vars.iter()
                    .find(|(k, v)| k == name && !v.is_empty())
                    .map(|(_, v)| v.as_str())
            };
            let mut builder = object_store::aws::AmazonS3Builder::new();
            for (key, value) in &vars {
                if key.starts_with("AWS_")
                    && let Ok(config) = key
                        .to_ascii_lowercase()
                        .parse::<object_store::aws::AmazonS3ConfigKey>()
                {
                    builder = builder.with_config(config, value);
                }
            }
            let mut builder = builder
                .with_url(format!("s3://{bucket}"))
                .with_retry(retry_config())
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(120)),
                );
            let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                .iter()
                .find_map(|v| var(v));
            if endpoint.is_some_and(|e| e.starts_with("http://")) && var("AWS_ALLOW_HTTP").is_none()
            {
                builder = builder.with_allow_http(true);
            }
            let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            }
        } else {
            return Err(bad("unknown scheme".to_owned()));
        };
        let state_dir = match &opts.state_dir {
            Some(dir) => dir.clone(),
            None => crate::codepilot_home()?.join("workspaces"),
        };
        crate::create_private_dir(&state_dir).map_err(|source| SnapshotError::Io {
            op: "creating the snapshot state directory",
            path: state_dir.clone(),
            source,
        })?;
        Ok(Self {
            objects,
            url: url.trim_end_matches('/').to_owned(),
            opts,
            state_dir,
        })
    }

    /// The store's URL, as given.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
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

    fn marker_path(&self, session: &SessionId) -> PathBuf {
        self.state_dir.join(format!("{session}.json"))
    }

    fn read_marker(&self, session: &SessionId) -> Option<Marker> {
        let bytes = std::fs::read(self.marker_path(session)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write_marker(&self, session: &SessionId, marker: &Marker) -> Result<(), SnapshotError> {
        let path = self.marker_path(session);
        let io = |source| SnapshotError::Io {
            op: "writing the snapshot marker",
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(marker).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = tempfile::Builder::new()
            .prefix(".marker-")
            .tempfile_in(&self.state_dir)
            .map_err(io)?;
        std::fs::write(tmp.path(), bytes).map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
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
    /// (at least one) and every key in `protect` (pass the keys sessions record, [`SessionMeta::snapshot`]
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
