//! Finding and killing a shell's whole process tree (Linux `/proc`).

use std::collections::BTreeSet;
use std::collections::HashMap;

use rustix::process::Pid;
use rustix::process::Signal;

/// `(pid, ppid, pgrp, session)` of every readable process that has not died (a zombie waits only for its reaping,
/// and counting it would make a kill look unfinished).
fn processes() -> Vec<(i32, i32, i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // "pid (comm) state ppid pgrp session ..."; comm may contain spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split(' ');
        if matches!(fields.next(), Some("Z" | "X")) {
            return None;
        }
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        let session = fields.next()?.parse().ok()?;
        Some((pid, ppid, pgrp, session))
    })
    .collect()
}

/// Every process in `leader`'s session or descended from it (including `leader`).
#[must_use]
pub fn tree(leader: u32) -> BTreeSet<u32> {
    let Ok(leader) = i32::try_from(leader) else {
        return BTreeSet::new();
    };
    let procs = processes();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, ppid, _, _) in &procs {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found: BTreeSet<i32> = procs
        .iter()
        .filter(|p| p.3 == leader || p.2 == leader)
        .map(|p| p.0)
        .collect();
    let mut stack: Vec<i32> = found.iter().copied().chain([leader]).collect();
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if found.insert(child) {
                stack.push(child);
            }
        }
    }
    found
        .into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect()
}

/// Sends `SIGKILL` to the shell's whole tree (every process group and every process),
/// repeating a few times to catch processes forked meanwhile. Returns the pids signalled.
pub fn kill_tree(leader: u32) -> BTreeSet<u32> {
    let mut all = BTreeSet::new();
    for _ in 0..3 {
        let found = tree(leader);
        if found.is_empty() {
            break;
        }
        for &pid in &found {
            if let Some(pid) = to_pid(pid) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        all.extend(found);
    }
    all
}

/// Kills a sandboxed shell and everything it started without looking at any other process: the shell is PID 1 of
/// its own PID namespace (the only child of `leader`, which waits for it), and the kernel kills every process of a
/// namespace when its PID 1 dies; nothing inside can leave it. Returns the pids signalled (`leader` and the shell).
/// A scan of every process on the machine (`kill_tree`) costs a few milliseconds per thousand processes.
pub(crate) fn kill_namespace(leader: u32) -> BTreeSet<u32> {
    let mut killed = BTreeSet::new();
    // A kernel without CONFIG_PROC_CHILDREN has no such file: then the scan.
    let Ok(children) = std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
    else {
        return kill_tree(leader);
    };
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
    {
        if let Some(pid) = to_pid(child) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            killed.insert(child);
        }
    }
    if let Some(pid) = to_pid(leader) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        killed.insert(leader);
    }
    killed
}

/// The processes of a shell the runtime just started from `leader` (the process it started): the shell itself,
/// or, `sandboxed`, `leader` (which waits for the shell) and its children (the shell, PID 1 of its namespace).
pub(crate) fn shell_pids(leader: u32, sandboxed: bool) -> Vec<u32> {
    if !sandboxed {
        return vec![leader];
    }
    match std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children")) {
        Ok(children) => std::iter::once(leader)
            .chain(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            )
            .collect(),
        // A kernel without CONFIG_PROC_CHILDREN: the scan.
        Err(_) => tree(leader).into_iter().collect(),
    }
}

/// Stops the command a shell runs: `SIGKILL` to every process of the terminal but the shell (and, when
/// `sandboxed`, the process in between that waits for it: `leader`), and `SIGINT` to the shell, which ends a
/// command line it runs itself (a loop waiting to retry a fork).
pub(crate) fn stop_command(leader: u32, sandboxed: bool) {
    let Ok(leader_raw) = i32::try_from(leader) else {
        return;
    };
    let shell = if sandboxed {
        processes()
            .into_iter()
            .find(|p| p.1 == leader_raw)
            .and_then(|p| u32::try_from(p.0).ok())
    } else {
        Some(leader)
    };
    for _ in 0..3 {
        let others: Vec<u32> = tree(leader)
            .into_iter()
            .filter(|pid| *pid != leader && Some(*pid) != shell)
            .collect();
        if others.is_empty() {
            break;
        }
        for pid in others.into_iter().filter_map(to_pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
    if let Some(shell) = shell.and_then(to_pid) {
        let _ = rustix::process::kill_process(shell, Signal::INT);
    }
}

pub(crate) fn to_pid(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// True when `pid` exists and is not a zombie.
#[must_use]
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rfind(')')
        .and_then(|i| stat.get(i + 2..i + 3))
        .is_some_and(|state| state != "Z" && state != "X")
}
