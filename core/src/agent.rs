//! The step loop: ask the model, parse, run the control block, feed the observation back, checkpoint.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use codepilot_llm::ChatRequest;
use codepilot_llm::StreamDelta;
use codepilot_protocol::Action;
use codepilot_protocol::ExecutionFailure;
use codepilot_protocol::Message;
use codepilot_protocol::Observation;
use codepilot_protocol::StreamFilter;
use codepilot_script::ExcKind;
use codepilot_script::FailureKind;
use codepilot_script::RunRequest;
use codepilot_script::ScriptFailure;
use codepilot_script::ToolHost;
use codepilot_store::Checkpoint;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::error::Result;
use crate::events::AbortedEvent;
use crate::events::AskUserEvent;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::FinishEvent;
use crate::events::FinishReason;
use crate::events::MaxStepsEvent;
use crate::events::ModelRetryEvent;
use crate::events::PermissionRequestEvent;
use crate::events::RuntimeErrorEvent;
use crate::events::StartEvent;
use crate::events::StepEvent;
use crate::events::StreamEvent;
use crate::events::StreamKind;
use crate::events::ToolCallEvent;
use crate::events::ToolResultEvent;
use crate::events::UsageEvent;
use crate::events::UserMessageEvent;
use crate::handlers::PermissionDecision;
use crate::handlers::PermissionRequest;
use crate::prompt::DynamicVars;
use crate::prompt::TerminalLine;
use crate::runtime::Inner;
use crate::runtime::Outcome;
use crate::runtime::SessionState;
use crate::tools::Registered;
use crate::tools::ToolErrorKind;
use crate::tools::builtin::Builtin;
use crate::tools::builtin::BuiltinCtx;

/// Counts a `run` call from its first instant, so an `abort()` racing with the start of a run is not lost.
struct Entering<'a>(&'a Inner);

impl<'a> Entering<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.active_runs.fetch_add(1, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for Entering<'_> {
    fn drop(&mut self) {
        self.0.active_runs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Owns the session for one run; gives the next run a fresh cancellation token when this one ends.
struct Owning<'a>(&'a Inner);

impl Drop for Owning<'_> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.cancel.lock() {
            *slot = CancellationToken::new();
        }
    }
}

/// Runs one task. Holds the session for the whole run, so a second concurrent `run` gets [`Error::Busy`].
///
/// Terminal events (`Finish`, `MaxSteps`, `Aborted`) are emitted only after the final checkpoint succeeded, so a
/// host that sees one can rely on the step being stored.
pub(crate) async fn run(inner: &Arc<Inner>, task: &str) -> Result<Outcome> {
    let _entering = Entering::new(inner);
    if inner.closed.load(Ordering::SeqCst) {
        return Err(Error::Closed);
    }
    if let Some(message) = inner.lease_lost_message() {
        return Err(Error::LeaseLost(message));
    }
    let Ok(mut state) = inner.session.try_lock() else {
        return Err(Error::Busy);
    };
    let _owning = Owning(inner);
    // The token in the slot belongs to this run; an abort() since run() was called has already cancelled it.
    let cancel = match inner.cancel.lock() {
        Ok(slot) => slot.clone(),
        Err(_) => CancellationToken::new(),
    };
    state.task_counter += 1;
    if state.title.is_none() {
        state.title = task.lines().find(|l| !l.trim().is_empty()).map(|l| {
            let t: String = l.trim().chars().take(120).collect();
            t
        });
    }
    let n = state.task_counter;
    state
        .messages
        .push(Message::user(codepilot_protocol::task_message(n, task)));
    inner.emit(Event::Start(StartEvent {
        session_id: state.id.to_string(),
        task_number: n,
        task: task.to_owned(),
    }));
    let outcome = step_loop(inner, &mut state, &cancel).await;
    // A store failure was reported where it happened; don't try (and report) again.
    if let Err(e @ (Error::Store(_) | Error::LeaseLost(_))) = outcome {
        return Err(e);
    }
    // Whatever else happened, persist what we have: a crash later must not lose finished steps.
    checkpoint(inner, &mut state).await?;
    if let Some(message) = inner.lease_lost_message() {
        return Err(Error::LeaseLost(message));
    }
    let outcome = outcome?;
    emit_outcome(inner, &outcome);
    Ok(outcome)
}

fn emit_outcome(inner: &Inner, outcome: &Outcome) {
    let event = match outcome {
        Outcome::Completed { summary, .. } => Event::Finish(FinishEvent {
            reason: FinishReason::Completed,
            summary: summary.clone(),
        }),
        Outcome::Replied { text, .. } => Event::Finish(FinishEvent {
            reason: FinishReason::Replied,
            summary: text.clone(),
        }),
        Outcome::MaxSteps { steps } => Event::MaxSteps(MaxStepsEvent { steps: *steps }),
        Outcome::Aborted { steps } => Event::Aborted(AbortedEvent { step: *steps }),
    };
    inner.emit(event);
}

async fn checkpoint(inner: &Inner, state: &mut SessionState) -> Result<()> {
    let total = state.messages.len() as u64;
    if total == state.stored_len {
        return Ok(());
    }
    let Some(lease) = inner.lease() else {
        return Err(Error::Closed);
    };
    let start = usize::try_from(state.stored_len)
        .unwrap_or(usize::MAX)
        .min(state.messages.len());
    let cp = Checkpoint {
        base_len: state.stored_len,
        messages: state.messages[start..].to_vec(),
        task_counter: state.task_counter,
        usage: state.usage,
        title: state.title.clone(),
    };
    if let Err(e) = inner.store.checkpoint(&lease, &cp).await {
        inner.emit(Event::RuntimeError(RuntimeErrorEvent {
            kind: ErrorKind::Store,
            message: e.to_string(),
        }));
        if e.is_lease_lost() {
            inner.mark_lease_lost(e.to_string());
            return Err(Error::LeaseLost(e.to_string()));
        }
        return Err(e.into());
    }
    state.stored_len = total;
    inner.publish(&cp.messages, state.usage);
    Ok(())
}

fn drain_inbox(inner: &Inner, state: &mut SessionState) {
    let queued: Vec<String> = match inner.inbox.lock() {
        Ok(mut q) => q.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    for text in queued {
        state
            .messages
            .push(Message::user(codepilot_protocol::user_message(&text)));
        inner.emit(Event::UserMessageInjected(UserMessageEvent { text }));
    }
    if let Some(terminals) = &inner.terminals {
        for input in terminals.take_human_input() {
            let text = format!(
                "A person typed this command in terminal '{}':\n$ {}",
                input.terminal, input.command
            );
            state
                .messages
                .push(Message::user(codepilot_protocol::user_message(&text)));
            inner.emit(Event::UserMessageInjected(UserMessageEvent { text }));
        }
    }
}

/// Longest observation fed back in one message; longer ones keep their head and tail.
const MAX_OBSERVATION_CHARS: usize = 60_000;
/// Context window assumed when the agent file names none and the model is not in [`known_context_window`].
pub(crate) const DEFAULT_CONTEXT_TOKENS: u64 = 32_000;

/// Context windows of well-known model families, by name prefix. Conservative: the smallest window of the family.
pub(crate) fn known_context_window(model: &str) -> Option<u64> {
    const PROFILES: &[(&str, u64)] = &[
        ("claude-", 200_000),
        ("gpt-4.1", 1_000_000),
        ("gpt-4o", 128_000),
        ("gpt-5", 272_000),
        ("o1", 128_000),
        ("o3", 200_000),
        ("o4", 200_000),
        ("deepseek-", 64_000),
        ("gemini-", 1_000_000),
        ("qwen", 32_000),
        ("llama", 8_000),
        ("mistral", 32_000),
    ];
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    PROFILES
        .iter()
        .find(|(p, _)| m.starts_with(p))
        .map(|(_, n)| *n)
}
/// Rough characters per token, for budgeting without a tokenizer.
const CHARS_PER_TOKEN: u64 = 4;
/// What replaces an old observation elided to fit the context window.
const ELIDED: &str = "[EXECUTION RESULT]\n[older output elided to fit the context window]";

/// Keeps the head and tail of an over-long observation, with a marker saying how much was cut.
fn cap_observation(text: String) -> String {
    let total = text.chars().count();
    if total <= MAX_OBSERVATION_CHARS {
        return text;
    }
    let keep = MAX_OBSERVATION_CHARS / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(total - keep).collect();
    format!(
        "{head}\n\n[... {} characters of output cut: the observation is limited to {MAX_OBSERVATION_CHARS}; \
         print less, or read files in pages ...]\n\n{tail}",
        total - 2 * keep
    )
}

/// Messages as sent to the provider: consecutive messages of one role merged, so every provider accepts them, and
/// the oldest observations elided when the conversation would not fit `budget_chars`. The stored history keeps
/// everything.
fn wire_messages(messages: &[Message], budget_chars: u64) -> Vec<Message> {
    let total: u64 = messages.iter().map(|m| m.content.len() as u64).sum();
    let mut excess = total.saturating_sub(budget_chars);
    let mut elide = vec![false; messages.len()];
    // Oldest first, never the last two messages (the current task or observation and the answer before it).
    for (i, m) in messages
        .iter()
        .enumerate()
        .take(messages.len().saturating_sub(2))
    {
        if excess == 0 {
            break;
        }
        if m.role == codepilot_protocol::Role::User
            && m.content
                .starts_with(codepilot_protocol::EXECUTION_RESULT_TAG)
            && m.content.len() > ELIDED.len()
        {
            elide[i] = true;
            excess = excess.saturating_sub((m.content.len() - ELIDED.len()) as u64);
        }
    }
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let m = if elide[i] { &Message::user(ELIDED) } else { m };
        match out.last_mut() {
            Some(last) if last.role == m.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => out.push(m.clone()),
        }
    }
    out
}

/// The dynamic half of the system prompt for this step.
fn system_dynamic(inner: &Inner, step: u32, max_steps: u32) -> String {
    let terminals: Vec<TerminalLine> = inner
        .terminals
        .as_ref()
        .map(|t| {
            t.list()
                .into_iter()
                .map(|i| TerminalLine {
                    name: i.name.clone(),
                    status: match &i.state {
                        codepilot_terminal::TerminalState::Idle => "idle".to_owned(),
                        codepilot_terminal::TerminalState::Running { command } => {
                            let cmd: String = command.chars().take(80).collect();
                            format!("running `{cmd}`")
                        }
                        codepilot_terminal::TerminalState::Exited { code } => {
                            format!("exited ({code})")
                        }
                    },
                    cwd: i.cwd.display().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let work_dir = inner.workspace.root().display().to_string();
    crate::prompt::render_dynamic(&DynamicVars {
        work_dir: &work_dir,
        os: std::env::consts::OS,
        step,
        max_steps,
        terminals: &terminals,
    })
}

async fn step_loop(
    inner: &Arc<Inner>,
    state: &mut SessionState,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    let max_steps = inner.agent.runtime.max_steps;
    for step in 1..=max_steps {
        if cancel.is_cancelled() {
            return Ok(aborted(step.saturating_sub(1)));
        }
        drain_inbox(inner, state);
        inner.emit(Event::Step(StepEvent { step, max_steps }));
        let toolset = inner.toolset();
        let dynamic = system_dynamic(inner, step, max_steps);
        let window = inner.context_window;
        let reserve = u64::from(inner.agent.model.max_tokens) + 4_000;
        let budget = window
            .saturating_sub(reserve)
            .saturating_mul(CHARS_PER_TOKEN)
            .saturating_mul(85)
            / 100;
        let budget = budget.saturating_sub((toolset.static_prompt.len() + dynamic.len()) as u64);
        let messages = wire_messages(&state.messages, budget);

        let answer = {
            let mut filter = StreamFilter::new();
            let events = &inner.events;
            let mut on_delta = |d: StreamDelta<'_>| match d {
                StreamDelta::Text(t) => {
                    let shown = filter.push(t);
                    if !shown.is_empty() {
                        events.emit(Event::Stream(StreamEvent {
                            kind: StreamKind::Text,
                            text: shown,
                        }));
                    }
                }
                StreamDelta::Thinking(t) => events.emit(Event::Stream(StreamEvent {
                    kind: StreamKind::Thinking,
                    text: t.to_owned(),
                })),
                StreamDelta::Retry {
                    attempt,
                    delay,
                    reason,
                } => {
                    filter = StreamFilter::new();
                    events.emit(Event::ModelRetry(ModelRetryEvent {
                        attempt: attempt.saturating_sub(1),
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        reason: reason.to_owned(),
                    }));
                }
                _ => {}
            };
            let call = inner.provider.complete(
                ChatRequest {
                    system: &toolset.static_prompt,
                    system_dynamic: &dynamic,
                    messages: &messages,
                },
                &mut on_delta,
            );
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                r = call => Some(r),
            };
            match result {
                None => return Ok(aborted(step)),
                Some(Err(e)) => {
                    inner.emit(Event::RuntimeError(RuntimeErrorEvent {
                        kind: ErrorKind::Provider,
                        message: e.to_string(),
                    }));
                    // The task message stays; the failed call did not consume a step.
                    return Err(e.into());
                }
                Some(Ok(completion)) => {
                    let rest = filter.finish();
                    if !rest.is_empty() {
                        inner.emit(Event::Stream(StreamEvent {
                            kind: StreamKind::Text,
                            text: rest,
                        }));
                    }
                    completion
                }
            }
        };
        state.usage.add(&answer.usage);
        inner.emit(Event::Usage(UsageEvent {
            call: answer.usage,
            total: state.usage,
        }));

        let outcome = run_step(inner, state, &toolset, &answer.text, step, cancel).await;
        checkpoint(inner, state).await?;
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Ok(Outcome::MaxSteps { steps: max_steps })
}

fn aborted(step: u32) -> Outcome {
    Outcome::Aborted { steps: step }
}

/// Handles one model answer. `Some(outcome)` ends the task.
async fn run_step(
    inner: &Arc<Inner>,
    state: &mut SessionState,
    toolset: &Arc<crate::runtime::ToolSet>,
    answer: &str,
    step: u32,
    cancel: &CancellationToken,
) -> Option<Outcome> {
    let action = match codepilot_protocol::parse(answer) {
        Ok(a) => a,
        Err(e) => {
            // Kept as written so the model can see its mistake, but bounded: a rejected answer may carry whole
            // files in payload blocks, and it is never compacted.
            state
                .messages
                .push(Message::assistant(cap_observation(answer.to_owned())));
            inner.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Parse,
                message: e.to_string(),
            }));
            state
                .messages
                .push(Message::user(codepilot_protocol::parser_error_observation(
                    &e,
                )));
            return None;
        }
    };
    state
        .messages
        .push(Message::assistant(action.compacted(answer)));

    let Some(control) = &action.control else {
        return match &action.completion {
            Some(_) if has_unread_messages(inner) => {
                state.messages.push(Message::user(unread_rejection()));
                None
            }
            Some(summary) => Some(finish(FinishReason::Completed, summary, step)),
            None => Some(finish(FinishReason::Replied, action.text.trim(), step)),
        };
    };

    let host = Arc::new(StepHost::new(
        inner,
        toolset,
        &action,
        state.task_counter,
        step,
    ));
    let req = RunRequest {
        code: control.code.clone(),
        globals: vec![(
            "WORK_DIR".to_owned(),
            Value::String(inner.workspace.root().display().to_string()),
        )],
        tools: Arc::clone(&toolset.specs),
        limits: inner.limits.clone(),
    };
    let result = codepilot_script::run_block(
        req,
        Arc::clone(&host) as Arc<dyn ToolHost>,
        cancel.child_token(),
    )
    .await;
    let mut observation = host.take_observation();
    let leftover = host.leftover_payloads();
    if !leftover.is_empty() {
        observation.push(format!(
            "[warning] {} payload block(s) were not used by any write_file call: {}. Nothing was written for them.",
            leftover.len(),
            leftover.join(", ")
        ));
    }
    match result {
        Ok(_) => {
            if cancel.is_cancelled() {
                observation.push("[aborted by the user]");
                state
                    .messages
                    .push(Message::user(cap_observation(observation.render())));
                return Some(aborted(step));
            }
            let mut text = cap_observation(observation.render());
            let Some(summary) = action.completion.as_ref() else {
                state.messages.push(Message::user(text));
                return None;
            };
            if has_unread_messages(inner) {
                text.push_str("\n\n");
                text.push_str(&unread_rejection());
                state.messages.push(Message::user(text));
                return None;
            }
            state.messages.push(Message::user(text));
            Some(finish(FinishReason::Completed, summary, step))
        }
        Err(failure) => {
            if failure.kind == FailureKind::Cancelled || cancel.is_cancelled() {
                observation.push("[aborted by the user]");
                state
                    .messages
                    .push(Message::user(cap_observation(observation.render())));
                return Some(aborted(step));
            }
            let failure = execution_failure(&failure, &control.code, host.calls());
            inner.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Execution,
                message: format!("{}: {}", failure.exc_type, failure.message),
            }));
            let mut text = cap_observation(codepilot_protocol::execution_error_observation(
                &observation,
                &failure,
            ));
            if action.completion.is_some() {
                text.push_str("\n\n");
                text.push_str(&codepilot_protocol::completion_rejected(
                    "the control block raised an exception, so the task is not complete",
                ));
            }
            state.messages.push(Message::user(text));
            None
        }
    }
}

/// Whether the host queued a message the model has not seen yet.
fn has_unread_messages(inner: &Inner) -> bool {
    inner.inbox.lock().is_ok_and(|q| !q.is_empty())
}

fn unread_rejection() -> String {
    codepilot_protocol::completion_rejected(
        "a new message from the user arrived while you worked; it follows — take it into account before finishing",
    )
}

fn execution_failure(f: &ScriptFailure, code: &str, calls: u32) -> ExecutionFailure {
    let line_text = f.line_text.clone().or_else(|| {
        f.line
            .and_then(|n| code.lines().nth(n.saturating_sub(1)))
            .map(str::to_owned)
    });
    let (exc_type, message) = match f.kind {
        FailureKind::Timeout => (
            "TimeoutError".to_owned(),
            format!("{} (the block's wall-clock limit)", f.message),
        ),
        FailureKind::ToolCallLimit => ("ToolCallLimit".to_owned(), f.message.clone()),
        FailureKind::InterpreterCrash => (
            "InterpreterCrash".to_owned(),
            format!("{}; the interpreter stopped, simplify the block", f.message),
        ),
        _ => (f.exc_type.clone(), f.message.clone()),
    };
    ExecutionFailure {
        exc_type,
        message,
        line: f.line,
        line_text,
        traceback: f.traceback.clone(),
        ran_anything: calls > 0,
        compile_error: f.kind == FailureKind::Syntax,
    }
}

fn finish(reason: FinishReason, summary: &str, step: u32) -> Outcome {
    match reason {
        FinishReason::Completed => Outcome::Completed {
            summary: summary.to_owned(),
            steps: step,
        },
        FinishReason::Replied => Outcome::Replied {
            text: summary.to_owned(),
            steps: step,
        },
    }
}

/// The tool host for one control block: dispatches calls, gates permissions, collects the observation.
struct StepHost {
    inner: Arc<Inner>,
    toolset: Arc<crate::runtime::ToolSet>,
    ctx: BuiltinCtx,
    observation: Mutex<Observation>,
    task: u64,
    step: u32,
    calls: AtomicU32,
}

/// Emits a failed `ToolResult` for a call whose future was dropped (abort, block timeout), so every `ToolCall` a
/// host sees is closed.
struct CallGuard<'a> {
    inner: &'a Inner,
    call_id: String,
    tool: String,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.emit(Event::ToolResult(ToolResultEvent {
                call_id: std::mem::take(&mut self.call_id),
                tool: std::mem::take(&mut self.tool),
                ok: false,
                result: "[cancelled before it finished]".to_owned(),
            }));
        }
    }
}

impl StepHost {
    fn new(
        inner: &Arc<Inner>,
        toolset: &Arc<crate::runtime::ToolSet>,
        action: &Action,
        task: u64,
        step: u32,
    ) -> Self {
        Self {
            inner: Arc::clone(inner),
            toolset: Arc::clone(toolset),
            ctx: BuiltinCtx {
                workspace: Arc::clone(&inner.workspace),
                ledger: Arc::clone(&inner.ledger),
                terminals: inner.terminals.clone(),
                ask_user: inner.ask_user.clone(),
                payloads: Mutex::new(action.payloads.iter().cloned().collect()),
            },
            observation: Mutex::new(Observation::new()),
            task,
            step,
            calls: AtomicU32::new(0),
        }
    }

    fn push(&self, entry: String) {
        if let Ok(mut o) = self.observation.lock() {
            o.push(entry);
        }
    }

    fn take_observation(&self) -> Observation {
        match self.observation.lock() {
            Ok(mut o) => std::mem::replace(&mut *o, Observation::new()),
            Err(_) => Observation::new(),
        }
    }

    fn leftover_payloads(&self) -> Vec<String> {
        match self.ctx.payloads.lock() {
            Ok(q) => q.iter().map(|p| format!("'{}'", p.filename)).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    async fn permitted(&self, tool: &str, description: String) -> std::result::Result<(), String> {
        self.inner
            .emit(Event::PermissionRequest(PermissionRequestEvent {
                tool: tool.to_owned(),
                description: description.clone(),
            }));
        let Some(handler) = &self.inner.permission else {
            return Err(format!(
                "permission denied for {description}: this tool requires permission and the host application \
                 has no way to grant it (no permission handler). Do without this action, or finish and tell the \
                 user what you need"
            ));
        };
        let req = PermissionRequest {
            tool: tool.to_owned(),
            description: description.clone(),
        };
        match handler.decide(&req).await {
            PermissionDecision::Allow => Ok(()),
            PermissionDecision::Deny { reason } => Err(match reason {
                Some(r) => format!("the user denied permission for {description}: {r}"),
                None => format!("the user denied permission for {description}"),
            }),
        }
    }
}

fn exc_kind(kind: ToolErrorKind) -> ExcKind {
    match kind {
        ToolErrorKind::ValueError => ExcKind::ValueError,
        ToolErrorKind::TypeError => ExcKind::TypeError,
        ToolErrorKind::PermissionError => ExcKind::PermissionError,
        ToolErrorKind::FileNotFoundError => ExcKind::FileNotFoundError,
        ToolErrorKind::RuntimeError => ExcKind::RuntimeError,
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl ToolHost for StepHost {
    async fn call_tool(
        &self,
        name: &str,
        args: serde_json::Map<String, Value>,
    ) -> std::result::Result<Value, codepilot_script::ToolError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let call_id = format!("t{}s{}c{n}", self.task, self.step);
        let Some(tool) = self.toolset.registry.get(name).cloned() else {
            return Err(codepilot_script::ToolError::Raise {
                exc: ExcKind::RuntimeError,
                message: format!("{name} is not a tool"),
            });
        };
        let (label, permission) = match &tool {
            Registered::Builtin(b, s) => (
                b.label(&args),
                s.require_permission
                    .then(|| b.permission_description(&args)),
            ),
            Registered::Custom(_, s) => (
                format!("Calling {name}"),
                s.require_permission.then(|| format!("Call {name}")),
            ),
        };
        self.inner.emit(Event::ToolCall(ToolCallEvent {
            call_id: call_id.clone(),
            tool: name.to_owned(),
            args: Value::Object(args.clone()),
            label,
        }));
        let mut guard = CallGuard {
            inner: &self.inner,
            call_id: call_id.clone(),
            tool: name.to_owned(),
            armed: true,
        };
        if let Registered::Builtin(Builtin::AskUser, _) = &tool
            && let Some(Value::String(question)) = args.get("question")
        {
            self.inner.emit(Event::AskUser(AskUserEvent {
                question: question.clone(),
            }));
        }
        let result: std::result::Result<(String, Value), (String, crate::tools::ToolError)> =
            async {
                if let Some(description) = permission
                    && let Err(message) = self.permitted(name, description).await
                {
                    return Err((
                        format!("[{name}] Permission denied: {message}"),
                        crate::tools::ToolError::permission(message),
                    ));
                }
                match &tool {
                    Registered::Builtin(b, _) => b
                        .call(&self.ctx, args)
                        .await
                        .map(|o| (o.observation, o.value))
                        .map_err(|f| (f.observation, f.error)),
                    Registered::Custom(t, _) => match t.call(args).await {
                        Ok(out) => {
                            let obs = out.observation.unwrap_or_else(|| {
                                format!("[{name}] {}", render_value(&out.value))
                            });
                            Ok((obs, out.value))
                        }
                        Err(e) => Err((format!("[{name}] ERROR: {}", e.message), e)),
                    },
                }
            }
            .await;
        guard.armed = false;
        match result {
            Ok((observation, value)) => {
                self.push(observation.clone());
                self.inner.emit(Event::ToolResult(ToolResultEvent {
                    call_id,
                    tool: name.to_owned(),
                    ok: true,
                    result: observation,
                }));
                Ok(value)
            }
            Err((observation, err)) => {
                self.push(observation.clone());
                self.inner.emit(Event::ToolResult(ToolResultEvent {
                    call_id,
                    tool: name.to_owned(),
                    ok: false,
                    result: observation,
                }));
                Err(codepilot_script::ToolError::Raise {
                    exc: exc_kind(err.kind),
                    message: err.message,
                })
            }
        }
    }

    fn print(&self, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        if !text.is_empty() {
            self.push(text.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codepilot_protocol::Role;
    use pretty_assertions::assert_eq;

    #[test]
    fn wire_messages_merges_consecutive_roles() {
        let msgs = vec![
            Message::user("a"),
            Message::user("b"),
            Message::assistant("c"),
            Message::user("d"),
        ];
        let got = wire_messages(&msgs, u64::MAX);
        assert_eq!(
            got,
            vec![
                Message::user("a\n\nb"),
                Message::assistant("c"),
                Message::user("d")
            ]
        );
        assert_eq!(got[0].role, Role::User);
    }

    #[test]
    fn old_observations_are_elided_oldest_first_to_fit_the_budget() {
        let big = format!("[EXECUTION RESULT]\n{}", "x".repeat(10_000));
        let msgs = vec![
            Message::user("[Task 1][USER INPUT]\ngo"),
            Message::assistant("a1"),
            Message::user(big.clone()),
            Message::assistant("a2"),
            Message::user(big.clone()),
            Message::assistant("a3"),
            Message::user(big.clone()),
        ];
        let got = wire_messages(&msgs, 15_000);
        assert_eq!(got[2].content, ELIDED);
        assert_eq!(got[4].content, ELIDED);
        assert_eq!(
            got[6].content, big,
            "the latest observation is never elided"
        );
        assert_eq!(got[0].content, "[Task 1][USER INPUT]\ngo");
        let all = wire_messages(&msgs, u64::MAX);
        assert_eq!(all[2].content, big);
    }

    #[test]
    fn known_models_have_a_context_window() {
        assert_eq!(known_context_window("claude-sonnet-4-5"), Some(200_000));
        assert_eq!(known_context_window("openai/gpt-4o-mini"), Some(128_000));
        assert_eq!(known_context_window("my-finetune"), None);
    }

    #[test]
    fn long_observations_keep_head_and_tail() {
        let text = format!("HEAD{}TAIL", "y".repeat(200_000));
        let capped = cap_observation(text);
        assert!(capped.starts_with("HEAD") && capped.ends_with("TAIL"));
        assert!(capped.len() < MAX_OBSERVATION_CHARS + 500);
        assert!(capped.contains("characters of output cut"));
    }
}
