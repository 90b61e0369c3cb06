//! One model answer: parse it, run its control block, and decide what the model is told and whether the task
//! ends. The observation itself is rendered in one place, [`codepilot_protocol::Feedback::render`].

use std::sync::Arc;

use codepilot_protocol::Action;
use codepilot_protocol::BlockEnd;
use codepilot_protocol::BlockReport;
use codepilot_protocol::CompletionRefusal;
use codepilot_protocol::ExecutionFailure;
use codepilot_protocol::Feedback;
use codepilot_script::FailureKind;
use codepilot_script::RunRequest;
use codepilot_script::ScriptFailure;
use codepilot_script::ToolHost;
use codepilot_telemetry::KeyValue;
use codepilot_telemetry::Span;
use codepilot_telemetry::names;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::Run;
use super::host::StepHost;
use super::output::Judged;
use super::output::OutputSchema;
use crate::Outcome;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::RuntimeErrorEvent;
use crate::state::SessionState;
use crate::toolbox::ToolSet;

/// What one answer leads to: feedback for the model (the next user message) and, when the task ends, how.
pub(super) struct StepDone {
    pub(super) feedback: Option<Feedback>,
    pub(super) outcome: Option<Outcome>,
}

impl StepDone {
    fn feedback(feedback: Feedback) -> Self {
        Self {
            feedback: Some(feedback),
            outcome: None,
        }
    }
}

/// Handles one model answer; adds the assistant message to the history.
pub(super) async fn run(
    cx: &Arc<Context>,
    state: &mut SessionState,
    toolset: &Arc<ToolSet>,
    answer: &str,
    step: u32,
    run: &mut Run<'_>,
) -> StepDone {
    let action = match codepilot_protocol::parse(answer) {
        Ok(a) => a,
        Err(e) => {
            // Kept as written so the model can see its mistake, but bounded: a rejected answer may carry whole
            // files in payload blocks, and it is never compacted.
            state.push_answer(
                answer,
                codepilot_protocol::cap_observation(answer.to_owned()),
            );
            cx.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Parse,
                message: e.to_string(),
            }));
            return StepDone::feedback(Feedback::ParseError(e));
        }
    };
    state.push_answer(answer, action.compacted(answer));

    let Some(control) = &action.control else {
        return match &action.completion {
            Some(_) if cx.control.has_unread() => StepDone::feedback(Feedback::CompletionRefused(
                CompletionRefusal::UnreadUserMessage,
            )),
            Some(summary) => match complete(run, summary, step) {
                Ok(outcome) => StepDone {
                    feedback: None,
                    outcome: Some(outcome),
                },
                Err(refusal) => StepDone::feedback(Feedback::CompletionRefused(refusal)),
            },
            // With an output schema a reply is not a result: refused, counted against the retries.
            None => match run.schema.as_deref_mut().map(OutputSchema::judge_reply) {
                None => StepDone {
                    feedback: None,
                    outcome: Some(Outcome::Replied {
                        text: action.text.trim().to_owned(),
                        steps: step,
                    }),
                },
                Some(Ok(refusal)) => StepDone::feedback(Feedback::CompletionRefused(refusal)),
                Some(Err(errors)) => StepDone {
                    feedback: None,
                    outcome: Some(Outcome::InvalidOutput {
                        errors,
                        last: action.text.trim().to_owned(),
                        steps: step,
                    }),
                },
            },
        };
    };
    run_block(cx, state, toolset, &action, &control.code, step, run).await
}

/// What an accepted-so-far completion leads to, given the run's output schema: the outcome, or the refusal the
/// model reads.
fn complete(run: &mut Run<'_>, summary: &str, step: u32) -> Result<Outcome, CompletionRefusal> {
    let Some(schema) = run.schema.as_deref_mut() else {
        return Ok(Outcome::Completed {
            summary: summary.to_owned(),
            steps: step,
            structured: None,
        });
    };
    match schema.judge(summary) {
        Judged::Valid(value) => Ok(Outcome::Completed {
            summary: summary.to_owned(),
            steps: step,
            structured: Some(value),
        }),
        Judged::Refused(refusal) => Err(refusal),
        Judged::GaveUp { errors } => Ok(Outcome::InvalidOutput {
            errors,
            last: summary.to_owned(),
            steps: step,
        }),
    }
}

async fn run_block(
    cx: &Arc<Context>,
    state: &SessionState,
    toolset: &Arc<ToolSet>,
    action: &Action,
    code: &str,
    step: u32,
    run: &mut Run<'_>,
) -> StepDone {
    let span = run.step_span.child(
        || "codepilot.block".into(),
        codepilot_telemetry::SpanKind::Internal,
        || {
            vec![KeyValue::new(
                names::BLOCK_LINES,
                i64::try_from(code.lines().count()).unwrap_or(i64::MAX),
            )]
        },
    );
    let cancel: &CancellationToken = run.cancel;
    let host = Arc::new(StepHost::new(
        cx,
        toolset,
        action,
        Arc::clone(&state.context),
        state.task_counter,
        step,
        span.clone(),
    ));
    let req = RunRequest {
        code: code.to_owned(),
        globals: vec![(
            "WORK_DIR".to_owned(),
            Value::String(cx.env.workspace.root().display().to_string()),
        )],
        tools: Arc::clone(&toolset.specs),
        limits: cx.limits.clone(),
    };
    let result = codepilot_script::run_block(
        req,
        Arc::clone(&host) as Arc<dyn ToolHost>,
        cancel.child_token(),
    )
    .await;
    span.set(names::BLOCK_CALLS, i64::from(host.calls()));
    let mut report = BlockReport {
        observation: host.take_observation(),
        unused_payloads: host.leftover_payloads(),
        end: BlockEnd::Finished,
        completion_refused: None,
    };
    let aborted = Some(Outcome::Aborted { steps: step });
    let done = match result {
        Ok(_) if cancel.is_cancelled() => {
            report.end = cut_short(run);
            StepDone {
                feedback: Some(Feedback::Block(report)),
                outcome: aborted,
            }
        }
        Ok(_) => {
            let outcome = match &action.completion {
                Some(_) if cx.control.has_unread() => {
                    report.completion_refused = Some(CompletionRefusal::UnreadUserMessage);
                    None
                }
                Some(summary) => match complete(run, summary, step) {
                    Ok(outcome) => Some(outcome),
                    Err(refusal) => {
                        report.completion_refused = Some(refusal);
                        None
                    }
                },
                None => None,
            };
            StepDone {
                feedback: Some(Feedback::Block(report)),
                outcome,
            }
        }
        Err(failure) if failure.kind == FailureKind::Cancelled || cancel.is_cancelled() => {
            report.end = cut_short(run);
            StepDone {
                feedback: Some(Feedback::Block(report)),
                outcome: aborted,
            }
        }
        Err(failure) => {
            let failure = execution_failure(&failure, code, host.calls());
            cx.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Execution,
                message: format!("{}: {}", failure.exc_type, failure.message),
            }));
            report.end = BlockEnd::Failed(failure);
            if action.completion.is_some() {
                report.completion_refused = Some(CompletionRefusal::BlockFailed);
            }
            StepDone::feedback(Feedback::Block(report))
        }
    };
    report_block(&span, &done);
    done
}

/// Records how the block ended on its span.
fn report_block(span: &Span, done: &StepDone) {
    let Some(Feedback::Block(report)) = &done.feedback else {
        return;
    };
    let end = match &report.end {
        BlockEnd::Finished => "finished",
        BlockEnd::Failed(failure) => {
            span.fail("execution", || {
                // The exception's message may quote data: content; its type is not.
                if span.records_content() {
                    format!("{}: {}", failure.exc_type, failure.message)
                } else {
                    failure.exc_type.clone()
                }
            });
            "failed"
        }
        BlockEnd::Aborted => "aborted",
        BlockEnd::OutOfTime => "out_of_time",
    };
    span.set(names::BLOCK_END, end);
}

/// How a block the run's token stopped ended: aborted, or out of time.
fn cut_short(run: &Run<'_>) -> BlockEnd {
    if run.out_of_time() {
        BlockEnd::OutOfTime
    } else {
        BlockEnd::Aborted
    }
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
        FailureKind::Syntax | FailureKind::Exception | FailureKind::Cancelled => {
            (f.exc_type.clone(), f.message.clone())
        }
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
