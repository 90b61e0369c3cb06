//! File tools driven by the model: every write_file mode, read paging, find, payload matching.

use codepilot::Outcome;
use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

use super::support::Wire;
use super::support::last_user_text;
use super::support::start;

const DONE: &str = "```completion\ndone\n```";

#[tokio::test]
async fn every_write_mode_through_the_model() {
    let dir = temp_workspace(&[]);
    let step1 = "Create the file.\n\n```codepilot\nwrite_file(\"src/notes.txt\")\n```\n\n```text filename=src/notes.txt\none\ntwo\nthree\n```\n";
    let step2 = "Append, after reading.\n\n```codepilot\nread_file(\"src/notes.txt\")\nwrite_file(\"src/notes.txt\", mode=\"a\")\n```\n\n```text filename=src/notes.txt\nfour\n```\n";
    let step3 = "```codepilot\nread_file(\"src/notes.txt\")\n```";
    let step4 = "```codepilot\nwrite_file(\"src/notes.txt\", mode=\"edit\", start_line=2, end_line=2)\n```\n\n```text filename=src/notes.txt\nTWO\n```";
    let step5 = "```codepilot\nread_file(\"src/notes.txt\")\n```";
    let step6 = "```codepilot\nwrite_file(\"src/notes.txt\", mode=\"insert\", after_line=0)\n```\n\n```text filename=src/notes.txt\nzero\n```";
    let step7 = "```codepilot\nread_file(\"src/notes.txt\")\n```";
    let step8 = "```codepilot\nwrite_file(\"src/notes.txt\", mode=\"multi_edit\", edits=[(1, 1), (4, 5)])\n```\n\n```text filename=src/notes.txt\nZERO\n```\n\n```text filename=src/notes.txt\nTHREE-FOUR\n```";
    let (server, rt, _rec) = start(
        &[step1, step2, step3, step4, step5, step6, step7, step8, DONE],
        Wire::OpenAi,
        dir.path(),
        "",
    )
    .await;
    // max_steps is 6 in the helper; run the sequence as two tasks.
    let first = rt.run("edit notes, part 1").await.unwrap();
    assert_eq!(first, Outcome::MaxSteps { steps: 6 });
    let second = rt.run("edit notes, part 2").await.unwrap();
    assert!(matches!(second, Outcome::Completed { .. }), "{second:?}");
    let text = std::fs::read_to_string(dir.path().join("src/notes.txt")).unwrap();
    assert_eq!(text, "ZERO\none\nTWO\nTHREE-FOUR\n");
    let reqs = server.requests();
    assert!(
        last_user_text(&reqs[1].body).contains("[write_file] 'src/notes.txt' written"),
        "{}",
        last_user_text(&reqs[1].body)
    );
}

#[tokio::test]
async fn editing_without_reading_is_refused_and_changes_nothing() {
    let dir = temp_workspace(&[("a.txt", "1\n2\n3\n")]);
    let edit = "```codepilot\nwrite_file(\"a.txt\", mode=\"edit\", start_line=1, end_line=1)\n```\n\n```text filename=a.txt\nX\n```";
    let (server, rt, _rec) = start(&[edit, DONE], Wire::OpenAi, dir.path(), "").await;
    rt.run("edit").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("re-read it"), "{obs}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "1\n2\n3\n"
    );
}

#[tokio::test]
async fn payload_mismatch_is_a_parse_error() {
    let dir = temp_workspace(&[]);
    let wrong = "```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=b.txt\nX\n```";
    let (server, rt, _rec) = start(&[wrong, DONE], Wire::OpenAi, dir.path(), "").await;
    rt.run("write").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("PARSER ERROR"), "{obs}");
    assert!(!dir.path().join("a.txt").exists() && !dir.path().join("b.txt").exists());
}

#[tokio::test]
async fn read_file_pages_long_files() {
    let body: String = (1..=1000).map(|n| format!("line {n}\n")).collect();
    let dir = temp_workspace(&[("big.txt", &body)]);
    let read = "```codepilot\nread_file(\"big.txt\")\nread_file(\"big.txt\", start_line=990)\n```";
    let (server, rt, _rec) = start(&[read, DONE], Wire::OpenAi, dir.path(), "").await;
    rt.run("read").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(
        obs.contains("[TRUNCATED: 600 lines remaining — use start_line=401]"),
        "{obs}"
    );
    assert!(obs.contains(" 1000 | line 1000"), "{obs}");
    assert!(obs.contains("[END OF FILE]"), "{obs}");
}

#[tokio::test]
async fn find_returns_structured_matches() {
    let dir = temp_workspace(&[
        ("src/a.rs", "fn alpha() {}\nfn beta() {}\n"),
        ("src/b.py", "def alpha(): pass\n"),
    ]);
    let search = "```codepilot\nhits = find(\"alpha\", include=\"*.rs\")\nprint(len(hits), hits[0][\"path\"], hits[0][\"line\"])\n```";
    let (server, rt, _rec) = start(&[search, DONE], Wire::OpenAi, dir.path(), "").await;
    rt.run("find").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("[find] 1 match"), "{obs}");
    assert!(obs.contains("1 src/a.rs 1"), "{obs}");
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused() {
    let dir = temp_workspace(&[]);
    let escape = "```codepilot\ntry:\n    read_file(\"../../etc/passwd\")\nexcept PermissionError as e:\n    print(\"refused\")\n```";
    let (server, rt, _rec) = start(&[escape, DONE], Wire::OpenAi, dir.path(), "").await;
    rt.run("escape").await.unwrap();
    let obs = last_user_text(&server.requests()[1].body);
    assert!(obs.contains("outside the workspace"), "{obs}");
    assert!(obs.contains("refused"), "{obs}");
}
