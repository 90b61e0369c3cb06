//! The live terminals by name, shared by the manager (which adds and removes them) and the control socket
//! (which lists and resizes them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

use crate::terminal::Terminal;
use crate::terminal::lock;

/// The live terminals by name.
#[derive(Default)]
pub(crate) struct Registry {
    terminals: Mutex<BTreeMap<String, Arc<Terminal>>>,
}

impl Registry {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Terminal>> {
        lock(&self.terminals).get(name).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Terminal>> {
        lock(&self.terminals).values().cloned().collect()
    }

    /// The map itself, locked: to check a name and insert under one lock, or to remove.
    pub(crate) fn locked(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Terminal>>> {
        lock(&self.terminals)
    }
}
