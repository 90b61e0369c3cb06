//! A copy of sessions' checkpoints in the object store that keeps their workspace snapshots (`--snapshots URL`),
//! so a session resumed on another machine can still rewind. Objects go under `<session>/checkpoints/objects/`,
//! the index to `<session>/checkpoints/index.json`, written after the objects it names.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot_protocol::sync::lock;

use futures_util::StreamExt as _;
use futures_util::TryStreamExt as _;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;

use super::CheckpointError;
use super::Index;
use super::SessionCheckpoints;
use crate::SessionId;

/// Uploads or downloads at once.
const PARALLEL: usize = 8;

/// Checkpoints mirrored in an object store. Cheap to clone.
#[derive(Clone)]
pub struct CheckpointMirror {
    objects: Arc<dyn ObjectStore>,
    url: String,
    /// Objects a failed copy did not get across, by session: the next copy of that session sends them first, so
    /// its index never names an object the store lacks.
    pending: Arc<Mutex<Vec<(SessionId, String, PathBuf)>>>,
}

impl std::fmt::Debug for CheckpointMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointMirror")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What a capture or rewind gives a mirror to copy: new objects (read from the local folder) and the index.
#[derive(Debug, Clone)]
pub struct Upload {
    session: SessionId,
    objects: Vec<(String, std::path::PathBuf)>,
    index: Vec<u8>,
}

impl SessionCheckpoints {
    /// What a mirror should copy after objects `new_objects` were written.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the index cannot be encoded.
    pub fn upload(&self, new_objects: &[String]) -> Result<Upload, CheckpointError> {
        Ok(Upload {
            session: self.session.clone(),
            objects: new_objects
                .iter()
                .map(|h| (h.clone(), self.objects.path(h)))
                .collect(),
            index: self.index_json()?,
        })
    }

    /// Adds the records of a mirror's index (`bytes`) this one lacks. Returns how many.
    ///
    /// # Errors
    /// [`CheckpointError::Damaged`] when `bytes` is not an index; [`CheckpointError::Io`] when it cannot be
    /// written.
    pub fn merge_mirrored(&mut self, bytes: &[u8]) -> Result<usize, CheckpointError> {
        let other: Index = serde_json::from_slice(bytes).map_err(|e| CheckpointError::Damaged {
            session: self.session.to_string(),
            id: "index".to_owned(),
            reason: format!("the mirrored index is not an index: {e}"),
        })?;
        self.merge(other)
    }

    /// Stores objects a mirror downloaded (compressed, as mirrored); each is checked against its name.
    ///
    /// # Errors
    /// [`CheckpointError::Damaged`] for an object whose content does not match its name; [`CheckpointError::Io`].
    pub fn store_mirrored(
        &self,
        objects: &[(String, bytes::Bytes)],
    ) -> Result<(), CheckpointError> {
        for (hash, packed) in objects {
            let content =
                super::objects::decompress(packed).map_err(|e| CheckpointError::Damaged {
                    session: self.session.to_string(),
                    id: hash.clone(),
                    reason: format!("the mirrored object does not decompress: {e}"),
                })?;
            if super::objects::hash_bytes(&content) != *hash {
                return Err(CheckpointError::Damaged {
                    session: self.session.to_string(),
                    id: hash.clone(),
                    reason: "the mirrored object does not match its name".to_owned(),
                });
            }
            self.objects
                .put_packed(hash, packed)
                .map_err(CheckpointError::io("writing into", self.objects.dir()))?;
        }
        Ok(())
    }
}

impl CheckpointMirror {
    /// A mirror in `objects`, shown as `url`.
    pub(crate) fn new(objects: Arc<dyn ObjectStore>, url: String) -> Self {
        Self {
            objects,
            url,
            pending: Arc::default(),
        }
    }

    /// The store's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, op: &'static str) -> impl Fn(object_store::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Remote {
            store: self.url.clone(),
            op,
            source,
        }
    }

    fn object_path(session: &SessionId, hash: &str) -> ObjectPath {
        ObjectPath::from(format!("{session}/checkpoints/objects/{hash}"))
    }

    fn index_path(session: &SessionId) -> ObjectPath {
        ObjectPath::from(format!("{session}/checkpoints/index.json"))
    }

    /// Copies `upload`'s objects, then its index.
    ///
    /// # Errors
    /// [`CheckpointError::Remote`], [`CheckpointError::Io`] when a local object cannot be read.
    pub async fn push(&self, upload: Upload) -> Result<(), CheckpointError> {
        let Upload {
            session,
            mut objects,
            index,
        } = upload;
        lock(&self.pending).retain(|(s, hash, path)| {
            let theirs = *s == session;
            if theirs {
                objects.push((hash.clone(), path.clone()));
            }
            !theirs
        });
        objects.sort_unstable();
        objects.dedup();
        let pushed = self.push_objects(&session, &objects).await;
        if let Err(e) = pushed {
            lock(&self.pending).extend(objects.into_iter().map(|(h, p)| (session.clone(), h, p)));
            return Err(e);
        }
        self.objects
            .put(&Self::index_path(&session), index.into())
            .await
            .map_err(self.error("uploading the checkpoint index"))?;
        Ok(())
    }

    /// Copies `objects` (hash, local file) of `session`. An object deleted here since (collected with the
    /// checkpoints that used it) is not needed any more and is passed over.
    async fn push_objects(
        &self,
        session: &SessionId,
        objects: &[(String, PathBuf)],
    ) -> Result<(), CheckpointError> {
        let uploads: Vec<_> = objects
            .iter()
            .map(|(hash, path)| {
                let store = Arc::clone(&self.objects);
                let location = Self::object_path(session, hash);
                let url = self.url.clone();
                async move {
                    let bytes = match tokio::fs::read(path).await {
                        Ok(b) => b,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                        Err(e) => return Err(CheckpointError::io("reading", path)(e)),
                    };
                    store.put(&location, bytes.into()).await.map_err(|source| {
                        CheckpointError::Remote {
                            store: url,
                            op: "uploading a checkpoint object",
                            source,
                        }
                    })?;
                    Ok::<_, CheckpointError>(())
                }
            })
            .collect();
        futures_util::stream::iter(uploads)
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The mirrored index of `session`, if any.
    ///
    /// # Errors
    /// [`CheckpointError::Remote`].
    pub async fn pull_index(
        &self,
        session: &SessionId,
    ) -> Result<Option<bytes::Bytes>, CheckpointError> {
        match self.objects.get(&Self::index_path(session)).await {
            Ok(got) => Ok(Some(
                got.bytes()
                    .await
                    .map_err(self.error("downloading the checkpoint index"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("downloading the checkpoint index")(e)),
        }
    }

    /// Downloads objects `hashes` of `session` (compressed).
    ///
    /// # Errors
    /// [`CheckpointError::Remote`] (a missing object included).
    pub async fn pull_objects(
        &self,
        session: &SessionId,
        hashes: &[String],
    ) -> Result<Vec<(String, bytes::Bytes)>, CheckpointError> {
        let downloads: Vec<_> = hashes
            .iter()
            .map(|hash| {
                let store = Arc::clone(&self.objects);
                let location = Self::object_path(session, hash);
                let url = self.url.clone();
                let hash = hash.clone();
                async move {
                    let remote = |source| CheckpointError::Remote {
                        store: url.clone(),
                        op: "downloading a checkpoint object",
                        source,
                    };
                    let bytes = store
                        .get(&location)
                        .await
                        .map_err(remote)?
                        .bytes()
                        .await
                        .map_err(remote)?;
                    Ok::<_, CheckpointError>((hash, bytes))
                }
            })
            .collect();
        futures_util::stream::iter(downloads)
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await
    }
}
