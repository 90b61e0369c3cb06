//! [`Runtime`]: the blocking facade over [`AsyncRuntime`], for programs without tokio.

use std::path::Path;

use codepilot_protocol::EventEnvelope;
use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use codepilot_terminal::TerminalManager;

use super::AsyncRuntime;
use super::RuntimeBuilder;
use crate::Outcome;
use crate::error::Error;
use crate::error::Result;
use crate::events::Event;
use crate::events::EventKind;
use crate::events::EventStream;
use crate::events::FinishEvent;
use crate::events::StepEvent;
use crate::events::StreamEvent;
use crate::events::ToolCallEvent;
use crate::events::ToolResultEvent;
use crate::tools::Tool;

/// The blocking facade over [`AsyncRuntime`]: owns a tokio runtime and blocks on each call. It has every method of
/// [`AsyncRuntime`] (a test keeps the two in step), plus [`Runtime::handle`] and [`Runtime::block_on`].
///
/// Do not use it from inside an async context (tokio forbids blocking there); use [`AsyncRuntime`] instead.
/// Dropping it closes the runtime (terminals killed, lease released), as [`Runtime::close`] does.
pub struct Runtime {
    rt: tokio::runtime::Runtime,
    inner: AsyncRuntime,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(e) = self.rt.block_on(self.inner.close()) {
            tracing::warn!("closing the runtime on drop: {e}");
        }
    }
}

impl Runtime {
    /// Builds a runtime from a builder, on a private tokio runtime with two worker threads.
    pub fn new(builder: RuntimeBuilder) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("codepilot")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("could not start a tokio runtime: {e}")))?;
        let inner = rt.block_on(builder.build())?;
        Ok(Self { rt, inner })
    }

    /// See [`AsyncRuntime::builder`]; build the result with [`Runtime::new`].
    #[must_use]
    pub fn builder(agent: crate::AgentFile) -> RuntimeBuilder {
        AsyncRuntime::builder(agent)
    }

    /// A handle for aborting or messaging from another thread while `run` blocks this one.
    #[must_use]
    pub fn handle(&self) -> AsyncRuntime {
        self.inner.clone()
    }

    /// Runs a future on this runtime's tokio runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// See [`AsyncRuntime::run`].
    pub fn run(&self, task: &str) -> Result<Outcome> {
        self.rt.block_on(self.inner.run(task))
    }

    /// See [`AsyncRuntime::run_with`].
    pub fn run_with(&self, task: &str, options: &crate::RunOptions) -> Result<Outcome> {
        self.rt.block_on(self.inner.run_with(task, options))
    }

    /// See [`AsyncRuntime::reply_subagent`].
    ///
    /// # Errors
    /// As [`AsyncRuntime::reply_subagent`].
    pub fn reply_subagent(&self, agent_id: u32, message: impl Into<String>) -> Result<()> {
        self.inner.reply_subagent(agent_id, message)
    }

    /// See [`AsyncRuntime::subagents`].
    #[must_use]
    pub fn subagents(&self) -> Vec<serde_json::Value> {
        self.inner.subagents()
    }

    /// See [`AsyncRuntime::last_spend`].
    #[must_use]
    pub fn last_spend(&self) -> Option<codepilot_protocol::Spend> {
        self.inner.last_spend()
    }

    /// See [`AsyncRuntime::send_message`].
    pub fn send_message(&self, text: impl Into<String>) {
        self.inner.send_message(text);
    }

    /// See [`AsyncRuntime::abort`]. Safe to call from another thread while `run` blocks.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// See [`AsyncRuntime::reset`].
    pub fn reset(&self) -> Result<String> {
        self.rt.block_on(self.inner.reset())
    }

    /// See [`AsyncRuntime::checkpoints`].
    pub fn checkpoints(&self) -> Result<Vec<crate::CheckpointInfo>> {
        self.rt.block_on(self.inner.checkpoints())
    }

    /// See [`AsyncRuntime::export_trajectory`].
    pub fn export_trajectory(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<crate::trajectory::ExportStats> {
        self.rt.block_on(self.inner.export_trajectory(out))
    }

    /// See [`AsyncRuntime::rewind`].
    pub fn rewind(
        &self,
        checkpoint: &str,
        scope: crate::RewindScope,
    ) -> Result<crate::RewoundEvent> {
        self.rt.block_on(self.inner.rewind(checkpoint, scope))
    }

    /// See [`AsyncRuntime::rewind_preview`].
    pub fn rewind_preview(
        &self,
        checkpoint: &str,
        scope: crate::RewindScope,
    ) -> Result<crate::RewoundEvent> {
        self.rt
            .block_on(self.inner.rewind_preview(checkpoint, scope))
    }

    /// See [`AsyncRuntime::register_tool`].
    pub fn register_tool(&self, tool: impl Tool + 'static) -> Result<()> {
        self.inner.register_tool(tool)
    }

    /// See [`AsyncRuntime::replace_tool`].
    pub fn replace_tool(&self, tool: impl Tool + 'static) -> Result<bool> {
        self.inner.replace_tool(tool)
    }

    /// See [`AsyncRuntime::subscribe`]; poll the stream from any async context, or with [`Runtime::block_on`].
    #[must_use]
    pub fn subscribe(&self) -> EventStream {
        let _guard = self.rt.enter();
        self.inner.subscribe()
    }

    /// See [`AsyncRuntime::on_event`].
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.on_event(f);
    }

    /// See [`AsyncRuntime::last_event_seq`].
    #[must_use]
    pub fn last_event_seq(&self) -> u64 {
        self.inner.last_event_seq()
    }

    /// See [`AsyncRuntime::on_envelope`].
    pub fn on_envelope(&self, f: impl Fn(&EventEnvelope) + Send + Sync + 'static) {
        self.inner.on_envelope(f);
    }

    /// See [`AsyncRuntime::on`].
    pub fn on(&self, kind: EventKind, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.on(kind, f);
    }

    /// See [`AsyncRuntime::on_stream`].
    pub fn on_stream(&self, f: impl Fn(&StreamEvent) + Send + Sync + 'static) {
        self.inner.on_stream(f);
    }

    /// See [`AsyncRuntime::on_finish`].
    pub fn on_finish(&self, f: impl Fn(&FinishEvent) + Send + Sync + 'static) {
        self.inner.on_finish(f);
    }

    /// See [`AsyncRuntime::on_tool_call`].
    pub fn on_tool_call(&self, f: impl Fn(&ToolCallEvent) + Send + Sync + 'static) {
        self.inner.on_tool_call(f);
    }

    /// See [`AsyncRuntime::on_tool_result`].
    pub fn on_tool_result(&self, f: impl Fn(&ToolResultEvent) + Send + Sync + 'static) {
        self.inner.on_tool_result(f);
    }

    /// See [`AsyncRuntime::on_step`].
    pub fn on_step(&self, f: impl Fn(&StepEvent) + Send + Sync + 'static) {
        self.inner.on_step(f);
    }

    /// See [`AsyncRuntime::session_id`].
    #[must_use]
    pub fn session_id(&self) -> String {
        self.inner.session_id()
    }

    /// See [`AsyncRuntime::history`].
    #[must_use]
    pub fn history(&self) -> Vec<Message> {
        self.inner.history()
    }

    /// See [`AsyncRuntime::usage`].
    #[must_use]
    pub fn usage(&self) -> Usage {
        self.inner.usage()
    }

    /// See [`AsyncRuntime::terminals`].
    #[must_use]
    pub fn terminals(&self) -> Option<&TerminalManager> {
        self.inner.terminals()
    }

    /// See [`AsyncRuntime::work_dir`].
    #[must_use]
    pub fn work_dir(&self) -> &Path {
        self.inner.work_dir()
    }

    /// See [`AsyncRuntime::system_prompt`].
    ///
    /// # Errors
    /// [`Error::Busy`] while a task runs.
    pub fn system_prompt(&self) -> Result<String> {
        self.inner.system_prompt()
    }

    /// See [`AsyncRuntime::snapshot`].
    pub fn snapshot(&self) -> Result<Option<codepilot_store::snapshot::Saved>> {
        self.rt.block_on(self.inner.snapshot())
    }

    /// See [`AsyncRuntime::workspace_restore`].
    #[must_use]
    pub fn workspace_restore(&self) -> Option<&codepilot_store::snapshot::Prepared> {
        self.inner.workspace_restore()
    }

    /// See [`AsyncRuntime::flush_traces`].
    pub fn flush_traces(&self) {
        self.rt.block_on(self.inner.flush_traces());
    }

    /// See [`AsyncRuntime::close`]. Dropping the runtime does the same.
    pub fn close(self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
