//! Rendering events: a human renderer (stderr, spinner on a TTY) and a JSON-lines renderer (stdout).
//!
//! stdout is a contract: in human mode it carries only the final summary; with `--json` exactly one JSON object per
//! line. Everything else goes to stderr.

use std::io::IsTerminal;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use codepilot::Event;
use codepilot::EventEnvelope;
use codepilot::Outcome;
use codepilot::events::ErrorKind;
use codepilot::events::StreamKind;
use codepilot::protocol::StreamLine;
use codepilot::protocol::TurnCompleted;
use indicatif::ProgressBar;
use indicatif::ProgressStyle;

/// Writes one line to stdout. The only place the CLI prints to stdout; a closed pipe is not an error.
#[allow(clippy::print_stdout)]
pub(crate) fn emit_stdout(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Writes to stderr without a newline, ignoring a closed pipe.
pub(crate) fn err_write(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Writes one line to stderr.
pub(crate) fn err_line(text: &str) {
    err_write(&format!("{text}\n"));
}

/// Text from outside (the model, a tool, a server) made safe to show on a terminal: escape sequences, other
/// control characters and bidirectional overrides could set the clipboard (OSC 52), the window title, hide
/// text (SGR 8, a carriage return) or make it read differently from what it is. `ESC` is shown as `␛`, other
/// controls are dropped, except newline and tab. `--json` output is never filtered.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .filter_map(|c| match c {
            '\u{1b}' => Some('␛'),
            c if unsafe_char(c) => None,
            c => Some(c),
        })
        .collect::<String>()
        .into()
}

/// An error and its causes, each said once: a cause whose text the message already contains (because a
/// `Display` includes its source) is not repeated.
pub(crate) fn render_error(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// `tracing` events formatted as the CLI's notices: `codepilot: warning: message`, no timestamp or level tag.
pub(crate) struct Notice;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Notice
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO | tracing::Level::DEBUG | tracing::Level::TRACE => "note",
        };
        write!(writer, "codepilot: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// A renderer for a run: its events, then its outcome.
pub(crate) trait Output: Send + Sync {
    fn on_event(&self, e: &EventEnvelope);
    /// The task ended, having spent `spend`; called once per task, after its last event.
    fn on_outcome(&self, session_id: &str, outcome: &Outcome, spend: &codepilot::Spend);
    /// Clears any transient UI (the spinner) before something else writes to the terminal.
    fn suspend(&self) {}
    /// The runtime's last event before this output was attached: the first it gets is `seq + 1`.
    fn starting_after(&self, _seq: u64) {}
}

/// One JSON line per event on stdout, in `seq` order, then one for the end of the turn ([`StreamLine`]).
#[derive(Default)]
pub(crate) struct JsonlOutput {
    /// The turn the last event belonged to, for the closing line.
    turn_id: Mutex<Option<String>>,
    /// Events that arrived before one with a lower `seq` (two tasks emitting at once), held until it comes.
    order: Mutex<Order>,
}

/// What [`JsonlOutput`] has printed and holds back.
#[derive(Default)]
struct Order {
    /// The session the numbering belongs to (a reset starts another, numbered from 1).
    session_id: Option<String>,
    /// The `seq` to print next; `None` until known.
    next: Option<u64>,
    held: std::collections::BTreeMap<u64, EventEnvelope>,
}

impl Drop for JsonlOutput {
    /// Nothing held back is lost when a run ends without an outcome (a failed model call).
    fn drop(&mut self) {
        self.flush();
    }
}

impl JsonlOutput {
    /// Prints whatever is held, in order (at the end of a turn, when no earlier event can come any more).
    fn flush(&self) {
        if let Ok(mut order) = self.order.lock() {
            for (_, e) in std::mem::take(&mut order.held) {
                order.next = Some(e.seq + 1);
                emit_json(&StreamLine::Event(e));
            }
        }
    }
}

/// Writes one [`StreamLine`] to stdout. A line that cannot be serialized becomes an error line, never a panic.
fn emit_json(line: &StreamLine) {
    match serde_json::to_string(line) {
        Ok(text) => emit_stdout(&text),
        Err(err) => emit_stdout(
            &serde_json::json!({"type": "error", "message": format!("could not serialize an event: {err}")})
                .to_string(),
        ),
    }
}

impl Output for JsonlOutput {
    fn starting_after(&self, after: u64) {
        if let Ok(mut order) = self.order.lock() {
            order.next = Some(after + 1);
        }
    }

    fn on_event(&self, e: &EventEnvelope) {
        if let Some(turn) = &e.turn_id
            && let Ok(mut last) = self.turn_id.lock()
        {
            last.clone_from(&Some(turn.clone()));
        }
        let Ok(mut order) = self.order.lock() else {
            emit_json(&StreamLine::Event(e.clone()));
            return;
        };
        if order.session_id.as_deref() != Some(e.session_id.as_str()) {
            if order.session_id.is_some() {
                // A reset: the new session is numbered from 1.
                for (_, held) in std::mem::take(&mut order.held) {
                    emit_json(&StreamLine::Event(held));
                }
                order.next = Some(1);
            }
            order.session_id = Some(e.session_id.clone());
        }
        let next = *order.next.get_or_insert(e.seq);
        if e.seq != next {
            order.held.insert(e.seq, e.clone());
            return;
        }
        emit_json(&StreamLine::Event(e.clone()));
        let mut next = next + 1;
        while let Some(held) = order.held.remove(&next) {
            emit_json(&StreamLine::Event(held));
            next += 1;
        }
        order.next = Some(next);
    }

    fn on_outcome(&self, session_id: &str, outcome: &Outcome, spend: &codepilot::Spend) {
        self.flush();
        let turn_id = self
            .turn_id
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or_default();
        emit_json(&StreamLine::TurnCompleted(TurnCompleted {
            session_id: session_id.to_owned(),
            turn_id,
            outcome: outcome.clone(),
            spend: *spend,
        }));
    }
}

struct HumanState {
    spinner: Option<ProgressBar>,
    at_line_start: bool,
    thinking: bool,
}

/// Streams text and tool activity to stderr; a spinner while the model thinks (TTY only).
pub(crate) struct HumanOutput {
    tty: bool,
    color: bool,
    state: Mutex<HumanState>,
}

impl HumanOutput {
    pub(crate) fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        Self {
            tty,
            color: tty && std::env::var_os("NO_COLOR").is_none(),
            state: Mutex::new(HumanState {
                spinner: None,
                at_line_start: true,
                thinking: false,
            }),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn stop_spinner(state: &mut HumanState) {
        if let Some(s) = state.spinner.take() {
            s.finish_and_clear();
        }
    }

    fn start_spinner(&self, state: &mut HumanState, msg: &str) {
        if !self.tty {
            return;
        }
        Self::stop_spinner(state);
        let pb = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            pb.set_style(style);
        }
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(Duration::from_millis(100));
        state.spinner = Some(pb);
    }

    fn line(&self, state: &mut HumanState, text: &str) {
        Self::stop_spinner(state);
        if !state.at_line_start {
            err_write("\n");
        }
        err_line(text);
        state.at_line_start = true;
    }
}

impl Output for HumanOutput {
    fn suspend(&self) {
        if let Ok(mut s) = self.state.lock() {
            Self::stop_spinner(&mut s);
            if !s.at_line_start {
                err_write("\n");
                s.at_line_start = true;
            }
        }
    }

    fn on_outcome(&self, session_id: &str, outcome: &Outcome, spend: &codepilot::Spend) {
        match outcome {
            Outcome::Completed {
                structured: Some(value),
                ..
            } => emit_stdout(&serde_json::to_string_pretty(value).unwrap_or_default()),
            Outcome::Completed { summary, .. } => {
                emit_stdout(printable(summary.trim_end()).as_ref());
            }
            Outcome::Replied { text, .. } => emit_stdout(printable(text.trim_end()).as_ref()),
            Outcome::MaxSteps { steps } => err_line(&format!(
                "codepilot: the task did not complete within {steps} steps (runtime.max_steps); resume with \
                 --session-id {session_id}"
            )),
            Outcome::Aborted { .. } => err_line("codepilot: aborted"),
            Outcome::LimitExceeded {
                limit,
                scope,
                max,
                spent,
                ..
            } => err_line(&format!(
                "codepilot: stopped: the {} limit {} was reached ({} of {}); raise it or resume with \
                 --session-id {session_id}",
                match scope {
                    codepilot::LimitScope::Run => "run's",
                    codepilot::LimitScope::Session => "session's",
                },
                limit.key(),
                limit.show(*spent),
                limit.show(*max),
            )),
            Outcome::InvalidOutput { errors, .. } => err_line(&format!(
                "codepilot: the result never matched the output schema (runtime.output_retries): {}",
                errors.join("; ")
            )),
        }
        err_line(&self.paint("2", &describe_spend(spend)));
    }

    fn on_event(&self, e: &EventEnvelope) {
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(id) = e.agent_id {
            // A worker's events, indented under the parent's: what it does, not how it thinks.
            if let Some(text) = worker_line(&e.event) {
                let text = self.paint("2", &format!("    [#{id}] {text}"));
                self.line(&mut s, &text);
            }
            return;
        }
        match &e.event {
            Event::Start(_) => {}
            Event::SubagentSpawn(w) => {
                let text = self.paint(
                    "36",
                    &format!(
                        "⇢ sub-agent #{} ({}): {}",
                        w.agent_id,
                        w.model,
                        printable(&w.task_summary)
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::SubagentMessage(m) => {
                let text = self.paint(
                    "35",
                    &format!(
                        "✉ sub-agent #{} asks: {}",
                        m.agent_id,
                        printable(&m.message)
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::SubagentFinish(f) => {
                let how = match f.status {
                    codepilot::protocol::SubagentStatus::Completed => "completed",
                    codepilot::protocol::SubagentStatus::Stopped => "stopped",
                    codepilot::protocol::SubagentStatus::Failed => "failed",
                    codepilot::protocol::SubagentStatus::Aborted => "aborted",
                };
                let detail = f.error.as_deref().unwrap_or(&f.summary);
                let text = self.paint(
                    "36",
                    &format!(
                        "⇠ sub-agent #{} {how} in {:.1}s: {}",
                        f.agent_id,
                        f.elapsed_seconds,
                        printable(first_line(detail))
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::Step(step) => {
                let msg = format!("thinking (step {}/{})", step.step, step.max_steps);
                if self.tty {
                    self.start_spinner(&mut s, &msg);
                } else {
                    self.line(
                        &mut s,
                        &self.paint("2", &format!("— step {}/{}", step.step, step.max_steps)),
                    );
                }
            }
            Event::Stream(st) => {
                Self::stop_spinner(&mut s);
                match st.kind {
                    StreamKind::Thinking => {
                        if !s.thinking {
                            s.thinking = true;
                        }
                        err_write(&self.paint("2;3", &printable(&st.text)));
                    }
                    StreamKind::Text => {
                        if s.thinking {
                            s.thinking = false;
                            err_write("\n");
                        }
                        err_write(&printable(&st.text));
                    }
                }
                s.at_line_start = st.text.ends_with('\n');
            }
            Event::ToolCall(call) => {
                let label = printable(&call.label).into_owned();
                let text = self.paint("36", &format!("▸ {label}"));
                self.line(&mut s, &text);
                if self.tty {
                    self.start_spinner(&mut s, &label);
                }
            }
            Event::ToolResult(r) => {
                Self::stop_spinner(&mut s);
                if r.ok {
                    let preview = preview(&printable(&r.result), RESULT_PREVIEW_LINES);
                    if !preview.is_empty() {
                        let text = self.paint("2", &preview);
                        self.line(&mut s, &text);
                    }
                } else {
                    let first = printable(first_line(&r.result)).into_owned();
                    let text = self.paint("31", &format!("  ✗ {first}"));
                    self.line(&mut s, &text);
                }
            }
            Event::AskUser(_) | Event::PermissionRequest(_) => Self::stop_spinner(&mut s),
            Event::UserMessageQueued(_) => {}
            Event::UserMessageInjected(m) => {
                let text = self.paint(
                    "35",
                    &format!("✉ message delivered: {}", printable(&m.text)),
                );
                self.line(&mut s, &text);
            }
            // A failed model call or store ends the run, and the CLI reports that error once, at the end.
            Event::RuntimeError(err)
                if matches!(err.kind, ErrorKind::Provider | ErrorKind::Store) => {}
            Event::RuntimeError(err)
                if matches!(
                    err.kind,
                    ErrorKind::Mcp
                        | ErrorKind::Snapshot
                        | ErrorKind::Checkpoint
                        | ErrorKind::Search
                ) =>
            {
                let text = self.paint(
                    "33",
                    &format!("! warning: {}", printable(first_line(&err.message))),
                );
                self.line(&mut s, &text);
            }
            Event::RuntimeError(err) => {
                let text = self.paint(
                    "33",
                    &format!(
                        "! {:?} error: {}",
                        err.kind,
                        printable(first_line(&err.message))
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::ModelRetry(r) => {
                let text = self.paint(
                    "33",
                    &format!(
                        "! model call failed ({}); retry {} in {:.1}s",
                        printable(&r.reason),
                        r.attempt,
                        Duration::from_millis(r.delay_ms).as_secs_f64()
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::Usage(_) => {}
            Event::Finish(_) => Self::stop_spinner(&mut s),
            Event::MaxSteps(m) => {
                let text = self.paint(
                    "33",
                    &format!("! stopped: step limit ({}) reached", m.steps),
                );
                self.line(&mut s, &text);
            }
            Event::Aborted(_) => {
                let text = self.paint("33", "! aborted");
                self.line(&mut s, &text);
            }
            Event::WorkspaceSaved(w) => {
                #[allow(clippy::cast_precision_loss)]
                let mib = |n: u64| n as f64 / f64::from(1 << 20);
                let text = self.paint(
                    "2",
                    &format!(
                        "· workspace saved: {} files, {:.1} MiB ({:.1} MiB compressed) in {} ms",
                        w.files,
                        mib(w.content_bytes),
                        mib(w.size),
                        w.elapsed_ms
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::ResourceLimit(r) => {
                let text = self.paint(
                    "33",
                    &format!(
                        "! {}{}",
                        r.terminal
                            .as_deref()
                            .map_or_else(String::new, |t| format!("terminal {} ", printable(t))),
                        printable(r.message.trim_start_matches('[').trim_end_matches(']'))
                    ),
                );
                self.line(&mut s, &text);
            }
            Event::Rewound(r) => {
                let text = self.paint("36", &format!("↶ {}", describe_rewind(r)));
                self.line(&mut s, &text);
            }
            Event::SessionReset(_) => {}
            _ => {}
        }
    }
}

/// What the human output shows of a worker's event, if anything.
fn worker_line(event: &Event) -> Option<String> {
    match event {
        Event::ToolCall(c) => Some(format!("▸ {}", printable(&c.label))),
        Event::RuntimeError(e) => Some(format!("! {}", printable(first_line(&e.message)))),
        Event::ResourceLimit(r) => Some(format!("! {}", printable(&r.message))),
        _ => None,
    }
}

/// One line about what a rewind did (or, for a preview, would do).
pub(crate) fn describe_rewind(r: &codepilot::RewoundEvent) -> String {
    let what = match r.scope {
        codepilot::RewindScope::Files => "files",
        codepilot::RewindScope::Conversation => "conversation",
        codepilot::RewindScope::Both => "files and conversation",
    };
    let mut parts = Vec::new();
    if r.scope.files() {
        parts.push(format!(
            "{} file(s) restored, {} deleted",
            r.files_restored, r.files_deleted
        ));
        if !r.files_left.is_empty() {
            parts.push(format!(
                "left as they are (not recorded now, so a rewind could not bring them back): {}",
                r.files_left.join(", ")
            ));
        }
    }
    if r.scope.conversation() {
        parts.push(format!("{} message(s) left", r.messages));
    }
    let mut line = if r.saved_as.is_empty() {
        format!(
            "a rewind to checkpoint {} ({what}) would leave: {}",
            r.checkpoint,
            parts.join(", ")
        )
    } else {
        format!(
            "rewound to checkpoint {} ({what}): {}",
            r.checkpoint,
            parts.join(", ")
        )
    };
    if !r.saved_as.is_empty() {
        line.push_str(&format!(" · undo: rewind to {}", r.saved_as));
    }
    line
}

/// What a run spent, for people: `spent 12,345 tokens (in 10,000 · out 2,345 · cache 0) · $0.0123 · 4.2 s`.
pub(crate) fn describe_spend(spend: &codepilot::Spend) -> String {
    let t = &spend.tokens;
    let mut line = format!(
        "spent {} tokens (in {} · out {} · cache read {} · cache write {}){}",
        t.total(),
        t.input_tokens,
        t.output_tokens,
        t.cache_read_tokens,
        t.cache_write_tokens,
        if spend.estimated { ", estimated" } else { "" }
    );
    if let Some(cost) = spend.cost_usd {
        line.push_str(&format!(" · ${cost:.4}"));
    }
    line.push_str(&format!(" · {:.1} s", spend.wall_s));
    line
}

/// How many lines of a tool result the human output shows.
const RESULT_PREVIEW_LINES: usize = 6;

/// The last `max` non-empty lines of a result (where the outcome usually is), indented, with a marker if cut.
fn preview(result: &str, max: usize) -> String {
    let lines: Vec<&str> = result.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(max);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("  … {skip} more line(s)\n"));
    }
    for l in &lines[skip..] {
        let cut: String = l.chars().take(160).collect();
        out.push_str("  ");
        out.push_str(&cut);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
