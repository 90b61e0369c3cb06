//! What this machine enforces (`codepilot sandbox check`).

use std::sync::OnceLock;

use crate::Mode;
use crate::Plan;
use crate::Policy;
use crate::resources::Mechanism;

/// What the kernel lets the sandbox enforce here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// Whether a shell can get user, PID, mount and network namespaces of its own; `Err` says why not.
    pub namespaces: Result<(), String>,
    /// The Landlock ABI version the kernel offers, if any (writes are restricted only with Landlock).
    pub landlock_abi: Option<u32>,
    /// How `runtime.resources` is enforced here.
    pub limits: Mechanism,
}

impl Support {
    /// Whether the sandbox can run at all (it needs the namespaces; Landlock adds the write rules).
    #[must_use]
    pub fn available(&self) -> bool {
        self.namespaces.is_ok()
    }

    /// One line per guarantee, `yes`/`no` and why, as `codepilot sandbox check` prints them.
    #[must_use]
    pub fn report(&self) -> Vec<(&'static str, Result<String, String>)> {
        let ns = |what: &str| match &self.namespaces {
            Ok(()) => Ok(what.to_owned()),
            Err(e) => Err(format!("no user namespaces here: {e}")),
        };
        vec![
            (
                "runtime hidden from the shells",
                ns("PID namespace with its own /proc"),
            ),
            ("no signals to processes outside", ns("PID namespace")),
            (
                "network off when runtime.network: false",
                ns("network namespace with loopback only"),
            ),
            (
                "writes only under work_dir and temp folders",
                match (&self.namespaces, self.landlock_abi) {
                    (Ok(()), Some(abi)) => Ok(format!("Landlock ABI {abi}")),
                    (Ok(()), None) => Err("the kernel has no Landlock".to_owned()),
                    (Err(e), _) => Err(format!("no user namespaces here: {e}")),
                },
            ),
            ("processes limited per session", self.process_limit()),
            (
                "memory limited per session",
                match &self.limits {
                    Mechanism::CgroupV2 { base } => Ok(format!(
                        "cgroup v2 memory.max, swap included, under {}",
                        base.display()
                    )),
                    Mechanism::CgroupV1 {
                        memory: Some(_), ..
                    } => Ok("cgroup v1 memory controller, swap included".to_owned()),
                    Mechanism::CgroupV1 { memory: None, .. } => {
                        Err("the v1 memory controller is not writable here".to_owned())
                    }
                    Mechanism::Rlimits { why } => Err(why.clone()),
                },
            ),
            (
                "CPU share per session",
                match &self.limits {
                    Mechanism::CgroupV2 { .. } => Ok("cgroup v2 cpu.weight".to_owned()),
                    Mechanism::CgroupV1 { cpu: Some(_), .. } => {
                        Ok("cgroup v1 cpu.shares".to_owned())
                    }
                    Mechanism::CgroupV1 { cpu: None, .. } => {
                        Err("the v1 cpu controller is not writable here".to_owned())
                    }
                    Mechanism::Rlimits { why } => Err(why.clone()),
                },
            ),
            (
                "disk and open files limited",
                Ok("work directory size watched, RLIMIT_FSIZE per file, RLIMIT_NOFILE".to_owned()),
            ),
        ]
    }

    fn process_limit(&self) -> Result<String, String> {
        match (&self.limits, &self.namespaces) {
            (Mechanism::CgroupV2 { .. }, _) => Ok("cgroup v2 pids.max".to_owned()),
            (Mechanism::CgroupV1 { pids: Some(_), .. }, _) => {
                Ok("cgroup v1 pids controller".to_owned())
            }
            (Mechanism::CgroupV1 { pids: None, .. } | Mechanism::Rlimits { .. }, Ok(())) => {
                Err("no writable pids cgroup: only RLIMIT_NPROC, per sandboxed shell".to_owned())
            }
            (_, Err(e)) => Err(format!("no pids cgroup and no user namespaces here: {e}")),
        }
    }
}

/// The Landlock ABI of the running kernel, if it has Landlock.
fn landlock_abi() -> Option<u32> {
    // SAFETY: the documented way to ask for the ABI version: no attributes, the VERSION flag.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0_usize,
            1_u32,
        )
    };
    u32::try_from(v).ok().filter(|v| *v > 0)
}

/// What this machine enforces, found by entering a sandbox for real once (`true` in a sandbox) and asking the
/// kernel for its Landlock version. Cached for the process.
#[must_use]
pub fn probe() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT
        .get_or_init(|| Support {
            namespaces: try_namespaces(),
            landlock_abi: landlock_abi(),
            limits: Mechanism::detect(),
        })
        .clone()
}

fn try_namespaces() -> Result<(), String> {
    let policy = Policy::new(Mode::ReadOnly, /*network*/ false, Vec::new());
    let plan = Plan::new(&policy).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("true");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: `enter` makes system calls only, as `pre_exec` requires.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || plan.enter()) };
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("a test process in the sandbox ended with {status}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name() {
        for m in Mode::all() {
            assert_eq!(m.name().parse::<Mode>(), Ok(m));
        }
        assert!(
            "strict"
                .parse::<Mode>()
                .unwrap_err()
                .contains("workspace-write")
        );
    }

    #[test]
    fn the_probe_reports_every_guarantee() {
        let s = probe();
        assert_eq!(s.report().len(), 8);
    }
}
