//! `archive_context`, `reveal_context` and `list_archived_context` (SPEC §16, the 0.9.2 semantics): the model
//! manages its own context. Their results reach the observation like any tool's.

use std::sync::MutexGuard;

use codepilot_protocol::ArchiveOrigin;
use codepilot_protocol::ContextDropEvent;
use codepilot_protocol::ContextDropKind;
use codepilot_protocol::Event;
use codepilot_protocol::ToolError;
use serde_json::Map;
use serde_json::Value;

use super::StepContext;
use super::ToolOutput;
use crate::context::ContextBook;

fn book(ctx: &StepContext) -> MutexGuard<'_, ContextBook> {
    match ctx.context.lock() {
        Ok(b) => b,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn task_number(tool: &str, v: &Value) -> Result<u64, ToolError> {
    v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
        ToolError::type_error(format!(
            "{tool}(): `task` must be a task number (1, 2, ...), got {v}"
        ))
    })
}

/// `task` as an inclusive range: one number, or a list of consecutive numbers.
fn task_range(args: &Map<String, Value>) -> Result<(u64, u64), ToolError> {
    match args.get("task") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut numbers = items
                .iter()
                .map(|v| task_number("archive_context", v))
                .collect::<Result<Vec<u64>, _>>()?;
            numbers.sort_unstable();
            numbers.dedup();
            let (first, last) = (numbers[0], numbers[numbers.len() - 1]);
            if last - first + 1 != numbers.len() as u64 {
                return Err(ToolError::value(format!(
                    "archive_context(): tasks {numbers:?} are not consecutive; archive them one call at a time"
                )));
            }
            Ok((first, last))
        }
        Some(v) => task_number("archive_context", v).map(|n| (n, n)),
        None => Err(ToolError::type_error(
            "archive_context(): `task` is required".to_owned(),
        )),
    }
}

/// `summary` as text: a string, or a list of strings joined by lines.
fn summary_text(args: &Map<String, Value>) -> Result<String, ToolError> {
    match args.get("summary") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|lines| lines.join("\n"))
            .ok_or_else(|| {
                ToolError::type_error(
                    "archive_context(): `summary` must be a string or a list of strings".to_owned(),
                )
            }),
        other => Err(ToolError::type_error(format!(
            "archive_context(): `summary` must be a string, got {}",
            other.map_or_else(|| "nothing".to_owned(), Value::to_string)
        ))),
    }
}

pub(super) fn archive(
    ctx: &StepContext,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let (first, last) = task_range(args)?;
    let summary = summary_text(args)?;
    let mut book = book(ctx);
    let before = book.current_tokens();
    let saved = book
        .archive(first, last, &summary, ArchiveOrigin::Agent)
        .map_err(|m| ToolError::value(format!("archive_context(): {m}")))?;
    let after = book.current_tokens();
    let budget = book.budget();
    drop(book);
    let tasks: Vec<u64> = (first..=last).collect();
    ctx.env.events.emit(Event::ContextDrop(ContextDropEvent {
        kind: ContextDropKind::Archived,
        tasks: tasks.clone(),
        before_tokens: before,
        after_tokens: after,
        budget,
    }));
    Ok(ToolOutput::message(codepilot_protocol::archived_text(
        &tasks, saved, after, budget,
    )))
}

pub(super) fn reveal(
    ctx: &StepContext,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let task = task_number("reveal_context", args.get("task").unwrap_or(&Value::Null))?;
    let text = book(ctx)
        .reveal(task)
        .map_err(|m| ToolError::value(format!("reveal_context(): {m}")))?;
    Ok(ToolOutput::message(text))
}

pub(super) fn list(ctx: &StepContext) -> ToolOutput {
    let book = book(ctx);
    ToolOutput::message(codepilot_protocol::archive_list_text(book.archives()))
}
