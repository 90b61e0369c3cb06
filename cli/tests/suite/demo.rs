//! `codepilot demo` works offline, with no API key, and says the model is scripted.

use pretty_assertions::assert_eq;

use super::support::codepilot_with;
use super::support::json_lines;
use super::support::stderr;
use super::support::stdout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fixes_the_failing_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = codepilot_with(dir.path(), &["demo"], &[("ANTHROPIC_API_KEY", "")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("SCRIPTED"), "{err}");
    assert!(
        stdout(&out).starts_with("Fixed `mean()`"),
        "{}",
        stdout(&out)
    );
    // The real test run happened and passed after the fix.
    assert!(err.contains("FAILED (failures=1)"), "{err}");
    assert!(err.contains("\n  OK"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_speaks_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = codepilot_with(dir.path(), &["demo", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.last().unwrap()["outcome"]["status"], "completed");
    assert!(
        super::support::events(&lines)
            .iter()
            .any(|e| e["type"] == "tool_call" && e["tool"] == "execute")
    );
}
