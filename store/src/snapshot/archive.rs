//! Packing a work directory into a tar + zstd archive and unpacking one back (blocking; callers run it on a
//! blocking thread).
//!
//! What a snapshot holds: every file, directory and symlink under the work directory that `.gitignore` rules
//! (the work directory's own and its subdirectories', plus `.git/info/exclude`) do not exclude, dotfiles
//! included, and the whole `.git` directory, which no ignore rule applies to. Symlinks are stored as links,
//! never followed (a file is opened without following links and must be the inode the scan saw); sockets, FIFOs
//! and devices are skipped; permission bits are kept, set-id and sticky bits are not.
//!
//! A restore never deletes what a snapshot does not hold: files `.gitignore` excludes (`.env`, `node_modules/`)
//! stay, and the files it replaces are moved aside first and only deleted once every restored file is in place.

use std::fs;
use std::io;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

/// Folders a restore makes in a work directory: the unpacked snapshot, and the files it replaces (kept when a
/// restore fails midway, so nothing is lost). Never archived.
pub(crate) const SCRATCH_PREFIXES: [&str; 2] = [".codepilot-restore-", ".codepilot-replaced-"];

/// zstd level: 3 is zstd's default, fast with a good ratio on source trees.
const ZSTD_LEVEL: i32 = 3;

/// What kind of entry an archive member is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// One entry found by [`scan`].
#[derive(Debug, Clone)]
struct Entry {
    /// Path relative to the work directory, `/`-separated.
    rel: PathBuf,
    kind: Kind,
    len: u64,
    mode: u32,
    mtime: i64,
    mtime_nsec: i64,
    dev: u64,
    ino: u64,
}

/// The result of walking a work directory: what a snapshot would hold.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    root: PathBuf,
    entries: Vec<Entry>,
    /// Sum of the regular files' sizes.
    pub(crate) content_bytes: u64,
    /// Number of regular files.
    pub(crate) files: u64,
    /// A digest of every entry's path, kind, size, mode, mtime and link target: equal digests mean nothing
    /// changed (the rule rsync uses).
    pub(crate) fingerprint: String,
    /// The largest files, biggest first (for a size-cap error).
    pub(crate) largest: Vec<(String, u64)>,
}

/// Whether a top-level name is one of the restore's scratch directories.
pub(crate) fn is_scratch(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| SCRATCH_PREFIXES.iter().any(|p| n.starts_with(p)))
}

/// Walks `root` (see the module docs for what is included).
pub(crate) fn scan(root: &Path) -> io::Result<Scan> {
    let mut entries = Vec::new();
    let git = root.join(".git");
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(std::cmp::Ord::cmp)
        .filter_entry(move |e| {
            let top = e.depth() == 1;
            !(top && (e.file_name() == ".git" || is_scratch(e.file_name())))
        })
        .build();
    for found in walker {
        let found = found.map_err(|e| io::Error::other(e.to_string()))?;
        if found.depth() == 0 {
            continue;
        }
        push_entry(root, found.path(), &mut entries)?;
    }
    if let Ok(meta) = fs::symlink_metadata(&git) {
        push_entry(root, &git, &mut entries)?;
        // A `.git` symlink is stored as a link: never walk through it.
        if meta.is_dir() {
            let walker = ignore::WalkBuilder::new(&git)
                .standard_filters(false)
                .follow_links(false)
                .sort_by_file_name(std::cmp::Ord::cmp)
                .build();
            for found in walker {
                let found = found.map_err(|e| io::Error::other(e.to_string()))?;
                if found.depth() > 0 {
                    push_entry(root, found.path(), &mut entries)?;
                }
            }
        }
    }
    Ok(summarise(root, entries))
}

fn push_entry(root: &Path, path: &Path, out: &mut Vec<Entry>) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        // Deleted since the directory was read.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink(fs::read_link(path)?)
    } else {
        return Ok(());
    };
    let Ok(rel) = path.strip_prefix(root) else {
        return Ok(());
    };
    out.push(Entry {
        rel: rel.to_path_buf(),
        len: if kind == Kind::File { meta.len() } else { 0 },
        kind,
        mode: meta.permissions().mode() & 0o777,
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        dev: meta.dev(),
        ino: meta.ino(),
    });
    Ok(())
}

fn summarise(root: &Path, entries: Vec<Entry>) -> Scan {
    let mut hash = Fnv::new();
    let mut content_bytes = 0_u64;
    let mut files = 0_u64;
    let mut largest: Vec<(String, u64)> = Vec::new();
    for e in &entries {
        hash.write(e.rel.as_os_str().as_encoded_bytes());
        hash.write(&[0]);
        match &e.kind {
            Kind::Dir => hash.write(b"d"),
            Kind::File => hash.write(b"f"),
            Kind::Symlink(target) => {
                hash.write(b"l");
                hash.write(target.as_os_str().as_encoded_bytes());
            }
        }
        for n in [
            e.len,
            u64::from(e.mode),
            e.mtime.cast_unsigned(),
            e.mtime_nsec.cast_unsigned(),
        ] {
            hash.write(&n.to_le_bytes());
        }
        if e.kind == Kind::File {
            files += 1;
            content_bytes = content_bytes.saturating_add(e.len);
            largest.push((e.rel.display().to_string(), e.len));
            largest.sort_by_key(|e| std::cmp::Reverse(e.1));
            largest.truncate(3);
        }
    }
    Scan {
        root: root.to_path_buf(),
        entries,
        content_bytes,
        files,
        fingerprint: format!("{:016x}-{files}-{content_bytes}", hash.finish()),
        largest,
    }
}

/// FNV-1a, 64 bits: stable across builds (unlike `std`'s hasher), which matters for a digest kept on disk.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Writes the archive of `scan` to `out` (tar in zstd). Returns whether the workspace changed while it was read:
/// a file that vanished, was replaced (by a symlink, or another inode through a swapped folder) or changed
/// during the read is left out or stored as it was read, so the archive stays well-formed, and the caller should
/// not treat it as an exact copy of the scan.
pub(crate) fn pack(scan: &Scan, out: impl Write) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL)?;
    // A checksum per frame: a damaged snapshot fails to restore instead of restoring damaged files.
    encoder.include_checksum(true)?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    let mut changed = false;
    for e in &scan.entries {
        let path = scan.root.join(&e.rel);
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_mtime(e.mtime.max(0).cast_unsigned());
        match &e.kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &e.rel, io::empty())?;
            }
            Kind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &e.rel, target)?;
            }
            Kind::File => {
                let file = match fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(f) => f,
                    // Gone, or now a symlink (ELOOP): the workspace changed under us.
                    Err(err)
                        if err.kind() == io::ErrorKind::NotFound
                            || err.raw_os_error() == Some(libc::ELOOP) =>
                    {
                        changed = true;
                        continue;
                    }
                    Err(err) => {
                        return Err(io::Error::new(
                            err.kind(),
                            format!("reading {}: {err}", path.display()),
                        ));
                    }
                };
                let before = file.metadata()?;
                if !before.is_file() || before.dev() != e.dev || before.ino() != e.ino {
                    changed = true;
                    continue;
                }
                let len = before.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(len);
                tar.append_data(&mut header, &e.rel, ExactLen::new(&file, len))?;
                let after = file.metadata()?;
                changed |= after.len() != len
                    || after.mtime() != before.mtime()
                    || after.mtime_nsec() != before.mtime_nsec()
                    || len != e.len
                    || before.mtime() != e.mtime
                    || before.mtime_nsec() != e.mtime_nsec;
            }
        }
    }
    let encoder = tar.into_inner()?;
    encoder.finish()?.flush()?;
    Ok(changed)
}

/// Reads exactly `len` bytes: the file's first `len`, then zeros if it shrank meanwhile, so the archive stays
/// well-formed whatever happens to the file while it is read.
struct ExactLen<R> {
    inner: io::Take<R>,
    left: u64,
}

impl<R: Read> ExactLen<R> {
    fn new(inner: R, len: u64) -> Self {
        Self {
            inner: inner.take(len),
            left: len,
        }
    }
}

impl<R: Read> Read for ExactLen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Unpacks the archive in `input` into `dst` (created if missing), refusing entries that would land outside it
/// and stopping with an error once more than `max_bytes` of tar data were read.
pub(crate) fn unpack(input: impl Read, dst: &Path, max_bytes: u64) -> io::Result<()> {
    let decoder = zstd::Decoder::new(input)?;
    // Headers and padding add to the file contents; allow for them.
    let limit = max_bytes
        .saturating_add(max_bytes / 8)
        .saturating_add(1 << 20);
    let mut archive = tar::Archive::new(Limited {
        inner: decoder,
        left: limit,
    });
    // Permission bits are applied; set-id and sticky bits are not (`false` here masks them).
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    archive.unpack(dst)?;
    // Read to the end of the zstd frame, which verifies its checksum: tar stops at its end-of-archive marker.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

/// Fails once more than `left` bytes were read: a snapshot that expands beyond the cap is refused.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "it expands to more than the snapshot size cap",
            )
        })?;
        Ok(n)
    }
}

/// Whether `dir` is missing or holds nothing but restore scratch folders.
pub(crate) fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            for entry in entries.by_ref() {
                if !is_scratch(&entry?.file_name()) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// Why a restore failed.
#[derive(Debug)]
pub(crate) enum RestoreError {
    /// The archive could not be read: damaged, truncated, over the cap, or hostile. Nothing was changed.
    Archive(io::Error),
    /// A local file operation failed before anything in the work directory was touched.
    Local(io::Error),
    /// Moving files failed midway. The files the restore had moved aside are in `kept`, nothing was deleted.
    Midway {
        /// Where the replaced files are.
        kept: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// Whether an unpack error is the local disk's (full, read-only, refused) rather than the archive's.
fn is_local(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::OutOfMemory
    )
}

/// Puts the files of the archive in `input` into `work_dir` (created if missing), keeping the directory itself
/// (its inode, so a sandbox rule or a shell's cwd naming it stays valid).
///
/// The archive is unpacked into a scratch folder inside `work_dir` first (same file system, so moving is renaming);
/// only a complete, checksum-verified unpack touches anything. Then the files the work directory holds that a
/// snapshot would hold (see [`scan`]) are moved aside into a `.codepilot-replaced-*` folder, the restored ones moved
/// in, and the folder deleted. Files `.gitignore` excludes stay where they are. `before_swap` runs just before the
/// first move. `read_failed` tells an archive that could not be read from a local write error while unpacking.
pub(crate) fn restore_into(
    input: impl Read,
    read_failed: &std::sync::atomic::AtomicBool,
    work_dir: &Path,
    max_bytes: u64,
    before_swap: impl FnOnce() -> io::Result<()>,
) -> Result<(), RestoreError> {
    crate::create_private_dir(work_dir).map_err(RestoreError::Local)?;
    remove_staging_leftovers(work_dir).map_err(RestoreError::Local)?;
    let staging = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIXES[0])
        .tempdir_in(work_dir)
        .map_err(RestoreError::Local)?;
    let staged = staging.path().to_path_buf();
    let result = (|| {
        if let Err(e) = unpack(input, &staged, max_bytes) {
            let archive = read_failed.load(std::sync::atomic::Ordering::Relaxed) || !is_local(&e);
            return Err(if archive {
                RestoreError::Archive(e)
            } else {
                RestoreError::Local(e)
            });
        }
        // The restored folders' modes, applied once their files are in (a read-only folder would refuse them).
        let modes = folder_modes(&staged).map_err(RestoreError::Local)?;
        make_writable(&staged);
        let current = scan(work_dir).map_err(RestoreError::Local)?;
        before_swap().map_err(RestoreError::Local)?;
        let kept = work_dir.join(format!(
            "{}{}",
            SCRATCH_PREFIXES[1],
            uuid::Uuid::now_v7().simple()
        ));
        fs::create_dir(&kept).map_err(RestoreError::Local)?;
        let midway = |source| RestoreError::Midway {
            kept: kept.clone(),
            source,
        };
        move_aside(&current, &kept).map_err(midway)?;
        move_in(&staged, work_dir, &kept).map_err(midway)?;
        for (rel, mode) in modes.iter().rev() {
            fs::set_permissions(work_dir.join(rel), fs::Permissions::from_mode(*mode))
                .map_err(midway)?;
        }
        make_writable(&kept);
        fs::remove_dir_all(&kept).map_err(midway)
    })();
    make_writable(&staged);
    drop(staging);
    result
}

/// Every folder under `root` with its permission bits, parents before children.
fn folder_modes(root: &Path) -> io::Result<Vec<(PathBuf, u32)>> {
    let mut out = Vec::new();
    for entry in ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .build()
    {
        let entry = entry.map_err(|e| io::Error::other(e.to_string()))?;
        if entry.depth() > 0 && entry.file_type().is_some_and(|t| t.is_dir()) {
            let mode = fs::symlink_metadata(entry.path())?.permissions().mode() & 0o777;
            if let Ok(rel) = entry.path().strip_prefix(root) {
                out.push((rel.to_path_buf(), mode));
            }
        }
    }
    Ok(out)
}

/// Moves the files and links of `current` into `kept` (same relative paths), then removes the folders they
/// leave empty; folders still holding ignored files stay.
fn move_aside(current: &Scan, kept: &Path) -> io::Result<()> {
    for e in &current.entries {
        if e.kind != Kind::Dir {
            let to = kept.join(&e.rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            match fs::rename(current.root.join(&e.rel), &to) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    for e in current.entries.iter().rev() {
        if e.kind == Kind::Dir {
            let dir = current.root.join(&e.rel);
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::NotFound
                    ) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Moves everything under `staged` into the same places under `work_dir`, merging with the folders there. What
/// stands in the way (an ignored file where a restored one goes) is moved into `kept` first.
fn move_in(staged: &Path, work_dir: &Path, kept: &Path) -> io::Result<()> {
    for entry in fs::read_dir(staged)? {
        let entry = entry?;
        let from = entry.path();
        let to = work_dir.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        match fs::symlink_metadata(&to) {
            Ok(meta) if is_dir && meta.is_dir() => {
                let rel_kept = kept.join(to.strip_prefix(work_dir).unwrap_or(&to));
                move_in(&from, &to, &rel_kept)?;
                continue;
            }
            Ok(_) => {
                fs::create_dir_all(kept)?;
                fs::rename(&to, kept.join(entry.file_name()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::rename(&from, &to)?;
    }
    Ok(())
}

/// Removes unpack folders an interrupted restore left in `work_dir`. Folders of replaced files are kept: they may
/// hold the only copy of someone's files.
fn remove_staging_leftovers(work_dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(work_dir)? {
        let entry = entry?;
        let restoring = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(SCRATCH_PREFIXES[0]));
        if restoring && entry.file_type()?.is_dir() {
            make_writable(&entry.path());
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Gives the owner write access to every directory under `dir`, so a tree with read-only directories can be
/// emptied and removed.
fn make_writable(dir: &Path) {
    for entry in ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .follow_links(false)
        .build()
        .flatten()
    {
        if entry.file_type().is_some_and(|t| t.is_dir())
            && let Ok(meta) = fs::symlink_metadata(entry.path())
        {
            let mode = meta.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode | 0o700));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn exact_len_pads_a_shrunk_file() {
        let mut r = ExactLen::new(&b"abc"[..], 5);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0");
        let mut r = ExactLen::new(&b"abcdef"[..], 2);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }

    #[test]
    fn fingerprint_follows_content_metadata() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "one").unwrap();
        let first = scan(dir.path()).unwrap();
        assert_eq!(first.fingerprint, scan(dir.path()).unwrap().fingerprint);
        fs::write(dir.path().join("a.txt"), "two!").unwrap();
        assert_ne!(first.fingerprint, scan(dir.path()).unwrap().fingerprint);
    }
}
