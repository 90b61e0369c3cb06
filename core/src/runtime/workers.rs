//! Sub-agents (SPEC §20): workers a control block starts with `spawn_subagent`, each a runtime of its own in this
//! process (its own conversation, context budget, step limit and terminals; the same work directory and sandbox),
//! running concurrently with the parent and each other.
//!
//! The parent's [`Workers`] holds what a worker is built from (a [`WorkerRecipe`] taken from the parent's builder)
//! and the workers started so far. A worker's events go into the parent's event stream, numbered there and marked
//! with the worker's id; `ask_main_agent` queues `[Sub-Agent #N →] …` for the parent's next step and waits for
//! `reply_subagent`; aborting the parent's run (or its end) aborts every worker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use codepilot_protocol::Outcome;
use codepilot_protocol::SubagentFinishEvent;
use codepilot_protocol::SubagentSpawnEvent;
use codepilot_protocol::SubagentStatus;
use codepilot_protocol::sync::lock;
use codepilot_store::SessionStore;
use tokio::sync::mpsc;
use tokio::sync::watch;

use super::AsyncRuntime;
use crate::config::AgentFile;
use crate::events::Event;
use crate::events::EventBus;
use crate::handlers::AskUserHandler;
use crate::handlers::PermissionHandler;
use crate::mcp::EnvLookup;
use crate::state::RunControl;
use crate::tools::Tool;

/// The tools a worker gets when `spawn_subagent` names none (as in `codepilot-ai` 0.9.41, with `read_file` for
/// its `view_file`).
pub(crate) const DEFAULT_WORKER_TOOLS: [&str; 5] =
    ["read_file", "execute", "read_output", "send_input", "find"];

/// What a worker is built from: the parent's agent file and the host's pieces it was built with.
pub(crate) struct WorkerRecipe {
    pub(crate) agent: AgentFile,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) env: Option<EnvLookup>,
    pub(crate) permission: Option<Arc<dyn PermissionHandler>>,
    pub(crate) ask_user: Option<Arc<dyn AskUserHandler>>,
    pub(crate) host_tools: Vec<Arc<dyn Tool>>,
    pub(crate) checkpoint_dir: Option<PathBuf>,
    /// The parent's code index, shared (same work dir).
    pub(crate) search: Option<Arc<crate::code_index::CodeSearch>>,
    /// The parent's model client, reused by workers on the same model (building one reads the TLS roots).
    pub(crate) provider: Arc<dyn codepilot_llm::Provider>,
    /// How deep the runtime this recipe belongs to is: 0 for the session's own agent.
    pub(crate) depth: u32,
}

/// A worker's result, once it ended.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) event: SubagentFinishEvent,
}

/// One worker.
struct Worker {
    task_summary: String,
    started: Instant,
    done: watch::Receiver<Option<Finished>>,
    /// Replies from the parent to the worker's `ask_main_agent`.
    replies: mpsc::UnboundedSender<String>,
    /// The worker's runtime once built, to abort it.
    runtime: Mutex<Option<AsyncRuntime>>,
    /// Cancelled with the parent's run: a worker still being built stops before it starts.
    stop: tokio_util::sync::CancellationToken,
    /// The `spawn_subagent` call's span (W3C `traceparent`), parent of the worker's run span.
    trace: Option<String>,
}

/// The workers of one runtime.
pub(crate) struct Workers {
    recipe: WorkerRecipe,
    parent_session: String,
    /// The parent's events and steering, for forwarded events and `ask_main_agent`.
    events: Weak<EventBus>,
    control: Weak<RunControl>,
    /// This runtime's own id as a worker (0 for the session's agent), the `parent` of its workers' events.
    own_id: u32,
    running: Arc<tokio::sync::Semaphore>,
    workers: Mutex<BTreeMap<u32, Arc<Worker>>>,
    /// This value, for the tasks a spawn starts.
    this: Weak<Workers>,
    /// Where this runtime's workers' spend is added up.
    spend: Weak<Mutex<crate::state::WorkerSpend>>,
    /// The last worker id given out, shared by the whole tree of workers so ids never repeat in one stream.
    ids: Arc<AtomicU32>,
}

/// Why `spawn_subagent` refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error(
        "nested sub-agents are not allowed here (subagents.max_depth is {0}); do this part of the task yourself"
    )]
    TooDeep(u32),
    #[error(
        "{0} sub-agents are running, the most subagents.max_concurrent allows; await_subagent one of them first"
    )]
    TooMany(u32),
    #[error("unknown tool(s) for a sub-agent, or off for this agent: {0}; choose from {1}")]
    UnknownTools(String, String),
}

impl Workers {
    pub(crate) fn new(
        recipe: WorkerRecipe,
        parent_session: String,
        events: Weak<EventBus>,
        control: Weak<RunControl>,
        own_id: u32,
        ids: Option<Arc<AtomicU32>>,
        spend: Weak<Mutex<crate::state::WorkerSpend>>,
    ) -> Arc<Self> {
        let permits = usize::try_from(recipe.agent.subagents.max_concurrent).unwrap_or(1);
        Arc::new_cyclic(|this| Self {
            this: this.clone(),
            recipe,
            parent_session,
            events,
            control,
            own_id,
            running: Arc::new(tokio::sync::Semaphore::new(permits)),
            workers: Mutex::new(BTreeMap::new()),
            ids: ids.unwrap_or_default(),
            spend,
        })
    }

    fn emit(&self, event: Event) {
        if let Some(bus) = self.events.upgrade() {
            bus.emit(event);
        }
    }

    /// Starts a worker on `task` (with `context` appended), limited to `tools` (`None`: the default worker set) and
    /// on `model` (`None`: the parent's). Returns its id at once; the worker runs in the background.
    fn start(
        self: &Arc<Self>,
        task: &str,
        context: &str,
        tools: Option<Vec<String>>,
        model: Option<String>,
        trace: Option<String>,
    ) -> Result<u32, SpawnError> {
        let max_depth = self.recipe.agent.subagents.max_depth;
        if self.recipe.depth >= max_depth {
            return Err(SpawnError::TooDeep(max_depth));
        }
        let (agent, wanted) = self.worker_agent(tools.as_deref(), model.as_deref())?;
        let permit = Arc::clone(&self.running)
            .try_acquire_owned()
            .map_err(|_| SpawnError::TooMany(self.recipe.agent.subagents.max_concurrent))?;
        let id = self.ids.fetch_add(1, Ordering::SeqCst) + 1;
        let summary: String = task.chars().take(120).collect();
        let (done_tx, done) = watch::channel(None);
        let (replies, replies_rx) = mpsc::unbounded_channel();
        let worker = Arc::new(Worker {
            task_summary: summary.clone(),
            started: Instant::now(),
            done,
            replies,
            runtime: Mutex::new(None),
            stop: tokio_util::sync::CancellationToken::new(),
            trace,
        });
        lock(&self.workers).insert(id, Arc::clone(&worker));
        self.emit(Event::SubagentSpawn(SubagentSpawnEvent {
            agent_id: id,
            task_summary: summary,
            model: agent.model.name.clone(),
            tools,
        }));
        let full_task = if context.trim().is_empty() {
            task.to_owned()
        } else {
            format!("{task}\n\n--- Context provided by main agent ---\n{context}")
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let finished = this
                .run_worker(id, &worker, agent, &wanted, &full_task, replies_rx)
                .await;
            drop(permit);
            this.emit(Event::SubagentFinish(finished.event.clone()));
            let _ = done_tx.send(Some(finished));
        });
        Ok(id)
    }

    /// The worker's agent file: the parent's, with the worker's tools, model, step limit and role.
    fn worker_agent(
        &self,
        tools: Option<&[String]>,
        model: Option<&str>,
    ) -> Result<(AgentFile, Vec<String>), SpawnError> {
        let mut agent = self.recipe.agent.clone();
        let wanted: Vec<String> = match tools {
            Some(t) => t.to_vec(),
            None => DEFAULT_WORKER_TOOLS
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        };
        // A worker gets no tool its parent has off, and none the parent's agent file does not know.
        let allowed: Vec<String> = self
            .recipe
            .agent
            .effective_tools()
            .into_iter()
            .map(|t| t.name)
            .chain(self.recipe.host_tools.iter().map(|t| t.spec().name))
            .collect();
        let unknown: Vec<&str> = wanted
            .iter()
            .map(String::as_str)
            .filter(|t| !allowed.iter().any(|a| a == t))
            .collect();
        if !unknown.is_empty() {
            return Err(SpawnError::UnknownTools(
                unknown.join(", "),
                allowed.join(", "),
            ));
        }
        let known = crate::config::BUILTIN_TOOLS;
        agent.tools = known
            .iter()
            .map(|name| {
                let mut entry = self
                    .recipe
                    .agent
                    .tools
                    .iter()
                    .find(|t| t.name == *name)
                    .cloned()
                    .unwrap_or_else(|| crate::config::ToolEntry::new(*name));
                // A worker can always ask the agent that started it.
                entry.enabled = *name == "ask_main_agent" || wanted.iter().any(|w| w == name);
                entry
            })
            .collect();
        match model.map(|m| (m, self.recipe.agent.subagents.models.get(m))) {
            Some((_, Some(section))) => agent.model = section.clone(),
            Some((name, None)) => agent.model.name = name.to_owned(),
            None => {}
        }
        if let Some(steps) = agent.subagents.max_steps {
            agent.runtime.max_steps = steps;
        }
        // The agent's MCP servers stay the parent's: a worker does not start its own copies.
        agent.mcp_servers.clear();
        agent.name = format!("{}-worker", agent.name);
        agent.role =
            Some("A focused worker agent. Complete the assigned task precisely.".to_owned());
        // The parent's checkpoints cover the shared work directory.
        agent.runtime.checkpoints = crate::config::CheckpointMode::Off;
        Ok((agent, wanted))
    }

    async fn run_worker(
        &self,
        id: u32,
        worker: &Worker,
        agent: AgentFile,
        host_tools: &[String],
        task: &str,
        replies: mpsc::UnboundedReceiver<String>,
    ) -> Finished {
        let written: Arc<Mutex<Written>> = Arc::default();
        let finish = |status, summary: String, error: Option<String>| Finished {
            event: SubagentFinishEvent {
                agent_id: id,
                status,
                summary,
                files_written: lock(&written).files.clone(),
                elapsed_seconds: worker.started.elapsed().as_secs_f64(),
                error,
            },
        };
        let built = self.build_worker(id, agent, host_tools, replies).await;
        let rt = match built {
            Ok(rt) => rt,
            Err(e) => return finish(SubagentStatus::Failed, String::new(), Some(e.to_string())),
        };
        *lock(&worker.runtime) = Some(rt.clone());
        let record = Arc::clone(&written);
        rt.on_event(move |e| lock(&record).see(e));
        let result = if worker.stop.is_cancelled() {
            Ok(Outcome::Aborted { steps: 0 })
        } else {
            let options = crate::RunOptions {
                traceparent: worker.trace.as_deref().and_then(|tp| tp.parse().ok()),
                ..crate::RunOptions::default()
            };
            let run = rt.run_with(task, &options);
            tokio::pin!(run);
            tokio::select! {
                biased;
                r = &mut run => r,
                // The run has entered by now (its first poll came first), so the abort reaches it.
                () = worker.stop.cancelled() => {
                    rt.abort();
                    run.await
                }
            }
        };
        if let Err(e) = rt.close().await {
            tracing::warn!("closing sub-agent #{id}: {e}");
        }
        *lock(&worker.runtime) = None;
        match result {
            Ok(Outcome::Completed { summary, .. }) => {
                finish(SubagentStatus::Completed, summary, None)
            }
            Ok(Outcome::Replied { text, .. }) => finish(SubagentStatus::Completed, text, None),
            Ok(Outcome::Aborted { .. }) => finish(SubagentStatus::Aborted, String::new(), None),
            Ok(
                outcome @ (Outcome::MaxSteps { .. }
                | Outcome::LimitExceeded { .. }
                | Outcome::InvalidOutput { .. }),
            ) => finish(
                SubagentStatus::Stopped,
                String::new(),
                Some(format!("it stopped: {}", outcome.status())),
            ),
            Err(e) => finish(SubagentStatus::Failed, String::new(), Some(e.to_string())),
        }
    }

    async fn build_worker(
        &self,
        id: u32,
        agent: AgentFile,
        host_tools: &[String],
        replies: mpsc::UnboundedReceiver<String>,
    ) -> crate::Result<AsyncRuntime> {
        let r = &self.recipe;
        let agent_uses_parent_model = agent.model == r.agent.model;
        let session = self.worker_session(id).await?;
        let mut builder = AsyncRuntime::builder(agent)
            .store(Arc::clone(&r.store))
            .session_id(session)
            .worker(crate::state::WorkerLink {
                agent_id: id,
                depth: r.depth + 1,
                parent_events: self.events.clone(),
                parent_control: self.control.clone(),
                parent_id: self.own_id,
                ids: Arc::clone(&self.ids),
                spend: self.spend.clone(),
                replies: tokio::sync::Mutex::new(replies),
            });
        if let Some(env) = &r.env {
            let env = Arc::clone(env);
            builder = builder.env(move |var| env(var));
        }
        if agent_uses_parent_model {
            builder = builder.provider(Arc::clone(&r.provider));
        }
        if let Some(dir) = &r.checkpoint_dir {
            builder = builder.checkpoint_dir(dir.clone());
        }
        builder = builder.shared_search(r.search.clone());
        if let Some(p) = &r.permission {
            builder = builder.permission_handler_arc(Arc::clone(p));
        }
        if let Some(a) = &r.ask_user {
            builder = builder.ask_user_handler_arc(Arc::clone(a));
        }
        for tool in r
            .host_tools
            .iter()
            .filter(|t| host_tools.contains(&t.spec().name))
        {
            builder = builder.tool_arc(Arc::clone(tool));
        }
        builder.build().await
    }

    /// The session worker `id` is stored as: `<parent>.sub-<id>`, or `<parent>.sub-<id>.<k>` when a worker of an
    /// earlier process took that name (the parent was resumed), in the parent's current session.
    async fn worker_session(&self, id: u32) -> crate::Result<String> {
        let parent = self
            .events
            .upgrade()
            .map_or_else(|| self.parent_session.clone(), |bus| bus.session_id());
        let base = format!("{parent}.sub-{id}");
        let mut name = base.clone();
        for k in 2.. {
            let sid: codepilot_store::SessionId = name.parse().map_err(|e| {
                crate::Error::Subagent(format!(
                    "{e}: the session id is too long to name its workers after; use a shorter --session-id"
                ))
            })?;
            if self.recipe.store.load(&sid).await?.is_none() {
                break;
            }
            name = format!("{base}.{k}");
        }
        Ok(name)
    }

    /// Waits for worker `id` at most `timeout`: the text the model reads (the original's wording).
    async fn wait_for(&self, id: u32, timeout: Duration) -> String {
        let Some(worker) = lock(&self.workers).get(&id).cloned() else {
            return format!("Error: no sub-agent with agent_id {id}.");
        };
        let mut done = worker.done.clone();
        let finished = tokio::time::timeout(timeout, done.wait_for(Option::is_some)).await;
        let Ok(Ok(finished)) = finished else {
            return format!(
                "Timeout: sub-agent #{id} did not finish within {}s.",
                timeout.as_secs()
            );
        };
        let Some(f) = finished.clone() else {
            return format!("Error: sub-agent #{id} ended without a result.");
        };
        describe(&f.event)
    }

    /// Sends `message` to worker `id`'s waiting `ask_main_agent`.
    fn send_reply(&self, id: u32, message: String) -> Result<(), String> {
        let Some(worker) = lock(&self.workers).get(&id).cloned() else {
            return Err(format!("no sub-agent with agent_id {id}"));
        };
        if worker.done.borrow().is_some() {
            return Err(format!("sub-agent #{id} has already finished"));
        }
        worker
            .replies
            .send(message)
            .map_err(|_| format!("sub-agent #{id} has already finished"))
    }

    /// One line per worker, for `list_subagents`.
    fn listed(&self) -> Vec<serde_json::Value> {
        lock(&self.workers)
            .iter()
            .map(|(id, w)| {
                let done = w.done.borrow();
                serde_json::json!({
                    "agent_id": id,
                    "task": w.task_summary,
                    "status": done.as_ref().map_or("running", |f| match f.event.status {
                        SubagentStatus::Completed => "completed",
                        SubagentStatus::Stopped => "stopped",
                        SubagentStatus::Failed => "failed",
                        SubagentStatus::Aborted => "aborted",
                    }),
                    "elapsed_seconds": w.started.elapsed().as_secs(),
                })
            })
            .collect()
    }

    /// Aborts every running worker (the parent's run was aborted or ended).
    fn abort_running(&self) {
        for worker in lock(&self.workers).values() {
            worker.stop.cancel();
        }
    }
}

impl crate::tools::Delegate for Workers {
    fn spawn(
        &self,
        task: &str,
        context: &str,
        tools: Option<Vec<String>>,
        model: Option<String>,
        trace: Option<String>,
    ) -> Result<u32, String> {
        let this = self
            .this
            .upgrade()
            .ok_or_else(|| "the runtime is closing".to_owned())?;
        this.start(task, context, tools, model, trace)
            .map_err(|e| e.to_string())
    }

    fn wait(&self, id: u32, timeout: Duration) -> crate::handlers::BoxFuture<'_, String> {
        Box::pin(self.wait_for(id, timeout))
    }

    fn reply(&self, id: u32, message: String) -> Result<(), String> {
        self.send_reply(id, message)
    }

    fn list(&self) -> Vec<serde_json::Value> {
        self.listed()
    }

    fn abort_all(&self) {
        self.abort_running();
    }
}

/// The files a worker's `write_file` calls wrote, from its events.
#[derive(Default)]
struct Written {
    /// `write_file` calls in flight: call id → path.
    calls: std::collections::HashMap<String, String>,
    files: Vec<String>,
}

impl Written {
    fn see(&mut self, event: &Event) {
        match event {
            Event::ToolCall(c) if c.tool == "write_file" => {
                if let Some(path) = c.args.get("path").and_then(serde_json::Value::as_str) {
                    self.calls.insert(c.call_id.clone(), path.to_owned());
                }
            }
            Event::ToolResult(r) if r.tool == "write_file" => {
                if let Some(path) = self.calls.remove(&r.call_id)
                    && r.ok
                    && !self.files.contains(&path)
                {
                    self.files.push(path);
                }
            }
            _ => {}
        }
    }
}

/// What `await_subagent` returns for a worker that ended.
fn describe(e: &SubagentFinishEvent) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = e.elapsed_seconds as u64;
    match e.status {
        SubagentStatus::Completed => {
            let files = if e.files_written.is_empty() {
                "none".to_owned()
            } else {
                e.files_written.join(", ")
            };
            format!(
                "Sub-agent #{} completed in {secs}s.\nFiles written: {files}\nSummary: {}",
                e.agent_id, e.summary
            )
        }
        SubagentStatus::Aborted => format!("Sub-agent #{} was aborted after {secs}s.", e.agent_id),
        SubagentStatus::Stopped | SubagentStatus::Failed => format!(
            "Sub-agent #{} failed after {secs}s.\nError: {}",
            e.agent_id,
            e.error.as_deref().unwrap_or("unknown")
        ),
    }
}
