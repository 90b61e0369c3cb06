//! The CodePilot sandbox (SPEC §15): an agent's shells run where they can write only under the work directory and
//! the temporary folders, cannot see or signal the runtime, and have no network unless the policy allows it.
//!
//! Mechanism, chosen after Codex's `linux-sandbox` (which uses bubblewrap plus Landlock and seccomp) but with no
//! helper binary, so the Python package and every host get it:
//! - **namespaces**: the shell's process enters new user, PID and mount namespaces (and a network namespace with
//!   only loopback when the network is off). A user namespace is used even as root, so the shell holds no
//!   capability outside it. The PID namespace hides the runtime: the shell's `/proc` is remounted and shows only
//!   its own processes, so `/proc/$PPID/environ` leads nowhere, and no process outside can be signalled.
//! - **Landlock**: reading is allowed everywhere, writing only beneath the writable roots (work directory,
//!   temporary folders, the terminal's private directory) and to the terminal devices.
//!
//! Everything that allocates (the Landlock ruleset, the uid and gid maps) is prepared in the runtime by
//! [`Plan::new`]; [`Plan::enter`] runs in the forked child before `exec` and makes only system calls. It forks once
//! more: the shell becomes PID 1 of its namespace, and the process in between stays outside, waits for it and
//! exits with its status, so when the shell ends, every process it started ends too. The process in between
//! watches the runtime process through a pidfd and kills the shell when the runtime is gone.
//!
//! ```no_run
//! use codepilot_sandbox::Mode;
//! use codepilot_sandbox::Plan;
//! use codepilot_sandbox::Policy;
//!
//! let policy = Policy::new(Mode::WorkspaceWrite, /*network*/ false, vec!["/work".into()]);
//! let plan = Plan::new(&policy)?;
//! let mut cmd = std::process::Command::new("bash");
//! // SAFETY: `enter` only makes system calls, as `pre_exec` requires.
//! unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || plan.enter()) };
//! # Ok::<(), codepilot_sandbox::SandboxError>(())
//! ```
#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

mod check;
mod enter;
pub mod resources;

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub use check::Support;
pub use check::probe;

/// How much the agent's shells may do (`runtime.sandbox` in the agent file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No sandbox: the shells run as the runtime does.
    Off,
    /// Write only under the work directory and the temporary folders; the runtime is invisible.
    WorkspaceWrite,
    /// Write nowhere (but the terminal's own devices); the runtime is invisible.
    ReadOnly,
}

impl Mode {
    /// The name used in the agent file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::WorkspaceWrite => "workspace-write",
            Mode::ReadOnly => "read-only",
        }
    }

    /// Every mode, for messages.
    #[must_use]
    pub fn all() -> [Mode; 3] {
        [Mode::Off, Mode::WorkspaceWrite, Mode::ReadOnly]
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::all()
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| {
                format!("unknown sandbox mode '{s}'; use off, workspace-write or read-only")
            })
    }
}

/// What a sandboxed shell may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// Whether the shell has the network (else only loopback, in a namespace of its own).
    pub network: bool,
    /// Where it may write, in [`Mode::WorkspaceWrite`] (the work directory; the temporary folders are added).
    pub writable: Vec<PathBuf>,
    /// Where it may always write, whatever the mode (the terminal's private directory, for its shell integration).
    pub always_writable: Vec<PathBuf>,
    /// Folders the shell must not see at all (the terminals' sockets and token, the user's runtime folder with
    /// its D-Bus and agent sockets): an empty, inaccessible tmpfs covers each in the shell's mount namespace.
    pub hidden: Vec<PathBuf>,
}

impl Policy {
    /// A policy writing beneath `writable` (plus the temporary folders) in [`Mode::WorkspaceWrite`].
    #[must_use]
    pub fn new(mode: Mode, network: bool, writable: Vec<PathBuf>) -> Self {
        Self {
            mode,
            network,
            writable,
            always_writable: Vec::new(),
            hidden: Vec::new(),
        }
    }

    /// The folders the shell may write beneath.
    #[must_use]
    pub fn write_roots(&self) -> Vec<PathBuf> {
        let mut roots = self.always_writable.clone();
        if self.mode == Mode::WorkspaceWrite {
            roots.extend(self.writable.iter().cloned());
            roots.extend(temp_dirs());
        }
        roots
    }

    /// Whether a path may be written, as the file tools check it: beneath a write root, or anywhere when the
    /// sandbox is off.
    #[must_use]
    pub fn may_write(&self, path: &std::path::Path) -> bool {
        match self.mode {
            Mode::Off => true,
            Mode::WorkspaceWrite | Mode::ReadOnly => {
                self.write_roots().iter().any(|root| path.starts_with(root))
            }
        }
    }
}

/// The temporary folders a shell may write in workspace-write mode: `$TMPDIR` and `/tmp`, `/var/tmp`,
/// `/dev/shm` where they exist.
fn temp_dirs() -> Vec<PathBuf> {
    ["/tmp", "/var/tmp", "/dev/shm"]
        .into_iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("TMPDIR")
                .filter(|t| !t.is_empty())
                .map(PathBuf::from),
        )
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect()
}

/// Why a sandbox could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The kernel cannot give the shell namespaces of its own.
    #[error(
        "this system cannot create user namespaces ({0}); set runtime.sandbox: off in agent.yaml, or allow \
         unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
    )]
    Namespaces(String),
    /// The Landlock rules could not be built.
    #[error("could not prepare the Landlock rules: {0}")]
    Landlock(String),
    /// A session's resource limits could not be put in force.
    #[error("resource limits: {0}")]
    Limits(String),
    /// A path could not be used in the policy.
    #[error("sandbox path {path:?} is not usable: {reason}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A sandbox ready to be entered by a forked child. Build it in the parent, once per shell.
#[derive(Debug)]
pub struct Plan {
    network: bool,
    uid_map: CString,
    gid_map: CString,
    /// The Landlock ruleset, when the kernel enforces Landlock.
    ruleset: Option<OwnedFd>,
    /// Folders covered by an empty tmpfs.
    hidden: Vec<CString>,
    /// `RLIMIT_NPROC` set in the shell's own user namespace, where it counts only that shell's processes.
    process_limit: Option<u64>,
}

impl Plan {
    /// Prepares `policy` for a child of this process.
    ///
    /// # Errors
    /// [`SandboxError`] when the rules cannot be built.
    pub fn new(policy: &Policy) -> Result<Self, SandboxError> {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let map = |id: u32| {
            CString::new(format!("{id} {id} 1\n"))
                .map_err(|e| SandboxError::Landlock(e.to_string()))
        };
        Ok(Self {
            network: policy.network,
            uid_map: map(uid)?,
            gid_map: map(gid)?,
            ruleset: enter::landlock_ruleset(&policy.write_roots())?,
            hidden: policy
                .hidden
                .iter()
                .filter(|p| p.is_dir())
                .map(|p| {
                    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| SandboxError::Path {
                        path: p.clone(),
                        reason: "it contains a NUL byte".to_owned(),
                    })
                })
                .collect::<Result<_, _>>()?,
            process_limit: None,
        })
    }

    /// Limits the shell and everything it starts to `n` processes, counted in its own user namespace (the floor
    /// of [`resources`] where no cgroup counts a session's processes).
    #[must_use]
    pub fn with_process_limit(mut self, n: Option<u64>) -> Self {
        self.process_limit = n;
        self
    }

    /// Whether Landlock enforces the write rules on this kernel (when not, only the namespaces apply).
    #[must_use]
    pub fn landlock(&self) -> bool {
        self.ruleset.is_some()
    }

    /// Enters the sandbox. Call it in a freshly forked child, before `exec` (`pre_exec`): it makes system calls
    /// only. The calling process stays outside as the waiting parent of the sandboxed process and never returns;
    /// the process that returns `Ok` continues to `exec` inside the sandbox.
    ///
    /// # Errors
    /// The first system call that failed.
    pub fn enter(&self) -> std::io::Result<()> {
        enter::enter(self)
    }
}
