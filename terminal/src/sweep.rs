//! Runtime folders that say whether their owner lives, and the removal of those whose owner died without cleaning
//! up (SIGKILL, a crash, a power cut).
//!
//! Every [`TerminalManager`](crate::TerminalManager) makes a socket folder `codepilot-PID-XXXXXXXX` (under
//! `XDG_RUNTIME_DIR`, else `/tmp`) and a shell folder `codepilot-shell-PID-XXXXXXXX` (in the temporary folder),
//! and removes both when it shuts down. A process that is killed leaves them behind; a host that restarts daily
//! would collect them forever.
//!
//! Liveness is an exclusive `flock` on `.lock` inside each folder, held by the manager for its whole life and
//! released by the kernel when the process dies, whatever PID namespace or container it ran in (a PID says nothing
//! there: a runtime inside an agent's sandbox sees none of the host's processes). A folder is created under a name
//! the sweep ignores, locked, and only then renamed to its final name, so no sweeper ever sees it unlocked. The
//! first manager of a process removes, in the background, the folders of that shape, owned by this user, whose
//! lock it can take. Folders without a lock (made by versions before the lock) are left alone.

use std::fs::File;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::path::PathBuf;

/// The lock file inside a runtime folder.
const LOCK: &str = ".lock";

/// Creates the folder `<base>/<prefix><pid>-<8 hex digits>` (0700) with its lock held; the folder is alive while
/// the returned file stays open.
pub(crate) fn create_locked(base: &Path, prefix: &str) -> io::Result<(PathBuf, File)> {
    let name = format!(
        "{prefix}{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let staging = base.join(format!(".{name}.new"));
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let locked = (|| {
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(staging.join(LOCK))?;
        lock.try_lock().map_err(io::Error::from)?;
        let path = base.join(&name);
        std::fs::rename(&staging, &path)?;
        Ok((path, lock))
    })();
    if locked.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    locked
}

/// Removes, once per process and in the background, the runtime folders of dead owners in `socket_base` and
/// `shell_base`.
pub(crate) fn once(socket_base: PathBuf, shell_base: PathBuf) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("codepilot-sweep".to_owned())
            .spawn(move || {
                sweep(&socket_base, "codepilot-");
                sweep(&shell_base, "codepilot-shell-");
            });
        if let Err(e) = spawned {
            tracing::debug!("not sweeping leftover runtime folders: {e}");
        }
    });
}

/// Whether `name` has the shape `<prefix><pid>-<8 hex digits>`.
fn is_runtime_folder(name: &str, prefix: &str) -> bool {
    let Some((pid, suffix)) = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    suffix.len() == 8
        && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
}

fn sweep(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| is_runtime_folder(n, prefix)) {
            continue;
        }
        let path = entry.path();
        // Not followed: a symlink or another user's folder is never ours.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let Ok(lock) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path.join(LOCK))
        else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::debug!("removed {} (its process is gone)", path.display()),
            Err(e) => tracing::debug!("could not remove leftover {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::create_locked;
    use super::is_runtime_folder;
    use super::sweep;

    #[test]
    fn only_exact_name_shapes_are_runtime_folders() {
        assert!(is_runtime_folder("codepilot-123-0badf00d", "codepilot-"));
        assert!(is_runtime_folder(
            "codepilot-shell-77-deadbeef",
            "codepilot-shell-"
        ));
        for other in [
            "codepilot-shell-77-deadbeef",
            "codepilot-123-0badf00",
            "codepilot-123-0badf00dd",
            "codepilot-12a-0badf00d",
            "codepilot--0badf00d",
            "codepilot-demo-abc",
            "codepilot-123-0badf00g",
            ".codepilot-123-0badf00d.new",
        ] {
            assert!(!is_runtime_folder(other, "codepilot-"), "{other}");
        }
    }

    #[test]
    fn a_held_lock_keeps_a_folder_and_a_released_one_lets_it_go() {
        let base = tempfile::tempdir().unwrap();
        let (live, lock) = create_locked(base.path(), "codepilot-").unwrap();
        let (dead, released) = create_locked(base.path(), "codepilot-").unwrap();
        drop(released);
        let unlocked = base.path().join("codepilot-42-0000abcd");
        std::fs::create_dir(&unlocked).unwrap();
        sweep(base.path(), "codepilot-");
        assert!(live.is_dir(), "a live owner's folder stays");
        assert!(!dead.exists(), "a dead owner's folder goes");
        assert!(
            unlocked.is_dir(),
            "a folder without a lock is not ours to judge"
        );
        drop(lock);
    }
}
