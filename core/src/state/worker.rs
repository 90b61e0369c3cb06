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
    /// Where the worker's spend is added up for the parent's limits.
    pub(crate) spend: std::sync::Weak<std::sync::Mutex<WorkerSpend>>,
    /// The parent's replies to `ask_main_agent`.
    pub(crate) replies: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

/// What a runtime's workers (and theirs) spent during its current run: it counts toward the run's limits (SPEC §21).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WorkerSpend {
    /// Tokens by kind over the workers' model calls.
    pub(crate) tokens: codepilot_protocol::Usage,
    /// Their cost in US dollars, each priced at its own model's prices (0 where unknown).
    pub(crate) cost_usd: f64,
}
