//! Context maintenance (SPEC §16): past the stress threshold a step asks the model to archive finished tasks; if
//! the context is still over the threshold after it, one summarising model call replaces the oldest finished tasks.

use codepilot_llm::ChatRequest;
use codepilot_llm::WireMessage;
use codepilot_protocol::ArchiveOrigin;
use codepilot_protocol::Message;
use codepilot_protocol::Role;

use super::Context;
use crate::context::LOW_WATER;
use crate::events::ContextDropEvent;
use crate::events::ContextDropKind;
use crate::events::ContextMaintenanceEvent;
use crate::events::ErrorKind;
use crate::events::Event;
use crate::events::RuntimeErrorEvent;
use crate::state::SessionState;
use crate::toolbox::ToolSet;

/// Starts a maintenance step when the context is past the threshold, finished tasks can be archived and the
/// model has `archive_context`: adds the maintenance message and emits [`Event::ContextMaintenance`].
pub(super) fn start(cx: &Context, state: &mut SessionState, toolset: &ToolSet) -> bool {
    if toolset.registry.get("archive_context").is_none() {
        return false;
    }
    let (text, event) = {
        let mut book = state.book();
        if book.stress(&toolset.static_prompt, "") < book.threshold() {
            return false;
        }
        let candidates = book.candidates();
        if candidates.is_empty() {
            return false;
        }
        let tokens = book.request_tokens(&toolset.static_prompt, "");
        let budget = book.budget();
        let text = codepilot_protocol::maintenance_message(
            tokens,
            budget,
            &candidates,
            book.current_task(),
        );
        let event = ContextMaintenanceEvent {
            context_tokens: tokens,
            budget,
            stress_pct: codepilot_protocol::percent(tokens, budget),
            candidates: candidates.iter().map(|c| c.task).collect(),
        };
        (text, event)
    };
    state.messages.push(Message::user(text));
    cx.emit(Event::ContextMaintenance(event));
    true
}

/// Whether the backstop has work: past the threshold with finished tasks still shown in full.
pub(super) fn needs_backstop(state: &SessionState, toolset: &ToolSet) -> bool {
    let mut book = state.book();
    book.stress(&toolset.static_prompt, "") >= book.threshold() && !book.candidates().is_empty()
}

/// The summarising backstop: when the context is still past the threshold, one model call summarises the oldest
/// finished tasks (whole tasks, as many as bring the request down to the low-water mark) into an archive. A
/// failed call is reported and left to compaction.
pub(super) async fn backstop(
    cx: &Context,
    state: &mut SessionState,
    toolset: &ToolSet,
    run: &mut super::Run<'_>,
) {
    let cancel = run.cancel;
    let (first, last, transcript, before, budget) = {
        let mut book = state.book();
        if book.stress(&toolset.static_prompt, "") < book.threshold() {
            return;
        }
        let budget = book.budget();
        let before = book.request_tokens(&toolset.static_prompt, "");
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let target = (budget as f64 * LOW_WATER) as u64;
        let Some((first, last, messages)) =
            book.oldest_finished(before.saturating_sub(target), budget / 2)
        else {
            return;
        };
        (first, last, messages, before, budget)
    };
    let request = [WireMessage::new(
        Role::User,
        codepilot_protocol::summariser_request(&transcript),
    )];
    // Within the limits like every call; when it does not fit, compaction frees the context instead.
    let prompt = {
        let book = state.book();
        book.count(codepilot_protocol::SUMMARISER_PROMPT) + book.count(request[0].content())
    };
    if run.budget.check(prompt, &state.usage).is_some() {
        return;
    }
    let mut ignore = |_: codepilot_llm::StreamDelta<'_>| {};
    let call = cx.provider.complete(
        ChatRequest {
            system: codepilot_protocol::SUMMARISER_PROMPT,
            system_dynamic: "",
            messages: &request,
            cache_marks: Some(&[]),
        },
        &mut ignore,
    );
    let result = tokio::select! {
        biased;
        () = cancel.cancelled() => return,
        r = call => r,
    };
    let completion = match result {
        Ok(c) => c,
        Err(e) => {
            cx.emit(Event::RuntimeError(RuntimeErrorEvent {
                kind: ErrorKind::Provider,
                message: format!(
                    "summarising tasks {first}-{last} to free context failed ({e}); older history will be \
                     compacted instead"
                ),
            }));
            return;
        }
    };
    let (usage, estimated) = if completion.usage.total() == 0 {
        let estimate = codepilot_protocol::Usage {
            input_tokens: prompt,
            output_tokens: state.book().count(&completion.text),
            calls: 1,
            ..codepilot_protocol::Usage::default()
        };
        (estimate, true)
    } else {
        (completion.usage, false)
    };
    state.usage.add(&usage);
    let (event, warnings) = run.budget.record(usage, estimated, state.usage);
    cx.emit(Event::Usage(Box::new(event)));
    for warning in warnings {
        cx.emit(Event::LimitWarning(warning));
    }
    let archived = {
        let mut book = state.book();
        book.archive(first, last, &completion.text, ArchiveOrigin::Summary)
            .map(|_| book.request_tokens(&toolset.static_prompt, ""))
    };
    match archived {
        Ok(after) => cx.emit(Event::ContextDrop(ContextDropEvent {
            kind: ContextDropKind::Summarised,
            tasks: (first..=last).collect(),
            before_tokens: before,
            after_tokens: after,
            budget,
        })),
        Err(reason) => cx.emit(Event::RuntimeError(RuntimeErrorEvent {
            kind: ErrorKind::Provider,
            message: format!(
                "the summary of tasks {first}-{last} could not be used ({reason}); older history will be \
                 compacted instead"
            ),
        })),
    }
}
