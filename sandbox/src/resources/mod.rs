//! Resource limits per session (SPEC §24): how many processes, how much memory, CPU share, disk and open files
//! everything one session's shells start may use.
//!
//! Mechanism, strongest first, as [`Mechanism::detect`] finds it and `codepilot sandbox check` reports it:
//! - **cgroup v2**: a cgroup per session (`pids.max`, `memory.max` with `memory.swap.max` 0, `cpu.weight`) under a
//!   delegated subtree: the one `CODEPILOT_CGROUP` names, the parent of the runtime's own cgroup when systemd
//!   delegated it (`Delegate=yes` with `DelegateSubgroup=`), or the root of a private cgroup namespace.
//! - **cgroup v1**: the same per session in the `pids`, `memory` (with `memory.memsw` where swap is accounted) and
//!   `cpu` hierarchies, beneath the runtime's own cgroup in each, where they are writable.
//! - **rlimits** as the floor: `RLIMIT_NOFILE` and `RLIMIT_FSIZE` always; `RLIMIT_NPROC` only inside a sandboxed
//!   shell's user namespace, where (Linux 5.14 and later) it counts that shell's processes and no one else's; uid 0
//!   is exempt from it.
//!
//! Disk is not something a cgroup limits: the work directory's size is measured (a bounded scan, repeated while a
//! command runs) and writes are stopped at the cap; `RLIMIT_FSIZE` stops any single file at the cap meanwhile.
//!
//! A session's cgroups live while its [`SessionLimits`] does; dropping it kills what is left in them and removes
//! them. A runtime killed outright leaves them behind; the next runtime's first session removes those of dead
//! runtimes (a cgroup is alive while its creator holds a `flock` on its directory).

mod cgroup;
mod disk;

use std::io;
use std::os::fd::AsRawFd as _;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

pub use cgroup::Mechanism;

use crate::SandboxError;

/// `runtime.resources`: what one session's shells may use together. `None` leaves that resource unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Processes (and threads) alive at once.
    pub max_processes: Option<u32>,
    /// Memory in MiB, swap included (a process over it is killed).
    pub max_memory_mb: Option<u64>,
    /// CPU share against other sessions, 1 to 10000 (cgroup v2 `cpu.weight`; 100 is an ordinary share).
    pub cpu_weight: Option<u32>,
    /// Size of the work directory in MiB (and of any one file written).
    pub max_disk_mb: Option<u64>,
    /// Open files per process.
    pub max_open_files: Option<u64>,
}

impl Limits {
    /// The defaults: 512 processes and half the machine's memory; CPU, disk and open files as the host has them.
    #[must_use]
    pub fn defaults() -> Self {
        Self {
            max_processes: Some(512),
            max_memory_mb: machine_memory_mb().map(|mb| (mb / 2).max(64)),
            ..Self::default()
        }
    }

    /// Whether nothing is limited.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The machine's memory in MiB (`MemTotal` of `/proc/meminfo`).
fn machine_memory_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Which limit a command ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `max_processes`: a fork was refused.
    Processes,
    /// `max_memory_mb`: a process was killed for memory.
    Memory,
    /// `max_disk_mb`: the work directory (or one file) reached the cap.
    Disk,
    /// `max_open_files`: a process could open no more files.
    OpenFiles,
}

impl LimitKind {
    /// The name in events and the agent file (`processes`, `memory`, `disk`, `open_files`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Processes => "processes",
            LimitKind::Memory => "memory",
            LimitKind::Disk => "disk",
            LimitKind::OpenFiles => "open_files",
        }
    }
}

/// A limit a command ran into: which, its value (a count, or MiB), and the line the model reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitHit {
    /// Which limit.
    pub kind: LimitKind,
    /// Its value: processes or open files as a count, memory and disk in MiB.
    pub limit: u64,
    /// What happened, for the model and the user, e.g. `[killed: memory limit 256 MiB reached]`.
    pub message: String,
}

impl LimitHit {
    /// A refused fork; `stopped` when the runtime stopped the command for it.
    fn processes(limit: u32, stopped: bool) -> Self {
        Self {
            kind: LimitKind::Processes,
            limit: u64::from(limit),
            message: if stopped {
                format!(
                    "[stopped: process limit {limit} reached (runtime.resources.max_processes): a fork was refused, \
                     so the command's processes were killed; start fewer at once]"
                )
            } else {
                format!(
                    "[process limit {limit} reached (runtime.resources.max_processes): a fork was refused; start \
                     fewer processes at once]"
                )
            },
        }
    }

    fn memory(limit_mb: u64) -> Self {
        Self {
            kind: LimitKind::Memory,
            limit: limit_mb,
            message: format!(
                "[killed: memory limit {limit_mb} MiB reached (runtime.resources.max_memory_mb); use less memory at \
                 once]"
            ),
        }
    }

    /// The work directory over the cap.
    #[must_use]
    pub fn disk(limit_mb: u64, used_bytes: u64) -> Self {
        Self {
            kind: LimitKind::Disk,
            limit: limit_mb,
            message: format!(
                "[stopped: disk limit {limit_mb} MiB reached (runtime.resources.max_disk_mb): the work directory \
                 holds {} MiB; delete files to go on]",
                used_bytes.div_ceil(1024 * 1024)
            ),
        }
    }

    /// A write that would take the work directory over the cap.
    #[must_use]
    pub fn disk_refused(limit_mb: u64, used_bytes: u64, adding: u64) -> Self {
        let mib = |b: u64| b.div_ceil(1024 * 1024);
        Self {
            kind: LimitKind::Disk,
            limit: limit_mb,
            message: format!(
                "[refused: disk limit {limit_mb} MiB (runtime.resources.max_disk_mb): the work directory holds {} MiB \
                 and this write adds {} MiB; delete files to go on]",
                mib(used_bytes),
                mib(adding)
            ),
        }
    }

    fn file_size(limit_mb: u64) -> Self {
        Self {
            kind: LimitKind::Disk,
            limit: limit_mb,
            message: format!(
                "[killed: file size limit {limit_mb} MiB reached (runtime.resources.max_disk_mb); write less]"
            ),
        }
    }

    fn open_files(limit: u64) -> Self {
        Self {
            kind: LimitKind::OpenFiles,
            limit,
            message: format!(
                "[open files limit {limit} reached (runtime.resources.max_open_files): close files or open fewer at \
                 once]"
            ),
        }
    }
}

/// Event counters of a session's cgroups, compared before and after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Forks refused for the process limit.
    pub forks_refused: u64,
    /// Processes killed for the memory limit.
    pub oom_kills: u64,
    /// Bytes in the work directory at the last measure (with `max_disk_mb`).
    pub disk_used: u64,
}

/// The limits of one session, in force: its cgroups (if this host has them) and its disk watch. Build one per
/// session, before its shells start; dropping it kills whatever still runs in its cgroups and removes them.
#[derive(Debug)]
pub struct SessionLimits {
    limits: Limits,
    group: Option<cgroup::Group>,
    disk: Option<disk::Disk>,
    mechanism: Mechanism,
}

impl SessionLimits {
    /// Puts `limits` in force for a session working in `work_dir`, with the strongest mechanism this host has.
    ///
    /// # Errors
    /// [`SandboxError::Limits`] when a cgroup could be made but not set up (an invalid value, a controller that
    /// refuses it).
    pub fn new(limits: Limits, work_dir: &Path) -> Result<Arc<Self>, SandboxError> {
        Self::with_mechanism(limits, work_dir, Mechanism::detect())
    }

    /// As [`new`](Self::new), with the mechanism given (tests use a fake cgroup tree this way).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_mechanism(
        limits: Limits,
        work_dir: &Path,
        mechanism: Mechanism,
    ) -> Result<Arc<Self>, SandboxError> {
        if let Some(w) = limits.cpu_weight
            && !(1..=10_000).contains(&w)
        {
            return Err(SandboxError::Limits(format!(
                "runtime.resources.cpu_weight {w} is out of range; use 1 to 10000 (100 is an ordinary share)"
            )));
        }
        let group = cgroup::Group::create(&mechanism, &limits)?;
        let disk = limits
            .max_disk_mb
            .map(|mb| disk::Disk::new(work_dir, mb.saturating_mul(1024 * 1024)));
        Ok(Arc::new(Self {
            limits,
            group,
            disk,
            mechanism,
        }))
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How they are enforced.
    #[must_use]
    pub fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// The session's cgroup directories (none with the rlimit floor).
    #[must_use]
    pub fn cgroup_dirs(&self) -> Vec<&Path> {
        self.group
            .as_ref()
            .map(cgroup::Group::dirs)
            .unwrap_or_default()
    }

    /// Whether the process count is enforced for the whole session (a cgroup), rather than per shell.
    fn session_wide_processes(&self) -> bool {
        self.group.as_ref().is_some_and(cgroup::Group::has_pids)
    }

    /// What a new shell must do before `exec` to come under these limits: set the rlimits. It joins the cgroups
    /// afterwards, from the runtime ([`SessionLimits::membership`]).
    #[must_use]
    pub fn join(&self) -> Join {
        Join {
            nofile: self.limits.max_open_files,
            fsize: self
                .limits
                .max_disk_mb
                .map(|mb| mb.saturating_mul(1024 * 1024)),
        }
    }

    /// The session's cgroups, ready to take a new shell ([`Membership::attach`]); `None` without cgroups.
    ///
    /// # Errors
    /// When a cgroup's `cgroup.procs` cannot be opened.
    pub fn membership(&self) -> io::Result<Option<Membership>> {
        self.group
            .as_ref()
            .map(|group| group.open_procs().map(|procs| Membership { procs }))
            .transpose()
    }

    /// The `RLIMIT_NPROC` a sandboxed shell sets in its own user namespace, when no cgroup counts processes.
    #[must_use]
    pub fn shell_process_limit(&self) -> Option<u64> {
        if self.session_wide_processes() {
            None
        } else {
            self.limits.max_processes.map(u64::from)
        }
    }

    /// The cgroups' event counters now (zero with the rlimit floor).
    #[must_use]
    pub fn counters(&self) -> Counters {
        let mut c = self
            .group
            .as_ref()
            .map(cgroup::Group::counters)
            .unwrap_or_default();
        c.disk_used = self.disk.as_ref().map_or(0, disk::Disk::cached);
        c
    }

    /// The limit a command ran into, if any, from the counters taken when it started (`before`) and now, its exit
    /// code and its output. Memory: a process of the session was killed for memory and the command ended with
    /// `SIGKILL`. Processes: the session refused a fork while it ran (the limit is the session's: the command
    /// may have been refused a fork another command's processes took). Disk: the work directory grew past the cap
    /// (measured again if the last measure is old enough: see [`disk`]), or a file reached it (`SIGXFSZ`). The
    /// rlimits count nothing: a failing command's shell error names them ("Too many open files", "fork:
    /// Resource temporarily unavailable").
    #[must_use]
    pub fn hit_since(
        &self,
        before: Counters,
        exit_code: Option<i32>,
        output: &str,
    ) -> Option<LimitHit> {
        self.settle(before, exit_code, output).0
    }

    /// [`hit_since`](Self::hit_since), and the counters as they are afterwards: the next command of the same
    /// terminal starts from them, so a command costs two reads of the cgroup's counters, not four.
    #[must_use]
    pub fn settle(
        &self,
        before: Counters,
        exit_code: Option<i32>,
        output: &str,
    ) -> (Option<LimitHit>, Counters) {
        let mut now = self.counters();
        let hit = self.hit_between(before, now, exit_code, output);
        now.disk_used = self.disk.as_ref().map_or(0, disk::Disk::cached);
        (hit, now)
    }

    fn hit_between(
        &self,
        before: Counters,
        now: Counters,
        exit_code: Option<i32>,
        output: &str,
    ) -> Option<LimitHit> {
        let failed = exit_code.is_some_and(|c| c != 0);
        if let (Some(mb), true) = (
            self.limits.max_memory_mb,
            now.oom_kills > before.oom_kills && exit_code == Some(128 + libc::SIGKILL),
        ) {
            return Some(LimitHit::memory(mb));
        }
        if let (Some(n), true) = (
            self.limits.max_processes,
            now.forks_refused > before.forks_refused,
        ) {
            return Some(LimitHit::processes(n, false));
        }
        if let (Some(mb), Some(disk)) = (self.limits.max_disk_mb, &self.disk) {
            if let Some(used) = disk.measure_if_due(true)
                && used > before.disk_used
            {
                return Some(LimitHit::disk(mb, used));
            }
            if exit_code == Some(128 + libc::SIGXFSZ)
                || (failed && output.contains("File size limit exceeded"))
            {
                return Some(LimitHit::file_size(mb));
            }
        }
        if let (Some(n), true) = (self.limits.max_open_files, failed)
            && output.contains("Too many open files")
        {
            return Some(LimitHit::open_files(n));
        }
        if let (Some(n), false, true) = (
            self.limits.max_processes,
            self.session_wide_processes(),
            failed,
        ) && output.contains("fork: Resource temporarily unavailable")
        {
            return Some(LimitHit::processes(n, false));
        }
        None
    }

    /// Whether [`hit_since`](Self::hit_since) is quick enough for an async thread: no disk cap, or the last
    /// measure of the work directory took under a millisecond.
    #[must_use]
    pub fn quick(&self) -> bool {
        self.disk.as_ref().is_none_or(|d| {
            d.last_took()
                .is_some_and(|t| t < std::time::Duration::from_millis(1))
        })
    }

    /// While a command runs: the limit that means it must be stopped now, if it was reached since `before`.
    ///
    /// The process limit stops it (the shell would otherwise retry each refused fork for 15 s): with a cgroup, when
    /// the session refused a fork and the command's terminal holds at least half of the session's processes
    /// (`own_processes` counts them, asked only then: another terminal's runaway is not this command's doing);
    /// with the rlimits, which count each shell's processes, when the shell said it retries a refused fork
    /// (`fork_retry`). The disk cap stops it if the work directory grew past the cap since it started (a command
    /// that frees space is left alone); the work directory is measured when its last measure is old enough (see
    /// [`disk`]).
    #[must_use]
    pub fn must_stop(
        &self,
        before: Counters,
        fork_retry: bool,
        own_processes: impl FnOnce() -> u64,
    ) -> Option<LimitHit> {
        if let Some(n) = self.limits.max_processes {
            let refused = match &self.group {
                Some(group) if group.has_pids() => {
                    group.counters().forks_refused > before.forks_refused
                        && own_processes() * 2 >= group.processes()
                }
                Some(_) | None => fork_retry,
            };
            if refused {
                return Some(LimitHit::processes(n, true));
            }
        }
        let disk = self.disk.as_ref()?;
        let used = disk.measure_if_due(false)?;
        (used > before.disk_used).then(|| LimitHit::disk(disk.cap_mb(), used))
    }

    /// Whether `adding` more bytes may be written to the work directory (the file tools ask before writing).
    ///
    /// # Errors
    /// The [`LimitHit`] to show when the work directory is, or would be, over `max_disk_mb`.
    pub fn check_write(&self, adding: u64) -> Result<(), LimitHit> {
        match &self.disk {
            Some(disk) => disk.check(adding),
            None => Ok(()),
        }
    }
}

/// What a new shell does before `exec` to come under its session's limits ([`SessionLimits::join`]): system
/// calls only, so it can run in `pre_exec`.
#[derive(Debug)]
pub struct Join {
    nofile: Option<u64>,
    fsize: Option<u64>,
}

impl Join {
    /// Sets the calling process's file size limit. Call it in the forked child before `exec`.
    ///
    /// # Errors
    /// When the limit cannot be set.
    pub fn enter(&self) -> io::Result<()> {
        match self.fsize {
            Some(n) => set_limit(libc::RLIMIT_FSIZE, n),
            None => Ok(()),
        }
    }

    /// Sets the open files limit. Call it last before `exec` (after [`crate::Plan::enter`]): the descriptors the
    /// runtime's fork inherits, closed only at `exec`, could otherwise take every number below a low limit.
    ///
    /// # Errors
    /// When the limit cannot be set.
    pub fn limit_files(&self) -> io::Result<()> {
        match self.nofile {
            Some(n) => set_limit(libc::RLIMIT_NOFILE, n),
            None => Ok(()),
        }
    }
}

/// The session's cgroups, open for a new shell to join ([`SessionLimits::membership`]).
///
/// The runtime moves a shell in after starting it, before the shell's first input, rather than the shell joining
/// itself before `exec`: moving a process between cgroups takes the kernel's cgroup-wide threadgroup lock for
/// writing, which waits for an RCU grace period (~10 ms measured on cgroup v1) — on the start of every session,
/// while a run that never types into its shell needs no join at all. Until its first input the shell only starts
/// and waits at its prompt; what it then runs, and everything that starts, is inside.
#[derive(Debug)]
pub struct Membership {
    procs: Vec<OwnedFd>,
}

impl Membership {
    /// Moves each of `pids` into every one of the session's cgroups. Blocks for the kernel's grace period.
    ///
    /// # Errors
    /// The first write to a `cgroup.procs` that failed.
    pub fn attach(&self, pids: &[u32]) -> io::Result<()> {
        for fd in &self.procs {
            for pid in pids {
                let text = pid.to_string();
                // SAFETY: writing `text`'s bytes, which outlive the call, to a descriptor this value holds open.
                let n = unsafe { libc::write(fd.as_raw_fd(), text.as_ptr().cast(), text.len()) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// Sets both the soft and the hard limit of `resource` to `value`, capped at the current hard limit (a process may
/// not raise that).
pub(crate) fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process with a valid struct.
    unsafe {
        if libc::getrlimit(resource, &raw mut current) != 0 {
            return Err(io::Error::last_os_error());
        }
        let wanted = libc::rlimit {
            rlim_cur: value.min(current.rlim_max),
            rlim_max: value.min(current.rlim_max),
        };
        if libc::setrlimit(resource, &raw const wanted) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_processes: Some(64),
            max_memory_mb: Some(256),
            cpu_weight: Some(50),
            max_disk_mb: None,
            max_open_files: Some(128),
        }
    }

    /// A cgroup v2 tree as plain files: the session cgroup, its limits and its counters are files like the
    /// kernel's.
    #[test]
    fn a_v2_session_cgroup_is_made_limited_counted_and_removed() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(base.path().join("cgroup.subtree_control"), "memory\n").unwrap();
        let mechanism = Mechanism::CgroupV2 {
            base: base.path().to_path_buf(),
        };
        let work = tempfile::tempdir().unwrap();
        let session = SessionLimits::with_mechanism(limits(), work.path(), mechanism).unwrap();
        // Controllers the base lacked are enabled (the kernel adds them to what is there).
        assert_eq!(
            std::fs::read_to_string(base.path().join("cgroup.subtree_control")).unwrap(),
            "+pids +cpu"
        );
        let dirs = session.cgroup_dirs();
        assert_eq!(dirs.len(), 1);
        let dir = dirs[0].to_path_buf();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("codepilot-{}-", std::process::id())),
            "{name}"
        );
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("cpu.weight"), "50");
        assert!(
            !dir.join("memory.swap.max").exists(),
            "written only where swap is accounted"
        );
        assert_eq!(
            session.shell_process_limit(),
            None,
            "the cgroup counts processes"
        );

        let before = session.counters();
        std::fs::write(dir.join("pids.events"), "max 3\n").unwrap();
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(
            session.counters(),
            Counters {
                forks_refused: 3,
                oom_kills: 1,
                disk_used: 0,
            }
        );
        let hit = session.hit_since(before, Some(137), "Killed").unwrap();
        assert_eq!((hit.kind, hit.limit), (LimitKind::Memory, 256));
        assert_eq!(
            hit.message,
            "[killed: memory limit 256 MiB reached (runtime.resources.max_memory_mb); use less memory at once]"
        );
        let stop = session.must_stop(before, false, || 1).unwrap();
        assert_eq!((stop.kind, stop.limit), (LimitKind::Processes, 64));

        // Membership opens the cgroup's `cgroup.procs`.
        assert!(
            session.membership().is_err(),
            "no cgroup.procs yet in the fake tree"
        );
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        assert!(session.membership().unwrap().is_some());

        // The kernel removes a cgroup's files with it; the fake tree's go first.
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        drop(session);
        assert!(!dir.exists());
    }

    #[test]
    fn a_limit_whose_controller_the_v2_base_lacks_is_left_to_the_host() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let work = tempfile::tempdir().unwrap();
        let session = SessionLimits::with_mechanism(
            limits(),
            work.path(),
            Mechanism::CgroupV2 {
                base: base.path().to_path_buf(),
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(base.path().join("cgroup.subtree_control")).unwrap(),
            "+pids +memory"
        );
        let dir = session.cgroup_dirs()[0].to_path_buf();
        assert!(dir.join("pids.max").exists() && !dir.join("cpu.weight").exists());
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }

    #[test]
    fn a_disk_hit_is_a_command_that_grew_the_work_directory_past_the_cap() {
        let work = tempfile::tempdir().unwrap();
        let session = SessionLimits::with_mechanism(
            Limits {
                max_disk_mb: Some(1),
                ..Limits::default()
            },
            work.path(),
            Mechanism::Rlimits { why: "test".into() },
        )
        .unwrap();
        let start = session.counters();
        std::fs::write(work.path().join("big"), vec![1u8; 2 << 20]).unwrap();
        let hit = session.hit_since(start, Some(0), "").unwrap();
        assert_eq!((hit.kind, hit.limit), (LimitKind::Disk, 1));
        // Over the cap already: a command that frees space, or adds nothing, is not stopped nor named.
        let over = session.counters();
        assert!(session.must_stop(over, false, || 1).is_none());
        assert!(session.hit_since(over, Some(0), "").is_none());
        std::fs::remove_file(work.path().join("big")).unwrap();
        assert!(session.hit_since(over, Some(0), "").is_none());
    }

    /// On a host whose cgroups this process may write (CI runs as root on cgroup v1; elsewhere the CLI's limits
    /// tests say what is missing): a process left in a session's cgroup is killed when the session's limits are
    /// dropped, and the cgroup goes.
    #[test]
    fn dropping_the_limits_kills_what_is_left_in_the_cgroup() {
        if matches!(Mechanism::detect(), Mechanism::Rlimits { .. }) {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let session = SessionLimits::new(
            Limits {
                max_processes: Some(16),
                ..Limits::default()
            },
            work.path(),
        )
        .unwrap();
        let dirs: Vec<std::path::PathBuf> = session
            .cgroup_dirs()
            .iter()
            .map(|d| d.to_path_buf())
            .collect();
        let membership = session.membership().unwrap().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        membership.attach(&[child.id()]).unwrap();
        assert!(
            std::fs::read_to_string(dirs[0].join("cgroup.procs"))
                .unwrap()
                .contains(&child.id().to_string())
        );
        drop(session);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    }

    #[test]
    fn the_sweep_removes_only_cgroups_nobody_holds() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("cgroup.controllers"), "pids\n").unwrap();
        let dead = base.path().join("codepilot-1-00000000");
        std::fs::create_dir(&dead).unwrap();
        let other = base.path().join("system.slice");
        std::fs::create_dir(&other).unwrap();
        let work = tempfile::tempdir().unwrap();
        let live = SessionLimits::with_mechanism(
            Limits {
                max_processes: Some(8),
                ..Limits::default()
            },
            work.path(),
            Mechanism::CgroupV2 {
                base: base.path().to_path_buf(),
            },
        )
        .unwrap();
        assert!(
            !dead.exists(),
            "the first session of a process sweeps its base"
        );
        std::fs::create_dir(&dead).unwrap();
        assert_eq!(cgroup::sweep(base.path()), 1);
        assert!(!dead.exists());
        assert!(other.exists());
        assert!(live.cgroup_dirs()[0].exists(), "a held cgroup stays");
    }

    #[test]
    fn rlimits_name_the_limit_from_the_exit_and_the_output() {
        let work = tempfile::tempdir().unwrap();
        let session = SessionLimits::with_mechanism(
            Limits {
                max_processes: Some(32),
                max_disk_mb: Some(50),
                max_open_files: Some(40),
                ..Limits::default()
            },
            work.path(),
            Mechanism::Rlimits { why: "test".into() },
        )
        .unwrap();
        assert_eq!(session.shell_process_limit(), Some(32));
        let hit = session.must_stop(session.counters(), true, || 0).unwrap();
        assert_eq!(hit.kind, LimitKind::Processes);
        assert!(
            hit.message
                .starts_with("[stopped: process limit 32 reached"),
            "{}",
            hit.message
        );
        assert!(session.must_stop(session.counters(), false, || 0).is_none());
        let c = session.counters();
        let kind = |code, out: &str| {
            session
                .hit_since(c, Some(code), out)
                .map(|h| (h.kind, h.limit))
        };
        assert_eq!(
            kind(153, "File size limit exceeded"),
            Some((LimitKind::Disk, 50))
        );
        assert_eq!(
            kind(1, "OSError: [Errno 24] Too many open files"),
            Some((LimitKind::OpenFiles, 40))
        );
        assert_eq!(
            kind(254, "bash: fork: Resource temporarily unavailable"),
            Some((LimitKind::Processes, 32))
        );
        assert_eq!(kind(0, "fine"), None);
    }

    #[test]
    fn an_out_of_range_cpu_weight_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let e = SessionLimits::with_mechanism(
            Limits {
                cpu_weight: Some(0),
                ..Limits::default()
            },
            work.path(),
            Mechanism::Rlimits { why: "test".into() },
        )
        .unwrap_err();
        assert!(e.to_string().contains("1 to 10000"), "{e}");
    }
}
