//! The workspace root and path confinement for the file tools (SPEC §6, "Paths").
//!
//! A path is resolved the way the kernel would open it: relative paths against the root, `..` applied after
//! the symlinks before it are followed, symlinks (of the file and of any parent directory) followed to their
//! targets, and for a path that does not exist yet, the nearest existing ancestor resolved the same way. The
//! result must lie inside the (canonical) root unless `unsafe_mode` is on.

use std::ffi::OsString;
use std::io;
use std::path::Component;
use std::path::Path;
use std::path::PathBuf;

use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolError;

/// Symlink hops followed while resolving one path before giving up (as the kernel's ELOOP).
const MAX_SYMLINK_HOPS: usize = 40;

/// The directory the file tools work in.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    root: PathBuf,
    unsafe_mode: bool,
    /// The sandbox's write rules, which the file tools obey like the shells do. `None`: no sandbox.
    write_policy: Option<codepilot_sandbox::Policy>,
    /// The session's resource limits, whose disk cap the file tools' writes obey. `None`: no limits.
    limits: Option<std::sync::Arc<codepilot_sandbox::resources::SessionLimits>>,
}

impl Workspace {
    /// Opens (creating if missing) the workspace at `root`, stored canonicalized.
    pub(crate) fn new(root: &Path, unsafe_mode: bool) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        Ok(Self {
            root,
            unsafe_mode,
            write_policy: None,
            limits: None,
        })
    }

    /// The file tools obey `policy`'s write rules (the sandbox's), beside the workspace confinement.
    pub(crate) fn with_write_policy(mut self, policy: Option<codepilot_sandbox::Policy>) -> Self {
        self.write_policy = policy;
        self
    }

    /// The file tools' writes obey `limits`' disk cap, as the shells do.
    pub(crate) fn with_limits(
        mut self,
        limits: Option<std::sync::Arc<codepilot_sandbox::resources::SessionLimits>>,
    ) -> Self {
        self.limits = limits;
        self
    }

    /// The session's resource limits, if any.
    pub(crate) fn limits(
        &self,
    ) -> Option<&std::sync::Arc<codepilot_sandbox::resources::SessionLimits>> {
        self.limits.as_ref()
    }

    /// Refuses a write the sandbox would refuse a shell: outside its writable folders, or anywhere in read-only
    /// mode.
    pub(crate) fn check_write(&self, resolved: &Path, shown: &str) -> Result<(), ToolError> {
        match &self.write_policy {
            Some(policy) if !policy.may_write(resolved) => Err(ToolError::new(
                ExcKind::PermissionError,
                format!(
                    "'{shown}' cannot be written: the sandbox (runtime.sandbox: {}) {}.",
                    policy.mode.name(),
                    match policy.mode {
                        codepilot_sandbox::Mode::ReadOnly => "allows no writes",
                        codepilot_sandbox::Mode::WorkspaceWrite | codepilot_sandbox::Mode::Off =>
                            "allows writes only under the work directory and the temporary folders",
                    }
                ),
            )),
            Some(_) | None => Ok(()),
        }
    }

    /// The canonical root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Opens `resolved` (a path [`Workspace::resolve`] returned) so that the open itself cannot leave the root:
    /// `openat2` with `RESOLVE_BENEATH` from the root, so a symlink swapped in after the check is refused by the
    /// kernel. Paths outside the root (only possible with `unsafe_mode`) are opened as they are; so is everything
    /// on a kernel without `openat2` (before 5.6), where the check in `resolve` is all there is.
    pub(crate) fn open(
        &self,
        resolved: &Path,
        flags: rustix::fs::OFlags,
        mode: rustix::fs::Mode,
    ) -> io::Result<std::os::fd::OwnedFd> {
        let flags = flags | rustix::fs::OFlags::CLOEXEC;
        if let Ok(rel) = resolved.strip_prefix(&self.root) {
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            let root = rustix::fs::open(
                &self.root,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            match rustix::fs::openat2(
                &root,
                rel,
                flags,
                mode,
                rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(rustix::io::Errno::NOSYS) => {}
                other => return other.map_err(io::Error::from),
            }
        }
        Ok(rustix::fs::open(resolved, flags, mode)?)
    }

    /// Resolves a path given by the agent to an absolute, symlink-free path, refusing paths outside the root
    /// (unless `unsafe_mode`). The path need not exist.
    pub(crate) fn resolve(&self, path: &str) -> Result<PathBuf, ToolError> {
        if path.trim().is_empty() {
            return Err(ToolError::new(
                ExcKind::ValueError,
                "the path is empty; give a path relative to the workspace, e.g. 'src/main.py'.",
            ));
        }
        if path.contains('\0') {
            return Err(ToolError::new(
                ExcKind::ValueError,
                format!("the path {path:?} contains a NUL byte."),
            ));
        }
        let given = Path::new(path);
        // The root is canonical already, so a relative path only needs its own components looked at.
        let base = if given.is_absolute() {
            Path::new("/")
        } else {
            self.root.as_path()
        };
        let resolved = resolve_lenient(base, given).map_err(|e| {
            ToolError::new(
                ExcKind::RuntimeError,
                format!("cannot resolve '{path}': {e}"),
            )
        })?;
        if !self.unsafe_mode && !resolved.starts_with(&self.root) {
            return Err(ToolError::new(
                ExcKind::PermissionError,
                format!(
                    "'{path}' is outside the workspace '{}'. Paths must stay inside work_dir (set \
                     runtime.unsafe_mode: true in agent.yaml to allow this).",
                    self.root.display()
                ),
            ));
        }
        Ok(resolved)
    }

    /// `p` relative to the root (with `/` separators) when inside it, else `p` in full.
    pub(crate) fn display(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
            Ok(rel) => rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
            Err(_) => p.display().to_string(),
        }
    }
}

/// Canonicalizes `base.join(path)` like `realpath -m`, `base` being canonical already: existing prefixes have
/// their symlinks followed, `..` applies to the resolved parent, and components that do not exist are
/// appended as written.
fn resolve_lenient(base: &Path, path: &Path) -> io::Result<PathBuf> {
    // Work list of components still to apply, reversed so `pop` yields the next one.
    let mut pending: Vec<OsString> = Vec::new();
    let mut out = base.to_path_buf();
    push_components(path, &mut pending, &mut out);
    let mut hops = 0usize;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            out.pop();
            continue;
        }
        // Always look: after `missing/..` a later component may exist again and be a symlink.
        let next = out.join(&comp);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&next)?;
                // Splice the link's target in front of the remaining components.
                let mut spliced: Vec<OsString> = Vec::new();
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push_components(&target, &mut spliced, &mut out);
                pending.extend(spliced);
            }
            Ok(_) => out = next,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                out = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Pushes the normal and `..` components of `path` onto `stack` in reverse order (so they pop in order).
fn push_components(path: &Path, stack: &mut Vec<OsString>, root: &mut PathBuf) {
    let mut items: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Prefix(p) => *root = PathBuf::from(p.as_os_str()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => items.push(OsString::from("..")),
            Component::Normal(n) => items.push(n.to_os_string()),
        }
    }
    stack.extend(items.into_iter().rev());
}

#[cfg(test)]
#[path = "workspace_tests.rs"]
mod tests;
