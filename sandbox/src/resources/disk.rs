//! The work directory's size, for `max_disk_mb`: measured by a bounded scan while a command runs (at most every
//! second) and when it ends, never costing more than 5% of a core (a tree whose scan takes 50 ms is measured at
//! most once a second), and before the file tools write once it is near the cap. Between two measures a single file
//! still stops at the cap (`RLIMIT_FSIZE`); what a command wrote too soon after the last measure of a large tree is
//! seen at the next one.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;
use std::time::Instant;

use super::LimitHit;

/// Entries a scan visits at most; past that the size found so far stands (a work directory that large is
/// measured in parts, and the per-file `RLIMIT_FSIZE` still holds).
const MAX_ENTRIES: usize = 2_000_000;
/// Scans while a command runs are at least this far apart...
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// ...and at least this many times the last scan's duration apart, so measuring costs at most 5% of a core.
const INTERVAL_FACTOR: u32 = 20;

#[derive(Debug)]
struct Measure {
    used: u64,
    at: Instant,
    took: Duration,
}

/// The disk cap of one work directory.
#[derive(Debug)]
pub(super) struct Disk {
    root: PathBuf,
    cap: u64,
    last: Mutex<Option<Measure>>,
}

impl Disk {
    pub(super) fn new(root: &Path, cap: u64) -> Self {
        Self {
            root: root.to_path_buf(),
            cap,
            last: Mutex::new(None),
        }
    }

    pub(super) fn cap_mb(&self) -> u64 {
        self.cap / (1024 * 1024)
    }

    /// Measures now; the bytes used.
    fn measure(&self) -> u64 {
        let start = Instant::now();
        let used = usage(&self.root);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Measure {
            used,
            at: Instant::now(),
            took: start.elapsed(),
        });
        used
    }

    /// Measures if the last measure is old enough, the bytes used when over the cap. While a command runs
    /// (`ended` false) measures are at least [`MIN_INTERVAL`] apart; when it ends, only the cost rule applies (a
    /// small work directory is measured after every command).
    pub(super) fn measure_if_due(&self, ended: bool) -> Option<u64> {
        let due = match &*self.last.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(m) => {
                let spacing = m.took * INTERVAL_FACTOR;
                m.at.elapsed()
                    >= if ended {
                        spacing
                    } else {
                        MIN_INTERVAL.max(spacing)
                    }
            }
            None => true,
        };
        let used = if due { self.measure() } else { self.cached() };
        (used > self.cap).then_some(used)
    }

    /// How long the last measure took (none yet: unknown, so `None`).
    pub(super) fn last_took(&self) -> Option<Duration> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|m| m.took)
    }

    /// Bytes used at the last measure (0 before the first).
    pub(super) fn cached(&self) -> u64 {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |m| m.used)
    }

    /// Refuses `adding` bytes that would take the directory over the cap. The last measure counts if it is under a
    /// second old (with the bytes accepted since added), else the directory is measured again, as it is before any
    /// refusal, so space freed since counts.
    pub(super) fn check(&self, adding: u64) -> Result<(), LimitHit> {
        let fits = |used: u64| used.saturating_add(adding) <= self.cap;
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = last.as_mut()
                && m.at.elapsed() < MIN_INTERVAL
                && fits(m.used)
            {
                m.used = m.used.saturating_add(adding);
                return Ok(());
            }
        }
        let used = self.measure();
        if fits(used) {
            if let Some(m) = self
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
            {
                m.used = m.used.saturating_add(adding);
            }
            Ok(())
        } else if used > self.cap {
            Err(LimitHit::disk(self.cap_mb(), used))
        } else {
            Err(LimitHit::disk_refused(self.cap_mb(), used, adding))
        }
    }
}

/// Bytes allocated beneath `root` (as `du` counts them: blocks, hard links once), symlinks not followed, at
/// most [`MAX_ENTRIES`] entries.
fn usage(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut seen_links: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_ENTRIES {
                return total;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen_links.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_cap_are_refused_until_space_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path(), 1024 * 1024);
        assert!(disk.check(4096).is_ok());
        std::fs::write(dir.path().join("big"), vec![1u8; 2 * 1024 * 1024]).unwrap();
        assert!(disk.measure() >= 2 * 1024 * 1024);
        let refused = disk.check(10).unwrap_err();
        assert!(
            refused.message.contains("disk limit 1 MiB"),
            "{}",
            refused.message
        );
        std::fs::remove_file(dir.path().join("big")).unwrap();
        assert!(disk.check(10).is_ok());
    }

    #[test]
    fn a_running_command_is_measured_at_most_every_second_and_an_ended_one_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path(), 1024 * 1024);
        assert_eq!(disk.measure_if_due(false), None);
        std::fs::write(dir.path().join("big"), vec![1u8; 2 * 1024 * 1024]).unwrap();
        assert_eq!(
            disk.measure_if_due(false),
            None,
            "measured less than a second ago"
        );
        assert!(
            disk.measure_if_due(true).is_some(),
            "a small tree is measured when the command ends"
        );
    }

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = usage(dir.path());
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert_eq!(usage(dir.path()), one);
    }
}
