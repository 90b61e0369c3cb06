//! The agent's side of a terminal: `execute`, `read_output` and `send_input`, and the
//! [`CommandResult`]s they build from the captured output or the rendered screen.

use std::sync::Arc;
use std::sync::PoisonError;
use std::time::Duration;

use tokio::time::Instant;

use super::AgentCmd;
use super::Phase;
use super::State;
use super::Terminal;
use super::write_private;
use crate::error::Result;
use crate::error::TerminalError;
use crate::output::Capture;
use crate::output::CommandResult;
use crate::output::CommandStatus;
use crate::output::render_span;

/// How long to wait for a prompt marker the shell is known to print before sending anyway. Generous: on a loaded
/// machine bash can take seconds to redraw, and sending early can lose the command's first bytes.
const PROMPT_WAIT: Duration = Duration::from_secs(10);
/// How long `execute` and `send_input` wait for the shell's first prompt at least.
const READY_WAIT: Duration = Duration::from_secs(20);
/// What bash prints when a fork is refused and it will try again (after 1, 2, 4 and 8 s): the sign of the
/// process limit where only the rlimits count processes.
const FORK_RETRY: &[u8] = b"fork: retry: Resource temporarily unavailable";
/// How much of a running command's latest output is searched for [`FORK_RETRY`].
const FORK_RETRY_WINDOW: u64 = 4096;
/// How often a running command is looked at for a limit it reached, under resource limits.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Message used when a command line was incomplete.
const INCOMPLETE: &str = "codepilot: the command is incomplete (an unclosed quote, bracket, `do`/`done`, `fi` or here-document?) and was cancelled; nothing ran";

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Terminal {
    /// Runs `command`, waiting up to `timeout` for it to finish.
    pub(crate) async fn execute(&self, command: &str, timeout: Duration) -> Result<CommandResult> {
        let command = command.replace("\r\n", "\n");
        let command = command.trim_end_matches(['\n', '\r']);
        if command.trim().is_empty() {
            return Err(TerminalError::InvalidCommand {
                reason: "the command is empty".into(),
            });
        }
        if command.contains('\0') || command.contains("\x1b[201~") {
            return Err(TerminalError::InvalidCommand {
                reason: "the command contains a NUL byte or an end-of-paste sequence".into(),
            });
        }
        let start = Instant::now();
        let deadline = start + timeout;
        let ready_deadline = start + timeout.max(READY_WAIT);
        self.wait_until(ready_deadline, |s| s.ready || s.exit_code.is_some())
            .await;
        let mut waited_for_prompt = false;
        let index = loop {
            enum Next {
                Go(u32),
                WaitHuman,
                WaitPrompt(u64),
                WaitPromptEnd,
                Interrupt(u64),
            }
            // Where the last command's end left them, else read now, before the state is locked: the reader task
            // must never wait on these files.
            let counters = self
                .next_counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .or_else(|| self.limits.as_ref().map(|l| l.counters()))
                .unwrap_or_default();
            let next = {
                let mut st = self.state();
                if st.exit_code.is_some() {
                    drop(st);
                    return Err(self.exited_error());
                }
                if !st.ready {
                    return Err(TerminalError::NotReady {
                        name: self.name.clone(),
                        secs: ready_deadline.duration_since(start).as_secs(),
                    });
                }
                if st.phase != Phase::Idle
                    && let Some(cmd) = &st.cmd
                {
                    return Err(TerminalError::Busy {
                        name: self.name.clone(),
                        index: cmd.index,
                        command: cmd.command.clone(),
                    });
                }
                if st.human_cycle.is_some() {
                    Next::WaitHuman
                } else if st.human_enter_pending {
                    st.human_enter_pending = false;
                    Next::WaitPrompt(st.prompts)
                } else if st.human_partial {
                    st.human_partial = false;
                    Next::Interrupt(st.prompts)
                } else if !st.at_prompt && !waited_for_prompt {
                    Next::WaitPromptEnd
                } else {
                    let nonce = random_hex();
                    // The second line: the trace context the shell exports for this command (`-`: none).
                    let trace = self
                        .trace
                        .lock()
                        .ok()
                        .and_then(|t| t.clone())
                        .unwrap_or_else(|| "-".to_owned());
                    write_private(&self.nonce_path, format!("{nonce}\n{trace}\n").as_bytes())?;
                    let index = st.next_index;
                    st.next_index += 1;
                    st.phase = Phase::Submitting;
                    st.raw_capture = None;
                    st.cmd = Some(AgentCmd {
                        index,
                        command: command.to_owned(),
                        nonce,
                        capture: Capture::new(self.capture_cap),
                        read_cursor: 0,
                        exit_code: None,
                        completed: false,
                        completion_delivered: false,
                        incomplete: false,
                        counters,
                        limit: None,
                        limit_checked: false,
                        limit_reported: false,
                    });
                    Next::Go(index)
                }
            };
            match next {
                Next::Go(index) => break index,
                Next::WaitHuman => {
                    let done = self
                        .wait_until(deadline, |s| {
                            s.human_cycle.is_none() || s.exit_code.is_some()
                        })
                        .await;
                    if !done {
                        let command = self.state().human_cycle.clone().unwrap_or_default();
                        return Err(TerminalError::HumanBusy {
                            name: self.name.clone(),
                            command,
                        });
                    }
                }
                Next::WaitPrompt(prompts) => {
                    // A human just pressed Enter: let that line start (or finish) first.
                    let wait = deadline.min(Instant::now() + PROMPT_WAIT);
                    self.wait_until(wait, |s| {
                        s.prompts > prompts || s.human_cycle.is_some() || s.exit_code.is_some()
                    })
                    .await;
                }
                Next::WaitPromptEnd => {
                    // Bytes sent before the line editor is ready can be lost: wait for the
                    // prompt's end marker (not at all if a user removed it from PS1).
                    waited_for_prompt = true;
                    let wait = deadline.min(Instant::now() + PROMPT_WAIT);
                    self.wait_until(wait, |s| s.at_prompt || s.exit_code.is_some())
                        .await;
                }
                Next::Interrupt(prompts) => {
                    // A human left a partial line at the prompt: clear it with Ctrl-C first. The old
                    // prompt is gone once the interrupt lands, so wait for the new one's end marker before
                    // sending (bytes sent while bash handles SIGINT can be flushed or eaten). An interrupt
                    // bash noted but did not act on would mangle the command: it is nudged to act.
                    self.state().at_prompt = false;
                    waited_for_prompt = false;
                    self.write(b"\x03".to_vec(), deadline).await?;
                    let wait = deadline.min(Instant::now() + PROMPT_WAIT);
                    self.await_interrupt_answer(prompts, wait).await;
                }
            }
        };
        let mut payload = Vec::with_capacity(command.len() + 16);
        payload.extend_from_slice(b"\x1b[200~");
        payload.extend_from_slice(command.as_bytes());
        payload.extend_from_slice(b"\x1b[201~\r");
        if let Err(e) = self
            .write(
                payload,
                deadline.max(Instant::now() + Duration::from_secs(5)),
            )
            .await
        {
            let mut st = self.state();
            if st.phase == Phase::Submitting {
                st.phase = Phase::Idle;
                st.cmd = None;
            }
            return Err(e);
        }
        self.wait_for_command(deadline, index).await;
        Ok(self.with_limit(self.result(/*full*/ true)).await)
    }

    /// Waits until command `index` completes (or the shell exits), up to `deadline`. Under resource limits it
    /// looks in every [`WATCH_EVERY`] for a limit that means the command must be stopped, and stops it.
    async fn wait_for_command(&self, deadline: Instant, index: u32) {
        let done = |s: &State| {
            s.exit_code.is_some()
                || s.cmd
                    .as_ref()
                    .is_some_and(|c| c.index != index || c.completed)
        };
        let Some(limits) = self.limits.clone() else {
            self.wait_until(deadline, done).await;
            return;
        };
        loop {
            let slice = deadline.min(Instant::now() + WATCH_EVERY);
            if self.wait_until(slice, done).await || Instant::now() >= deadline {
                return;
            }
            let (counters, fork_refused) = match self.state().cmd.as_ref() {
                Some(c) if c.index == index && c.limit.is_none() => (
                    c.counters,
                    c.capture.recent_contains(FORK_RETRY, FORK_RETRY_WINDOW),
                ),
                Some(_) | None => continue,
            };
            let (l, pid, sandboxed) = (Arc::clone(&limits), self.pid, self.sandboxed);
            let stopped = tokio::task::spawn_blocking(move || {
                let own = || crate::procs::tree(pid).len() as u64;
                let hit = l.must_stop(counters, fork_refused, own)?;
                crate::procs::stop_command(pid, sandboxed);
                Some(hit)
            })
            .await;
            if let Ok(Some(hit)) = stopped
                && let Some(cmd) = self.state().cmd.as_mut().filter(|c| c.index == index)
            {
                cmd.limit = Some(hit);
                cmd.limit_checked = true;
            }
        }
    }

    /// Adds to a command's result, the first time its completion is delivered, the limit it ran into (worked out
    /// once, off the async threads: it may measure the work directory).
    async fn with_limit(&self, mut result: CommandResult) -> CommandResult {
        let Some(limits) = &self.limits else {
            return result;
        };
        if result.status != CommandStatus::Completed {
            return result;
        }
        let (counters, known) = {
            let mut st = self.state();
            match st.cmd.as_mut() {
                Some(c) if c.index == result.command_index && !c.limit_reported => {
                    if c.limit_checked {
                        c.limit_reported = true;
                        result.limit.clone_from(&c.limit);
                        return result;
                    }
                    (c.counters, c.limit.clone())
                }
                Some(_) | None => return result,
            }
        };
        let hit = match known {
            Some(hit) => Some(hit),
            None if limits.quick() => {
                let (hit, after) = limits.settle(counters, result.exit_code, &result.output);
                *self
                    .next_counters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(after);
                hit
            }
            None => {
                let (l, code, output) =
                    (Arc::clone(limits), result.exit_code, result.output.clone());
                let settled =
                    tokio::task::spawn_blocking(move || l.settle(counters, code, &output)).await;
                settled.ok().and_then(|(hit, after)| {
                    *self
                        .next_counters
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(after);
                    hit
                })
            }
        };
        let mut st = self.state();
        if let Some(c) = st
            .cmd
            .as_mut()
            .filter(|c| c.index == result.command_index && !c.limit_reported)
        {
            c.limit.clone_from(&hit);
            c.limit_checked = true;
            c.limit_reported = true;
            result.limit = hit;
        }
        result
    }

    /// Builds the result for the last agent command. `full`: all output, else since the last read.
    fn result(&self, full: bool) -> CommandResult {
        let mut st = self.state();
        let exit_code = st.exit_code;
        let alt = st.screen.screen().alternate_screen();
        let screen_text = alt.then(|| render_screen(st.screen.screen()));
        let shell_cwd = st.cwd.clone();
        let Some(cmd) = st.cmd.as_mut() else {
            return CommandResult {
                terminal: self.name.clone(),
                command_index: 0,
                command: String::new(),
                status: CommandStatus::Completed,
                exit_code,
                output: String::new(),
                truncated: false,
                cwd: shell_cwd,
                pid: self.pid,
                limit: None,
            };
        };
        let completed = cmd.completed || exit_code.is_some();
        let from = if full { 0 } else { cmd.read_cursor };
        let (output, truncated) = if cmd.incomplete && completed {
            (INCOMPLETE.to_owned(), false)
        } else if let (Some(screen), false) = (screen_text, completed) {
            (screen, false)
        } else {
            render_span(&cmd.capture.since(from), self.max_output_chars)
        };
        cmd.read_cursor = cmd.capture.total();
        if completed {
            cmd.completion_delivered = true;
        }
        let result = CommandResult {
            terminal: self.name.clone(),
            command_index: cmd.index,
            command: cmd.command.clone(),
            status: if completed {
                CommandStatus::Completed
            } else {
                CommandStatus::Running
            },
            exit_code: if completed {
                cmd.exit_code.or(exit_code)
            } else {
                None
            },
            output,
            truncated,
            cwd: shell_cwd,
            pid: self.pid,
            limit: None,
        };
        drop(st);
        if completed {
            result
        } else {
            CommandResult {
                cwd: std::fs::read_link(format!("/proc/{}/cwd", self.pid))
                    .unwrap_or(result.cwd.clone()),
                ..result
            }
        }
    }

    /// Output of the last command: new output (waiting up to `timeout` for completion) while it
    /// runs, the rest once it completes, or its full output when the completion was already seen.
    pub(crate) async fn read_output(&self, timeout: Duration) -> Result<CommandResult> {
        let deadline = Instant::now() + timeout;
        let (index, delivered, running) = {
            let st = self.state();
            match &st.cmd {
                Some(cmd) => (
                    cmd.index,
                    cmd.completion_delivered,
                    !cmd.completed && st.exit_code.is_none(),
                ),
                None if st.exit_code.is_some() => {
                    drop(st);
                    return Err(self.exited_error());
                }
                None => return Ok(self.result(true)),
            }
        };
        if delivered {
            return Ok(self.result(/*full*/ true));
        }
        if running {
            self.wait_for_command(deadline, index).await;
        }
        Ok(self.with_limit(self.result(/*full*/ false)).await)
    }

    /// Writes `text` to the PTY as is, then waits up to `timeout` for the running command to
    /// finish (or, at the prompt, for the shell's next prompt).
    pub(crate) async fn send_input(&self, text: &str, timeout: Duration) -> Result<CommandResult> {
        if text.is_empty() {
            return Err(TerminalError::InvalidCommand {
                reason: "send_input needs some text (\"\\x03\" is Ctrl-C, \"\\n\" is Enter)".into(),
            });
        }
        let start = Instant::now();
        let deadline = start + timeout;
        // Bytes typed before the shell's line editor is ready can be lost (a terminal this call started).
        self.wait_until(start + timeout.max(READY_WAIT), |s| {
            s.ready || s.exit_code.is_some()
        })
        .await;
        let (running, prompts) = {
            let mut st = self.state();
            if st.exit_code.is_some() {
                drop(st);
                return Err(self.exited_error());
            }
            let running = st.phase != Phase::Idle;
            if !running {
                st.agent_raw_cycle = true;
                st.raw_capture = Some(Capture::new(self.capture_cap));
            }
            (
                running.then(|| st.cmd.as_ref().map_or(0, |c| c.index)),
                st.prompts,
            )
        };
        self.write(text.as_bytes().to_vec(), deadline).await?;
        if running.is_none() {
            // Text left at the prompt without Enter is cleared before the next command.
            let after_enter = text
                .rfind(['\r', '\n'])
                .map_or(text, |pos| &text[pos + 1..]);
            if !after_enter.is_empty() {
                self.state().human_partial = true;
            }
        }
        let Some(index) = running else {
            self.wait_until(deadline, |s| s.prompts > prompts || s.exit_code.is_some())
                .await;
            return Ok(self.raw_result(text));
        };
        let done = |s: &State| {
            s.exit_code.is_some()
                || s.cmd
                    .as_ref()
                    .is_some_and(|c| c.index != index || c.completed)
        };
        if text.contains('\x03') {
            // If the Ctrl-C byte reached a shell that had not yet given the terminal to the
            // job, signal the foreground process group directly.
            let grace = deadline.min(Instant::now() + Duration::from_millis(300));
            if !self.wait_until(grace, done).await {
                self.interrupt_foreground();
            }
        }
        self.wait_for_command(deadline, index).await;
        Ok(self.with_limit(self.result(/*full*/ false)).await)
    }

    /// Sends SIGINT to the PTY's foreground process group when it is not the shell itself.
    fn interrupt_foreground(&self) {
        if let Ok(pgrp) = rustix::termios::tcgetpgrp(&self.master)
            && u32::try_from(pgrp.as_raw_pid()).ok() != Some(self.pid)
        {
            let _ = rustix::process::kill_process_group(pgrp, rustix::process::Signal::INT);
        }
    }

    fn raw_result(&self, text: &str) -> CommandResult {
        let mut st = self.state();
        let (output, truncated) = st
            .raw_capture
            .take()
            .map(|c| render_span(&c.since(0), self.max_output_chars))
            .unwrap_or_default();
        CommandResult {
            terminal: self.name.clone(),
            command_index: st.cmd.as_ref().map_or(0, |c| c.index),
            command: format!("send_input {text:?}"),
            status: CommandStatus::Completed,
            exit_code: None,
            output,
            truncated,
            cwd: st.cwd.clone(),
            pid: self.pid,
            limit: None,
        }
    }
}

fn render_screen(screen: &vt100::Screen) -> String {
    let contents = screen.contents();
    let lines: Vec<&str> = contents.lines().map(str::trim_end).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    lines[..end].join("\n")
}
