//! Rewinding a work directory to a manifest: what changes ([`FilePlan`]) and doing it.
//!
//! Two phases. Staging writes every file and link the rewind brings back under a scratch name beside its
//! destination (or in a scratch folder at the top when its folder does not exist yet); a failure there (a folder
//! that cannot be written, a full disk) removes what was staged and leaves the work directory as it was. Then the
//! commit deletes what was created since, makes the missing folders, renames the staged files into place (each
//! replacement atomic) and applies modes. The work directory itself is never replaced, so its inode (a sandbox
//! rule, a shell's cwd) stays valid. Restored files get the current time as their modification time, as a
//! `git checkout` does, so build tools see them as changed.

use std::collections::HashMap;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::path::PathBuf;

use super::CheckpointError;
use super::manifest::Entry;
use super::manifest::Kind;
use super::manifest::Manifest;
use super::objects::Objects;

/// Name prefix of staged files and of the scratch folder; never recorded in a checkpoint.
pub(crate) const STAGING_PREFIX: &str = ".codepilot-rewind-";

/// What a rewind changes in a work directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePlan {
    /// Files and links to write (missing, changed, or of another kind now), in path order.
    writes: Vec<Entry>,
    /// Files whose content is right but whose mode is not.
    modes: Vec<(String, u32)>,
    /// Files and links to delete: created since, or standing where a folder goes back.
    deletes: Vec<String>,
    /// Folders to remove if empty (created since, or standing where a file goes back: then they must go).
    folders_out: Vec<(String, bool)>,
    /// Folders the checkpoint has that are missing or have another mode now, with their modes, parents first.
    folders_in: Vec<(String, u32)>,
    /// Files the checkpoint has that are not recorded now but exist (ignored now, or too large to record): a
    /// rewind never overwrites what it could not bring back, so they are left as they are.
    left_alone: Vec<String>,
    /// Files and links written back (including mode-only changes).
    restored: u64,
    /// Files and links deleted that the checkpoint does not have.
    deleted: u64,
}

impl FilePlan {
    /// Files and links written back (changed, deleted or of another kind since), modes included.
    #[must_use]
    pub fn files_restored(&self) -> u64 {
        self.restored
    }

    /// Files and links created since, deleted.
    #[must_use]
    pub fn files_deleted(&self) -> u64 {
        self.deleted
    }

    /// Files the checkpoint has that stay as they are now: they exist but are not recorded (ignored by
    /// `.gitignore` now, or too large), so a rewind could not undo overwriting them.
    #[must_use]
    pub fn left_alone(&self) -> &[String] {
        &self.left_alone
    }

    /// Whether nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.modes.is_empty()
            && self.deletes.is_empty()
            && self.folders_out.is_empty()
            && self.folders_in.is_empty()
    }

    /// The contents the writes need.
    pub(crate) fn contents(&self) -> impl Iterator<Item = &str> {
        self.writes
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.target.as_str())
    }
}

/// Whether `path` is `skipped` or inside one of them.
fn under_any(path: &str, skipped: &HashSet<&str>) -> bool {
    skipped.contains(path)
        || path
            .match_indices('/')
            .any(|(i, _)| skipped.contains(&path[..i]))
}

/// What turns `now` into `target`. Paths either side left out for size (`target_skipped`, `now_skipped`) are
/// never deleted; a file `target` has that `now` lacks is not written where `exists` says something is (see
/// [`FilePlan::left_alone`]).
pub(crate) fn plan(
    target: &Manifest,
    now: &Manifest,
    target_skipped: &[String],
    now_skipped: &[String],
    exists: &dyn Fn(&str) -> bool,
) -> FilePlan {
    let skipped: HashSet<&str> = target_skipped
        .iter()
        .chain(now_skipped)
        .map(String::as_str)
        .collect();
    let now_by: HashMap<&str, &Entry> = now.by_path();
    let target_by: HashMap<&str, &Entry> = target.by_path();
    let mut plan = FilePlan::default();
    for t in &target.entries {
        let current = now_by.get(t.path.as_str());
        if t.kind == Kind::Dir {
            match current {
                Some(c) if c.kind == Kind::Dir && c.mode == t.mode => {}
                Some(c) if c.kind == Kind::Dir => plan.folders_in.push((t.path.clone(), t.mode)),
                Some(c) => {
                    plan.deletes.push(c.path.clone());
                    plan.folders_in.push((t.path.clone(), t.mode));
                }
                None => plan.folders_in.push((t.path.clone(), t.mode)),
            }
            continue;
        }
        match current {
            Some(c) if c.kind == t.kind && c.target == t.target => {
                if c.mode != t.mode && t.kind == Kind::File {
                    plan.modes.push((t.path.clone(), t.mode));
                    plan.restored += 1;
                }
            }
            Some(c) => {
                match c.kind {
                    Kind::Dir => plan.folders_out.push((c.path.clone(), true)),
                    // Replaced by the rename itself.
                    Kind::File | Kind::Link => {}
                }
                plan.writes.push(t.clone());
                plan.restored += 1;
            }
            None if exists(&t.path) => plan.left_alone.push(t.path.clone()),
            None => {
                plan.writes.push(t.clone());
                plan.restored += 1;
            }
        }
    }
    for c in &now.entries {
        if target_by.contains_key(c.path.as_str()) || under_any(&c.path, &skipped) {
            continue;
        }
        match c.kind {
            Kind::Dir => plan.folders_out.push((c.path.clone(), false)),
            Kind::File | Kind::Link => {
                plan.deletes.push(c.path.clone());
                plan.deleted += 1;
            }
        }
    }
    // Deepest first, so a folder's contents go before it.
    plan.folders_out.sort_by(|a, b| b.0.cmp(&a.0));
    plan.folders_out.dedup();
    plan
}

/// A staged file or link waiting to be renamed into place.
struct Staged {
    from: PathBuf,
    rel: String,
}

/// Folders of the work directory found to be real folders (not links), so each is looked at once.
struct Folders<'a> {
    root: &'a Path,
    real: HashSet<String>,
}

impl<'a> Folders<'a> {
    fn new(root: &'a Path) -> Self {
        Self {
            root,
            real: HashSet::new(),
        }
    }

    /// Whether every folder on the way to `rel` (not `rel` itself) is a real folder now and none is in `gone`:
    /// then a file can be staged beside `rel` without writing through a link.
    fn parents_stay(&mut self, rel: &str, gone: &HashSet<&str>) -> bool {
        rel.match_indices('/').all(|(i, _)| {
            let folder = &rel[..i];
            !gone.contains(folder) && self.is_real(folder)
        })
    }

    fn is_real(&mut self, folder: &str) -> bool {
        if self.real.contains(folder) {
            return true;
        }
        let real = fs::symlink_metadata(self.root.join(folder)).is_ok_and(|m| m.is_dir());
        if real {
            self.real.insert(folder.to_owned());
        }
        real
    }

    /// Makes sure every folder on the way to `rel` is a real folder, creating missing ones (a folder the
    /// checkpoint did not record as one, or removed since the plan). Refuses to go through anything else: a link
    /// put there meanwhile would send the write outside the work directory.
    fn ensure_parents(&mut self, rel: &str) -> io::Result<()> {
        for (i, _) in rel.match_indices('/') {
            let folder = &rel[..i];
            if self.is_real(folder) {
                continue;
            }
            let path = self.root.join(folder);
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    self.real.insert(folder.to_owned());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{folder} is no longer a folder (something replaced it during the rewind); move it away and rewind again"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Removes what staging made.
struct Scratch {
    staged: Vec<Staged>,
    folder: Option<PathBuf>,
}

impl Scratch {
    fn clean(&mut self) {
        for s in self.staged.drain(..) {
            let _ = fs::remove_file(&s.from);
        }
        if let Some(folder) = self.folder.take() {
            let _ = fs::remove_dir_all(folder);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.clean();
    }
}

/// A scratch name beside `dest`.
fn scratch_name(dir: &Path, n: usize) -> PathBuf {
    let random = uuid::Uuid::now_v7().simple().to_string();
    dir.join(format!(
        "{STAGING_PREFIX}{}-{n}",
        &random[random.len() - 12..]
    ))
}

/// Carries `plan` out in `work_dir` (see the module docs).
pub(crate) fn apply(
    objects: &Objects,
    work_dir: &Path,
    plan: &FilePlan,
    saved_as: &str,
) -> Result<(), CheckpointError> {
    let mut scratch = Scratch {
        staged: Vec::with_capacity(plan.writes.len()),
        folder: None,
    };
    // Folders that are folders now and stay: files can be staged beside their destination.
    let gone: HashSet<&str> = plan
        .folders_out
        .iter()
        .map(|(p, _)| p.as_str())
        .chain(plan.deletes.iter().map(String::as_str))
        .collect();
    let mut folders = Folders::new(work_dir);
    for (n, entry) in plan.writes.iter().enumerate() {
        let to = work_dir.join(&entry.path);
        let parent = to.parent().unwrap_or(work_dir);
        let dir = if folders.parents_stay(&entry.path, &gone) {
            parent.to_path_buf()
        } else {
            match &scratch.folder {
                Some(f) => f.clone(),
                None => {
                    let f = scratch_name(work_dir, 0);
                    fs::create_dir(&f)
                        .map_err(CheckpointError::io("staging files in", work_dir))?;
                    scratch.folder = Some(f.clone());
                    f
                }
            }
        };
        let from = scratch_name(&dir, n);
        stage(objects, entry, &from)
            .map_err(|e| CheckpointError::io("nothing was changed: cannot write", &to)(e))?;
        scratch.staged.push(Staged {
            from,
            rel: entry.path.clone(),
        });
    }
    // Deletions change which folders are real: look again.
    let mut folders = Folders::new(work_dir);
    let total = plan.restored + plan.deleted;
    let mut done = 0_u64;
    let interrupted = |done: u64| {
        let work_dir = work_dir.to_path_buf();
        let saved_as = saved_as.to_owned();
        move |source| CheckpointError::Interrupted {
            work_dir,
            done,
            total,
            saved_as,
            source,
        }
    };
    for rel in &plan.deletes {
        match fs::remove_file(work_dir.join(rel)) {
            Ok(()) => done += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(interrupted(done)(e)),
        }
    }
    for (rel, must) in &plan.folders_out {
        match fs::remove_dir(work_dir.join(rel)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if !must && e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => {
                let e = io::Error::new(
                    e.kind(),
                    format!(
                        "{rel} must become a file again but is a folder holding files .gitignore excludes ({e}); move them away and rewind again"
                    ),
                );
                return Err(interrupted(done)(e));
            }
        }
    }
    for (rel, _) in &plan.folders_in {
        folders
            .ensure_parents(&format!("{rel}/"))
            .map_err(interrupted(done))?;
    }
    for s in &scratch.staged {
        folders.ensure_parents(&s.rel).map_err(interrupted(done))?;
        fs::rename(&s.from, work_dir.join(&s.rel)).map_err(interrupted(done))?;
        done += 1;
    }
    scratch.staged.clear();
    for (rel, mode) in &plan.modes {
        // `chmod` follows links: only a file reached through real folders is changed.
        let path = work_dir.join(rel);
        folders.ensure_parents(rel).map_err(interrupted(done))?;
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                .map_err(interrupted(done))?;
        }
        done += 1;
    }
    for (rel, mode) in plan.folders_in.iter().rev() {
        let path = work_dir.join(rel);
        let current = fs::symlink_metadata(&path)
            .ok()
            .filter(fs::Metadata::is_dir)
            .map(|m| m.permissions().mode() & 0o777);
        if current.is_some_and(|m| m != *mode) {
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                .map_err(interrupted(done))?;
        }
    }
    scratch.clean();
    Ok(())
}

/// Writes `entry` (a file's content from `objects`, or a link) at `at`.
fn stage(objects: &Objects, entry: &Entry, at: &Path) -> io::Result<()> {
    match entry.kind {
        Kind::Link => std::os::unix::fs::symlink(&entry.target, at),
        Kind::File => {
            let content = objects.get(&entry.target)?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(at)?;
            let written = file
                .write_all(&content)
                .and_then(|()| file.set_permissions(fs::Permissions::from_mode(entry.mode)));
            if written.is_err() {
                let _ = fs::remove_file(at);
            }
            written
        }
        Kind::Dir => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn entry(path: &str, kind: Kind, target: &str, mode: u32) -> Entry {
        Entry {
            path: path.to_owned(),
            kind,
            mode,
            size: 0,
            mtime_ns: 0,
            ino: 0,
            target: target.to_owned(),
        }
    }

    #[test]
    fn plan_counts_and_orders() {
        let target = Manifest {
            entries: vec![
                entry("a.txt", Kind::File, "h1", 0o644),
                entry("big.bin", Kind::File, "h9", 0o644),
                entry("out.log", Kind::File, "h5", 0o644),
                entry("src", Kind::Dir, "", 0o755),
                entry("src/lib.rs", Kind::File, "h2", 0o644),
                entry("x", Kind::File, "h3", 0o755),
            ],
        };
        let now = Manifest {
            entries: vec![
                entry("a.txt", Kind::File, "h1", 0o600),
                entry("new", Kind::Dir, "", 0o755),
                entry("new/n.rs", Kind::File, "h4", 0o644),
                entry("x", Kind::Link, "a.txt", 0o777),
            ],
        };
        let p = plan(&target, &now, &[], &["huge.iso".to_owned()], &|p| {
            p == "out.log"
        });
        assert_eq!(p.files_restored(), 4, "a mode, big.bin, src/lib.rs, x");
        assert_eq!(p.left_alone(), ["out.log"], "ignored now, and there");
        assert_eq!(p.files_deleted(), 1);
        assert_eq!(p.deletes, ["new/n.rs"]);
        assert_eq!(p.folders_out, [("new".to_owned(), false)]);
        assert_eq!(p.modes, [("a.txt".to_owned(), 0o644)]);
        let writes: Vec<&str> = p.writes.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(writes, ["big.bin", "src/lib.rs", "x"]);
        assert!(!p.is_empty());
        assert!(plan(&target, &target, &[], &[], &|_| false).is_empty());
    }
}
