//! [`Context`]: everything the step loop works with, built by the runtime and handed over whole. The loop never
//! sees the runtime; what the runtime wants to do at a step's or a run's end it says through [`RunHooks`].

use std::sync::Arc;

use codepilot_llm::Provider;
use codepilot_script::Limits;
use codepilot_terminal::TerminalManager;

use crate::context::ContextParams;
use crate::events::Event;
use crate::events::EventBus;
use crate::handlers::BoxFuture;
use crate::handlers::PermissionHandler;
use crate::state::LeaseKeeper;
use crate::state::RunControl;
use crate::state::SessionCell;
use crate::toolbox::ToolBox;
use crate::tools::ToolEnv;

/// What the runtime does around the loop's steps (workspace snapshots, SPEC §17).
pub(crate) trait RunHooks: Send + Sync {
    /// A step that did not end the run is stored. Must not block: start background work and return.
    fn step_saved(&self, cx: &Arc<Context>);

    /// The run ended with an outcome or a provider error (not a store failure, a lost lease or closing). The run
    /// returns once this finishes.
    fn run_ended<'a>(&'a self, cx: &'a Arc<Context>) -> BoxFuture<'a, ()>;
}

/// What one session's step loop works with. Shared by the runtime's clones and the running task.
pub(crate) struct Context {
    /// The model.
    pub(crate) provider: Arc<dyn Provider>,
    /// The tools, and the MCP servers behind some of them.
    pub(crate) tools: ToolBox,
    /// Where every event goes.
    pub(crate) events: Arc<EventBus>,
    /// The conversation.
    pub(crate) session: SessionCell,
    /// The session's lease.
    pub(crate) lease: Arc<LeaseKeeper>,
    /// Abort, queued messages, closing (shared with the workers, whose questions it queues).
    pub(crate) control: Arc<RunControl>,
    /// What tools reach: work dir, terminals, the read ledger.
    pub(crate) env: Arc<ToolEnv>,
    /// Decides gated tool calls, when the host installed a handler.
    pub(crate) permission: Option<Arc<dyn PermissionHandler>>,
    /// Limits of one control block.
    pub(crate) limits: Limits,
    /// How requests are budgeted (SPEC §16).
    pub(crate) context: ContextParams,
    /// Steps per run.
    pub(crate) max_steps: u32,
    /// What runs may spend, and the prices spend is counted at (SPEC §21).
    pub(crate) spending: Spending,
    /// What the last run spent.
    pub(crate) last_spend: std::sync::Mutex<Option<codepilot_protocol::Spend>>,
    /// What the current run's workers spent so far (their `usage` events add to it).
    pub(crate) worker_spend: Arc<std::sync::Mutex<crate::state::WorkerSpend>>,
    /// Checkpoints before turns and steps (SPEC §19).
    pub(crate) checkpoints: Arc<super::Checkpoints>,
    /// The runtime's part at a step's and a run's end.
    pub(crate) hooks: Option<Arc<dyn RunHooks>>,
    /// OpenTelemetry traces, when configured (SPEC §23).
    pub(crate) traces: Option<crate::traces::Traces>,
}

/// The agent's limits and prices, from agent.yaml.
pub(crate) struct Spending {
    /// `runtime.limits`: each run's.
    pub(crate) run: codepilot_protocol::Limits,
    /// `runtime.session_limits`.
    pub(crate) session: codepilot_protocol::Limits,
    /// `model.pricing` or the built-in table's.
    pub(crate) prices: Option<codepilot_llm::Pricing>,
    /// The most output one call can produce.
    pub(crate) max_output: u64,
    /// `runtime.output_retries`.
    pub(crate) output_retries: u32,
}

impl Context {
    pub(crate) fn emit(&self, e: Event) {
        self.events.emit(e);
    }

    pub(crate) fn terminals(&self) -> Option<&TerminalManager> {
        self.env.terminals.as_ref()
    }
}
