//! Content-addressed objects: file contents, manifests, archive lists and conversation tails, each stored once
//! under its SHA-256, zstd-compressed, in `objects/<2 hex>/<62 hex>`.

use std::fs;
use std::io;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use sha2::Digest as _;
use sha2::Sha256;

/// zstd level: fast, with a good ratio on source.
const ZSTD_LEVEL: i32 = 3;

/// The hex SHA-256 of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

thread_local! {
    /// A zstd context per thread: making one costs more than compressing a small file.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `bytes`, zstd-compressed (with a checksum, so damage is found on reading).
pub(crate) fn compress(bytes: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(c) => c,
            None => {
                let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
                c.include_checksum(true)?;
                slot.insert(c)
            }
        };
        compressor.compress(bytes)
    })
}

/// What [`compress`] made, back. A frame that declares a large size (or none) is read as a stream, so a damaged
/// or hostile object cannot make this allocate what its header claims.
pub(crate) fn decompress(packed: &[u8]) -> io::Result<Vec<u8>> {
    const BULK_MAX: usize = 64 << 20;
    const STREAM_MAX: u64 = 1 << 30;
    let declared = zstd::zstd_safe::get_frame_content_size(packed)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok());
    let Some(size) = declared.filter(|n| *n <= BULK_MAX) else {
        let mut out = Vec::new();
        zstd::Decoder::new(packed)?
            .take(STREAM_MAX + 1)
            .read_to_end(&mut out)?;
        if out.len() as u64 > STREAM_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the object holds more than 1 GiB, more than any checkpoint stores; it is damaged",
            ));
        }
        return Ok(out);
    };
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(packed, size)
    })
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether `s` looks like an object name (64 lower-case hex digits), so a damaged index cannot name a path
/// outside the object folder.
pub(crate) fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One session's object folder.
#[derive(Debug, Clone)]
pub(crate) struct Objects {
    dir: PathBuf,
}

impl Objects {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where object `hash` lives.
    pub(crate) fn path(&self, hash: &str) -> PathBuf {
        let (a, b) = hash.split_at(2.min(hash.len()));
        self.dir.join(a).join(b)
    }

    pub(crate) fn has(&self, hash: &str) -> bool {
        self.path(hash).is_file()
    }

    /// Stores `bytes`; returns the hash and the compressed size written (0 when it was stored already).
    pub(crate) fn put(&self, bytes: &[u8]) -> io::Result<(String, u64)> {
        let hash = hash_bytes(bytes);
        if self.has(&hash) {
            return Ok((hash, 0));
        }
        let packed = compress(bytes)?;
        self.put_packed(&hash, &packed)?;
        Ok((hash, packed.len() as u64))
    }

    /// Stores already compressed bytes as `hash` (atomically: a scratch file renamed into place).
    pub(crate) fn put_packed(&self, hash: &str, packed: &[u8]) -> io::Result<()> {
        let path = self.path(hash);
        let parent = path.parent().unwrap_or(&self.dir);
        crate::create_private_dir(parent)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)?;
        tmp.write_all(packed)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Makes object `hash` of `other` (another session's objects) one of these too: a hard link, or a copy where
    /// one cannot be made.
    pub(crate) fn link_from(&self, other: &Objects, hash: &str) -> io::Result<()> {
        let to = self.path(hash);
        let parent = to.parent().unwrap_or(&self.dir);
        crate::create_private_dir(parent)?;
        match fs::hard_link(other.path(hash), &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            Err(_) => self.put_packed(hash, &other.get_packed(hash)?),
        }
    }

    /// The compressed bytes of `hash`.
    pub(crate) fn get_packed(&self, hash: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(hash))
    }

    /// The bytes of `hash`, checked against it.
    pub(crate) fn get(&self, hash: &str) -> io::Result<Vec<u8>> {
        let packed = self.get_packed(hash)?;
        let out = decompress(&packed)?;
        if hash_bytes(&out) != hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("object {hash} is damaged: its content does not match its name"),
            ));
        }
        Ok(out)
    }

    /// Every stored object's hash, with its modification time.
    pub(crate) fn all(&self) -> io::Result<Vec<(String, std::time::SystemTime)>> {
        let mut out = Vec::new();
        let top = match fs::read_dir(&self.dir) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for sub in top {
            let sub = sub?;
            let Some(a) = sub.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if a.len() != 2 || !sub.file_type()?.is_dir() {
                continue;
            }
            for obj in fs::read_dir(sub.path())? {
                let obj = obj?;
                let Some(b) = obj.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let hash = format!("{a}{b}");
                if is_hash(&hash) {
                    out.push((hash, obj.metadata()?.modified()?));
                }
            }
        }
        Ok(out)
    }

    /// Deletes object `hash`; a missing one is no error.
    pub(crate) fn remove(&self, hash: &str) -> io::Result<()> {
        match fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Reads the file at `path` (not following a link) and stores it in `objects`, reading it once: hashed and
/// compressed as it is read. Returns the hash, the bytes read and the compressed size written (0 when stored
/// already).
pub(crate) fn put_file(objects: &Objects, path: &Path) -> io::Result<(String, u64, u64)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    let (hash, written) = objects.put(&content)?;
    Ok((hash, content.len() as u64, written))
}

/// The hash and size of the file at `path` (not following a link), without storing it.
pub(crate) fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut hasher = Sha256::new();
    let n = io::copy(&mut file, &mut hasher)?;
    Ok((hex(&hasher.finalize()), n))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn objects_round_trip_once_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path().join("objects"));
        let (hash, written) = objects.put(b"hello").unwrap();
        assert!(is_hash(&hash));
        assert!(written > 0);
        assert_eq!(objects.put(b"hello").unwrap(), (hash.clone(), 0));
        assert_eq!(objects.get(&hash).unwrap(), b"hello");
        let other = zstd::bulk::compress(b"other", 3).unwrap();
        fs::write(objects.path(&hash), other).unwrap();
        let err = objects.get(&hash).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(!is_hash("../../etc/passwd"));
    }
}
