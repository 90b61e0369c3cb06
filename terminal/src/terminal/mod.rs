//! One terminal: a bash in a PTY, its reader/writer/waiter tasks and the command protocol.
//!
//! # Completion protocol
//! The shell is started with `PROMPT_COMMAND='source <dir>/<name>.rc'` in its environment.
//! That script (run before the first prompt) un-exports `PROMPT_COMMAND`, installs the
//! integration below, makes it read-only and prints the first `D` marker:
//! - `PS0` prints `ESC]6973;C BEL` when a command line starts executing;
//! - `PROMPT_COMMAND` reads a nonce from `<dir>/<name>.nonce`, empties the file and prints
//!   `ESC]6973;D;<nonce>;$?;$PWD BEL`;
//! - `PS1` ends with `ESC]6973;B BEL`, `PS2` starts with `ESC]6973;P BEL`.
//!
//! To run a command the agent writes a fresh random nonce to the nonce file, then sends the
//! command as one bracketed paste followed by Enter (so a multi-line command is one unit and
//! produces exactly one `D`). The command completes only on a `D` carrying its own nonce, so
//! output that prints an old or fake marker cannot complete it, and nothing is sent before
//! the shell's first `D` (the original's off-by-one is impossible). Output is the bytes
//! between `C` and the matching `D`. Bytes typed by attached humans while the command is
//! being submitted are held back until it has started.
//!
//! A command line bash finds incomplete shows the continuation prompt, whose `P` marker makes
//! the runtime cancel it with Ctrl-C (exit code 2, "the command is incomplete"). bash acts on
//! that interrupt only if it interrupts readline's wait for input; `await_interrupt_answer`
//! nudges it about one that arrived sooner.
//!
//! # Layout
//! This module holds the [`Terminal`] itself and the state its reader keeps from the shell's
//! output and markers. The submodules add behaviour on one side each: `spawn` starts the shell
//! and the tasks that drive it; `commands` is the agent's side (`execute`, `read_output`,
//! `send_input`); `sharing` is the multiplexer's side (scrollback and fan-out to attached
//! clients, the keystrokes they type, and the commands humans run at the prompt).

mod commands;
mod sharing;
mod spawn;

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::error::TerminalError;
use crate::output::Capture;
use crate::procs;
use crate::scan::Marker;

pub(crate) use sharing::CLIENT_BACKLOG_BYTES;
pub use sharing::HumanInput;
pub(crate) use sharing::Mux;
pub(crate) use spawn::SpawnContext;

/// What a terminal is doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TerminalState {
    /// At the prompt (or not yet started).
    Idle,
    /// A command is running (started by the agent or by a human).
    Running {
        /// The command line.
        command: String,
    },
    /// The shell has exited.
    Exited {
        /// Exit code (128 + signal when killed by a signal).
        code: i32,
    },
}

/// A snapshot of one terminal, for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalInfo {
    /// Terminal name.
    pub name: String,
    /// The shell's process id.
    pub pid: u32,
    /// Idle, running or exited.
    pub state: TerminalState,
    /// The shell's working directory as of its last prompt.
    pub cwd: PathBuf,
    /// Commands the agent has run to completion.
    pub commands_run: u32,
    /// Columns of the PTY.
    pub cols: u16,
    /// Rows of the PTY.
    pub rows: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Submitting,
    Running,
}

#[derive(Debug)]
struct AgentCmd {
    index: u32,
    command: String,
    nonce: String,
    capture: Capture,
    read_cursor: u64,
    exit_code: Option<i32>,
    completed: bool,
    completion_delivered: bool,
    incomplete: bool,
    /// The session's limit counters when the command started (with resource limits).
    counters: codepilot_sandbox::resources::Counters,
    /// The limit the command ran into, once known.
    limit: Option<codepilot_sandbox::resources::LimitHit>,
    /// Whether `limit` was worked out for the completed command.
    limit_checked: bool,
    /// Whether a result carried `limit` already (it is named, and an event sent, once).
    limit_reported: bool,
}

struct State {
    ready: bool,
    exit_code: Option<i32>,
    cwd: PathBuf,
    cols: u16,
    rows: u16,
    screen: vt100::Parser,
    next_index: u32,
    commands_run: u32,
    prompts: u64,
    phase: Phase,
    cmd: Option<AgentCmd>,
    gated: Vec<u8>,
    /// A human pressed Enter at the prompt and the shell has not shown the next prompt yet.
    human_enter_pending: bool,
    /// Someone (a human, or the agent through `send_input`) left text without Enter at the
    /// prompt; it is cleared with Ctrl-C before the next command.
    human_partial: bool,
    human_cycle: Option<String>,
    agent_raw_cycle: bool,
    raw_capture: Option<Capture>,
    prompt_pos: (u16, u16),
    /// The shell's line editor is waiting at a primary prompt (a `B` marker after the last `D`).
    at_prompt: bool,
    escape_in_last_chunk: bool,
    // Work for the reader to do after releasing the lock.
    to_write: Vec<u8>,
    want_interrupt: bool,
}

impl State {
    fn on_data(&mut self, data: &[u8]) {
        let was_alt = self.screen.screen().alternate_screen();
        // The screen model is needed for full-screen programs and for reading a human's
        // command line off the screen. Plain text (no escape byte, not in the alternate
        // screen) printed by a running agent command cannot change either, so it is skipped:
        // this doubles throughput for big outputs. The chunk after one with an escape is
        // always fed, so a sequence split across reads is completed.
        let has_escape = data.contains(&0x1b);
        if self.phase != Phase::Running || was_alt || has_escape || self.escape_in_last_chunk {
            self.screen.process(data);
        }
        self.escape_in_last_chunk = has_escape;
        let now_alt = self.screen.screen().alternate_screen();
        if self.phase == Phase::Running
            && !(was_alt && now_alt)
            && let Some(cmd) = &mut self.cmd
        {
            cmd.capture.push(data);
        }
        if let Some(capture) = &mut self.raw_capture {
            capture.push(data);
        }
    }

    fn on_marker(&mut self, marker: Marker, terminal: &str, human: &Mutex<VecDeque<HumanInput>>) {
        match marker {
            Marker::PromptEnd => {
                self.prompt_pos = self.screen.screen().cursor_position();
                self.at_prompt = true;
            }
            Marker::Continuation => {
                if self.phase == Phase::Submitting
                    && let Some(cmd) = &mut self.cmd
                    && !cmd.incomplete
                {
                    cmd.incomplete = true;
                    self.want_interrupt = true;
                }
            }
            Marker::CommandStart => {
                self.at_prompt = false;
                match self.phase {
                    Phase::Submitting => {
                        self.phase = Phase::Running;
                        self.to_write.append(&mut self.gated);
                    }
                    Phase::Running => {}
                    Phase::Idle => self.human_command_started(),
                }
            }
            Marker::CommandDone {
                nonce,
                exit_code,
                cwd,
            } => {
                let matches_agent = self.cmd.as_ref().is_some_and(|c| c.nonce == nonce);
                if self.phase != Phase::Idle && !matches_agent {
                    // Printed by the running command itself: a stale or fake marker.
                    return;
                }
                if !cwd.is_empty() {
                    self.cwd = PathBuf::from(cwd);
                }
                self.ready = true;
                self.at_prompt = false;
                self.prompts += 1;
                self.human_enter_pending = false;
                self.human_partial = false;
                self.agent_raw_cycle = false;
                if self.phase != Phase::Idle
                    && let Some(cmd) = &mut self.cmd
                    && cmd.nonce == nonce
                {
                    cmd.completed = true;
                    cmd.exit_code = Some(if cmd.incomplete { 2 } else { exit_code });
                    self.phase = Phase::Idle;
                    self.commands_run += 1;
                    self.to_write.append(&mut self.gated);
                } else {
                    self.human_command_done(terminal, human);
                }
            }
        }
    }
}

pub(crate) use codepilot_protocol::sync::lock;

/// The first pause before a shell that has not answered an interrupt is nudged
/// ([`Terminal::await_interrupt_answer`]); each later one is twice as long, up to [`NUDGE_MAX`].
const NUDGE_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two nudges.
const NUDGE_MAX: Duration = Duration::from_secs(1);
/// How long the reader goes on nudging a shell that has not answered the Ctrl-C cancelling an
/// incomplete command: longer, and something other than a noted interrupt holds it up.
const NUDGE_FOR: Duration = Duration::from_secs(60);

/// A live terminal. Shared by its handle(s), its tasks and the manager.
pub(crate) struct Terminal {
    pub(crate) name: String,
    pub(crate) pid: u32,
    max_output_chars: usize,
    capture_cap: usize,
    state: Mutex<State>,
    changed: Notify,
    input: mpsc::Sender<Vec<u8>>,
    master: OwnedFd,
    pub(crate) mux: Mux,
    /// Cancelled when the shell exits or the terminal is terminated.
    pub(crate) closed: CancellationToken,
    nonce_path: PathBuf,
    rc_path: PathBuf,
    pub(crate) sock_path: PathBuf,
    human: Arc<Mutex<VecDeque<HumanInput>>>,
    /// The run's trace context, sent with each agent command's nonce.
    trace: Arc<Mutex<Option<String>>>,
    /// The session's resource limits, when in force.
    limits: Option<Arc<codepilot_sandbox::resources::SessionLimits>>,
    /// Whether the shell runs in the sandbox (then it is the child of `pid`, which waits for it).
    sandboxed: bool,
    /// The session's limit counters where this terminal's last command ended, for the next one to start from.
    next_counters: Mutex<Option<codepilot_sandbox::resources::Counters>>,
}

/// Writes `contents` to `path`, created with mode 0600 or truncated.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        // A shell that replaced its nonce file with a symlink must not make the runtime write through it.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| TerminalError::io(format!("cannot write {}", path.display()), e))?;
    file.write_all(contents)
        .map_err(|e| TerminalError::io(format!("cannot write {}", path.display()), e))
}

/// The largest terminal a client may ask for; the screen model holds `cols × rows` cells.
pub(crate) const MAX_COLS: u16 = 1000;
/// See [`MAX_COLS`].
pub(crate) const MAX_ROWS: u16 = 500;

fn invalid_size(cols: u16, rows: u16) -> TerminalError {
    TerminalError::InvalidCommand {
        reason: format!(
            "invalid size {cols}x{rows}: columns must be 1–{MAX_COLS} and rows 1–{MAX_ROWS}"
        ),
    }
}

impl Terminal {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Waits until `pred` holds or `deadline` passes; returns whether it holds.
    async fn wait_until(&self, deadline: Instant, pred: impl Fn(&State) -> bool) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(&self.state()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(&self.state());
            }
        }
    }

    /// Waits until the shell answers an interrupt the runtime sent it at a prompt (prints a `D`
    /// after the `prompts`-th) or exits, nudging it while it does not; gives up at `deadline`.
    ///
    /// bash acts on a SIGINT that reaches it at a prompt only when the signal interrupts readline's
    /// wait for input. One that arrives a moment sooner, while readline is still drawing the prompt
    /// (as the Ctrl-C sent on reading a continuation prompt's `P` marker can on a busy machine), is
    /// noted and left: bash goes on waiting at that prompt, and acts on the interrupt only when
    /// another signal interrupts the wait, or else at the next key, mangling the line it starts. So
    /// while the shell does not answer it is sent SIGCHLD now and then: bash finds no child to reap,
    /// and readline does not catch it (SIGWINCH, which readline does catch, would take the place of
    /// a SIGINT readline has caught but not yet handled, and that interrupt would be lost).
    async fn await_interrupt_answer(&self, prompts: u64, deadline: Instant) {
        let answered = |s: &State| s.prompts > prompts || s.exit_code.is_some();
        let mut pause = NUDGE_FIRST;
        loop {
            let until = deadline.min(Instant::now() + pause);
            if self.wait_until(until, answered).await || until >= deadline {
                return;
            }
            let st = self.state();
            if answered(&st) || self.closed.is_cancelled() {
                return;
            }
            // Under the lock, so the answer cannot be taken in meanwhile: the agent has not moved on,
            // the shell is still at the prompt, and the foreground process group is the shell's.
            if let Ok(pgrp) = rustix::termios::tcgetpgrp(&self.master) {
                let _ = rustix::process::kill_process_group(pgrp, rustix::process::Signal::CHILD);
            }
            drop(st);
            pause = (pause * 2).min(NUDGE_MAX);
        }
    }

    async fn write(&self, bytes: Vec<u8>, deadline: Instant) -> Result<()> {
        match tokio::time::timeout_at(deadline, self.input.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.exited_error()),
            Err(_) => Err(TerminalError::io(
                format!("cannot write to terminal {}", self.name),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the shell is not reading its input",
                ),
            )),
        }
    }

    fn exited_error(&self) -> TerminalError {
        TerminalError::Exited {
            name: self.name.clone(),
            code: self.state().exit_code.unwrap_or(-1),
        }
    }

    /// Changes the PTY and screen-model size.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let (Some(c), Some(r)) = (NonZeroU16::new(cols), NonZeroU16::new(rows)) else {
            return Err(invalid_size(cols, rows));
        };
        if cols > MAX_COLS || rows > MAX_ROWS {
            return Err(invalid_size(cols, rows));
        }
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).map_err(|e| {
            TerminalError::io(format!("cannot resize terminal {}", self.name), e.into())
        })?;
        let mut st = self.state();
        st.screen.set_size(r, c);
        st.cols = cols;
        st.rows = rows;
        Ok(())
    }

    /// `(cols, rows)`.
    pub(crate) fn size(&self) -> (u16, u16) {
        let st = self.state();
        (st.cols, st.rows)
    }

    pub(crate) fn exit_code(&self) -> Option<i32> {
        self.state().exit_code
    }

    pub(crate) fn info(&self) -> TerminalInfo {
        let st = self.state();
        let state = if let Some(code) = st.exit_code {
            TerminalState::Exited { code }
        } else if let (Phase::Submitting | Phase::Running, Some(cmd)) = (st.phase, &st.cmd) {
            TerminalState::Running {
                command: cmd.command.clone(),
            }
        } else if let Some(command) = &st.human_cycle {
            TerminalState::Running {
                command: command.clone(),
            }
        } else {
            TerminalState::Idle
        };
        TerminalInfo {
            name: self.name.clone(),
            pid: self.pid,
            state,
            cwd: st.cwd.clone(),
            commands_run: st.commands_run,
            cols: st.cols,
            rows: st.rows,
        }
    }

    /// Kills the whole process tree (synchronous; safe in `Drop`) and removes the files.
    pub(crate) fn kill_now(&self) -> Vec<u32> {
        let killed = self.kill_processes();
        self.closed.cancel();
        self.remove_files();
        killed.into_iter().collect()
    }

    /// Kills the shell and everything it started: a sandboxed shell's PID namespace as a whole, else the tree found
    /// in `/proc`.
    pub(crate) fn kill_processes(&self) -> std::collections::BTreeSet<u32> {
        if self.sandboxed {
            procs::kill_namespace(self.pid)
        } else {
            procs::kill_tree(self.pid)
        }
    }

    /// Waits until the waiter task has reaped the shell.
    pub(crate) async fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        self.wait_until(Instant::now() + timeout, |s| s.exit_code.is_some())
            .await;
        self.exit_code()
    }

    pub(crate) fn remove_files(&self) {
        for path in [&self.sock_path, &self.nonce_path, &self.rc_path] {
            let _ = std::fs::remove_file(path);
        }
    }
}
