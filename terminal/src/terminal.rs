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

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;
use tokio::sync::broadcast;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::TerminalConfig;
use crate::config::normalised_env;
use crate::error::Result;
use crate::error::TerminalError;
use crate::mux::ControlEvent;
use crate::output::Capture;
use crate::output::CommandResult;
use crate::output::CommandStatus;
use crate::output::render_span;
use crate::procs;
use crate::scan::Marker;
use crate::scan::Scanner;
use crate::scan::Seg;
use crate::scan::parse_marker;

/// How long to wait for a prompt marker the shell is known to print before sending anyway. Generous: on a loaded
/// machine bash can take seconds to redraw, and sending early can lose the command's first bytes.
const PROMPT_WAIT: Duration = Duration::from_secs(10);

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
}

/// A command a human ran in a shared terminal while the agent was not running one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HumanInput {
    /// Terminal name.
    pub terminal: String,
    /// The command line as it appeared on screen.
    pub command: String,
}

/// Longest human-input queue kept; older entries are dropped.
const MAX_HUMAN_INPUTS: usize = 100;
/// Most bytes held back from humans while an agent command is being submitted.
const MAX_GATED: usize = 64 * 1024;
/// How long `execute` waits for the shell's first prompt at least.
const READY_WAIT: Duration = Duration::from_secs(20);
/// Message used when a command line was incomplete.
const INCOMPLETE: &str = "codepilot: the command is incomplete (an unclosed quote, bracket, `do`/`done`, `fi` or here-document?) and was cancelled; nothing ran";

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
                    Phase::Idle => {
                        if !self.agent_raw_cycle {
                            let (start_row, start_col) = self.prompt_pos;
                            let (row, col) = self.screen.screen().cursor_position();
                            let text = self
                                .screen
                                .screen()
                                .contents_between(start_row, start_col, row, col);
                            self.human_cycle = Some(text.trim().to_owned());
                        }
                    }
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
                } else if let Some(command) = self.human_cycle.take()
                    && !command.is_empty()
                {
                    let mut queue = lock(human);
                    if queue.len() >= MAX_HUMAN_INPUTS {
                        queue.pop_front();
                    }
                    queue.push_back(HumanInput {
                        terminal: terminal.to_owned(),
                        command,
                    });
                }
            }
        }
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Raw PTY output kept for newly attached clients, and the attached clients' queues.
pub(crate) struct Mux {
    inner: Mutex<MuxInner>,
}

struct MuxInner {
    scrollback: VecDeque<u8>,
    cap: usize,
    clients: Vec<ClientSlot>,
}

struct ClientSlot {
    tx: mpsc::UnboundedSender<Arc<[u8]>>,
    queued: Arc<AtomicUsize>,
    kicked: CancellationToken,
}

/// The receiving side of one attached client.
pub(crate) struct ClientFeed {
    /// Output chunks, in order.
    pub(crate) rx: mpsc::UnboundedReceiver<Arc<[u8]>>,
    /// Bytes queued and not yet written; the client task subtracts what it wrote.
    pub(crate) queued: Arc<AtomicUsize>,
    /// Cancelled when the client fell more than [`CLIENT_BACKLOG_BYTES`] behind.
    pub(crate) kicked: CancellationToken,
}

/// Bytes a client may fall behind before it is dropped.
pub(crate) const CLIENT_BACKLOG_BYTES: usize = 4 * 1024 * 1024;
/// Largest PTY read.
const READ_CHUNK: usize = 16 * 1024;

impl Mux {
    fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(MuxInner {
                scrollback: VecDeque::with_capacity(cap.min(64 * 1024)),
                cap,
                clients: Vec::new(),
            }),
        }
    }

    fn publish(&self, chunk: &[u8]) {
        let mut inner = lock(&self.inner);
        let cap = inner.cap;
        if chunk.len() >= cap {
            inner.scrollback.clear();
            inner.scrollback.extend(&chunk[chunk.len() - cap..]);
        } else {
            let overflow = (inner.scrollback.len() + chunk.len()).saturating_sub(cap);
            inner.scrollback.drain(..overflow);
            inner.scrollback.extend(chunk);
        }
        if inner.clients.is_empty() {
            return;
        }
        let shared: Arc<[u8]> = Arc::from(chunk);
        inner.clients.retain(|client| {
            let queued = client.queued.load(Ordering::Acquire);
            if queued + shared.len() > CLIENT_BACKLOG_BYTES {
                client.kicked.cancel();
                return false;
            }
            client.queued.fetch_add(shared.len(), Ordering::AcqRel);
            client.tx.send(Arc::clone(&shared)).is_ok()
        });
    }

    /// The scrollback and a feed of everything after it, taken atomically.
    pub(crate) fn subscribe(&self) -> (Vec<u8>, ClientFeed) {
        let mut inner = lock(&self.inner);
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let kicked = CancellationToken::new();
        inner.clients.push(ClientSlot {
            tx,
            queued: Arc::clone(&queued),
            kicked: kicked.clone(),
        });
        (
            inner.scrollback.iter().copied().collect(),
            ClientFeed { rx, queued, kicked },
        )
    }
}

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
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

fn integration_script(nonce_path: &Path) -> String {
    format!(
        r#"builtin unset HISTFILE
builtin export -n PROMPT_COMMAND
PS1='\w\$ \[\e]6973;B\a\]'
PS2='\[\e]6973;P\a\]> '
PS0='\e]6973;C\a'
__cp_nf={nonce}
PROMPT_COMMAND='__cp_rc=$?; __cp_n=; builtin read -r __cp_n 2>/dev/null <"$__cp_nf"; : 2>/dev/null >"$__cp_nf"; builtin printf "\033]6973;D;%s;%s;%s\007" "$__cp_n" "$__cp_rc" "$PWD"'
builtin readonly PROMPT_COMMAND PS0 PS2 __cp_nf
builtin bind 'set enable-bracketed-paste on' 2>/dev/null
builtin bind 'set enable-active-region off' 2>/dev/null
builtin eval "$PROMPT_COMMAND"
"#,
        nonce = shell_quote(nonce_path)
    )
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TerminalError::io(format!("cannot write {}", path.display()), e))?;
    file.write_all(contents)
        .map_err(|e| TerminalError::io(format!("cannot write {}", path.display()), e))
}

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Everything `spawn` needs from the manager.
pub(crate) struct SpawnContext<'a> {
    pub(crate) cfg: &'a TerminalConfig,
    pub(crate) dir: &'a Path,
    pub(crate) human: Arc<Mutex<VecDeque<HumanInput>>>,
    pub(crate) events: broadcast::Sender<ControlEvent>,
}

impl Terminal {
    /// Starts the shell and the reader, writer and waiter tasks. Does not wait for the prompt.
    pub(crate) fn spawn(name: &str, ctx: &SpawnContext<'_>) -> Result<Arc<Self>> {
        let cfg = ctx.cfg;
        let nonce_path = ctx.dir.join(format!("{name}.nonce"));
        let rc_path = ctx.dir.join(format!("{name}.rc"));
        let sock_path = ctx.dir.join(format!("{name}.sock"));
        write_private(&nonce_path, b"")?;
        write_private(&rc_path, integration_script(&nonce_path).as_bytes())?;

        let io_err = |what: &str, e: pty_process::Error| {
            TerminalError::io(
                format!("cannot {what} for terminal {name}"),
                std::io::Error::other(e),
            )
        };
        let (pty, pts) = pty_process::open().map_err(|e| io_err("open a PTY", e))?;
        pty.resize(pty_process::Size::new(cfg.rows, cfg.cols))
            .map_err(|e| io_err("size the PTY", e))?;
        let master = rustix::io::dup(&pty)
            .map_err(|e| TerminalError::io("cannot duplicate the PTY descriptor", e.into()))?;
        let env = normalised_env(std::env::vars_os(), &cfg.env, name);
        let child = pty_process::Command::new(&cfg.shell)
            .args(["--norc", "--noprofile", "-i"])
            .env_clear()
            .envs(env)
            .env(
                "PROMPT_COMMAND",
                format!("builtin source {}", shell_quote(&rc_path)),
            )
            .current_dir(&cfg.work_dir)
            .kill_on_drop(true)
            .spawn(pts)
            .map_err(|source| TerminalError::Spawn {
                shell: cfg.shell.clone(),
                work_dir: cfg.work_dir.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let (read_half, write_half) = pty.into_split();
        let (input, input_rx) = mpsc::channel(256);
        let rows = NonZeroU16::new(cfg.rows).unwrap_or(NonZeroU16::MIN);
        let cols = NonZeroU16::new(cfg.cols).unwrap_or(NonZeroU16::MIN);
        let max_output_chars = cfg.max_output_chars.max(512);
        let terminal = Arc::new(Self {
            name: name.to_owned(),
            pid,
            max_output_chars,
            capture_cap: (max_output_chars * 4).max(16 * 1024),
            state: Mutex::new(State {
                ready: false,
                exit_code: None,
                cwd: cfg.work_dir.clone(),
                cols: cfg.cols,
                rows: cfg.rows,
                screen: vt100::Parser::new(rows, cols, 0),
                next_index: 1,
                commands_run: 0,
                prompts: 0,
                phase: Phase::Idle,
                cmd: None,
                gated: Vec::new(),
                human_enter_pending: false,
                human_partial: false,
                human_cycle: None,
                agent_raw_cycle: false,
                raw_capture: None,
                prompt_pos: (0, 0),
                at_prompt: false,
                escape_in_last_chunk: false,
                to_write: Vec::new(),
                want_interrupt: false,
            }),
            changed: Notify::new(),
            input,
            master,
            mux: Mux::new(cfg.scrollback_bytes.max(1024)),
            closed: CancellationToken::new(),
            nonce_path,
            rc_path,
            sock_path,
            human: Arc::clone(&ctx.human),
        });
        tokio::spawn(reader_task(Arc::clone(&terminal), read_half));
        tokio::spawn(writer_task(write_half, input_rx, terminal.closed.clone()));
        tokio::spawn(waiter_task(
            Arc::clone(&terminal),
            child,
            ctx.events.clone(),
        ));
        Ok(terminal)
    }

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
                    write_private(&self.nonce_path, nonce.as_bytes())?;
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
                    // sending (bytes sent while bash handles SIGINT can be flushed or eaten).
                    self.state().at_prompt = false;
                    waited_for_prompt = false;
                    self.write(b"\x03".to_vec(), deadline).await?;
                    let wait = deadline.min(Instant::now() + PROMPT_WAIT);
                    self.wait_until(wait, |s| s.prompts > prompts || s.exit_code.is_some())
                        .await;
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
        self.wait_until(deadline, |s| {
            s.exit_code.is_some()
                || s.cmd
                    .as_ref()
                    .is_some_and(|c| c.index != index || c.completed)
        })
        .await;
        Ok(self.result(/*full*/ true))
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
            self.wait_until(deadline, |s| {
                s.exit_code.is_some()
                    || s.cmd
                        .as_ref()
                        .is_some_and(|c| c.index != index || c.completed)
            })
            .await;
        }
        Ok(self.result(/*full*/ false))
    }

    /// Writes `text` to the PTY as is, then waits up to `timeout` for the running command to
    /// finish (or, at the prompt, for the shell's next prompt).
    pub(crate) async fn send_input(&self, text: &str, timeout: Duration) -> Result<CommandResult> {
        if text.is_empty() {
            return Err(TerminalError::InvalidCommand {
                reason: "send_input needs some text (\"\\x03\" is Ctrl-C, \"\\n\" is Enter)".into(),
            });
        }
        let deadline = Instant::now() + timeout;
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
        self.wait_until(deadline, done).await;
        Ok(self.result(/*full*/ false))
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
        }
    }

    /// Bytes typed by an attached client.
    pub(crate) async fn human_input(&self, bytes: Vec<u8>) {
        let send = {
            let mut st = self.state();
            match st.phase {
                Phase::Submitting => {
                    let room = MAX_GATED.saturating_sub(st.gated.len());
                    st.gated.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    None
                }
                Phase::Idle => {
                    match bytes.iter().rposition(|b| matches!(b, b'\r' | b'\n')) {
                        Some(pos) => {
                            st.human_enter_pending = true;
                            st.human_partial = pos + 1 < bytes.len();
                        }
                        None => st.human_partial = true,
                    }
                    Some(bytes)
                }
                Phase::Running => Some(bytes),
            }
        };
        if let Some(bytes) = send {
            let _ = self.input.send(bytes).await;
        }
    }

    /// Changes the PTY and screen-model size.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let (Some(c), Some(r)) = (NonZeroU16::new(cols), NonZeroU16::new(rows)) else {
            return Err(TerminalError::InvalidCommand {
                reason: format!("invalid size {cols}x{rows}"),
            });
        };
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
        }
    }

    /// Kills the whole process tree (synchronous; safe in `Drop`) and removes the files.
    pub(crate) fn kill_now(&self) -> Vec<u32> {
        let killed = procs::kill_tree(self.pid);
        self.closed.cancel();
        self.remove_files();
        killed.into_iter().collect()
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

fn render_screen(screen: &vt100::Screen) -> String {
    let contents = screen.contents();
    let lines: Vec<&str> = contents.lines().map(str::trim_end).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    lines[..end].join("\n")
}

async fn reader_task(terminal: Arc<Terminal>, mut pty: pty_process::OwnedReadPty) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut scanner = Scanner::default();
    loop {
        let n = match pty.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        terminal.mux.publish(chunk);
        let (to_write, interrupt) = {
            let mut st = terminal.state();
            let st = &mut *st;
            scanner.feed(chunk, |seg| match seg {
                Seg::Data(data) => st.on_data(data),
                Seg::Marker(payload) => {
                    if let Some(marker) = parse_marker(payload) {
                        st.on_marker(marker, &terminal.name, &terminal.human);
                    }
                }
            });
            (
                std::mem::take(&mut st.to_write),
                std::mem::take(&mut st.want_interrupt),
            )
        };
        terminal.changed.notify_waiters();
        let mut pending = Vec::new();
        if interrupt {
            pending.push(b"\x03".to_vec());
        }
        if !to_write.is_empty() {
            pending.push(to_write);
        }
        for bytes in pending {
            // Never await the writer here: the shell may be blocked on us reading its output.
            if let Err(mpsc::error::TrySendError::Full(bytes)) = terminal.input.try_send(bytes) {
                let input = terminal.input.clone();
                tokio::spawn(async move { input.send(bytes).await });
            }
        }
    }
    terminal.changed.notify_waiters();
}

async fn writer_task(
    mut pty: pty_process::OwnedWritePty,
    mut rx: mpsc::Receiver<Vec<u8>>,
    closed: CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            () = closed.cancelled() => break,
            bytes = rx.recv() => match bytes {
                Some(bytes) => bytes,
                None => break,
            },
        };
        let write = async {
            pty.write_all(&bytes).await?;
            pty.flush().await
        };
        tokio::select! {
            () = closed.cancelled() => break,
            result = write => if result.is_err() { break },
        }
    }
}

async fn waiter_task(
    terminal: Arc<Terminal>,
    mut child: tokio::process::Child,
    events: broadcast::Sender<ControlEvent>,
) {
    let code = match child.wait().await {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(_) => -1,
    };
    // Whatever the shell left behind (background jobs) dies with it.
    procs::kill_tree(terminal.pid);
    terminal.state().exit_code = Some(code);
    terminal.changed.notify_waiters();
    terminal.closed.cancel();
    let _ = std::fs::remove_file(&terminal.sock_path);
    let _ = events.send(ControlEvent::TerminalExited {
        terminal: terminal.name.clone(),
        pid: terminal.pid,
        exit_code: code,
    });
}
