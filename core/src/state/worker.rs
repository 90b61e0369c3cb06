//! What ties a worker runtime to the runtime that spawned it (SPEC §20).

/// What ties a worker runtime to the runtime that spawned it (SPEC §20).
pub(crate) struct WorkerLink {
    pub(crate) agent_id: u32,
    pub(crate) depth: u32,
    pub(crate) parent_events: std::sync::Weak<crate::events::EventBus>,
    pub(crate) parent_control: std::sync::Weak<crate::state::RunControl>,
    /// The spawning runtime's own id as a worker (0: the session's agent).
    pub(crate) parent_id: u32,
    /// The worker ids given out in this tree, so a worker's own workers are numbered on.
    pub(crate) ids: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The parent's replies to `ask_main_agent`.
    pub(crate) replies: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
}
