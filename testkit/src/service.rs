//! The one rule for a test whose outside service is missing (the test Postgres, moto, an MCP fixture, the
//! sandbox's user namespaces): under CI ([`under_ci`]) the test fails, saying what to install; elsewhere it is
//! skipped loudly.
//!
//! A skip writes a notice straight to the terminal (`std::io::stderr()`, which the test harness does not capture,
//! unlike `eprintln!`), so `cargo test` shows it next to the "ok" of the test, and appends a line to the skip log
//! named by [`SKIP_LOG_VAR`] when it is set: `scripts/test.sh` sets it and prints the count and the names of the
//! skipped tests at the end.
//!
//! ```no_run
//! fn pg_test() {
//!     let Some(url) = codepilot_testkit::service::pg_url() else {
//!         return; // skipped, and said so
//!     };
//!     # let _ = url;
//! }
//! ```

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

/// The variable naming the file each skip appends a line to (`TEST: needs SERVICE`); unset, skips are only
/// reported on the terminal.
pub const SKIP_LOG_VAR: &str = "CODEPILOT_SKIP_LOG";

/// Whether the tests run under CI: `CI` is set to anything but nothing, `0` or `false` (any case). Python's test
/// suite applies the same rule.
#[must_use]
pub fn under_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

/// [`under_ci`] for a value of `CI` (`None`: unset).
fn ci_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// The running test's name: libtest names each test's thread after it.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "a test".to_owned(),
    }
}

/// The running test cannot run because `service` is missing; `install` says how to provide it.
///
/// Under CI this panics, naming the test, the service and `install`: CI never skips. Elsewhere it writes a notice
/// to the terminal and a line to the skip log ([`SKIP_LOG_VAR`]) and returns; the caller then returns (skips).
///
/// # Panics
/// Under CI, always.
#[track_caller]
pub fn missing(service: &str, install: &str) {
    let log = std::env::var_os(SKIP_LOG_VAR)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    // Straight to the terminal: the harness captures `eprintln!`, which would hide the skip behind an "ok".
    let skipped = skip(
        &test_name(),
        service,
        install,
        under_ci(),
        log.as_deref(),
        &mut std::io::stderr(),
    );
    if let Err(message) = skipped {
        panic!("{message}");
    }
}

/// [`missing`] with its inputs given: `Err` with the failure message under CI, else the notice on `terminal` and a
/// line in `log`.
fn skip(
    test: &str,
    service: &str,
    install: &str,
    ci: bool,
    log: Option<&Path>,
    terminal: &mut dyn Write,
) -> Result<(), String> {
    if ci {
        return Err(format!(
            "{test} needs {service}, which is missing, and under CI (CI is set) tests never skip: {install}"
        ));
    }
    let _ = writeln!(
        terminal,
        "notice: skipped {test}: it needs {service}; {install}"
    );
    if let Some(log) = log {
        let line = format!("{test}: needs {service}\n");
        // One append per line: lines from tests running in parallel do not interleave.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(
                terminal,
                "notice: could not record the skip in {}: {e}",
                log.display()
            );
        }
    }
    Ok(())
}

/// The test Postgres server's URL, `CODEPILOT_TEST_PG_URL`; `None` after [`missing`] when it is unset or empty.
///
/// # Panics
/// Under CI when it is unset.
#[must_use]
#[track_caller]
pub fn pg_url() -> Option<String> {
    match std::env::var("CODEPILOT_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            missing(
                "PostgreSQL (CODEPILOT_TEST_PG_URL is not set)",
                "run `export CODEPILOT_TEST_PG_URL=\"$(bash .ci/postgres.sh | tail -n 1)\"`",
            );
            None
        }
    }
}

/// The file the variable `var` names, a fixture a setup script installs; `None` after [`missing`] when the
/// variable is unset or empty or the file does not exist. `install` says which script provides it.
///
/// # Panics
/// Under CI when the file is missing.
#[must_use]
#[track_caller]
pub fn fixture_path(var: &str, install: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|p| !p.is_empty()) {
        Some(path) if PathBuf::from(&path).exists() => Some(PathBuf::from(path)),
        Some(path) => {
            missing(
                &format!(
                    "the fixture {var} names, {}, which does not exist",
                    PathBuf::from(path).display()
                ),
                install,
            );
            None
        }
        None => {
            missing(&format!("a fixture ({var} is unset or empty)"), install);
            None
        }
    }
}

/// [`missing`] for a test of the sandbox on a machine that cannot sandbox shells; `why` is what the sandbox's
/// probe said (`codepilot_sandbox::probe().namespaces`).
///
/// # Panics
/// Under CI.
#[track_caller]
pub fn sandbox_missing(why: &str) {
    missing(
        &format!("unprivileged user namespaces for the sandbox ({why})"),
        "allow them on this machine (Debian: `sysctl kernel.unprivileged_userns_clone=1`; a container must allow \
         them too); `codepilot sandbox check` says what is missing",
    );
}

/// Skips (or, under CI, fails) a test that needs writable cgroups for the resource limits.
pub fn cgroups_missing(why: &str) {
    missing(
        &format!("writable cgroups for the resource limits ({why})"),
        "run the tests as root on a host with the cgroup v1 pids and memory controllers, or in a delegated cgroup \
         v2 subtree (CODEPILOT_CGROUP); `codepilot sandbox check` says what is missing",
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::ci_value;
    use super::skip;

    #[test]
    fn a_skip_is_said_on_the_terminal_and_logged_and_fails_under_ci() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skipped.txt");
        let mut terminal = Vec::new();
        for test in ["suite::a", "suite::b"] {
            skip(
                test,
                "moto",
                "run scripts/moto.sh",
                false,
                Some(&log),
                &mut terminal,
            )
            .unwrap();
        }
        let said = String::from_utf8(terminal).unwrap();
        assert!(
            said.starts_with("notice: skipped suite::a: it needs moto; run scripts/moto.sh\n"),
            "{said}"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "suite::a: needs moto\nsuite::b: needs moto\n"
        );
        let mut terminal = Vec::new();
        let failed = skip(
            "suite::c",
            "moto",
            "run scripts/moto.sh",
            true,
            Some(&log),
            &mut terminal,
        )
        .unwrap_err();
        assert!(
            failed.contains("suite::c")
                && failed.contains("moto")
                && failed.contains("scripts/moto.sh"),
            "{failed}"
        );
        assert!(terminal.is_empty());
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    }

    #[test]
    fn what_counts_as_ci() {
        for yes in ["true", "1", "yes", "TRUE", "woodpecker"] {
            assert!(ci_value(Some(yes)), "{yes}");
        }
        for no in ["", " ", "0", "false", "False", "FALSE"] {
            assert!(!ci_value(Some(no)), "{no:?}");
        }
        assert!(!ci_value(None));
    }
}
