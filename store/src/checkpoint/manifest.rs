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
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

/// A file whose modification time is this close to the capture's time may change again without its time
/// changing (file systems stamp writes with a coarse clock): the next capture reads it again instead of trusting
/// its metadata (the rule git uses for "racily clean" index entries).
const RACY_NS: i64 = 1_000_000_000;

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// When the capture started, nanoseconds since the epoch.
    pub(crate) taken_ns: i64,
    /// Sorted by path.
    pub(crate) entries: Vec<Entry>,
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

    /// Whether entry `e` of this manifest can be trusted to match a file with the same metadata.
    pub(crate) fn trusted(&self, e: &Entry) -> bool {
        e.mtime_ns.saturating_add(RACY_NS) < self.taken_ns
    }
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
pub(crate) fn walk(root: &Path) -> io::Result<(Vec<Entry>, Unrecordable)> {
    let mut found = Vec::new();
    let mut bad = Unrecordable::default();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(true)
        .ignore(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| !is_excluded(e.file_name()))
        .build();
    for item in walker {
        let item = item.map_err(|e| io::Error::other(e.to_string()))?;
        if item.depth() == 0 {
            continue;
        }
        let meta = match fs::symlink_metadata(item.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Link
        } else {
            continue;
        };
        let Ok(rel) = item.path().strip_prefix(root) else {
            continue;
        };
        let Some(path) = rel.to_str() else {
            bad.not_utf8.push(rel.to_string_lossy().into_owned());
            continue;
        };
        let target = if kind == Kind::Link {
            match fs::read_link(item.path()) {
                Ok(t) => match t.into_os_string().into_string() {
                    Ok(t) => t,
                    Err(_) => {
                        bad.not_utf8.push(path.to_owned());
                        continue;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        } else {
            String::new()
        };
        found.push(Entry {
            path: path.to_owned(),
            kind,
            mode: meta.permissions().mode() & 0o777,
            size: if kind == Kind::File { meta.len() } else { 0 },
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ino: meta.ino(),
            target,
        });
    }
    found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok((found, bad))
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
        let (found, _) = walk(root).unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [".env.example", ".gitignore", "link", "sub", "sub/b.rs"]
        );
        assert_eq!(found[2].kind, Kind::Link);
        assert_eq!(found[2].target, "sub/b.rs");
    }
}
