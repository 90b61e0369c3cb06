//! The step loop: ask the model, parse, run the control block, feed the observation back, checkpoint.
//!
//! - [`run`] owns the session for one task (a turn) and emits its terminal event once the last step is stored;
//! - `model` makes the streamed model call of a step;
//! - `step` turns one answer into feedback for the model (and maybe an outcome);
//! - `host` serves the control block's tool calls: permission gate, dispatch, events, observation entries.

mod budget;
mod checkpoints;
mod context;
mod host;
mod maintain;
mod model;
mod output;
mod step;

use std::sync::Arc;

use codepilot_protocol::Message;
use codepilot_telemetry::KeyValue;
use codepilot_telemetry::Span;
use codepilot_telemetry::names;
use tokio_util::sync::CancellationToken;

pub(crate) use checkpoints::Checkpoints;
pub(crate) use context::Context;
pub(crate) use context::RunHooks;
pub(crate) use context::Spending;

use budget::Budget;
use output::OutputSchema;

use crate::Outcome;
use crate::error::Error;
use crate::error::Result;
use crate::events::AbortedEvent;
use crate::events::ContextDropEvent;
use crate::events::ContextDropKind;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::FinishEvent;
use crate::events::FinishReason;
use crate::events::MaxStepsEvent;
use crate::events::RuntimeErrorEvent;
use crate::events::StartEvent;
use crate::events::StepEvent;
use crate::events::UserMessageEvent;
use crate::prompt::DynamicVars;
use crate::prompt::TerminalLine;
use crate::state::SessionState;
use crate::toolbox::ToolSet;

/// What one run may do beyond the agent's defaults (SPEC §21).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// Limits for this run, each one set replacing the agent's `runtime.limits` value.
    pub limits: codepilot_protocol::Limits,
    /// A JSON Schema (draft 2020-12) the completion must match; the outcome then carries the parsed value.
    pub output_schema: Option<serde_json::Value>,
    /// The host's trace context (W3C `traceparent`): the run's span becomes its child, and the agent's shells get
    /// it as `TRACEPARENT` even when this runtime exports no traces (SPEC §23).
    pub traceparent: Option<codepilot_telemetry::TraceParent>,
}

/// Runs one task. Holds the session for the whole run, so a second concurrent `run` gets [`Error::Busy`].
///
/// Terminal events (`Finish`, `MaxSteps`, `Aborted`) are emitted only after the final checkpoint succeeded, so a
/// host that sees one can rely on the step being stored.
pub(crate) async fn run(cx: &Arc<Context>, task: &str, options: &RunOptions) -> Result<Outcome> {
    let limits = options.limits.or(cx.spending.run);
    check_limits(&limits, &cx.spending.session, cx.spending.prices.is_some())?;
    let mut schema = options
        .output_schema
        .clone()
        .map(|s| OutputSchema::new(s, cx.spending.output_retries))
        .transpose()?;
    let entered = cx.control.enter();
    if cx.control.is_closed() {
        return Err(Error::Closed);
    }
    if let Some(message) = cx.lease.lost_message() {
        return Err(Error::LeaseLost(message));
    }
    let Some(mut state) = cx.session.try_lock() else {
        return Err(Error::Busy);
    };
    let owned = entered.own();
    // The project's instructions as they are now on disk: an edit between turns takes effect here.
    cx.tools.refresh_instructions()?;
    let span = match &cx.traces {
        Some(traces) => traces.run_span(
            state.id.as_ref(),
            (state.task_counter + 1, turn_id(state.task_counter + 1)),
            task,
            options.traceparent.as_ref(),
        ),
        None => Span::none(),
    };
    if let Some(terminals) = cx.terminals() {
        // Programs the agent starts join the run's trace (or the host's, when this runtime exports none).
        let parent = span
            .traceparent()
            .or_else(|| options.traceparent.map(|tp| tp.to_string()));
        terminals.set_traceparent(parent);
    }
    // The state before the turn: what a rewind to it brings back.
    cx.checkpoints
        .capture(cx, &state, state.task_counter + 1, None, &span)
        .await;
    state.task_counter += 1;
    if state.title.is_none() {
        state.title = codepilot_store::title_from_task(task);
    }
    let n = state.task_counter;
    let mut text = codepilot_protocol::task_message(n, task);
    if let Some(schema) = &schema {
        text.push_str("\n\n");
        text.push_str(&schema.instruction());
    }
    state.messages.push(Message::user(text));
    cx.events.set_turn(Some(turn_id(n)));
    cx.emit(Event::Start(StartEvent {
        session_id: state.id.to_string(),
        task_number: n,
        task: task.to_owned(),
    }));
    *codepilot_protocol::sync::lock(&cx.worker_spend) = crate::state::WorkerSpend::default();
    let mut budget = Budget::new(
        limits,
        cx.spending.session,
        cx.spending.prices,
        cx.spending.max_output,
        Arc::clone(&cx.worker_spend),
    );
    // The wall limit holds whatever the run is doing: at the deadline the turn is cancelled as an abort is, and
    // the abort is then reported as the limit.
    let turn = owned.token.child_token();
    let wall = budget.wall_deadline().map(|at| {
        let turn = turn.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            turn.cancel();
        })
    });
    let mut run = Run {
        budget: &mut budget,
        schema: schema.as_mut(),
        cancel: &turn,
        aborted: &owned.token,
        span: &span,
        step_span: Span::none(),
    };
    // Workers live as long as the run that can await them: an abort (or the wall limit) stops them at once, the
    // run's end stops those still running.
    let workers = cx.env.workers.clone();
    let stop_workers = workers.as_ref().map(|w| {
        let (w, turn) = (Arc::clone(w), turn.clone());
        tokio::spawn(async move {
            turn.cancelled().await;
            w.abort_all();
        })
    });
    let outcome = finish_run(cx, &mut state, &mut run).await;
    if let Some(wall) = &wall {
        wall.abort();
    }
    if let (Some(workers), Some(watch)) = (&workers, &stop_workers) {
        watch.abort();
        workers.abort_all();
    }
    *codepilot_protocol::sync::lock(&cx.last_spend) = Some(budget.spend());
    if !matches!(
        outcome,
        Err(Error::Store(_) | Error::LeaseLost(_) | Error::Closed)
    ) && let Some(hooks) = &cx.hooks
    {
        hooks.run_ended(cx).await;
    }
    cx.checkpoints.settle().await;
    cx.events.set_turn(None);
    crate::traces::end_run(&span, &outcome);
    outcome
}

/// Refuses limits that cannot be enforced: a cost without prices, a session wall time, values out of range.
fn check_limits(
    run: &codepilot_protocol::Limits,
    session: &codepilot_protocol::Limits,
    priced: bool,
) -> Result<()> {
    run.validate()
        .map_err(|m| Error::Limits(format!("this run's limits: {m}")))?;
    session
        .validate()
        .map_err(|m| Error::Limits(format!("runtime.session_limits: {m}")))?;
    if session.max_wall_s.is_some() {
        return Err(Error::Limits(
            "runtime.session_limits: a session's time is not limited; set max_wall_s for each run"
                .to_owned(),
        ));
    }
    if (run.max_cost_usd.is_some() || session.max_cost_usd.is_some()) && !priced {
        return Err(Error::Limits(
            "a cost limit needs the model's prices, and this model has none built in; add `model.pricing: \
             {input_per_mtok: …, output_per_mtok: …}` (US dollars per million tokens) to the agent file"
                .to_owned(),
        ));
    }
    Ok(())
}

/// One run's state besides the session: what it may spend, its output schema, its cancellation.
struct Run<'a> {
    budget: &'a mut Budget,
    schema: Option<&'a mut OutputSchema>,
    /// Cancelled by an abort, or when the wall limit is reached (it is a child of `aborted`).
    cancel: &'a CancellationToken,
    /// Cancelled by an abort only (the host's, a closing runtime's).
    aborted: &'a CancellationToken,
    /// The run's span (nothing when tracing is off).
    span: &'a Span,
    /// The current step's span.
    step_span: Span,
}

impl Run<'_> {
    /// Whether the run was cut short by its wall limit rather than aborted.
    fn out_of_time(&self) -> bool {
        self.cancel.is_cancelled() && !self.aborted.is_cancelled()
    }

    /// An abort's outcome, unless the abort was the wall limit.
    fn aborted(&self, steps: u32) -> Outcome {
        if self.out_of_time() {
            self.budget.wall_exceeded().outcome(steps)
        } else {
            Outcome::Aborted { steps }
        }
    }
}

/// The id of task `n`'s turn, as envelopes and `turn/completed` carry it.
pub(crate) fn turn_id(task_number: u64) -> String {
    format!("turn-{task_number}")
}

async fn finish_run(
    cx: &Arc<Context>,
    state: &mut SessionState,
    run: &mut Run<'_>,
) -> Result<Outcome> {
    let outcome = step_loop(cx, state, run).await.map(|o| match o {
        Outcome::Aborted { steps } => run.aborted(steps),
        other => other,
    });
    // A store failure was reported where it happened; don't try (and report) again.
    if let Err(e @ (Error::Store(_) | Error::LeaseLost(_))) = outcome {
        return Err(e);
    }
    // Whatever else happened, persist what we have: a crash later must not lose finished steps.
    checkpoint(cx, state, run.span).await?;
    if let Some(message) = cx.lease.lost_message() {
        return Err(Error::LeaseLost(message));
    }
    let outcome = outcome?;
    cx.emit(match &outcome {
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
        Outcome::LimitExceeded {
            limit,
            scope,
            max,
            spent,
            ..
        } => Event::Finish(FinishEvent {
            reason: FinishReason::LimitExceeded,
            summary: format!(
                "stopped: the {}'s limit {} was reached ({} of {})",
                match scope {
                    codepilot_protocol::LimitScope::Run => "run",
                    codepilot_protocol::LimitScope::Session => "session",
                },
                limit.key(),
                limit.show(*spent),
                limit.show(*max)
            ),
        }),
        Outcome::InvalidOutput { errors, .. } => Event::Finish(FinishEvent {
            reason: FinishReason::InvalidOutput,
            summary: format!(
                "the completion did not match the output schema after every retry: {}",
                errors.join("; ")
            ),
        }),
    });
    Ok(outcome)
}

/// Stores the steps since the last checkpoint. A failure is reported as an event; a lost lease stops the run.
async fn checkpoint(cx: &Context, state: &mut SessionState, parent: &Span) -> Result<()> {
    let Some(lease) = cx.lease.current() else {
        return Err(Error::Closed);
    };
    let span = parent.child(
        || "codepilot.save".into(),
        codepilot_telemetry::SpanKind::Internal,
        Vec::new,
    );
    let Err(e) = cx.session.checkpoint(state, &lease).await else {
        return Ok(());
    };
    span.fail("store", || e.to_string());
    cx.emit(Event::RuntimeError(RuntimeErrorEvent {
        kind: ErrorKind::Store,
        message: e.to_string(),
    }));
    if e.is_lease_lost() {
        cx.lease.mark_lost(e.to_string());
        cx.control.cancel_now();
        return Err(Error::LeaseLost(e.to_string()));
    }
    Err(e.into())
}

/// Adds the host's queued messages and the commands people typed into the agent's terminals.
fn drain_inbox(cx: &Context, state: &mut SessionState) {
    let typed = cx
        .terminals()
        .map(codepilot_terminal::TerminalManager::take_human_input)
        .unwrap_or_default()
        .into_iter()
        .map(|input| codepilot_protocol::human_command_text(&input.terminal, &input.command));
    for text in cx.control.drain().into_iter().chain(typed) {
        state
            .messages
            .push(Message::user(codepilot_protocol::user_message(&text)));
        cx.emit(Event::UserMessageInjected(UserMessageEvent { text }));
    }
}

/// The dynamic half of the system prompt for this step; `context` is its `Context: …` line.
fn system_dynamic(cx: &Context, step: u32, max_steps: u32, context: &str) -> String {
    let terminals: Vec<TerminalLine> = cx
        .terminals()
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
    let work_dir = cx.env.workspace.root().display().to_string();
    crate::prompt::render_dynamic(&DynamicVars {
        work_dir: &work_dir,
        os: std::env::consts::OS,
        step,
        max_steps,
        terminals: &terminals,
        context,
    })
}

/// The system prompt the next turn's first model call would send (`codepilot run --print-prompt`): the static
/// part with the project instructions read now, then the dynamic part for step 1.
pub(crate) fn system_prompt(cx: &Context) -> Result<String> {
    let Some(state) = cx.session.try_lock() else {
        return Err(Error::Busy);
    };
    cx.tools.refresh_instructions()?;
    let toolset = cx.tools.current();
    let mut book = state.book();
    let tokens = book.request_tokens(&toolset.static_prompt, "");
    let status = codepilot_protocol::context_status(tokens, book.budget());
    let dynamic = system_dynamic(cx, 1, cx.max_steps, &status);
    Ok(format!("{}\n{dynamic}", toolset.static_prompt))
}

/// What one model call sends: the dynamic prompt part and the view of the history.
struct Request {
    /// The request's size in tokens (as counted or estimated here).
    tokens: u64,
    dynamic: String,
    messages: Vec<codepilot_llm::WireMessage>,
    cache_marks: Vec<usize>,
}

/// Renders the dynamic prompt with the context line and fits the request into the budget, compacting if needed.
fn prepare(
    cx: &Context,
    state: &SessionState,
    toolset: &ToolSet,
    step: u32,
    max_steps: u32,
) -> Result<Request> {
    let mut book = state.book();
    let budget = book.budget();
    let render = |tokens: u64| {
        system_dynamic(
            cx,
            step,
            max_steps,
            &codepilot_protocol::context_status(tokens, budget),
        )
    };
    let first = render(book.request_tokens(&toolset.static_prompt, ""));
    let mut dynamic = render(book.request_tokens(&toolset.static_prompt, &first));
    if let Some(drop) = book.fit(&toolset.static_prompt, &dynamic)? {
        cx.emit(Event::ContextDrop(ContextDropEvent {
            kind: ContextDropKind::Compacted,
            tasks: drop.tasks,
            before_tokens: drop.before,
            after_tokens: drop.after,
            budget,
        }));
        dynamic = render(drop.after);
    }
    Ok(Request {
        tokens: book.request_tokens(&toolset.static_prompt, &dynamic),
        dynamic,
        messages: book.messages().to_vec(),
        cache_marks: book.cache_marks(),
    })
}

async fn step_loop(
    cx: &Arc<Context>,
    state: &mut SessionState,
    run: &mut Run<'_>,
) -> Result<Outcome> {
    let cancel = run.cancel;
    let max_steps = cx.max_steps;
    let mut maintained = false;
    for step in 1..=max_steps {
        if cancel.is_cancelled() {
            return Ok(Outcome::Aborted {
                steps: step.saturating_sub(1),
            });
        }
        let step_span = run.span.child(
            || "codepilot.step".into(),
            codepilot_telemetry::SpanKind::Internal,
            || vec![KeyValue::new(names::STEP, i64::from(step))],
        );
        if step > 1 {
            cx.checkpoints
                .capture(cx, state, state.task_counter, Some(step), &step_span)
                .await;
        }
        drain_inbox(cx, state);
        cx.emit(Event::Step(StepEvent { step, max_steps }));
        if let Some(hub) = cx.tools.mcp() {
            if step == 1 {
                // Servers still starting get a bounded wait, so the first prompt lists their tools.
                tokio::select! {
                    () = hub.wait_for_first_step() => {}
                    () = cancel.cancelled() => return Ok(Outcome::Aborted { steps: 0 }),
                }
            }
            tokio::select! {
                synced = cx.tools.sync_mcp() => synced?,
                () = cancel.cancelled() => return Ok(Outcome::Aborted { steps: step.saturating_sub(1) }),
            }
        }
        let toolset = cx.tools.current();
        // At most one maintenance step per run: what it leaves is the backstop's and compaction's job.
        let maintenance = !maintained && maintain::start(cx, state, &toolset);
        maintained |= maintenance;
        let request = prepare(cx, state, &toolset, step, max_steps)?;
        if let Some(stop) = run.budget.check(request.tokens, &state.usage) {
            return Ok(stop.outcome(step.saturating_sub(1)));
        }

        let model_span = match &cx.traces {
            Some(traces) if step_span.is_recording() => {
                let system = if traces.log_content() {
                    format!("{}\n{}", toolset.static_prompt, request.dynamic)
                } else {
                    String::new()
                };
                traces.model_span(&step_span, &system, &request.messages)
            }
            _ => Span::none(),
        };
        let Some(answer) = model::ask(
            cx,
            &toolset.static_prompt,
            &request.dynamic,
            &request.messages,
            &request.cache_marks,
            cancel,
            &model_span,
        )
        .await?
        else {
            return Ok(Outcome::Aborted { steps: step });
        };
        // A provider that reports no usage is counted with the runtime's own estimate.
        let (usage, estimated) = if answer.usage.total() == 0 {
            let output = state.book().count(&answer.text);
            let estimate = codepilot_protocol::Usage {
                input_tokens: request.tokens,
                output_tokens: output,
                calls: 1,
                ..codepilot_protocol::Usage::default()
            };
            (estimate, true)
        } else {
            state.book().observe(&answer.usage);
            (answer.usage, false)
        };
        drop(request);
        model_span.set_with(|| {
            let mut attributes = vec![
                KeyValue::new(
                    names::GEN_AI_USAGE_INPUT_TOKENS,
                    i64::try_from(usage.input_tokens).unwrap_or(i64::MAX),
                ),
                KeyValue::new(
                    names::GEN_AI_USAGE_OUTPUT_TOKENS,
                    i64::try_from(usage.output_tokens).unwrap_or(i64::MAX),
                ),
                KeyValue::new(names::MODEL_ATTEMPTS, i64::from(answer.attempts)),
            ];
            if let Some(reason) = &answer.stop_reason {
                attributes.push(KeyValue::new(
                    names::GEN_AI_RESPONSE_FINISH_REASONS,
                    codepilot_telemetry::Value::Array(
                        vec![codepilot_telemetry::StringValue::from(reason.clone())].into(),
                    ),
                ));
            }
            if model_span.records_content() {
                attributes.push(KeyValue::new(
                    names::GEN_AI_OUTPUT_MESSAGES,
                    crate::traces::output_messages(&answer.text, answer.stop_reason.as_deref()),
                ));
            }
            attributes
        });
        model_span.end();
        state.usage.add(&usage);
        let (event, warnings) = run.budget.record(usage, estimated, state.usage);
        cx.emit(Event::Usage(Box::new(event)));
        for warning in warnings {
            cx.emit(Event::LimitWarning(warning));
        }

        run.step_span = step_span.clone();
        // The checkpoint before this step was taken beside the model's answer; the answer's block may change files.
        cx.checkpoints.ready().await;
        let done = step::run(cx, state, &toolset, &answer.text, step, run).await;
        run.step_span = Span::none();
        if let Some(feedback) = done.feedback {
            state.messages.push(Message::user(feedback.render()));
        }
        checkpoint(cx, state, &step_span).await?;
        step_span.end();
        if done.outcome.is_none()
            && let Some(hooks) = &cx.hooks
        {
            hooks.step_saved(cx);
        }
        if let Some(outcome) = done.outcome {
            return Ok(outcome);
        }
        if maintenance || (!maintained && maintain::needs_backstop(state, &toolset)) {
            maintained = true;
            maintain::backstop(cx, state, &toolset, run).await;
        }
    }
    Ok(Outcome::MaxSteps { steps: max_steps })
}
