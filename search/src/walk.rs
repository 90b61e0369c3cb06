//! Finding the files to index. The first scan walks the whole work dir (`.gitignore` rules, no symlinks, no `.git`);
//! later scans list again only the folders whose modification time changed (a file added, removed or renamed in
//! them) and stat the files they know, so a scan of a large tree costs a stat per folder and per file, not a walk.
//! A changed ignore file means a full walk again.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::path::PathBuf;

use crate::FxMap;
use crate::lang::FileKind;
use crate::store::Fingerprint;

/// A folder or file modified this close to the scan that saw it may change again within the same timestamp.
const RACY_NS: i64 = 50_000_000;
/// The same on a file system that keeps whole seconds (FAT, HFS+, some network mounts): two writes in one second
/// have one timestamp.
const RACY_COARSE_NS: i64 = 2_000_000_000;

/// Whether a modification at `mtime_ns`, seen by a scan that started at `scan_ns`, may hide a later one.
pub(crate) fn is_racy(mtime_ns: i64, scan_ns: i64) -> bool {
    let window = if mtime_ns % 1_000_000_000 == 0 {
        RACY_COARSE_NS
    } else {
        RACY_NS
    };
    mtime_ns >= scan_ns - window
}

/// Opens `rel` (a path the walk found) for reading without leaving `root` and without following any symlink, in
/// the file name or in a folder on the way: a file or folder swapped for a link after the walk is refused by the
/// kernel (`openat2`); on kernels without it (before 5.6), the file is opened with `O_NOFOLLOW` after checking that
/// its real path is inside the root.
pub(crate) fn open_beneath(root: &Path, rel: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::Mode;
    use rustix::fs::OFlags;
    let rel_path = Path::new(rel);
    if !rel_path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(std::io::Error::other(format!(
            "{rel} is not a plain path inside the work dir"
        )));
    }
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    match rustix::fs::openat2(
        &dir,
        rel_path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS,
    ) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(rustix::io::Errno::NOSYS) => {
            let abs = root.join(rel_path);
            if !abs.canonicalize()?.starts_with(root) {
                return Err(std::io::Error::other(format!(
                    "{rel} leads outside the work dir"
                )));
            }
            Ok(std::fs::File::from(rustix::fs::open(
                &abs,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            )?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Names of the files whose rules decide what is walked.
const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// A file to index, with its fingerprint.
pub(crate) struct Candidate {
    pub(crate) rel: String,
    pub(crate) fp: Fingerprint,
    pub(crate) kind: FileKind,
}

pub(crate) fn fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Fingerprint {
        size: meta.len(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        inode: meta.ino(),
    }
}

/// What the last scan found: the folders it entered (with their modification times), the files to index and the
/// ignore files.
#[derive(Debug, Default)]
pub(crate) struct Walker {
    scanned: bool,
    dirs: BTreeMap<PathBuf, (i64, bool)>,
    files: BTreeMap<PathBuf, FileKind>,
    ignore_files: FxMap<PathBuf, Fingerprint>,
}

/// The path an error of the walk is about.
fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}

fn builder(path: &Path) -> ignore::WalkBuilder {
    let mut b = ignore::WalkBuilder::new(path);
    b.hidden(false)
        .follow_links(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git");
    b
}

/// `symlink_metadata` of every path, on several threads when there are many (a stat is a system call each).
fn stat_all(paths: &[&Path]) -> Vec<std::io::Result<std::fs::Metadata>> {
    const PER_THREAD: usize = 1500;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(4)
        .min(paths.len() / PER_THREAD)
        .max(1);
    if threads == 1 {
        return paths.iter().map(std::fs::symlink_metadata).collect();
    }
    let per = paths.len().div_ceil(threads);
    std::thread::scope(|s| {
        // Every thread starts before the first is joined.
        let mut running = Vec::with_capacity(threads);
        for part in paths.chunks(per) {
            running.push(s.spawn(move || {
                part.iter()
                    .map(std::fs::symlink_metadata)
                    .collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::with_capacity(paths.len());
        for (h, part) in running.into_iter().zip(paths.chunks(per)) {
            // A thread that failed counts its paths as unreadable, keeping the answer aligned with `paths`.
            match h.join() {
                Ok(metas) => out.extend(metas),
                Err(_) => out.extend(
                    part.iter()
                        .map(|_| Err(std::io::Error::other("stat thread failed"))),
                ),
            }
        }
        out
    })
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    fingerprint(meta).mtime_ns
}

impl Walker {
    /// The files to index under `root` now, with their fingerprints.
    pub(crate) fn scan(&mut self, root: &Path, scan_ns: i64) -> Vec<Candidate> {
        if !(self.scanned && self.quick(root, scan_ns)) {
            *self = Self::default();
            self.add_tree(root, scan_ns);
            self.scanned = true;
            // The root's own `.git/info/exclude` takes part in the rules too.
            let exclude = root.join(".git/info/exclude");
            if let Ok(meta) = std::fs::metadata(&exclude) {
                self.ignore_files.insert(exclude, fingerprint(&meta));
            }
        }
        let mut gone = Vec::new();
        let mut out = Vec::with_capacity(self.files.len());
        let paths: Vec<&Path> = self.files.keys().map(PathBuf::as_path).collect();
        let metas = stat_all(&paths);
        for ((abs, kind), meta) in self.files.iter().zip(metas) {
            match meta.ok() {
                Some(meta) if meta.file_type().is_file() => {
                    let Some(rel) = abs.strip_prefix(root).ok().and_then(Path::to_str) else {
                        continue;
                    };
                    out.push(Candidate {
                        rel: rel.to_owned(),
                        fp: fingerprint(&meta),
                        kind: *kind,
                    });
                }
                _ => gone.push(abs.clone()),
            }
        }
        for abs in gone {
            self.files.remove(&abs);
        }
        out
    }

    /// Walks `top` and everything below it, recording folders, files and ignore files.
    fn add_tree(&mut self, top: &Path, scan_ns: i64) {
        for entry in builder(top).build() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // A folder that could not be read is listed again at every scan until it can.
                    tracing::debug!("index walk: {e}");
                    if let Some(path) = error_path(&e)
                        && let Some(state) = self.dirs.get_mut(path)
                    {
                        state.1 = true;
                    }
                    continue;
                }
            };
            let Some(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if let Ok(meta) = entry.metadata() {
                    let m = mtime_ns(&meta);
                    self.dirs
                        .insert(entry.path().to_path_buf(), (m, is_racy(m, scan_ns)));
                }
            } else if kind.is_file() {
                self.add_file(entry.path());
            }
            // Symlinks are never followed: a link could lead out of the work dir.
        }
    }

    fn add_file(&mut self, path: &Path) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if IGNORE_FILES.contains(&name) {
            if let Ok(meta) = std::fs::metadata(path) {
                self.ignore_files
                    .insert(path.to_path_buf(), fingerprint(&meta));
            }
        } else if let Some(kind) = crate::lang::classify(path) {
            self.files.insert(path.to_path_buf(), kind);
        }
    }

    /// Re-lists the folders that changed since the last scan. `false` when only a full walk will do (an ignore file
    /// changed, appeared or went away).
    fn quick(&mut self, root: &Path, scan_ns: i64) -> bool {
        for (path, fp) in &self.ignore_files {
            match std::fs::metadata(path) {
                Ok(meta) if fingerprint(&meta) == *fp => {}
                _ => return false,
            }
        }
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        let paths: Vec<&Path> = self.dirs.keys().map(PathBuf::as_path).collect();
        let metas = stat_all(&paths);
        for ((dir, (mtime, racy)), meta) in self.dirs.iter().zip(metas) {
            match meta {
                Ok(meta) if meta.is_dir() => {
                    if *racy || mtime_ns(&meta) != *mtime {
                        changed.push(dir.clone());
                    }
                }
                Ok(_) => removed.push(dir.clone()),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    removed.push(dir.clone());
                }
                // Unreadable for now (permissions, a network hiccup): listed again, not forgotten.
                Err(_) => changed.push(dir.clone()),
            }
        }
        if !root.is_dir() {
            return false;
        }
        for dir in removed {
            self.drop_tree(&dir);
        }
        for dir in changed {
            if !self.dirs.contains_key(&dir) {
                continue;
            }
            if !self.relist(&dir, scan_ns) {
                return false;
            }
        }
        true
    }

    /// Lists one folder again: new files and folders are added (a new folder walked whole), vanished ones dropped.
    fn relist(&mut self, dir: &Path, scan_ns: i64) -> bool {
        let mut seen_files = Vec::new();
        let mut seen_dirs = Vec::new();
        for entry in builder(dir).max_depth(Some(1)).build() {
            let Ok(entry) = entry else { continue };
            if entry.depth() == 0 {
                if let Ok(meta) = entry.metadata() {
                    let m = mtime_ns(&meta);
                    self.dirs
                        .insert(dir.to_path_buf(), (m, is_racy(m, scan_ns)));
                }
                continue;
            }
            let Some(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path().to_path_buf();
            if kind.is_dir() {
                if !self.dirs.contains_key(&path) {
                    self.add_tree(&path, scan_ns);
                }
                seen_dirs.push(path);
            } else if kind.is_file() {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if IGNORE_FILES.contains(&name) && !self.ignore_files.contains_key(&path) {
                    return false;
                }
                self.add_file(&path);
                seen_files.push(path);
            }
        }
        let stale_files: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|f| f.parent() == Some(dir) && !seen_files.contains(f))
            .cloned()
            .collect();
        for f in stale_files {
            self.files.remove(&f);
        }
        let stale_dirs: Vec<PathBuf> = self
            .dirs
            .keys()
            .filter(|d| d.parent() == Some(dir) && !seen_dirs.contains(d))
            .cloned()
            .collect();
        for d in stale_dirs {
            self.drop_tree(&d);
        }
        true
    }

    /// Forgets a folder and everything below it.
    fn drop_tree(&mut self, dir: &Path) {
        self.dirs.retain(|d, _| !d.starts_with(dir));
        self.files.retain(|f, _| !f.starts_with(dir));
        self.ignore_files.retain(|f, _| !f.starts_with(dir));
    }
}
