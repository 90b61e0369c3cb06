//! A cgroup per session: finding where this process may make them (v2 delegated subtree, else the v1 `pids`,
//! `memory` and `cpu` hierarchies), making one with its limits, reading its event counters, and removing it —
//! or, after a crash, the ones dead runtimes left.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use super::Counters;
use super::Limits;
use crate::SandboxError;

/// How long dropping a session's cgroups waits for processes just killed to leave them.
const DROP_WAIT: Duration = Duration::from_millis(250);

/// Session cgroups are named `codepilot-<pid>-<8 hex digits>`.
const PREFIX: &str = "codepilot-";

/// How a session's limits are enforced on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// A cgroup v2 per session, beneath `base` (a delegated subtree).
    CgroupV2 {
        /// Where session cgroups are made.
        base: PathBuf,
    },
    /// A cgroup per session in each writable v1 hierarchy (where the runtime's own cgroup is, in each).
    CgroupV1 {
        /// Beneath this, in the `pids` hierarchy.
        pids: Option<PathBuf>,
        /// Beneath this, in the `memory` hierarchy.
        memory: Option<PathBuf>,
        /// Beneath this, in the `cpu` hierarchy.
        cpu: Option<PathBuf>,
    },
    /// No writable cgroup: rlimits only.
    Rlimits {
        /// Why no cgroup could be used.
        why: String,
    },
}

impl Mechanism {
    /// The strongest mechanism this process can use, found once per process from `/proc/self/cgroup`,
    /// `/proc/self/mountinfo` and `CODEPILOT_CGROUP`.
    #[must_use]
    pub fn detect() -> Self {
        static FOUND: OnceLock<Mechanism> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
                let named = std::env::var_os("CODEPILOT_CGROUP")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from);
                Self::from_tables(
                    &read("/proc/self/cgroup"),
                    &read("/proc/self/mountinfo"),
                    named.as_deref(),
                )
            })
            .clone()
    }

    /// The mechanism given this process's `/proc/self/cgroup` and `/proc/self/mountinfo`, and the delegated
    /// cgroup the host named (`CODEPILOT_CGROUP`), checking the directories they lead to.
    #[must_use]
    pub fn from_tables(proc_cgroup: &str, mountinfo: &str, named: Option<&Path>) -> Self {
        if let Some(dir) = named {
            return if dir.join("cgroup.controllers").is_file() && writable(dir) {
                Mechanism::CgroupV2 {
                    base: dir.to_path_buf(),
                }
            } else {
                Mechanism::Rlimits {
                    why: format!(
                        "CODEPILOT_CGROUP={} is not a cgroup v2 directory this process may write",
                        dir.display()
                    ),
                }
            };
        }
        let mounts = Mounts::parse(mountinfo);
        let own = |controller: &str| -> Option<&str> {
            proc_cgroup.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                list.split(',').any(|c| c == controller).then_some(path)
            })
        };
        if let (Some(mount), Some(path)) = (&mounts.v2, own("")) {
            let rel = path.trim_start_matches('/');
            let own_dir = mount.join(rel);
            let base = if rel.is_empty() {
                // The hierarchy's root as this process sees it: the real root, which may give controllers to
                // children while it holds processes, or a cgroup namespace's root (it has `cgroup.type`), which
                // holds this process and so cannot.
                Some(own_dir).filter(|d| !d.join("cgroup.type").exists())
            } else {
                own_dir
                    .parent()
                    .map(Path::to_path_buf)
                    .filter(|p| delegated(p))
            };
            if let Some(base) = base.filter(|b| writable(b) && !available(b).is_empty()) {
                return Mechanism::CgroupV2 { base };
            }
        }
        let v1 = |controller: &str| -> Option<PathBuf> {
            let mount = mounts
                .v1
                .iter()
                .find(|(names, _)| names.iter().any(|n| n == controller))?;
            let dir = mount.1.join(own(controller)?.trim_start_matches('/'));
            writable(&dir).then_some(dir)
        };
        let (pids, memory, cpu) = (v1("pids"), v1("memory"), v1("cpu"));
        if pids.is_some() || memory.is_some() {
            return Mechanism::CgroupV1 { pids, memory, cpu };
        }
        Mechanism::Rlimits {
            why: if mounts.v2.is_none() && mounts.v1.is_empty() {
                "no cgroup file system is mounted".to_owned()
            } else {
                "no cgroup is writable by this process (run the daemon with a delegated cgroup: \
                 docs/deploy.md)"
                    .to_owned()
            },
        }
    }

    /// One line for `codepilot sandbox check`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Mechanism::CgroupV2 { base } => {
                format!("cgroup v2 per session under {}", base.display())
            }
            Mechanism::CgroupV1 { pids, memory, cpu } => {
                let names: Vec<&str> = [("pids", pids), ("memory", memory), ("cpu", cpu)]
                    .into_iter()
                    .filter_map(|(n, d)| d.as_ref().map(|_| n))
                    .collect();
                format!("cgroup v1 per session ({})", names.join(", "))
            }
            Mechanism::Rlimits { why } => format!("rlimits only: {why}"),
        }
    }

    /// Whether the memory limit is enforced (only a cgroup can).
    #[must_use]
    pub fn limits_memory(&self) -> bool {
        matches!(
            self,
            Mechanism::CgroupV2 { .. }
                | Mechanism::CgroupV1 {
                    memory: Some(_),
                    ..
                }
        )
    }

    /// Whether the process limit counts a whole session (a cgroup), not each sandboxed shell.
    #[must_use]
    pub fn limits_processes(&self) -> bool {
        matches!(
            self,
            Mechanism::CgroupV2 { .. } | Mechanism::CgroupV1 { pids: Some(_), .. }
        )
    }
}

/// The cgroup file systems mounted here.
struct Mounts {
    v2: Option<PathBuf>,
    v1: Vec<(Vec<String>, PathBuf)>,
}

impl Mounts {
    /// From `/proc/self/mountinfo`: `id parent maj:min root mount-point options... - fstype source super-options`.
    fn parse(mountinfo: &str) -> Self {
        let mut mounts = Self {
            v2: None,
            v1: Vec::new(),
        };
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let (Some(point), Some(fstype)) = (left.split(' ').nth(4), right.split(' ').next())
            else {
                continue;
            };
            let point = PathBuf::from(point.replace("\\040", " "));
            match fstype {
                "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some(point),
                "cgroup" => {
                    let options = right.split(' ').nth(2).unwrap_or("");
                    mounts
                        .v1
                        .push((options.split(',').map(str::to_owned).collect(), point));
                }
                _ => {}
            }
        }
        mounts
    }
}

/// The controllers of `pids`, `memory` and `cpu` a v2 cgroup may give its children (its `cgroup.controllers`).
fn available(dir: &Path) -> Vec<&'static str> {
    let listed = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    ["pids", "memory", "cpu"]
        .into_iter()
        .filter(|c| listed.split_whitespace().any(|l| l == *c))
        .collect()
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// Whether systemd delegated this cgroup (it marks delegated cgroups with a `trusted.delegate` or
/// `user.delegate` extended attribute).
fn delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.delegate", c"user.delegate"].iter().any(|name| {
        // SAFETY: NUL-terminated strings; a zero-length buffer only asks for the size.
        unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
    })
}

/// What one session cgroup controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A v2 cgroup: everything.
    Unified,
    Pids,
    Memory,
    Cpu,
}

/// One cgroup directory of a session, alive while `lock` is held.
#[derive(Debug)]
struct Dir {
    role: Role,
    path: PathBuf,
    /// The controllers in force in a v2 cgroup (what the base could give of what the limits need).
    controllers: Vec<&'static str>,
    _lock: File,
}

/// A session's cgroups (one in v2; one per hierarchy in v1).
#[derive(Debug)]
pub(super) struct Group {
    dirs: Vec<Dir>,
}

impl Group {
    /// Makes the session's cgroups for `limits` with `mechanism`; `None` when it is the rlimit floor or nothing
    /// a cgroup limits is set.
    pub(super) fn create(
        mechanism: &Mechanism,
        limits: &Limits,
    ) -> Result<Option<Self>, SandboxError> {
        let wants_pids = limits.max_processes.is_some();
        let wants_memory = limits.max_memory_mb.is_some();
        let wants_cpu = limits.cpu_weight.is_some();
        let bases: Vec<(Role, &Path)> = match mechanism {
            Mechanism::Rlimits { .. } => Vec::new(),
            Mechanism::CgroupV2 { base } => {
                if wants_pids || wants_memory || wants_cpu {
                    vec![(Role::Unified, base.as_path())]
                } else {
                    Vec::new()
                }
            }
            Mechanism::CgroupV1 { pids, memory, cpu } => [
                (Role::Pids, pids.as_deref().filter(|_| wants_pids)),
                (Role::Memory, memory.as_deref().filter(|_| wants_memory)),
                (Role::Cpu, cpu.as_deref().filter(|_| wants_cpu)),
            ]
            .into_iter()
            .filter_map(|(role, base)| Some((role, base?)))
            .collect(),
        };
        if bases.is_empty() {
            return Ok(None);
        }
        let mut group = Self { dirs: Vec::new() };
        for (role, base) in bases {
            sweep_once(base);
            let controllers = if role == Role::Unified {
                enable_controllers(base, limits)?
            } else {
                Vec::new()
            };
            let (path, lock) = make_dir(base).map_err(|e| {
                SandboxError::Limits(format!("cannot make a cgroup in {}: {e}", base.display()))
            })?;
            group.dirs.push(Dir {
                role,
                path,
                controllers,
                _lock: lock,
            });
        }
        for dir in &group.dirs {
            dir.apply(limits)?;
        }
        Ok(Some(group))
    }

    pub(super) fn dirs(&self) -> Vec<&Path> {
        self.dirs.iter().map(|d| d.path.as_path()).collect()
    }

    pub(super) fn has_pids(&self) -> bool {
        self.dirs.iter().any(|d| match d.role {
            Role::Unified => d.controllers.contains(&"pids"),
            Role::Pids => true,
            Role::Memory | Role::Cpu => false,
        })
    }

    /// Processes (and threads) in the session now (`pids.current`; 0 without the pids controller).
    pub(super) fn processes(&self) -> u64 {
        self.dirs
            .iter()
            .find(|d| match d.role {
                Role::Unified => d.controllers.contains(&"pids"),
                Role::Pids => true,
                Role::Memory | Role::Cpu => false,
            })
            .map_or(0, |d| read_number(&d.path.join("pids.current")))
    }

    /// Each cgroup's `cgroup.procs`, open for writing, for a new shell to join.
    pub(super) fn open_procs(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.path.join("cgroup.procs"))
                    .map(OwnedFd::from)
            })
            .collect()
    }

    pub(super) fn counters(&self) -> Counters {
        let mut c = Counters::default();
        for dir in &self.dirs {
            match dir.role {
                Role::Unified => {
                    if dir.controllers.contains(&"pids") {
                        c.forks_refused = read_key(&dir.path.join("pids.events"), "max");
                    }
                    if dir.controllers.contains(&"memory") {
                        c.oom_kills = read_key(&dir.path.join("memory.events"), "oom_kill");
                    }
                }
                Role::Pids => c.forks_refused = read_key(&dir.path.join("pids.events"), "max"),
                Role::Memory => {
                    c.oom_kills = read_key(&dir.path.join("memory.oom_control"), "oom_kill")
                }
                Role::Cpu => {}
            }
        }
        c
    }
}

impl Drop for Group {
    /// Kills what is left and removes the cgroups. Normally they are empty by now (the terminals killed and reaped
    /// their shells) and go at once; processes just killed (a command's jobs) take a few milliseconds, waited for
    /// up to [`DROP_WAIT`]. What is still there then (a process stuck in the kernel) is left to a thread that waits
    /// for it, with the locks, so the caller (often an async task) never waits long; if the process exits first,
    /// the next start's sweep removes it.
    fn drop(&mut self) {
        let mut stuck = std::mem::take(&mut self.dirs);
        let started = std::time::Instant::now();
        loop {
            stuck.retain(|dir| {
                kill_all(&dir.path);
                remove_tree(&dir.path).is_err()
            });
            if stuck.is_empty() || started.elapsed() >= DROP_WAIT {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !stuck.is_empty() {
            let _ = std::thread::Builder::new()
                .name("codepilot-cgroup".to_owned())
                .spawn(move || {
                    for dir in &stuck {
                        let _ = remove(&dir.path);
                    }
                    drop(stuck);
                });
        }
    }
}

impl Dir {
    fn apply(&self, limits: &Limits) -> Result<(), SandboxError> {
        let set = |file: &str, value: String| -> Result<(), SandboxError> {
            std::fs::write(self.path.join(file), value.as_bytes()).map_err(|e| {
                SandboxError::Limits(format!(
                    "cannot set {} to {value}: {e}",
                    self.path.join(file).display()
                ))
            })
        };
        let set_if_present = |file: &str, value: String| -> Result<(), SandboxError> {
            if self.path.join(file).exists() {
                set(file, value)
            } else {
                Ok(())
            }
        };
        let memory = limits
            .max_memory_mb
            .map(|mb| mb.saturating_mul(1024 * 1024));
        match self.role {
            Role::Unified => {
                let on = |c: &str| self.controllers.contains(&c);
                if let (Some(n), true) = (limits.max_processes, on("pids")) {
                    set("pids.max", n.to_string())?;
                }
                if let (Some(bytes), true) = (memory, on("memory")) {
                    set("memory.max", bytes.to_string())?;
                    set_if_present("memory.swap.max", "0".to_owned())?;
                }
                if let (Some(w), true) = (limits.cpu_weight, on("cpu")) {
                    set("cpu.weight", w.to_string())?;
                }
            }
            Role::Pids => {
                if let Some(n) = limits.max_processes {
                    set("pids.max", n.to_string())?;
                }
            }
            Role::Memory => {
                if let Some(bytes) = memory {
                    set("memory.limit_in_bytes", bytes.to_string())?;
                    set_if_present("memory.memsw.limit_in_bytes", bytes.to_string())?;
                }
            }
            Role::Cpu => {
                if let Some(w) = limits.cpu_weight {
                    // v1 shares: 1024 is an ordinary share, as weight 100 is in v2.
                    set("cpu.shares", (u64::from(w) * 1024 / 100).max(2).to_string())?;
                }
            }
        }
        Ok(())
    }
}

/// Turns on, in a v2 base's `cgroup.subtree_control`, the controllers `limits` needs, of those the base has;
/// returns the ones in force. A limit whose controller the base lacks is not enforced by the cgroup.
fn enable_controllers(base: &Path, limits: &Limits) -> Result<Vec<&'static str>, SandboxError> {
    let file = base.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file).unwrap_or_default();
    let has = available(base);
    let wanted: Vec<&'static str> = [
        ("pids", limits.max_processes.is_some()),
        ("memory", limits.max_memory_mb.is_some()),
        ("cpu", limits.cpu_weight.is_some()),
    ]
    .into_iter()
    .filter(|(name, want)| *want && has.contains(name))
    .map(|(name, _)| name)
    .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|name| !enabled.split_whitespace().any(|e| e == **name))
        .map(|name| format!("+{name}"))
        .collect();
    if missing.is_empty() {
        return Ok(wanted);
    }
    match std::fs::write(&file, missing.join(" ")) {
        Ok(()) => Ok(wanted),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(SandboxError::Limits(format!(
            "cannot enable {} in {}: the cgroup holds processes itself (a delegated cgroup must not: run the \
             runtime in a subgroup, e.g. systemd's DelegateSubgroup=, see docs/deploy.md)",
            missing.join(" "),
            file.display()
        ))),
        Err(e) => Err(SandboxError::Limits(format!(
            "cannot enable {} in {}: {e}",
            missing.join(" "),
            file.display()
        ))),
    }
}

/// Makes `<base>/codepilot-<pid>-<hex>` and locks it. A sweeper of another process may take a fresh directory
/// for a dead one's between the `mkdir` and the lock; then the directory is gone or locked, and another name is
/// tried.
fn make_dir(base: &Path) -> io::Result<(PathBuf, File)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut last = io::Error::other("no attempt");
    for _ in 0..4 {
        let path = base.join(format!("{PREFIX}{}-{:08x}", std::process::id(), rand_u32()));
        std::fs::create_dir(&path)?;
        let attempt = (|| {
            let lock = File::open(&path)?;
            lock.try_lock().map_err(io::Error::from)?;
            if std::fs::metadata(&path)?.ino() != lock.metadata()?.ino() {
                return Err(io::Error::other("the directory was swept meanwhile"));
            }
            Ok(lock)
        })();
        match attempt {
            Ok(lock) => return Ok((path, lock)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: filling a local buffer of its own length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(bytes)
    } else {
        std::process::id()
            ^ std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())
    }
}

/// The number a single-value cgroup file holds (`pids.current`); 0 when unreadable.
fn read_number(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The number after `key` in a flat-keyed cgroup file (`max 3`, `oom_kill 1`); 0 when absent.
fn read_key(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Kills what runs in the cgroup at `path` and removes it, waiting up to a second for the processes to go.
fn remove(path: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for attempt in 0..40 {
        kill_all(path);
        match remove_tree(path) {
            Ok(()) => return Ok(()),
            Err(e) => last = Err(e),
        }
        std::thread::sleep(Duration::from_millis(if attempt < 10 { 5 } else { 25 }));
    }
    last
}

/// Removes the cgroup at `path` and the cgroups beneath it (a nested runtime's sessions), deepest first, killing
/// what runs in those beneath; fails while any still holds a process.
fn remove_tree(path: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_all(&entry.path());
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        Ok(()) | Err(_) => Ok(()),
    }
}

/// `SIGKILL` to every process in the cgroup (`cgroup.kill` where v2 has it).
fn kill_all(path: &Path) {
    use std::io::Write as _;
    let killed = std::fs::OpenOptions::new()
        .write(true)
        .open(path.join("cgroup.kill"))
        .and_then(|mut f| f.write_all(b"1"));
    if killed.is_ok() {
        return;
    }
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
    for pid in procs
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
    {
        kill_member(pid, &name);
    }
}

/// `SIGKILL` to `pid` if it is (still) in the cgroup called `name`: the process is pinned by a pidfd first, so a
/// pid reused since `cgroup.procs` was read is never signalled.
fn kill_member(pid: libc::pid_t, name: &str) {
    // SAFETY: pidfd_open takes a pid and flags; the descriptor it returns is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0_u32) };
    let Ok(fd) = libc::c_int::try_from(fd) else {
        return;
    };
    if fd < 0 {
        return;
    }
    let member = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|table| {
        table.lines().any(|line| {
            let path = line.rsplit(':').next().unwrap_or("");
            path.split('/').any(|part| part == name)
        })
    });
    // SAFETY: a signal through the pidfd opened above, which is then closed.
    unsafe {
        if member {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0_u32,
            );
        }
        libc::close(fd);
    }
}

/// Removes, once per base directory and process, the session cgroups dead runtimes left there (those whose lock
/// can be taken).
fn sweep_once(base: &Path) {
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if swept.iter().any(|b| b == base) {
            return;
        }
        swept.push(base.to_path_buf());
    }
    sweep(base);
}

/// Removes the session cgroups of dead runtimes beneath `base`; returns how many.
pub(super) fn sweep(base: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) || !entry.path().is_dir() {
            continue;
        }
        let Ok(lock) = File::open(entry.path()) else {
            continue;
        };
        if lock.try_lock().is_ok() && remove(&entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS_V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_gives_the_hierarchies() {
        let m = Mounts::parse(MOUNTS_V1);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1.len(), 2);
        assert_eq!(m.v1[1].0, vec!["rw".to_owned(), "pids".to_owned()]);
    }

    #[test]
    fn a_named_cgroup_that_is_not_one_falls_back_to_rlimits() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mechanism::from_tables("0::/\n", "", Some(dir.path()));
        assert!(
            matches!(&m, Mechanism::Rlimits { why } if why.contains("CODEPILOT_CGROUP")),
            "{m:?}"
        );
        std::fs::write(dir.path().join("cgroup.controllers"), "pids memory cpu\n").unwrap();
        let m = Mechanism::from_tables("0::/\n", "", Some(dir.path()));
        assert_eq!(
            m,
            Mechanism::CgroupV2 {
                base: dir.path().to_path_buf()
            }
        );
    }

    #[test]
    fn the_v2_root_is_used_but_not_a_namespace_root_that_holds_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let mountinfo = format!(
            "30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n",
            dir.path().display()
        );
        let m = Mechanism::from_tables("0::/\n", &mountinfo, None);
        assert_eq!(
            m,
            Mechanism::CgroupV2 {
                base: dir.path().to_path_buf()
            }
        );
        // A container's own cgroup (the root of its namespace) has `cgroup.type`, and holds the runtime.
        std::fs::write(dir.path().join("cgroup.type"), "domain\n").unwrap();
        let m = Mechanism::from_tables("0::/\n", &mountinfo, None);
        assert!(matches!(m, Mechanism::Rlimits { .. }), "{m:?}");
        std::fs::remove_file(dir.path().join("cgroup.type")).unwrap();
        // A non-root cgroup whose parent is not delegated is not ours to divide.
        std::fs::create_dir_all(dir.path().join("system.slice/x.service")).unwrap();
        let m = Mechanism::from_tables("0::/system.slice/x.service\n", &mountinfo, None);
        assert!(matches!(m, Mechanism::Rlimits { .. }), "{m:?}");
    }

    #[test]
    fn nothing_mounted_means_rlimits() {
        let m = Mechanism::from_tables("", "", None);
        assert_eq!(
            m,
            Mechanism::Rlimits {
                why: "no cgroup file system is mounted".to_owned()
            }
        );
    }

    #[test]
    fn flat_keyed_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.events");
        std::fs::write(&f, "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n").unwrap();
        assert_eq!(read_key(&f, "oom_kill"), 2);
        assert_eq!(read_key(&f, "max"), 12);
        assert_eq!(read_key(&f, "absent"), 0);
    }
}
