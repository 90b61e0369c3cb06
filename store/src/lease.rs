//! Leases: at most one process drives a session at a time.
//!
//! A lease names its holder (pid + host name), carries a random token and expires [`LEASE_TTL`] after it was
//! taken or last renewed. The runtime renews it every [`heartbeat_interval`](crate::heartbeat_interval) (a third
//! of the TTL). Another process may take a lease over when it has expired, or at once when the holder runs on the
//! same host and its pid is dead (`kill(pid, 0)` fails with `ESRCH`).

use std::fmt;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use serde::Serialize;

use crate::id::SessionId;

/// How long a lease lasts without renewal. Default of [`StoreOptions::lease_ttl`].
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the holder's machine.
    pub host: String,
    /// When the lease was taken, Unix seconds.
    pub acquired_at: i64,
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on host {} since {}",
            self.pid,
            self.host,
            format_utc(self.acquired_at)
        )
    }
}

/// A held lease. Pass it to [`checkpoint`](crate::SessionStore::checkpoint),
/// [`renew`](crate::SessionStore::renew) and finally [`release`](crate::SessionStore::release).
///
/// Share it between tasks by reference or `Arc`; concurrent checkpoints on one lease are serialised by the store.
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    session: SessionId,
    holder: LeaseHolder,
    token: String,
}

impl Lease {
    pub(crate) fn new(session: SessionId, holder: LeaseHolder, token: String) -> Self {
        Self {
            session,
            holder,
            token,
        }
    }

    /// A copy for a worker thread. Not `Clone`: a lease is meant to have one owner that releases it.
    pub(crate) fn duplicate(&self) -> Self {
        Self::new(
            self.session.clone(),
            self.holder.clone(),
            self.token.clone(),
        )
    }

    /// The leased session.
    #[must_use]
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// This process, as recorded in the lease.
    #[must_use]
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// The random token that proves ownership.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Options shared by every backend.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub(crate) lease_ttl: Duration,
    pub(crate) pid: u32,
    pub(crate) host: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            lease_ttl: LEASE_TTL,
            pid: std::process::id(),
            host: hostname(),
        }
    }
}

impl StoreOptions {
    /// Defaults: TTL [`LEASE_TTL`], holder = this process on this host.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How long leases taken through this store last without renewal. Default: 30 s ([`LEASE_TTL`]).
    /// Renew at a third of it.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Record leases as held by `pid` on `host` instead of this process. Default: this process and host.
    ///
    /// For tests (simulating another or a dead process) and for hosts that drive a session on behalf of another
    /// process. The liveness check uses this pid, so a wrong pid weakens the one-driver guarantee.
    #[must_use]
    pub fn holder_identity(mut self, pid: u32, host: impl Into<String>) -> Self {
        self.pid = pid;
        self.host = host.into();
        self
    }

    /// The host name used in leases.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The pid used in leases.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn new_holder(&self) -> LeaseHolder {
        LeaseHolder {
            pid: self.pid,
            host: self.host.clone(),
            acquired_at: now_secs(),
        }
    }

    pub(crate) fn expires_at_ms(&self) -> i64 {
        let ttl = i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        now_millis().saturating_add(ttl)
    }

    /// Whether a lease held by `holder`, expiring at `expires_at_ms`, may be taken over now.
    pub(crate) fn is_stale(&self, holder: &LeaseHolder, expires_at_ms: i64) -> bool {
        if now_millis() > expires_at_ms {
            return true;
        }
        holder.host == self.host && !pid_alive(holder.pid)
    }
}

/// A fresh lease token.
pub(crate) fn new_token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Whether `pid` names a live process on this host. Unknown answers (e.g. `EPERM`) count as alive.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let Some(pid) = rustix::process::Pid::from_raw(raw) else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// This machine's host name, or `localhost` when it cannot be read.
#[must_use]
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Now, Unix seconds.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, Unix milliseconds.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds.
fn format_utc(secs: i64) -> String {
    let (year, month, day, h, m, s) = civil(secs);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

/// RFC 3339 (`2026-12-01T01:36:40Z`) for Unix seconds, as wire formats write times.
#[must_use]
pub fn rfc3339(secs: i64) -> String {
    let (year, month, day, h, m, s) = civil(secs);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Unix seconds as (year, month, day, hour, minute, second) in UTC (Howard Hinnant's civil_from_days).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_608_041), "2026-11-25 12:00:41 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(rfc3339(1_796_089_000), "2026-12-01T01:36:40Z");
    }

    #[test]
    fn holder_display() {
        let h = LeaseHolder {
            pid: 123,
            host: "x".into(),
            acquired_at: 0,
        };
        assert_eq!(
            h.to_string(),
            "pid 123 on host x since 1970-01-01 00:00:00 UTC"
        );
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }
}
