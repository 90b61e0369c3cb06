//! What the model sees of the conversation (SPEC §16): every request fits the budget, history leaves it in whole
//! units, and the work per step does not grow with the session.
//!
//! [`ContextBook`] indexes the stored history into tasks and steps as messages are added, counting each message's
//! tokens and serialising it once. The *view* is the list of wire messages a request sends; a new message is
//! appended to it (merged into the last one when the roles match), so an ordinary step touches only what is new.
//! The view is rebuilt only when its shape changes: an archive, a summary, or a compaction. Compaction happens
//! when a request would pass the budget and then goes down to [`LOW_WATER`] of it at once, so the request prefix
//! stays the same (and the provider's prompt cache keeps hitting) for many steps after.
//!
//! Compaction never splits a step. Never compacted: the system prompt, the current task's opening, the newest step
//! (which holds any unread user message). In this order, oldest first: observations of old steps are elided, then
//! old steps are dropped whole (a marker says how many), then whole finished tasks (a marker names them). Only
//! when the protected part alone is over the budget is the newest step cut, in requests only: its answer (a
//! runaway generation) to its head and tail, then its largest observation; a request fails only when the task's
//! opening alone cannot fit. The stored history keeps everything; archives (`archive_context`, the summarising
//! backstop) are stored with the session.

mod compact;

use std::sync::Arc;

use codepilot_llm::TokenCounter;
use codepilot_llm::WireMessage;
use codepilot_protocol::ArchiveEntry;
use codepilot_protocol::ArchiveOrigin;
use codepilot_protocol::Candidate;
use codepilot_protocol::ELIDED_OBSERVATION;
use codepilot_protocol::EXECUTION_RESULT_TAG;
use codepilot_protocol::Message;
use codepilot_protocol::Role;
use codepilot_protocol::Usage;

/// Tokens each wire message costs beyond its text (role and framing).
const MESSAGE_OVERHEAD: u64 = 4;
/// Where compaction stops, as a fraction of the budget: low enough that many steps fit before the next one.
pub(crate) const LOW_WATER: f64 = 0.6;

/// How a session's requests are budgeted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextParams {
    pub(crate) counter: TokenCounter,
    pub(crate) budget: u64,
    pub(crate) threshold: f64,
}

struct Msg {
    wire: WireMessage,
    tokens: u64,
}

/// One task of the history: its opening message and its steps (each starts with an assistant message).
struct TaskUnit {
    number: u64,
    start: usize,
    end: usize,
    steps: Vec<usize>,
    /// The first `steps_dropped` steps are out of the view.
    steps_dropped: usize,
    /// The observations of the first `elided` steps are elided.
    elided: usize,
    /// The whole task is out of the view.
    dropped: bool,
}

impl TaskUnit {
    fn step_range(&self, s: usize) -> std::ops::Range<usize> {
        let end = self.steps.get(s + 1).copied().unwrap_or(self.end);
        self.steps[s]..end
    }

    fn opening_end(&self) -> usize {
        self.steps.first().copied().unwrap_or(self.end)
    }
}

/// The wire messages of the view, with what [`ContextBook::cache_marks`] needs.
#[derive(Default)]
struct View {
    pieces: Vec<WireMessage>,
    tokens: Vec<u64>,
    total: u64,
    /// Piece indices of assistant messages.
    assistants: Vec<usize>,
    /// First piece of the current (last) task.
    task_start: usize,
}

impl View {
    fn push(&mut self, role: Role, content: &str, tokens: u64) {
        if let (Some(last), Some(last_tokens)) = (self.pieces.last_mut(), self.tokens.last_mut())
            && last.role() == role
        {
            let merged = format!("{}\n\n{content}", last.content());
            *last = WireMessage::new(role, merged);
            *last_tokens += tokens + 1;
            self.total += tokens + 1;
            return;
        }
        if role == Role::Assistant {
            self.assistants.push(self.pieces.len());
        }
        self.pieces.push(WireMessage::new(role, content));
        self.tokens.push(tokens);
        self.total += tokens + MESSAGE_OVERHEAD;
    }

    fn push_wire(&mut self, wire: &WireMessage, tokens: u64) {
        let mergeable = self.pieces.last().is_some_and(|l| l.role() == wire.role());
        if mergeable {
            self.push(wire.role(), wire.content(), tokens);
            return;
        }
        if wire.role() == Role::Assistant {
            self.assistants.push(self.pieces.len());
        }
        self.pieces.push(wire.clone());
        self.tokens.push(tokens);
        self.total += tokens + MESSAGE_OVERHEAD;
    }
}

/// Request tokens before and after a change of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drop {
    pub(crate) before: u64,
    pub(crate) after: u64,
    /// Tasks that left the view whole.
    pub(crate) tasks: Vec<u64>,
}

/// Why a request cannot be made to fit: the protected part alone takes `tokens`.
#[derive(Debug)]
pub(crate) struct Overflow {
    pub(crate) tokens: u64,
    pub(crate) budget: u64,
}

/// The session's context: the indexed history, the archives and the view a request sends.
pub(crate) struct ContextBook {
    params: ContextParams,
    /// Multiplies estimated counts: the provider's reported prompt tokens over our estimate of that prompt.
    calibration: f64,
    msgs: Vec<Msg>,
    tasks: Vec<TaskUnit>,
    archives: Vec<ArchiveEntry>,
    archives_changed: bool,
    view: View,
    /// Cut versions of the newest step's oversized messages (index, text, tokens), when nothing else made room.
    cuts: Vec<(usize, String, u64)>,
    elided_tokens: u64,
    /// The static system prompt last counted (by pointer) and its tokens.
    system: Option<(Arc<str>, u64)>,
    /// Raw (uncalibrated) tokens of the last request, to calibrate against the provider's count.
    last_raw: u64,
}

impl ContextBook {
    /// A book over `messages` with the stored `archives`.
    pub(crate) fn new(
        params: ContextParams,
        messages: &[Message],
        archives: Vec<ArchiveEntry>,
    ) -> Self {
        let mut book = Self {
            params,
            calibration: 1.0,
            msgs: Vec::new(),
            tasks: Vec::new(),
            archives,
            archives_changed: false,
            view: View::default(),
            cuts: Vec::new(),
            elided_tokens: params.counter.count(ELIDED_OBSERVATION),
            system: None,
            last_raw: 0,
        };
        book.ingest(messages);
        if !book.archives.is_empty() {
            book.rebuild();
        }
        book
    }

    pub(crate) fn budget(&self) -> u64 {
        self.params.budget
    }

    pub(crate) fn threshold(&self) -> f64 {
        self.params.threshold
    }

    /// Indexes the messages added to `messages` since the last call and appends them to the view.
    pub(crate) fn ingest(&mut self, messages: &[Message]) {
        let from = self.msgs.len();
        for (i, m) in messages.iter().enumerate().skip(from) {
            let tokens = self.params.counter.count(&m.content);
            self.msgs.push(Msg {
                wire: WireMessage::from(m),
                tokens,
            });
            let opens =
                m.role == Role::User && codepilot_protocol::task_number(&m.content).is_some();
            if opens || self.tasks.is_empty() {
                let number = codepilot_protocol::task_number(&m.content).unwrap_or(0);
                self.tasks.push(TaskUnit {
                    number,
                    start: i,
                    end: i,
                    steps: Vec::new(),
                    steps_dropped: 0,
                    elided: 0,
                    dropped: false,
                });
                self.view.task_start = self.view.pieces.len();
            }
            if let Some(task) = self.tasks.last_mut() {
                if m.role == Role::Assistant {
                    task.steps.push(i);
                }
                task.end = i + 1;
            }
            self.view.push_wire(&self.msgs[i].wire, tokens);
        }
    }

    /// Raw tokens of the static system prompt, counted once per prompt.
    fn system_tokens(&mut self, system: &Arc<str>) -> u64 {
        match &self.system {
            Some((s, n)) if Arc::ptr_eq(s, system) => *n,
            _ => {
                let n = self.params.counter.count(system);
                self.system = Some((Arc::clone(system), n));
                n
            }
        }
    }

    fn calibrated(&self, raw: u64) -> u64 {
        if self.params.counter.is_exact() {
            return raw;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let n = (raw as f64 * self.calibration).ceil() as u64;
        n
    }

    /// Raw tokens of a request with this system prompt and dynamic part.
    fn raw_request(&mut self, system: &Arc<str>, dynamic: &str) -> u64 {
        let dynamic = self.params.counter.count(dynamic);
        self.system_tokens(system) + dynamic + 2 * MESSAGE_OVERHEAD + self.view.total
    }

    /// Tokens of a request with this system prompt and dynamic part, as the provider would count them.
    pub(crate) fn request_tokens(&mut self, system: &Arc<str>, dynamic: &str) -> u64 {
        let raw = self.raw_request(system, dynamic);
        self.calibrated(raw)
    }

    /// Tokens of the last request's system prompt plus the view as it stands now (calibrated): what the
    /// context tools report after a change.
    pub(crate) fn current_tokens(&self) -> u64 {
        let system = self.system.as_ref().map_or(0, |(_, n)| *n);
        self.calibrated(system + 2 * MESSAGE_OVERHEAD + self.view.total)
    }

    /// Stress of that request: its tokens over the budget.
    pub(crate) fn stress(&mut self, system: &Arc<str>, dynamic: &str) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let s = self.request_tokens(system, dynamic) as f64 / self.params.budget.max(1) as f64;
        s
    }

    /// Makes the request fit the budget, compacting when it would not. `Ok(None)`: it already fit.
    ///
    /// # Errors
    /// [`Overflow`] when even the protected part (the current task's opening and newest step) does not fit.
    pub(crate) fn fit(
        &mut self,
        system: &Arc<str>,
        dynamic: &str,
    ) -> Result<Option<Drop>, Overflow> {
        let raw = self.raw_request(system, dynamic);
        self.last_raw = raw;
        let before = self.calibrated(raw);
        if before <= self.params.budget {
            return Ok(None);
        }
        let fixed = raw - self.view.total;
        let was_dropped: Vec<bool> = self.tasks.iter().map(|t| t.dropped).collect();
        compact::compact(self, fixed)?;
        let raw = self.raw_request(system, dynamic);
        self.last_raw = raw;
        let tasks = self
            .tasks
            .iter()
            .zip(&was_dropped)
            .filter(|(t, was)| t.dropped && !**was)
            .map(|(t, _)| t.number)
            .collect();
        Ok(Some(Drop {
            before,
            after: self.calibrated(raw),
            tasks,
        }))
    }

    /// `text` in tokens, as this session counts them.
    pub(crate) fn count(&self, text: &str) -> u64 {
        self.params.counter.count(text)
    }

    /// Learns from the provider's count of the last request (estimated counters only). A report far from the
    /// estimate (a server that reports nothing useful) is ignored.
    pub(crate) fn observe(&mut self, usage: &Usage) {
        let reported = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens;
        if self.params.counter.is_exact() || reported == 0 || self.last_raw == 0 {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let ratio = reported as f64 / self.last_raw as f64;
        if (0.5..=2.0).contains(&ratio) {
            self.calibration = ratio;
        }
    }

    /// The messages of the next request.
    pub(crate) fn messages(&self) -> &[WireMessage] {
        &self.view.pieces
    }

    /// Anthropic cache breakpoints: the last assistant message, the last one before the current task, and inside
    /// the current task the assistant message closing its last group of five.
    pub(crate) fn cache_marks(&self) -> Vec<usize> {
        let a = &self.view.assistants;
        let mut marks = Vec::with_capacity(2);
        if let Some(&last) = a.last() {
            marks.push(last);
        }
        let in_task = a.partition_point(|&i| i < self.view.task_start);
        if let Some(&before) = in_task.checked_sub(1).and_then(|i| a.get(i))
            && !marks.contains(&before)
        {
            marks.push(before);
        }
        let count = a.len() - in_task;
        if marks.len() < 2 && count >= 5 {
            let i = a[in_task + (count / 5) * 5 - 1];
            if !marks.contains(&i) {
                marks.push(i);
            }
        }
        marks
    }

    /// The number of the current (last) task, 0 before any.
    pub(crate) fn current_task(&self) -> u64 {
        self.tasks.last().map_or(0, |t| t.number)
    }

    fn archive_of(&self, task: u64) -> Option<&ArchiveEntry> {
        self.archives.iter().find(|a| a.covers(task))
    }

    /// Tokens task `ti` takes in the view now (an estimate: each message with its overhead).
    fn task_view_tokens(&self, ti: usize) -> u64 {
        let t = &self.tasks[ti];
        if t.dropped {
            return 0;
        }
        if ti + 1 != self.tasks.len()
            && let Some(entry) = self.archive_of(t.number)
        {
            return if entry.first_task == t.number {
                self.params.counter.count(&entry.message()) + MESSAGE_OVERHEAD
            } else {
                0
            };
        }
        let msg = |i: usize| self.msgs[i].tokens + MESSAGE_OVERHEAD;
        let mut n: u64 = (t.start..t.opening_end()).map(msg).sum();
        for s in t.steps_dropped..t.steps.len() {
            for i in t.step_range(s) {
                n += if s < t.elided && self.is_observation(i) {
                    self.elided_tokens + MESSAGE_OVERHEAD
                } else {
                    msg(i)
                };
            }
        }
        n
    }

    fn is_observation(&self, i: usize) -> bool {
        let w = &self.msgs[i].wire;
        w.role() == Role::User && w.content().starts_with(EXECUTION_RESULT_TAG)
    }

    /// Finished tasks still shown in full: what a maintenance step offers for archiving.
    pub(crate) fn candidates(&self) -> Vec<Candidate> {
        let current = self.tasks.len().saturating_sub(1);
        (0..current)
            .filter(|&ti| {
                let t = &self.tasks[ti];
                t.number > 0 && !t.dropped && self.archive_of(t.number).is_none()
            })
            .map(|ti| Candidate {
                task: self.tasks[ti].number,
                tokens: self.calibrated(self.task_view_tokens(ti)),
            })
            .collect()
    }

    fn task_index(&self, task: u64) -> Option<usize> {
        self.tasks.iter().position(|t| t.number == task && task > 0)
    }

    fn task_range_text(&self) -> String {
        match (self.tasks.iter().find(|t| t.number > 0), self.tasks.last()) {
            (Some(first), Some(last)) => format!("tasks {}..={}", first.number, last.number),
            _ => "no tasks yet".to_owned(),
        }
    }

    /// `archive_context(task, summary)`: replaces finished tasks by the summary. Returns the tokens saved.
    ///
    /// # Errors
    /// A message for the model when a task does not exist, is the current one or is already archived.
    pub(crate) fn archive(
        &mut self,
        first: u64,
        last: u64,
        summary: &str,
        origin: ArchiveOrigin,
    ) -> Result<u64, String> {
        let current = self.current_task();
        let mut indices = Vec::new();
        for n in first..=last {
            let Some(ti) = self.task_index(n) else {
                return Err(format!(
                    "Task {n} does not exist (this session has {})",
                    self.task_range_text()
                ));
            };
            if n == current {
                return Err(format!(
                    "Task {n} is the current task; only finished tasks can be archived"
                ));
            }
            if self.archive_of(n).is_some() {
                return Err(format!(
                    "Task {n} is already archived (list_archived_context() shows the archives)"
                ));
            }
            indices.push(ti);
        }
        let summary = summary.trim();
        if summary.is_empty() {
            return Err(
                "the summary is empty; write what the task did, decided and left open".into(),
            );
        }
        let before: u64 = indices.iter().map(|&ti| self.task_view_tokens(ti)).sum();
        let after = self.params.counter.count(summary) + MESSAGE_OVERHEAD + 8;
        for &ti in &indices {
            self.tasks[ti].dropped = false;
        }
        let saved = self.calibrated(before.saturating_sub(after));
        self.archives.push(ArchiveEntry {
            first_task: first,
            last_task: last,
            summary: summary.to_owned(),
            tokens_saved: saved,
            origin,
        });
        self.archives.sort_by_key(|a| a.first_task);
        self.archives_changed = true;
        self.rebuild();
        Ok(saved)
    }

    /// `reveal_context(task)`: the task's original messages.
    ///
    /// # Errors
    /// A message for the model when the task does not exist.
    pub(crate) fn reveal(&self, task: u64) -> Result<String, String> {
        let Some(ti) = self.task_index(task) else {
            return Err(format!(
                "Task {task} does not exist (this session has {})",
                self.task_range_text()
            ));
        };
        let t = &self.tasks[ti];
        let messages: Vec<Message> = (t.start..t.end)
            .map(|i| {
                let w = &self.msgs[i].wire;
                Message {
                    role: w.role(),
                    content: w.content().to_owned(),
                }
            })
            .collect();
        Ok(codepilot_protocol::reveal_text(task, &messages))
    }

    pub(crate) fn archives(&self) -> &[ArchiveEntry] {
        &self.archives
    }

    /// The archive list when it changed since the last call (for the next checkpoint).
    pub(crate) fn take_changed_archives(&mut self) -> Option<Vec<ArchiveEntry>> {
        std::mem::take(&mut self.archives_changed).then(|| self.archives.clone())
    }

    /// Sends the whole list with the next checkpoint again (the last one failed).
    pub(crate) fn mark_archives_changed(&mut self) {
        self.archives_changed = true;
    }

    /// The oldest run of consecutive candidate tasks whose view tokens reach `want` (or all of the run), with their
    /// original messages, capped to `max_tokens` of transcript: what the summarising backstop replaces.
    pub(crate) fn oldest_finished(
        &self,
        want: u64,
        max_tokens: u64,
    ) -> Option<(u64, u64, Vec<Message>)> {
        let current = self.tasks.len().saturating_sub(1);
        let eligible = |ti: usize| {
            let t = &self.tasks[ti];
            t.number > 0 && self.archive_of(t.number).is_none()
        };
        let first = (0..current).find(|&ti| eligible(ti))?;
        let mut last = first;
        let mut got = 0;
        let mut transcript = 0;
        let mut messages = Vec::new();
        for ti in first..current {
            if !eligible(ti) {
                break;
            }
            let t = &self.tasks[ti];
            let tokens: u64 = (t.start..t.end).map(|i| self.msgs[i].tokens).sum();
            if ti > first && transcript + tokens > max_tokens {
                break;
            }
            transcript += tokens;
            messages.extend((t.start..t.end).map(|i| {
                let w = &self.msgs[i].wire;
                Message {
                    role: w.role(),
                    content: w.content().to_owned(),
                }
            }));
            last = ti;
            got += self.task_view_tokens(ti);
            if got >= want {
                break;
            }
        }
        Some((self.tasks[first].number, self.tasks[last].number, messages))
    }

    /// Builds the view from scratch from the index, the archives and the compaction state.
    fn rebuild(&mut self) {
        let mut view = View::default();
        let mut shown_archive: Option<u64> = None;
        let mut dropped_run: Option<(u64, u64)> = None;
        let last = self.tasks.len().saturating_sub(1);
        let flush = |view: &mut View, run: &mut Option<(u64, u64)>, counter: TokenCounter| {
            if let Some((a, b)) = run.take() {
                let text = codepilot_protocol::dropped_tasks_marker(a, b);
                let n = counter.count(&text);
                view.push(Role::User, &text, n);
            }
        };
        for ti in 0..self.tasks.len() {
            let t = &self.tasks[ti];
            if ti == last {
                flush(&mut view, &mut dropped_run, self.params.counter);
                view.task_start = view.pieces.len();
            }
            if t.dropped && ti != last {
                dropped_run = match dropped_run {
                    Some((a, _)) => Some((a, t.number)),
                    None => Some((t.number, t.number)),
                };
                continue;
            }
            flush(&mut view, &mut dropped_run, self.params.counter);
            if ti != last
                && let Some(entry) = self.archive_of(t.number)
            {
                if shown_archive != Some(entry.first_task) {
                    shown_archive = Some(entry.first_task);
                    let text = entry.message();
                    let n = self.params.counter.count(&text);
                    view.push(Role::User, &text, n);
                }
                continue;
            }
            for i in t.start..t.opening_end() {
                self.push_msg(&mut view, i);
            }
            if t.steps_dropped > 0 {
                let text = codepilot_protocol::omitted_steps_marker(t.steps_dropped as u64);
                let n = self.params.counter.count(&text);
                view.push(Role::User, &text, n);
            }
            for s in t.steps_dropped..t.steps.len() {
                for i in t.step_range(s) {
                    if s < t.elided && self.is_observation(i) {
                        view.push(Role::User, ELIDED_OBSERVATION, self.elided_tokens);
                    } else {
                        self.push_msg(&mut view, i);
                    }
                }
            }
        }
        flush(&mut view, &mut dropped_run, self.params.counter);
        self.view = view;
    }

    fn push_msg(&self, view: &mut View, i: usize) {
        match self.cuts.iter().find(|(at, _, _)| *at == i) {
            Some((_, text, n)) => view.push(self.msgs[i].wire.role(), text, *n),
            None => view.push_wire(&self.msgs[i].wire, self.msgs[i].tokens),
        }
    }

    /// Tokens message `i` takes in requests: its cut version's, if it has one.
    fn shown_tokens(&self, i: usize) -> u64 {
        self.cuts
            .iter()
            .find(|(at, _, _)| *at == i)
            .map_or(self.msgs[i].tokens, |(_, _, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(budget: u64, messages: &[Message]) -> ContextBook {
        let params = ContextParams {
            counter: TokenCounter::Estimate,
            budget,
            threshold: 0.8,
        };
        ContextBook::new(params, messages, Vec::new())
    }

    #[test]
    fn provider_counts_calibrate_the_estimate_unless_implausible() {
        let system: Arc<str> = Arc::from("system prompt");
        let mut b = book(
            10_000,
            &[Message::user("[Task 1][USER INPUT]\nhello there")],
        );
        assert_eq!(b.fit(&system, "").unwrap(), None);
        let raw = b.request_tokens(&system, "");
        let report = |n: u64| Usage {
            input_tokens: n,
            ..Usage::default()
        };
        b.observe(&report(raw * 100));
        assert_eq!(
            b.request_tokens(&system, ""),
            raw,
            "a 100× report is ignored"
        );
        b.observe(&report(raw * 3 / 2));
        let calibrated = b.request_tokens(&system, "");
        assert!(
            calibrated > raw && calibrated <= raw * 3 / 2 + 1,
            "{raw} -> {calibrated}"
        );
    }

    /// The text of the view's messages, joined.
    fn view_text(b: &ContextBook) -> String {
        b.messages()
            .iter()
            .map(WireMessage::content)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn an_answer_larger_than_the_budget_is_cut_in_requests_not_in_the_history() {
        let system: Arc<str> = Arc::from("system");
        let answer = format!("HEAD {} TAIL", "word ".repeat(20_000));
        let messages = [
            Message::user("[Task 1][USER INPUT]\nfix it"),
            Message::assistant(answer.clone()),
            Message::user(format!("{EXECUTION_RESULT_TAG}\nok")),
        ];
        let mut b = book(2_000, &messages);
        let drop = b.fit(&system, "").unwrap().unwrap();
        assert!(drop.after <= 2_000, "{drop:?}");
        let text = view_text(&b);
        assert!(text.contains("fix it") && text.contains("\nok"), "{text}");
        assert!(
            text.contains("HEAD") && text.contains("TAIL"),
            "head and tail kept"
        );
        let cut = answer.len() - (text.len() - text.find("HEAD").unwrap());
        let said: usize = text
            .split("[… ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            said.abs_diff(cut) < 200,
            "the marker says {said}, about {cut} were cut"
        );
        assert_eq!(
            b.msgs[1].wire.content(),
            answer,
            "the book keeps the whole message"
        );
    }

    #[test]
    fn a_cut_fits_when_the_ends_are_denser_than_the_middle() {
        // Cyrillic prose at both ends counts more tokens per byte than the ASCII runaway in the middle: a cut sized
        // from the average alone would overshoot.
        let system: Arc<str> = Arc::from("system");
        let prose = "Привет, это очень длинный ответ модели. ".repeat(400);
        let answer = format!("{prose}{}{prose}", "=".repeat(200_000));
        let mut b = book(
            3_000,
            &[
                Message::user("[Task 1][USER INPUT]\nfix it"),
                Message::assistant(answer),
                Message::user(format!("{EXECUTION_RESULT_TAG}\nok")),
            ],
        );
        let drop = b.fit(&system, "").unwrap().unwrap();
        assert!(drop.after <= 3_000, "{drop:?}");
        assert!(b.request_tokens(&system, "") <= 3_000);
    }

    #[test]
    fn every_user_message_of_the_newest_step_can_be_cut_and_observations_keep_their_tag() {
        let system: Arc<str> = Arc::from("system");
        let mut b = book(
            3_000,
            &[
                Message::user("[Task 1][USER INPUT]\nfix it"),
                Message::assistant("```codepilot\nprint(1)\n```"),
                Message::user(format!("{EXECUTION_RESULT_TAG}\n{}", "o ".repeat(30_000))),
                Message::user(format!("[USER MESSAGE]\n{}", "p ".repeat(30_000))),
            ],
        );
        let drop = b.fit(&system, "").unwrap().unwrap();
        assert!(drop.after <= 3_000, "{drop:?}");
        let text = view_text(&b);
        assert_eq!(
            text.matches("characters cut to fit the context window")
                .count(),
            2,
            "{text}"
        );
        assert!(text.contains(EXECUTION_RESULT_TAG), "{text}");
    }

    #[test]
    fn an_answer_and_an_observation_both_over_the_budget_are_both_cut() {
        let system: Arc<str> = Arc::from("system");
        let mut b = book(
            3_000,
            &[
                Message::user("[Task 1][USER INPUT]\nfix it"),
                Message::assistant("a ".repeat(30_000)),
                Message::user(format!("{EXECUTION_RESULT_TAG}\n{}", "o ".repeat(30_000))),
            ],
        );
        let drop = b.fit(&system, "").unwrap().unwrap();
        assert!(drop.after <= 3_000, "{drop:?}");
        assert_eq!(
            view_text(&b)
                .matches("characters cut to fit the context window")
                .count(),
            2
        );
    }

    #[test]
    fn a_task_larger_than_the_budget_is_an_overflow_not_a_silent_cut() {
        let system: Arc<str> = Arc::from("system");
        let task = format!("[Task 1][USER INPUT]\n{}", "x".repeat(4_000));
        let mut b = book(500, &[Message::user(task)]);
        let err = b.fit(&system, "").unwrap_err();
        assert_eq!(err.budget, 500);
        assert!(err.tokens > 500, "{}", err.tokens);
    }
}
