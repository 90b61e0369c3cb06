//! Test modules.

mod backend;
mod behaviour;
mod checkpoints;
mod file_store;
mod ids;
mod sqlite_store;
mod workspace_snapshots;
