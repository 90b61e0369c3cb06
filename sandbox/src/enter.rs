//! Entering the sandbox in a forked child: system calls only, no allocation (see [`crate::Plan::enter`]).

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::path::PathBuf;

use crate::Plan;
use crate::SandboxError;

/// Devices a shell needs to write to and control whatever the mode: its terminal, and the usual sinks and sources.
const DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// The Landlock ruleset for a shell that reads everywhere and writes beneath `write_roots` and the devices.
/// `None` when this kernel does not enforce Landlock.
pub(crate) fn landlock_ruleset(write_roots: &[PathBuf]) -> Result<Option<OwnedFd>, SandboxError> {
    use landlock::ABI;
    use landlock::Access;
    use landlock::AccessFs;
    use landlock::Ruleset;
    use landlock::RulesetAttr;
    use landlock::RulesetCreatedAttr;
    use landlock::path_beneath_rules;

    let abi = ABI::V5;
    let fail = |e: &dyn std::fmt::Display| SandboxError::Landlock(e.to_string());
    let existing = |paths: Vec<&Path>| -> Vec<PathBuf> {
        paths
            .into_iter()
            .filter(|p| p.exists())
            .map(Path::to_path_buf)
            .collect()
    };
    let writable = existing(
        write_roots
            .iter()
            .map(PathBuf::as_path)
            .chain(DEVICES.iter().map(Path::new))
            .collect(),
    );
    let ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(|e| fail(&e))?
        .add_rules(path_beneath_rules(&writable, AccessFs::from_all(abi)))
        .map_err(|e| fail(&e))?;
    Ok(ruleset.into())
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `bytes` to the file at `path` (a `/proc` control file).
fn write_file(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is closed below on every path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `bytes` is valid for its length; `fd` is open.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let err = io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    if written < 0 {
        return Err(err);
    }
    Ok(())
}

pub(crate) fn enter(plan: &Plan) -> io::Result<()> {
    let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    if !plan.network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: prctl and unshare only change this (single-threaded, forked) process. A host that made itself not
    // dumpable (to keep its memory from other processes) passes that on to its fork; then /proc/self belongs to
    // root and the maps below cannot be written. `exec` would make the shell dumpable again anyway.
    unsafe {
        check(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0))?;
        check(libc::unshare(flags))?;
    }
    match write_file(c"/proc/self/setgroups", b"deny") {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Ok(()) | Err(_) => {}
    }
    write_file(c"/proc/self/uid_map", plan.uid_map.as_bytes())?;
    write_file(c"/proc/self/gid_map", plan.gid_map.as_bytes())?;
    // The shell must be a child to be in the new PID namespace (it becomes its PID 1). A raw clone, not
    // fork(): no atfork handlers run in this restricted context.
    // SAFETY: this process is a single-threaded fork child; both sides go on with system calls only.
    let runtime = unsafe { libc::getppid() };
    // Opened now, while `/proc` is still the host's: the shell mounts its own over it in this mount namespace.
    // SAFETY: a NUL-terminated literal path; the descriptor is close-on-exec, so the shell never has it.
    let maps = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    match libc::pid_t::try_from(pid).unwrap_or(-1) {
        -1 => Err(io::Error::last_os_error()),
        0 => inside(plan),
        child => wait_and_exit(child, runtime, maps),
    }
}

/// Gives back the memory this process inherited from the runtime: it waits for the shell for as long as the shell
/// lives, and would otherwise keep a copy of every page the runtime changes afterwards (megabytes per shell).
///
/// Signal handlers go back to their defaults first (the runtime's would run on the memory given back), then every
/// private anonymous writable mapping is dropped (`MADV_DONTNEED`) except the one holding this thread's stack and
/// the one holding its thread control block. What runs afterwards uses only the stack, that block (errno) and
/// system calls. x86-64 only (where the thread pointer is read with `arch_prctl`); elsewhere nothing is dropped.
fn shed_inherited_memory(maps: libc::c_int) {
    if maps < 0 {
        return;
    }
    // SAFETY: resetting dispositions of this single-threaded process; a zeroed sigaction is SIG_DFL.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &raw const dfl, std::ptr::null_mut());
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let marker = 0u8;
        let stack = std::ptr::addr_of!(marker) as usize;
        let mut tp: libc::c_ulong = 0;
        // SAFETY: ARCH_GET_FS writes the thread pointer into `tp`.
        let got = unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1003, &raw mut tp) };
        if got != 0 {
            return;
        }
        let keep = [stack, usize::try_from(tp).unwrap_or(0)];
        let mut buf = [0u8; 8192];
        let mut line = [0u8; 512];
        let mut len = 0usize;
        loop {
            // SAFETY: reading into a buffer of its own length from a descriptor this process opened.
            let n = unsafe { libc::read(maps, buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    drop_mapping(&line[..len], &keep);
                    len = 0;
                } else if len < line.len() {
                    line[len] = b;
                    len += 1;
                }
            }
        }
    }
}

/// `MADV_DONTNEED` on the mapping described by one `/proc/self/maps` line, if it is private, anonymous and
/// writable and holds none of the addresses in `keep`.
#[cfg(target_arch = "x86_64")]
fn drop_mapping(line: &[u8], keep: &[usize]) {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (Some(range), Some(perms), Some(_offset), Some(_dev), Some(inode)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return;
    };
    let path = fields.next().unwrap_or(b"");
    let anonymous = inode == b"0" && (path.is_empty() || path == b"[heap]");
    if perms != b"rw-p" || !anonymous {
        return;
    }
    let mut bounds = range.split(|&b| b == b'-');
    let (Some(start), Some(end)) = (bounds.next().and_then(hex), bounds.next().and_then(hex))
    else {
        return;
    };
    if end <= start || keep.iter().any(|&a| (start..end).contains(&a)) {
        return;
    }
    // SAFETY: the range is one of this process's own mappings; nothing that runs from here on reads it.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

#[cfg(target_arch = "x86_64")]
fn hex(digits: &[u8]) -> Option<usize> {
    let mut value = 0usize;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        value = value.checked_mul(16)?.checked_add(usize::from(v))?;
    }
    Some(value)
}

/// The process between the runtime and the sandboxed shell: it waits for the shell and exits with its status.
fn wait_and_exit(child: libc::pid_t, runtime: libc::pid_t, maps: libc::c_int) -> ! {
    // SAFETY: plain system calls on this process. Not dumpable again (it was made dumpable to write the maps):
    // this process never execs, so what it still holds of the runtime's memory no other process may read.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    shed_inherited_memory(maps);
    // SAFETY: closing every descriptor but the standard streams (the terminal) matters: the spawner learns that
    // `exec` happened when its pipe closes, and this process never execs.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3_u32, u32::MAX, 0_u32);
    }
    watch_runtime(child, runtime);
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(child, &raw mut status, 0) };
        if r == child {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            // SAFETY: ends this process without running anything of the parent's (no destructors, no atexit).
            unsafe { libc::_exit(code) };
        }
        if r == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
    }
}

/// Returns once `child` has ended, having killed it if the runtime died first. The runtime *process* is watched
/// through a pidfd: `PR_SET_PDEATHSIG` would fire when the spawning *thread* ends, which a host may well let happen
/// while the runtime lives on. Without pidfds (Linux < 5.3), falls back to `PR_SET_PDEATHSIG`.
fn watch_runtime(child: libc::pid_t, runtime: libc::pid_t) {
    // SAFETY: plain system calls; the descriptors are this process's own.
    unsafe {
        let runtime_fd = libc::syscall(libc::SYS_pidfd_open, runtime, 0_u32);
        let child_fd = libc::syscall(libc::SYS_pidfd_open, child, 0_u32);
        let (Ok(runtime_fd), Ok(child_fd)) = (
            libc::c_int::try_from(runtime_fd),
            libc::c_int::try_from(child_fd),
        ) else {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            return;
        };
        if runtime_fd < 0 || child_fd < 0 || libc::getppid() != runtime {
            // No pidfds, or the runtime is already gone (this process was re-parented).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != runtime {
                libc::kill(child, libc::SIGKILL);
            }
            return;
        }
        let mut fds = [
            libc::pollfd {
                fd: runtime_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: child_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            let n = libc::poll(fds.as_mut_ptr(), 2, -1);
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                libc::kill(child, libc::SIGKILL);
                return;
            }
        }
    }
}

/// PID 1 of the new namespace, before `exec`: its own `/proc`, loopback, and the Landlock rules.
fn inside(plan: &Plan) -> io::Result<()> {
    // SAFETY: plain system calls on this process, with NUL-terminated literals.
    unsafe {
        // When the process in between dies (and so the runtime), the whole namespace goes.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ))?;
    }
    for dir in &plan.hidden {
        // SAFETY: a NUL-terminated path prepared in the parent; mounting in our own mount namespace.
        check(unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                c"size=4k,mode=000".as_ptr().cast(),
            )
        })?;
    }
    if !plan.network {
        loopback_up()?;
    }
    if let Some(n) = plan.process_limit {
        crate::resources::set_limit(libc::RLIMIT_NPROC, n)?;
    }
    if let Some(ruleset) = &plan.ruleset {
        // SAFETY: plain system calls; the ruleset descriptor is open for the plan's lifetime.
        unsafe {
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            let r = libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0_u32);
            if r == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Brings `lo` up in a fresh network namespace, so servers the agent starts on localhost still work.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a socket for ioctls, closed on every path; `ifreq` is plain data.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = libc::c_char::from_ne_bytes([*src]);
        }
        let mut result = check(libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut ifr));
        if result.is_ok() {
            ifr.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
            result = check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw const ifr));
        }
        libc::close(fd);
        result
    }
}
