//! `TerminalManager`: owns the terminals, the socket directory and the control socket.

use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::TerminalConfig;
use crate::config::valid_name;
use crate::control::ControlEvent;
use crate::error::Result;
use crate::error::TerminalError;
use crate::mux::serve_control;
use crate::mux::serve_terminal;
use crate::mux::terminal_client;
use crate::output::CommandResult;
use crate::registry::Registry;
use crate::terminal::HumanInput;
use crate::terminal::SpawnContext;
use crate::terminal::Terminal;
use crate::terminal::TerminalInfo;
use crate::terminal::TerminalState;
use crate::terminal::lock;

/// What `terminate` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminateReport {
    /// Terminal name.
    pub terminal: String,
    /// The shell's pid (0: a declared terminal that never started).
    pub pid: u32,
    /// Every process that was sent `SIGKILL` (the shell, its jobs and their children).
    pub killed: Vec<u32>,
    /// The shell's exit code, when it was reaped in time.
    pub exit_code: Option<i32>,
}

impl TerminateReport {
    /// The observation text: `[terminal:T] Terminal destroyed (PID p and N processes killed).` (or, for a declared
    /// terminal that never started, that its shell had not started).
    #[must_use]
    pub fn render(&self) -> String {
        if self.pid == 0 {
            return format!(
                "[terminal:{}] Terminal destroyed (its shell had not started).",
                self.terminal
            );
        }
        let others = self.killed.iter().filter(|pid| **pid != self.pid).count();
        format!(
            "[terminal:{}] Terminal destroyed (PID {} terminated, {others} other processes killed).",
            self.terminal, self.pid
        )
    }
}

struct ManagerInner {
    cfg: TerminalConfig,
    dir: PathBuf,
    owns_dir: bool,
    /// The shells' own files (shell integration, completion nonces), apart from the sockets and the token, so a
    /// sandboxed shell can be given these while the socket directory is hidden from it.
    shell_dir: PathBuf,
    /// Held while this manager lives: they tell other processes' sweeps that its folders are in use.
    _locks: [Option<std::fs::File>; 2],
    token: Arc<str>,
    registry: Arc<Registry>,
    events: broadcast::Sender<ControlEvent>,
    human: Arc<Mutex<VecDeque<HumanInput>>>,
    closed: CancellationToken,
    shut: AtomicBool,
    /// The current run's W3C trace context, exported as `TRACEPARENT` in the shell before each agent command.
    trace: Arc<Mutex<Option<String>>>,
    /// Terminals declared ([`TerminalManager::declare`]) and not started yet.
    declared: Mutex<BTreeSet<String>>,
}

impl ManagerInner {
    /// Starts terminal `name` (bash in a PTY) and registers it. A `declared` terminal is started once (a caller
    /// that finds it started gets it), and its socket already listens; any other name must be free, and its socket is
    /// bound and served here.
    fn start(&self, name: &str, declared: bool) -> Result<Arc<Terminal>> {
        if self.shut.load(Ordering::SeqCst) {
            return Err(TerminalError::ShutDown);
        }
        let terminal = {
            let mut terminals = self.registry.locked();
            if declared {
                if let Some(terminal) = terminals.get(name) {
                    return Ok(Arc::clone(terminal));
                }
                if !lock(&self.declared).contains(name) {
                    return Err(TerminalError::NotFound {
                        name: name.to_owned(),
                    });
                }
            } else if terminals.contains_key(name) || lock(&self.declared).contains(name) {
                return Err(TerminalError::AlreadyExists {
                    name: name.to_owned(),
                });
            }
            let ctx = SpawnContext {
                cfg: &self.cfg,
                dir: &self.dir,
                shell_dir: &self.shell_dir,
                human: Arc::clone(&self.human),
                events: self.events.clone(),
                trace: Arc::clone(&self.trace),
            };
            // A declared terminal that cannot start stays declared: its next use tries again and says why.
            let terminal = Terminal::spawn(name, &ctx)?;
            if declared {
                lock(&self.declared).remove(name);
            } else {
                let listener = match bind(&terminal.sock_path) {
                    Ok(listener) => listener,
                    Err(e) => {
                        terminal.kill_now();
                        return Err(e);
                    }
                };
                tokio::spawn(serve_terminal(
                    listener,
                    Arc::clone(&terminal),
                    Arc::clone(&self.token),
                ));
            }
            terminals.insert(name.to_owned(), Arc::clone(&terminal));
            terminal
        };
        let _ = self.events.send(ControlEvent::TerminalCreated {
            terminal: name.to_owned(),
            pid: terminal.pid,
            socket: terminal.sock_path.clone(),
        });
        Ok(terminal)
    }

    /// Synchronous, best-effort cleanup: kill every tree, remove every file we made.
    fn cleanup_now(&self) {
        self.shut.store(true, Ordering::SeqCst);
        let terminals: Vec<Arc<Terminal>> = std::mem::take(&mut *self.registry.locked())
            .into_values()
            .collect();
        for terminal in &terminals {
            terminal.kill_now();
        }
        for name in std::mem::take(&mut *lock(&self.declared)) {
            let _ = std::fs::remove_file(self.dir.join(format!("{name}.sock")));
        }
        self.closed.cancel();
        let _ = std::fs::remove_dir_all(&self.shell_dir);
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            let _ = std::fs::remove_file(self.dir.join("control.sock"));
            let _ = std::fs::remove_file(self.dir.join("token"));
        }
    }
}

impl Drop for ManagerInner {
    fn drop(&mut self) {
        self.cleanup_now();
    }
}

/// Owns the terminals and the multiplexer. Cheap to clone; the last clone dropped kills every
/// shell and process tree and removes the socket directory (call [`shutdown`](Self::shutdown)
/// to do it and wait for the shells to be reaped).
#[derive(Clone)]
pub struct TerminalManager {
    inner: Arc<ManagerInner>,
}

/// A handle to one terminal. Cheap to clone; stays usable (reporting an exited terminal)
/// after the terminal is terminated.
#[derive(Clone)]
pub struct TerminalHandle {
    terminal: Arc<Terminal>,
}

/// Where socket folders go when the host names none: `XDG_RUNTIME_DIR`, else `/tmp`.
fn socket_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The socket directory, whether this manager owns it, and the lock that marks it alive when it made it under
/// the shared base.
fn private_dir(cfg: &TerminalConfig) -> Result<(PathBuf, bool, Option<std::fs::File>)> {
    let make = |path: &Path| {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| {
                TerminalError::io(
                    format!("cannot create socket directory {}", path.display()),
                    e,
                )
            })
    };
    if let Some(dir) = &cfg.socket_dir {
        if dir.is_dir() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                TerminalError::io(format!("cannot make {} private (0700)", dir.display()), e)
            })?;
            return Ok((dir.clone(), false, None));
        }
        make(dir)?;
        return Ok((dir.clone(), true, None));
    }
    let base = socket_base();
    let (dir, lock) = crate::sweep::create_locked(&base, "codepilot-").map_err(|e| {
        TerminalError::io(
            format!("cannot create a socket directory in {}", base.display()),
            e,
        )
    })?;
    Ok((dir, true, Some(lock)))
}

/// Accepts clients of a declared terminal: the first one starts it (unless a use already did). Ends when the
/// manager closes, or when the terminal was terminated (its socket is gone then).
async fn serve_declared(
    listener: UnixListener,
    inner: Weak<ManagerInner>,
    name: String,
    closed: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = closed.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(terminal = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let terminal = match inner.start(&name, true) {
            Ok(terminal) => terminal,
            // Terminated before it ever started: nobody is to be served here any more.
            Err(TerminalError::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!("terminal {name} cannot start for a client: {e}");
                continue;
            }
        };
        if terminal.closed.is_cancelled() {
            return;
        }
        tokio::spawn(terminal_client(stream, terminal, Arc::clone(&inner.token)));
    }
}

fn bind(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| {
        TerminalError::io(
            format!(
                "cannot listen on {} (socket paths must be under 108 bytes)",
                path.display()
            ),
            e,
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| TerminalError::io(format!("cannot make {} private", path.display()), e))?;
    Ok(listener)
}

impl TerminalManager {
    /// Creates the private socket directory (0700), the token file (0600) and the control
    /// socket. No terminal is started. The first manager of a process also removes the runtime
    /// folders that killed processes of this user left behind.
    ///
    /// # Errors
    /// When the directory, token file or control socket cannot be created.
    pub async fn new(cfg: TerminalConfig) -> Result<Self> {
        crate::sweep::once(socket_base(), std::env::temp_dir());
        let (dir, owns_dir, dir_lock) = private_dir(&cfg)?;
        let temp = std::env::temp_dir();
        let (shell_dir, shell_lock) = crate::sweep::create_locked(&temp, "codepilot-shell-")
            .map_err(|e| {
                TerminalError::io(
                    format!("cannot create a shell directory in {}", temp.display()),
                    e,
                )
            })?;
        let token: Arc<str> = Arc::from(format!("{:032x}", rand::random::<u128>()));
        let inner = Arc::new(ManagerInner {
            cfg,
            dir,
            owns_dir,
            shell_dir,
            _locks: [dir_lock, Some(shell_lock)],
            token: Arc::clone(&token),
            registry: Arc::default(),
            events: broadcast::channel(256).0,
            human: Arc::default(),
            closed: CancellationToken::new(),
            shut: AtomicBool::new(false),
            trace: Arc::default(),
            declared: Mutex::default(),
        });
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let path = inner.dir.join("token");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| TerminalError::io(format!("cannot write {}", path.display()), e))?;
            file.write_all(token.as_bytes())
                .map_err(|e| TerminalError::io(format!("cannot write {}", path.display()), e))?;
        }
        let listener = bind(&inner.dir.join("control.sock"))?;
        tokio::spawn(serve_control(
            listener,
            Arc::clone(&inner.registry),
            token,
            inner.events.clone(),
            inner.closed.clone(),
        ));
        Ok(Self { inner })
    }

    /// Sets the W3C trace context every terminal's shell exports as `TRACEPARENT` before each agent command from
    /// now on (`None`: unset), so the programs an agent starts join the run's trace. It travels with the command's
    /// private nonce, never through the screen.
    pub fn set_traceparent(&self, traceparent: Option<String>) {
        if let Ok(mut trace) = self.inner.trace.lock() {
            *trace = traceparent;
        }
    }

    /// Starts a new terminal (bash in a PTY) and its socket. Returns at once; the first
    /// command waits for the shell's first prompt.
    ///
    /// # Errors
    /// Invalid name (`[A-Za-z0-9_-]{1,64}`), name in use (or declared), shut down, or the shell cannot start.
    pub async fn create(&self, name: &str) -> Result<TerminalHandle> {
        if !valid_name(name) {
            return Err(TerminalError::InvalidName {
                name: name.to_owned(),
            });
        }
        let terminal = self.inner.start(name, false)?;
        Ok(TerminalHandle { terminal })
    }

    /// Declares terminal `name`, to be started on first use rather than now: the first [`get`](Self::get) or
    /// [`open`](Self::open) of it, or the first client connecting to its socket (`<name>.sock`, which listens from
    /// now on, so `codepilot attach` and the web terminal work at any time). A run that never uses a terminal never
    /// starts a shell: a sandboxed bash costs a few milliseconds of every start. [`list`](Self::list) shows it as
    /// idle with pid 0 until then.
    ///
    /// # Errors
    /// Invalid name, name in use, shut down, or its socket cannot be bound.
    pub fn declare(&self, name: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(TerminalError::InvalidName {
                name: name.to_owned(),
            });
        }
        if self.inner.shut.load(Ordering::SeqCst) {
            return Err(TerminalError::ShutDown);
        }
        let terminals = self.inner.registry.locked();
        let mut declared = lock(&self.inner.declared);
        if terminals.contains_key(name) || declared.contains(name) {
            return Err(TerminalError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let listener = bind(&self.inner.dir.join(format!("{name}.sock")))?;
        declared.insert(name.to_owned());
        tokio::spawn(serve_declared(
            listener,
            Arc::downgrade(&self.inner),
            name.to_owned(),
            self.inner.closed.clone(),
        ));
        Ok(())
    }

    /// The terminal called `name`, starting it when it is declared and not started yet.
    ///
    /// # Errors
    /// A declared terminal whose shell cannot start.
    pub fn open(&self, name: &str) -> Result<Option<TerminalHandle>> {
        if let Some(terminal) = self.inner.registry.get(name) {
            return Ok(Some(TerminalHandle { terminal }));
        }
        if !lock(&self.inner.declared).contains(name) {
            return Ok(None);
        }
        let terminal = self.inner.start(name, true)?;
        Ok(Some(TerminalHandle { terminal }))
    }

    /// The terminal called `name`, if any (exited terminals stay until terminated); a declared one is started
    /// now, and when it cannot start the reason is logged and the answer is `None` ([`open`](Self::open) returns
    /// it).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<TerminalHandle> {
        match self.open(name) {
            Ok(handle) => handle,
            Err(e) => {
                tracing::warn!("terminal {name} cannot start: {e}");
                None
            }
        }
    }

    /// Every terminal, by name; a declared one not started yet is idle, with pid 0.
    #[must_use]
    pub fn list(&self) -> Vec<TerminalInfo> {
        let mut all: Vec<TerminalInfo> =
            self.inner.registry.all().iter().map(|t| t.info()).collect();
        let declared: Vec<String> = lock(&self.inner.declared).iter().cloned().collect();
        for name in declared {
            if all.iter().any(|t| t.name == name) {
                continue;
            }
            all.push(TerminalInfo {
                name,
                pid: 0,
                state: TerminalState::Idle,
                cwd: self.inner.cfg.work_dir.clone(),
                commands_run: 0,
                cols: self.inner.cfg.cols,
                rows: self.inner.cfg.rows,
            });
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Kills the terminal's whole process tree (every process group in its session and every
    /// descendant), removes its socket and forgets it.
    ///
    /// # Errors
    /// When no terminal has this name.
    pub async fn terminate(&self, name: &str) -> Result<TerminateReport> {
        let removed = {
            let mut terminals = self.inner.registry.locked();
            if lock(&self.inner.declared).remove(name) {
                // Never started: nothing to kill; its socket goes.
                let _ = std::fs::remove_file(self.inner.dir.join(format!("{name}.sock")));
                return Ok(TerminateReport {
                    terminal: name.to_owned(),
                    pid: 0,
                    killed: Vec::new(),
                    exit_code: None,
                });
            }
            terminals.remove(name)
        };
        let terminal = removed.ok_or_else(|| TerminalError::NotFound {
            name: name.to_owned(),
        })?;
        // The report names every process that went: found first (a sandboxed shell's namespace dies whole).
        let mut killed = crate::procs::tree(terminal.pid);
        killed.extend(terminal.kill_now());
        let killed: Vec<u32> = killed.into_iter().collect();
        let exit_code = terminal.wait_exit(Duration::from_secs(5)).await;
        Ok(TerminateReport {
            terminal: name.to_owned(),
            pid: terminal.pid,
            killed,
            exit_code,
        })
    }

    /// The private socket directory (holds `token`, `control.sock` and `<name>.sock`).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The token clients must send first (also in `socket_dir()/token`, mode 0600).
    #[must_use]
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Commands humans ran in shared terminals while the agent had no command running there,
    /// oldest first (at most 100 kept). Each call drains the queue.
    #[must_use]
    pub fn take_human_input(&self) -> Vec<HumanInput> {
        lock(&self.inner.human).drain(..).collect()
    }

    /// How many such commands wait for [`take_human_input`](Self::take_human_input) (for a UI that shows
    /// what the agent will see at its next step).
    #[must_use]
    pub fn pending_human_input(&self) -> usize {
        lock(&self.inner.human).len()
    }

    /// Resizes a terminal (same as the control socket's `resize`).
    ///
    /// # Errors
    /// Unknown terminal or a zero size.
    pub fn resize(&self, name: &str, cols: u16, rows: u16) -> Result<()> {
        self.open(name)?
            .ok_or_else(|| TerminalError::NotFound {
                name: name.to_owned(),
            })?
            .resize(cols, rows)
    }

    /// Kills every shell and process tree, waits (up to 5 s each) for the shells to be reaped,
    /// and removes the sockets and the socket directory. Later `create` calls fail.
    pub async fn shutdown(&self) {
        self.inner.shut.store(true, Ordering::SeqCst);
        let terminals = self.inner.registry.all();
        self.inner.cleanup_now();
        for terminal in terminals {
            terminal.wait_exit(Duration::from_secs(5)).await;
        }
    }
}

impl TerminalHandle {
    /// Terminal name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.terminal.name
    }

    /// The shell's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.terminal.pid
    }

    /// Runs `command` (one line or several; sent as one unit) and waits up to `timeout`.
    /// On timeout the result says `running` and the command keeps going: poll with
    /// [`read_output`](Self::read_output), interrupt with `send_input("\x03")`.
    ///
    /// # Errors
    /// The shell has exited (create a new terminal), another agent command is still running,
    /// a human's command did not finish within `timeout`, or the command is empty/invalid.
    pub async fn execute(&self, command: &str, timeout: Duration) -> Result<CommandResult> {
        self.terminal.execute(command, timeout).await
    }

    /// While the last command runs: waits up to `timeout` for it to finish and returns the
    /// output produced since the last read (with the exit code if it finished). Once the
    /// finish has been reported: the full output of the last command again.
    ///
    /// # Errors
    /// The shell has exited and no command ever ran.
    pub async fn read_output(&self, timeout: Duration) -> Result<CommandResult> {
        self.terminal.read_output(timeout).await
    }

    /// Writes `text` to the terminal as raw bytes: no newline is added, `"\x03"` is Ctrl-C
    /// (SIGINT to the foreground job; if the byte does not stop it within 300 ms the job's
    /// process group is signalled directly), `"\x04"` is Ctrl-D. Text sent while a command
    /// runs goes to that command; the result is its output since the last read, waiting up to
    /// `timeout` for it to finish. Text sent at the prompt is typed into the shell: whatever it
    /// runs is not a numbered command; the result holds the output seen until the next prompt
    /// (or `timeout`).
    ///
    /// # Errors
    /// The shell has exited, or `text` is empty.
    pub async fn send_input(&self, text: &str, timeout: Duration) -> Result<CommandResult> {
        self.terminal.send_input(text, timeout).await
    }

    /// A snapshot of the terminal.
    #[must_use]
    pub fn info(&self) -> TerminalInfo {
        self.terminal.info()
    }

    /// Resizes the PTY.
    ///
    /// # Errors
    /// A zero size or a failed ioctl.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.terminal.resize(cols, rows)
    }
}
