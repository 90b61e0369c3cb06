//! What a checkpoint records of a work directory: a manifest of its files, links and folders, sorted by path, each
//! file naming its content by hash.
//!
//! What is recorded: every file, symlink and folder under the work directory that `.gitignore` rules (the work
//! directory's and its parents', plus `.git/info/exclude`) do not exclude, dotfiles included. Never a `.git` entry
//! (file or folder, at any depth: the user's repositories are neither read nor written) nor a restore's scratch
//! folder. Symlinks are recorded as links, never followed; sockets, FIFOs and devices are left out; permission bits
//! are kept, set-id and sticky bits are not.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot_protocol::sync::lock;
use serde::Deserialize;
use serde::Serialize;

/// A file whose modification time is this close to a capture's start may change again without its time changing
/// (file systems stamp writes with a coarse clock, a jiffy on Linux): the next capture reads it again instead of
/// trusting its metadata (the rule git uses for "racily clean" index entries).
const RACY_NS: i64 = 50_000_000;

/// The same for a file system that keeps whole seconds only (a modification time without nanoseconds).
const RACY_COARSE_NS: i64 = 2_000_000_000;

/// A chain of delta manifests is at most this long before a full one is written again.
pub(crate) const MAX_DEPTH: u32 = 16;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    /// A folder.
    #[serde(rename = "d")]
    Dir,
    /// A regular file.
    #[serde(rename = "f")]
    File,
    /// A symbolic link.
    #[serde(rename = "l")]
    Link,
}

/// One recorded entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Path relative to the work directory, `/`-separated.
    #[serde(rename = "p")]
    pub(crate) path: String,
    #[serde(rename = "k")]
    pub(crate) kind: Kind,
    /// Permission bits.
    #[serde(rename = "m")]
    pub(crate) mode: u32,
    /// Size of a file.
    #[serde(rename = "s", default)]
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the epoch.
    #[serde(rename = "t", default)]
    pub(crate) mtime_ns: i64,
    /// Inode number.
    #[serde(rename = "i", default)]
    pub(crate) ino: u64,
    /// A file's content hash; a link's target.
    #[serde(rename = "h", default, skip_serializing_if = "String::is_empty")]
    pub(crate) target: String,
}

/// A work directory as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Sorted by path.
    pub(crate) entries: Vec<Entry>,
}

/// A manifest as stored: whole, or as the changes to another (`base`), so a checkpoint of a tree where little
/// changed stores little.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The manifest this one changes; `None` for a whole one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base: Option<String>,
    /// Links to the whole manifest at the end of the chain (0 for a whole one).
    #[serde(default)]
    pub(crate) depth: u32,
    /// Every entry (whole), or the entries added or changed since `base`, sorted by path.
    pub(crate) entries: Vec<Entry>,
    /// Paths `base` has and this one does not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) removed: Vec<String>,
}

impl Stored {
    /// The changes from `base` (whose object is `base_hash`, `depth` deep) to `now`.
    pub(crate) fn delta(base: &Manifest, base_hash: &str, depth: u32, now: &[Entry]) -> Self {
        let mut entries = Vec::new();
        let mut removed = Vec::new();
        let (mut i, mut j) = (0, 0);
        let old = &base.entries;
        while i < old.len() || j < now.len() {
            match (old.get(i), now.get(j)) {
                (Some(o), Some(n)) if o.path == n.path => {
                    if o != n {
                        entries.push(n.clone());
                    }
                    i += 1;
                    j += 1;
                }
                (Some(o), Some(n)) if o.path < n.path => {
                    removed.push(o.path.clone());
                    i += 1;
                }
                (Some(o), None) => {
                    removed.push(o.path.clone());
                    i += 1;
                }
                (_, Some(n)) => {
                    entries.push(n.clone());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        Self {
            base: Some(base_hash.to_owned()),
            depth: depth + 1,
            entries,
            removed,
        }
    }

    /// `base` with these changes.
    pub(crate) fn apply(self, base: &Manifest) -> Manifest {
        let removed: std::collections::HashSet<&str> =
            self.removed.iter().map(String::as_str).collect();
        let mut out = Vec::with_capacity(base.entries.len() + self.entries.len());
        let mut changes = self.entries.into_iter().peekable();
        for old in &base.entries {
            while let Some(c) = changes.next_if(|c| c.path < old.path) {
                out.push(c);
            }
            if let Some(c) = changes.next_if(|c| c.path == old.path) {
                out.push(c);
            } else if !removed.contains(old.path.as_str()) {
                out.push(old.clone());
            }
        }
        out.extend(changes);
        Manifest { entries: out }
    }
}

impl Manifest {
    /// The entries by path.
    pub(crate) fn by_path(&self) -> HashMap<&str, &Entry> {
        self.entries.iter().map(|e| (e.path.as_str(), e)).collect()
    }

    /// Number of files and their total size.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.size))
    }
}

/// Whether entry `e`, recorded by a capture that started at `taken_ns`, can be trusted to match a file with the same
/// metadata.
pub(crate) fn trusted(e: &Entry, taken_ns: i64) -> bool {
    let window = if e.mtime_ns % 1_000_000_000 == 0 {
        RACY_COARSE_NS
    } else {
        RACY_NS
    };
    e.mtime_ns.saturating_add(window) < taken_ns
}

/// What [`walk`] found that a manifest cannot hold.
#[derive(Debug, Default)]
pub(crate) struct Unrecordable {
    /// Paths (lossily shown) that are not UTF-8, or links whose target is not.
    pub(crate) not_utf8: Vec<String>,
}

/// Whether a name is never recorded: `.git` anywhere, and a rewind's or restore's scratch folder.
pub(crate) fn is_excluded(name: &OsStr) -> bool {
    name == ".git"
        || name.to_str().is_some_and(|n| {
            n.starts_with(".codepilot-restore-")
                || n.starts_with(".codepilot-replaced-")
                || n.starts_with(super::apply::STAGING_PREFIX)
        })
}

/// Walks `root` (see the module docs), sorted by path. Files come without their content hash.
///
/// One thread: `ignore`'s parallel walker costs a millisecond to start and stop, more than a small tree takes,
/// and on a 10,000-file tree two threads were slower than one (the `lstat`s share the same directory locks).
pub(crate) fn walk(root: &Path) -> io::Result<(Vec<Entry>, Unrecordable)> {
    let leftovers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&leftovers);
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(true)
        .ignore(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .filter_entry(move |e| {
            let name = e.file_name();
            if !is_excluded(name) {
                return true;
            }
            if name
                .to_str()
                .is_some_and(|n| n.starts_with(super::apply::STAGING_PREFIX))
            {
                lock(&seen).push(e.path().to_path_buf());
            }
            false
        })
        .build();
    // Reading folders is quick; the `lstat` of each entry is most of the cost, so a large tree's are shared
    // between two threads.
    let mut items = Vec::new();
    for item in walker {
        let item = item.map_err(|e| io::Error::other(e.to_string()))?;
        if item.depth() > 0 {
            items.push(item.into_path());
        }
    }
    let stat_all = |part: &[std::path::PathBuf]| -> io::Result<Collected> {
        let mut collected = Collected::default();
        let mut folders = Folders::default();
        for path in part {
            entry(root, path, &mut folders, &mut collected)?;
        }
        Ok(collected)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let collected = if threads < 2 || items.len() < 2048 {
        stat_all(&items)?
    } else {
        let (a, b) = items.split_at(items.len() / 2);
        let (mut mine, theirs) = std::thread::scope(|scope| {
            let other = scope.spawn(|| stat_all(b));
            let mine = stat_all(a);
            (mine, other.join())
        });
        let theirs = match theirs {
            Ok(t) => t?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Ok(m) = &mut mine {
            m.entries.extend(theirs.entries);
            m.not_utf8.extend(theirs.not_utf8);
        }
        mine?
    };
    remove_stale(&lock(&leftovers));
    let mut found = collected.entries;
    found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok((
        found,
        Unrecordable {
            not_utf8: collected.not_utf8,
        },
    ))
}

/// Removes what a rewind that did not finish (its process killed) staged: scratch files and folders older than
/// ten minutes, so a rewind running now in another process keeps its own.
fn remove_stale(leftovers: &[std::path::PathBuf]) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(600);
    for path in leftovers {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age < STALE)
        {
            continue;
        }
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        if let Err(e) = removed {
            tracing::warn!(
                "removing {}, left by a rewind that did not finish: {e}",
                path.display()
            );
        }
    }
}

/// Checks a manifest read back from storage, which a damaged disk or a hostile mirror could have changed: every
/// path plain and relative (no `..`, no `.git`, no scratch name), sorted and unique, none inside a file or a link,
/// modes permission bits only, files naming content by hash. A rewind writes only what passes.
pub(crate) fn validate(m: &Manifest) -> Result<(), String> {
    let mut previous: Option<&str> = None;
    for e in &m.entries {
        let path = e.path.as_str();
        if previous.is_some_and(|p| p >= path) {
            return Err(format!("its entries are not in order at {path:?}"));
        }
        previous = Some(path);
        if path.contains('\0')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".." || is_excluded(OsStr::new(c)))
        {
            return Err(format!(
                "it names {path:?}, which is not a plain relative path"
            ));
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && let Ok(i) = m.entries.binary_search_by(|p| p.path.as_str().cmp(parent))
            && m.entries[i].kind != Kind::Dir
        {
            return Err(format!(
                "it puts {path:?} inside {parent:?}, which is not a folder"
            ));
        }
        if e.mode & !0o777 != 0 {
            return Err(format!(
                "{path:?} has mode {:o}, more than permission bits",
                e.mode
            ));
        }
        let fine = match e.kind {
            Kind::Dir => true,
            Kind::File => super::objects::is_hash(&e.target),
            Kind::Link => !e.target.is_empty() && !e.target.contains('\0'),
        };
        if !fine {
            return Err(format!("{path:?} has the target {:?}", e.target));
        }
    }
    Ok(())
}

/// What the walk found.
#[derive(Default)]
struct Collected {
    entries: Vec<Entry>,
    not_utf8: Vec<String>,
}

/// Recently used folders, open: a file is looked up by name in its folder (`fstatat`), not by its whole path,
/// which the kernel would walk component by component for every file.
#[derive(Default)]
struct Folders {
    open: Vec<(std::path::PathBuf, rustix::fd::OwnedFd)>,
}

impl Folders {
    /// Folders kept open at once (a depth-first walk returns to few).
    const KEEP: usize = 16;

    fn get(&mut self, dir: &Path) -> io::Result<&rustix::fd::OwnedFd> {
        if let Some(i) = self.open.iter().rposition(|(p, _)| p == dir) {
            let hit = self.open.remove(i);
            self.open.push(hit);
        } else {
            let fd = rustix::fs::open(
                dir,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC
                    | rustix::fs::OFlags::NOFOLLOW,
                rustix::fs::Mode::empty(),
            )?;
            if self.open.len() == Self::KEEP {
                self.open.remove(0);
            }
            self.open.push((dir.to_path_buf(), fd));
        }
        self.open
            .last()
            .map(|(_, fd)| fd)
            .ok_or_else(|| io::Error::other("no folder open"))
    }
}

/// Records what the walk found at `item` (a path under `root`) into `out`.
fn entry(root: &Path, item: &Path, folders: &mut Folders, out: &mut Collected) -> io::Result<()> {
    let (Some(dir), Some(name)) = (item.parent(), item.file_name()) else {
        return Ok(());
    };
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let folder = match folders.get(dir) {
        Ok(fd) => fd,
        // Deleted (or replaced) since it was read.
        Err(e) if gone(&e) || e.raw_os_error() == Some(libc::ELOOP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let stat = match rustix::fs::statat(folder, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(e) if e == rustix::io::Errno::NOENT => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let kind = match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
        rustix::fs::FileType::Directory => Kind::Dir,
        rustix::fs::FileType::RegularFile => Kind::File,
        rustix::fs::FileType::Symlink => Kind::Link,
        _ => return Ok(()),
    };
    let Ok(rel) = item.strip_prefix(root) else {
        return Ok(());
    };
    let Some(path) = rel.to_str() else {
        out.not_utf8.push(rel.to_string_lossy().into_owned());
        return Ok(());
    };
    let target = if kind == Kind::Link {
        match rustix::fs::readlinkat(folder, name, Vec::new()) {
            Ok(t) => match t.into_string() {
                Ok(t) => t,
                Err(_) => {
                    out.not_utf8.push(path.to_owned());
                    return Ok(());
                }
            },
            Err(e) if e == rustix::io::Errno::NOENT => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    } else {
        String::new()
    };
    out.entries.push(Entry {
        path: path.to_owned(),
        kind,
        mode: stat.st_mode & 0o777,
        size: if kind == Kind::File {
            u64::try_from(stat.st_size).unwrap_or(0)
        } else {
            0
        },
        mtime_ns: stat
            .st_mtime
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::try_from(stat.st_mtime_nsec).unwrap_or(0)),
        ino: stat.st_ino,
        target,
    });
    Ok(())
}

/// Nanoseconds since the epoch now.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::fs;

    #[test]
    fn walk_skips_git_ignored_and_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join(".git/objects")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref").unwrap();
        fs::create_dir_all(root.join("sub/.git")).unwrap();
        fs::write(root.join(".gitignore"), "target/\n*.log\n").unwrap();
        fs::create_dir_all(root.join("target/debug")).unwrap();
        fs::write(root.join("target/debug/x"), "x").unwrap();
        fs::write(root.join("a.log"), "x").unwrap();
        fs::write(root.join(".env.example"), "x").unwrap();
        fs::write(root.join("sub/b.rs"), "x").unwrap();
        std::os::unix::fs::symlink("sub/b.rs", root.join("link")).unwrap();
        fs::create_dir(root.join(".codepilot-rewind-x")).unwrap();
        // What a rewind killed half-way left an hour ago goes; a fresh one may be another rewind's.
        let stale = root.join("sub/.codepilot-rewind-old-1");
        fs::write(&stale, "half").unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        let (found, _) = walk(root).unwrap();
        assert!(!stale.exists());
        assert!(root.join(".codepilot-rewind-x").exists());
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [".env.example", ".gitignore", "link", "sub", "sub/b.rs"]
        );
        assert_eq!(found[2].kind, Kind::Link);
        assert_eq!(found[2].target, "sub/b.rs");
    }

    fn e(path: &str, target: &str) -> Entry {
        Entry {
            path: path.to_owned(),
            kind: Kind::File,
            mode: 0o644,
            size: 1,
            mtime_ns: 1,
            ino: 1,
            target: target.to_owned(),
        }
    }

    #[test]
    fn manifests_read_back_are_checked() {
        let hash = "a".repeat(64);
        let good = Manifest {
            entries: vec![
                Entry {
                    kind: Kind::Dir,
                    ..e("a", "")
                },
                e("a/b.rs", &hash),
                Entry {
                    kind: Kind::Link,
                    ..e("l", "a/b.rs")
                },
            ],
        };
        assert_eq!(validate(&good), Ok(()));
        let bad = |entries: Vec<Entry>, wanted: &str| {
            let err = validate(&Manifest { entries }).unwrap_err();
            assert!(err.contains(wanted), "{err}");
        };
        bad(vec![e("../escape", &hash)], "not a plain relative path");
        bad(vec![e("/etc/passwd", &hash)], "not a plain relative path");
        bad(vec![e("a/./b", &hash)], "not a plain relative path");
        bad(vec![e(".git/config", &hash)], "not a plain relative path");
        bad(vec![e("b", &hash), e("a", &hash)], "not in order");
        bad(vec![e("a", &hash), e("a", &hash)], "not in order");
        bad(vec![e("x", "../../etc/shadow")], "has the target");
        bad(
            vec![
                Entry {
                    kind: Kind::Link,
                    ..e("a", "/tmp")
                },
                e("a/b", &hash),
            ],
            "inside \"a\", which is not a folder",
        );
        bad(
            vec![Entry {
                mode: 0o4755,
                ..e("suid", &hash)
            }],
            "more than permission bits",
        );
    }

    #[test]
    fn deltas_round_trip() {
        let base = Manifest {
            entries: vec![e("a", "1"), e("b", "2"), e("c/d", "3"), e("e", "4")],
        };
        let now = vec![
            e("a", "1"),
            e("b", "9"),
            e("bb", "5"),
            e("e", "4"),
            e("f", "6"),
        ];
        let d = Stored::delta(&base, "h", 3, &now);
        assert_eq!((d.base.as_deref(), d.depth), (Some("h"), 4));
        assert_eq!(d.entries, [e("b", "9"), e("bb", "5"), e("f", "6")]);
        assert_eq!(d.removed, ["c/d"]);
        assert_eq!(d.apply(&base).entries, now);
        let all_new = Stored::delta(&Manifest::default(), "h", 0, &now);
        assert_eq!(all_new.apply(&Manifest::default()).entries, now);
        let emptied = Stored::delta(&base, "h", 0, &[]);
        assert!(emptied.apply(&base).entries.is_empty());
    }

    #[test]
    fn recent_changes_are_not_trusted() {
        let mut fine = e("a", "1");
        fine.mtime_ns = 10_000_000_123;
        assert!(trusted(&fine, 10_100_000_000));
        assert!(!trusted(&fine, 10_020_000_000));
        let mut coarse = e("a", "1");
        coarse.mtime_ns = 10_000_000_000;
        assert!(
            !trusted(&coarse, 11_000_000_000),
            "whole seconds: two seconds apart at least"
        );
        assert!(trusted(&coarse, 12_500_000_000));
    }
}
