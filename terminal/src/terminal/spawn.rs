//! Starting a terminal: the shell-integration rc file, the bash process in its own PTY, and the
//! reader, writer and waiter tasks that drive it until the shell exits.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;
use tokio::sync::broadcast;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::HumanInput;
use super::Mux;
use super::NUDGE_FOR;
use super::Phase;
use super::State;
use super::Terminal;
use super::write_private;
use crate::config::TerminalConfig;
use crate::config::normalised_env;
use crate::control::ControlEvent;
use crate::error::Result;
use crate::error::TerminalError;
use crate::scan::Scanner;
use crate::scan::Seg;
use crate::scan::parse_marker;

/// Largest PTY read.
const READ_CHUNK: usize = 16 * 1024;

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// The shell integration, sourced once by the new shell.
///
/// Before an agent command is sent, the runtime writes a fresh nonce to the private nonce file; `PROMPT_COMMAND`
/// prints it back in the completion marker (`ESC]6973;D;nonce;status;cwd BEL`), so only this command's end
/// completes it. The nonce must never be readable by the programs the command runs, or one of them could print a
/// marker of its own and fake the command's end and exit status: a `DEBUG` trap, armed by `PROMPT_COMMAND`, takes
/// the nonce into a shell variable (never exported) and empties the file before the command's first simple
/// command runs, in the shell itself, before anything is forked. (A command line without a simple command, such
/// as a function definition, leaves it to `PROMPT_COMMAND`.) The trap stays set, as a cheap test of a flag,
/// while the command runs in this shell; subshells and scripts do not inherit it. The file's second line is the
/// run's trace context: exported as `TRACEPARENT` (`-`: unset) for the command, by the same read.
fn integration_script(nonce_path: &Path) -> String {
    format!(
        r#"builtin unset HISTFILE
builtin export -n PROMPT_COMMAND
PS1='\w\$ \[\e]6973;B\a\]'
PS2='\[\e]6973;P\a\]> '
PS0='\e]6973;C\a'
__cp_nf={nonce}
__cp_n=
__cp_armed=
__cp_take() {{ __cp_armed=; __cp_tp=; {{ builtin read -r __cp_n; builtin read -r __cp_tp; }} 2>/dev/null <"$__cp_nf"; : 2>/dev/null >|"$__cp_nf"; case $__cp_tp in '') ;; -) builtin unset TRACEPARENT ;; *) builtin export TRACEPARENT="$__cp_tp" ;; esac; }}
builtin exec {{__cp_out}}>&1
PROMPT_COMMAND='__cp_rc=$?; builtin trap - DEBUG; [[ -z $__cp_armed ]] || __cp_take; builtin printf "\033]6973;D;%s;%s;%s\007" "$__cp_n" "$__cp_rc" "$PWD" >&$__cp_out; __cp_n=; __cp_armed=1; builtin trap "[[ -z \$__cp_armed ]] || __cp_take" DEBUG'
builtin readonly -f __cp_take
builtin readonly PROMPT_COMMAND PS0 PS2 __cp_nf __cp_out
builtin bind 'set enable-bracketed-paste on' 2>/dev/null
builtin bind 'set enable-active-region off' 2>/dev/null
builtin eval "$PROMPT_COMMAND"
"#,
        nonce = shell_quote(nonce_path)
    )
}

/// Everything `spawn` needs from the manager.
pub(crate) struct SpawnContext<'a> {
    pub(crate) cfg: &'a TerminalConfig,
    pub(crate) dir: &'a Path,
    /// Where the shell's own files go (see `ManagerInner::shell_dir`).
    pub(crate) shell_dir: &'a Path,
    pub(crate) human: Arc<Mutex<VecDeque<HumanInput>>>,
    pub(crate) events: broadcast::Sender<ControlEvent>,
    /// The current run's trace context (see `TerminalManager::set_traceparent`).
    pub(crate) trace: Arc<Mutex<Option<String>>>,
}

impl Terminal {
    /// Starts the shell and the reader, writer and waiter tasks. Does not wait for the prompt.
    pub(crate) fn spawn(name: &str, ctx: &SpawnContext<'_>) -> Result<Arc<Self>> {
        let cfg = ctx.cfg;
        let nonce_path = ctx.shell_dir.join(format!("{name}.nonce"));
        let rc_path = ctx.shell_dir.join(format!("{name}.rc"));
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
        // Close-on-exec: a shell (or any later child) holding a PTY master open would keep its terminal alive
        // after the runtime dies. With only the runtime holding it, the runtime's death hangs the PTY up, and the
        // shell and its jobs get SIGHUP.
        let master = rustix::io::fcntl_dupfd_cloexec(&pty, 0)
            .map_err(|e| TerminalError::io("cannot duplicate the PTY descriptor", e.into()))?;
        let env = normalised_env(std::env::vars_os(), &cfg.env, &cfg.hidden_vars, name);
        let sandbox = match &cfg.sandbox {
            Some(policy) if policy.mode != codepilot_sandbox::Mode::Off && sandbox_available() => {
                let mut policy = policy.clone();
                policy.always_writable.push(ctx.shell_dir.to_path_buf());
                // The sockets and the token (which would let the shell attach to, and type into, every terminal)
                // and the user's runtime folder (D-Bus, agent sockets) are out of its sight.
                policy.hidden.push(ctx.dir.to_path_buf());
                policy.hidden.extend(
                    std::env::var_os("XDG_RUNTIME_DIR")
                        .map(std::path::PathBuf::from)
                        .filter(|d| !ctx.shell_dir.starts_with(d)),
                );
                let plan = codepilot_sandbox::Plan::new(&policy).map_err(|e| {
                    TerminalError::io(
                        format!("cannot prepare the sandbox for terminal {name}"),
                        std::io::Error::other(e),
                    )
                })?;
                Some(
                    plan.with_process_limit(
                        cfg.limits.as_ref().and_then(|l| l.shell_process_limit()),
                    ),
                )
            }
            Some(_) | None => None,
        };
        let sandboxed = sandbox.is_some();
        let join = cfg.limits.as_ref().map(|l| l.join());
        let membership = cfg
            .limits
            .as_ref()
            .map(|l| l.membership())
            .transpose()
            .map_err(|e| {
                TerminalError::io(
                    format!("cannot open the session's cgroups for terminal {name}"),
                    e,
                )
            })?
            .flatten();
        let mut command = pty_process::Command::new(&cfg.shell);
        // SAFETY: `default_signals`, `Join::enter` and `Plan::enter` make system calls only, as `pre_exec`
        // requires. The shell joins its session's cgroups later, before its first input (`writer_task`).
        command = unsafe {
            command.pre_exec(move || {
                default_signals();
                if let Some(join) = &join {
                    join.enter()?;
                }
                if let Some(plan) = &sandbox {
                    plan.enter()?;
                }
                match &join {
                    Some(join) => join.limit_files(),
                    None => Ok(()),
                }
            })
        };
        let child = command
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
        let max_output_chars = cfg.max_output_chars.clamp(512, 1_000_000);
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
            trace: Arc::clone(&ctx.trace),
            limits: cfg.limits.clone(),
            sandboxed,
            next_counters: Mutex::new(None),
        });
        tokio::spawn(reader_task(Arc::clone(&terminal), read_half));
        let join_later = membership.map(|membership| Joining {
            membership,
            pid,
            sandboxed,
        });
        tokio::spawn(writer_task(
            write_half,
            input_rx,
            terminal.closed.clone(),
            join_later,
        ));
        tokio::spawn(waiter_task(
            Arc::clone(&terminal),
            child,
            ctx.events.clone(),
        ));
        Ok(terminal)
    }
}

/// Whether this machine can put a shell in the sandbox: [`codepilot_sandbox::probe`], once per process, at the first
/// shell rather than at every start. Where it cannot, that is said once and shells run without it; a kernel without
/// Landlock is said once too.
fn sandbox_available() -> bool {
    static UNAVAILABLE: std::sync::Once = std::sync::Once::new();
    static NO_LANDLOCK: std::sync::Once = std::sync::Once::new();
    let support = codepilot_sandbox::probe();
    if let Err(why) = &support.namespaces {
        UNAVAILABLE.call_once(|| {
            tracing::warn!(
                "the sandbox is not available here ({why}); the agent's shells run without it (runtime.sandbox: \
                 off). `codepilot sandbox check` shows what this machine enforces"
            );
        });
        return false;
    }
    if support.landlock_abi.is_none() {
        NO_LANDLOCK.call_once(|| {
            tracing::warn!(
                "this kernel has no Landlock: the sandbox hides the runtime and controls the network, but cannot \
                 restrict where the agent's shells write"
            );
        });
    }
    true
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
                std::mem::take(&mut st.want_interrupt).then_some(st.prompts),
            )
        };
        // Attached clients get the bytes only now, so the terminal has taken in whatever a client has
        // seen: an agent that runs a command once a human's output shows finds that human's command
        // running, not a prompt it already left.
        terminal.mux.publish(chunk);
        terminal.changed.notify_waiters();
        let mut pending = Vec::new();
        if let Some(prompts) = interrupt {
            pending.push(b"\x03".to_vec());
            // Sent the moment the continuation prompt's marker is read, the Ctrl-C can reach bash
            // before readline waits for input, and then bash would not act on it by itself.
            let terminal = Arc::clone(&terminal);
            let until = Instant::now() + NUDGE_FOR;
            tokio::spawn(async move { terminal.await_interrupt_answer(prompts, until).await });
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

/// A shell still to be moved into its session's cgroups ([`codepilot_sandbox::resources::Membership`]).
struct Joining {
    membership: codepilot_sandbox::resources::Membership,
    /// The process the runtime started: the shell, or (sandboxed) the process waiting for it.
    pid: u32,
    sandboxed: bool,
}

impl Joining {
    /// Moves the shell (and, sandboxed, the process waiting for it) into the cgroups. On failure the shell is
    /// killed: it must not run anything outside its limits.
    async fn join(self) -> bool {
        let Self {
            membership,
            pid,
            sandboxed,
        } = self;
        let joined = tokio::task::spawn_blocking(move || {
            membership.attach(&crate::procs::shell_pids(pid, sandboxed))
        })
        .await;
        let error = match joined {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            "cannot move shell {pid} into its session's cgroups ({error}); it is stopped, so nothing runs outside \
             the session's limits"
        );
        if sandboxed {
            crate::procs::kill_namespace(pid);
        } else {
            crate::procs::kill_tree(pid);
        }
        false
    }
}

/// Writes input to the shell. Before the first input, the shell joins its session's cgroups (`joining`).
async fn writer_task(
    mut pty: pty_process::OwnedWritePty,
    mut rx: mpsc::Receiver<Vec<u8>>,
    closed: CancellationToken,
    mut joining: Option<Joining>,
) {
    loop {
        let bytes = tokio::select! {
            () = closed.cancelled() => break,
            bytes = rx.recv() => match bytes {
                Some(bytes) => bytes,
                None => break,
            },
        };
        if let Some(joining) = joining.take()
            && !joining.join().await
        {
            break;
        }
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
    // Whatever the shell left behind (background jobs) dies with it — unless the terminal was killed as a whole
    // already.
    if !terminal.closed.is_cancelled() {
        terminal.kill_processes();
    }
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

/// Gives the shell every signal's default disposition and an empty signal mask, whatever the runtime inherited: a
/// host started in the background by a non-interactive shell (`cmd &`, `nohup`) ignores SIGINT and SIGQUIT, and an
/// ignored signal stays ignored across `exec`, so the agent's Ctrl-C (`send_input("\x03")`, an abort) would
/// reach a command that ignores it. Runs between `fork` and `exec`: system calls only.
fn default_signals() {
    // SAFETY: `signal` and `sigprocmask` are async-signal-safe; the child has one thread.
    unsafe {
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
    }
}
