//! The marker: which snapshot a local work directory holds, one small JSON file per session in the state
//! directory, so an unchanged workspace is neither archived again nor restored over.

use std::path::PathBuf;

use serde::Deserialize;
use serde::Serialize;

use super::SnapshotError;
use super::SnapshotStore;
use crate::SessionId;

/// Which snapshot a local work directory holds, kept in the state directory per session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Marker {
    /// The work directory.
    pub(super) work_dir: PathBuf,
    /// `None` while a restore swaps the directory's contents.
    pub(super) key: Option<String>,
    /// What the directory held when it was saved or restored; `None` when it changed while it was read.
    pub(super) fingerprint: Option<String>,
}

impl SnapshotStore {
    /// Where the marker of `session` lives.
    pub(super) fn marker_path(&self, session: &SessionId) -> PathBuf {
        self.state_dir.join(format!("{session}.json"))
    }

    /// The marker of `session`; `None` when there is none or it does not parse (as if nothing were known).
    pub(super) fn read_marker(&self, session: &SessionId) -> Option<Marker> {
        let bytes = std::fs::read(self.marker_path(session)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Replaces the marker of `session` atomically (a scratch file renamed over it).
    pub(super) fn write_marker(
        &self,
        session: &SessionId,
        marker: &Marker,
    ) -> Result<(), SnapshotError> {
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
}
