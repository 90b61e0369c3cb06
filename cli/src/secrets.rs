//! Keeping secrets out of the agent's reach.
//!
//! An agent's shell is a child of this process, so it could read this process's environment and command line
//! through `/proc/$PPID/environ` and `/proc/$PPID/cmdline` (and `ps`). Before any thread starts, the CLI:
//! - takes a private copy of the environment, from which the runtime reads API keys and base URLs;
//! - overwrites, in place, the value of every secret variable in the memory `/proc/<pid>/environ` shows (so it
//!   reads `ANTHROPIC_API_KEY=****…`), and removes those variables from the environment children inherit;
//! - masks a password given on the command line (`--db-url postgres://u:PASSWORD@…`) the same way, and warns;
//! - marks the process not dumpable, so other processes of the same (non-root) user cannot read its memory.
//!
//! Secret variables are those [`codepilot::terminal::config::is_secret`] names: secret-looking names, the agent
//! file's `model.api_key_env` and `search.embeddings.api_key_env`, and URLs with a password.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use codepilot::terminal::config::has_url_credentials;
use codepilot::terminal::config::is_secret;

/// The environment as it was before the secrets were taken out, for the runtime's own lookups.
#[derive(Debug, Default, Clone)]
pub(crate) struct EnvSnapshot(HashMap<String, String>);

impl EnvSnapshot {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// The variables whose names start with `prefix`.
    pub(crate) fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Takes the secrets out of this process's environment and command line (see the module docs); `hidden` are
/// extra variable names to treat as secret. Must run before any other thread exists.
pub(crate) fn protect(hidden: &[String]) -> EnvSnapshot {
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let snapshot = EnvSnapshot(
        vars.iter()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v.to_str()?.to_owned())))
            .collect(),
    );
    let secret: Vec<&OsString> = vars
        .iter()
        .filter(|(k, v)| is_secret(&k.to_string_lossy(), &v.to_string_lossy(), hidden))
        .map(|(k, _)| k)
        .collect();
    if let Some((start, end)) = memory_region(Region::Environment) {
        mask_in_place(start, end, |entry| {
            let name = entry.split(|b| *b == b'=').next().unwrap_or(entry);
            let value_start = (name.len() + 1).min(entry.len());
            secret
                .iter()
                .any(|s| s.as_bytes() == name)
                .then_some((value_start, entry.len()))
        });
    }
    for name in &secret {
        // SAFETY: called before the CLI starts any thread (see `run_main`), so nothing reads the environment
        // concurrently. This is the one place the process environment changes: to take secrets away from the
        // agent's shells, which inherit it.
        #[allow(clippy::disallowed_methods)]
        unsafe {
            std::env::remove_var(name);
        }
    }
    if let Some((start, end)) = memory_region(Region::Arguments) {
        mask_in_place(start, end, |arg| {
            password_span(std::str::from_utf8(arg).ok()?)
        });
    }
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::debug!("could not mark the process not dumpable: {e}");
    }
    snapshot
}

/// Whether the raw command line carries a URL with a password (worth a warning: other users see it in `ps`).
pub(crate) fn argv_has_credentials() -> bool {
    std::env::args_os().any(|a| has_url_credentials(&a.to_string_lossy()))
}

/// Where the password of a `scheme://user:password@host` URL inside `text` starts and ends (byte offsets).
fn password_span(text: &str) -> Option<(usize, usize)> {
    let scheme_end = text.find("://")? + 3;
    let authority_len = text[scheme_end..]
        .find(['/', '?', '#'])
        .unwrap_or(text.len() - scheme_end);
    let authority = &text[scheme_end..scheme_end + authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    (colon + 1 < at).then(|| (scheme_end + colon + 1, scheme_end + at))
}

#[derive(Clone, Copy)]
enum Region {
    Arguments,
    Environment,
}

/// The `[start, end)` addresses of this process's original argument or environment strings, as the kernel
/// reports them in `/proc/self/stat` (fields 48–51, Linux ≥ 3.5).
fn memory_region(region: Region) -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state); field N is at index N - 3.
    let (a, b) = match region {
        Region::Arguments => (48, 49),
        Region::Environment => (50, 51),
    };
    let start = fields.get(a - 3)?.trim().parse::<usize>().ok()?;
    let end = fields.get(b - 3)?.trim().parse::<usize>().ok()?;
    (start != 0 && start < end).then_some((start, end))
}

/// Overwrites with `*`, in this process's memory between `start` and `end` (NUL-separated strings), the part of
/// each string that `secret` returns (a byte range within the string).
fn mask_in_place(start: usize, end: usize, secret: impl Fn(&[u8]) -> Option<(usize, usize)>) {
    // SAFETY: the kernel reports this range as the process's own argument/environment strings: mapped, writable
    // memory (the initial stack) that lives as long as the process. No other thread exists yet, and the bytes
    // are only changed within each string, never its NUL terminator.
    let bytes = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let mut offset = 0;
    while offset < bytes.len() {
        let len = bytes[offset..]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(bytes.len() - offset);
        if let Some((from, to)) = secret(&bytes[offset..offset + len]) {
            for b in &mut bytes[offset + from.min(to)..offset + to.min(len)] {
                *b = b'*';
            }
        }
        offset += len + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_url_is_found() {
        let t = "--db-url=postgres://app:hunter2@db/app";
        let (a, b) = password_span(t).unwrap();
        assert_eq!(&t[a..b], "hunter2");
        assert_eq!(password_span("postgres://app@db/app"), None);
        assert_eq!(password_span("https://example.com/a:b@c"), None);
    }

    #[test]
    fn the_process_regions_are_found() {
        let (start, end) = memory_region(Region::Environment).unwrap();
        assert!(end > start);
        let (start, end) = memory_region(Region::Arguments).unwrap();
        assert!(end > start);
    }
}
