//! `codepilot sessions export` and `codepilot replay` (SPEC §23): a session run with scripted answers is exported and
//! replayed identically (payload blocks included, though the history keeps them compacted); a replay from another
//! starting workspace is reported at the first message that differs.

use base64::Engine as _;
use pretty_assertions::assert_eq;

use super::support::codepilot;
use super::support::stderr;
use super::support::stdout;

const ANSWERS: &str = "Let me look.\n```codepilot\nprint(read_file(\"calc.py\"))\nexecute(\"main\", \"python3 -c 'import calc; print(calc.add(2, 3))'\")\n```\n--- next answer ---\nFixing it.\n```codepilot\nwrite_file(\"calc.py\", mode=\"edit\", start_line=2, end_line=2)\nexecute(\"main\", \"python3 -c 'import calc; print(calc.add(2, 3))'\")\n```\n```python filename=calc.py\n    return a + b\n```\n--- next answer ---\n```completion\nFixed add.\n```\n";

fn project(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::write(
        dir.join("work/calc.py"),
        "def add(a, b):\n    return a - b\n",
    )
    .unwrap();
    std::fs::write(dir.join("answers.txt"), ANSWERS).unwrap();
    std::fs::write(
        dir.join("agent.yaml"),
        "name: Fixer\nmodel:\n  provider: scripted\n  name: scripted\n  script: answers.txt\nruntime:\n  work_dir: work\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_session_replays_identically_and_a_change_is_found() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = codepilot(
        dir.path(),
        &["run", "--session-id", "fix1", "fix add in calc.py"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The run recorded its agent file with the session: exporting needs no --config.
    std::fs::rename(
        dir.path().join("agent.yaml"),
        dir.path().join("renamed.yaml"),
    )
    .unwrap();
    let out = codepilot(dir.path(), &["sessions", "export", "fix1", "-o", "t.jsonl"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exported session fix1: 6 message(s), 0 event(s), 1 file(s)"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(dir.path().join("t.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[..3], ["header", "workspace", "message"]);
    assert_eq!(kinds.last(), Some(&"end"));
    assert!(
        lines[0]["agent_yaml"]
            .as_str()
            .unwrap()
            .contains("script: answers.txt")
    );
    assert!(
        lines[0]["agent_file"]
            .as_str()
            .unwrap()
            .ends_with("agent.yaml")
    );
    let fix = lines
        .iter()
        .find(|l| {
            l["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("Fixing it."))
        })
        .unwrap();
    assert!(
        fix["content"]
            .as_str()
            .unwrap()
            .contains("not kept in history"),
        "the history keeps it compacted"
    );
    assert!(
        fix["raw"].as_str().unwrap().contains("    return a + b"),
        "the trajectory has the answer as given"
    );

    let out = codepilot(dir.path(), &["replay", "t.jsonl"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "replayed 1 task(s), 6 message(s) compared\nevery message is the same as recorded\nthe work directory ends the same (tree hash matches)\n"
    );

    // Another starting file: the first observation differs (the end does not: the edit rewrites that line).
    let changed: String = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["type"] == "workspace" {
                v["files"][0]["data"] = base64::engine::general_purpose::STANDARD
                    .encode("def add(a, b):\n    return a * b\n")
                    .into();
            }
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("changed.jsonl"), changed).unwrap();
    let replay_dir = dir.path().join("again");
    let out = codepilot(
        dir.path(),
        &["replay", "changed.jsonl", "--work-dir", "again", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["identical"], false);
    assert_eq!(report["first_difference"]["index"], 2);
    assert_eq!(report["first_difference"]["task"], 1);
    assert!(
        report["first_difference"]["replayed"]
            .as_str()
            .unwrap()
            .contains("return a * b")
    );
    assert_eq!(report["tree_hash"], report["recorded_tree_hash"]);
    assert!(replay_dir.join("calc.py").exists(), "--work-dir is kept");

    // Not empty: refused before anything runs.
    let out = codepilot(dir.path(), &["replay", "t.jsonl", "--work-dir", "again"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    let out = codepilot(dir.path(), &["replay", "answers.txt"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 1: not a trajectory line"),
        "{}",
        stderr(&out)
    );
}

/// The demo's project, answers and task, run as a stored session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_session_replays_identically() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    for name in ["calc.py", "test_calc.py"] {
        std::fs::copy(
            demo.join("project").join(name),
            dir.path().join("work").join(name),
        )
        .unwrap();
    }
    std::fs::copy(demo.join("answers.md"), dir.path().join("answers.md")).unwrap();
    std::fs::write(
        dir.path().join("agent.yaml"),
        "name: CodePilot demo\nmodel:\n  provider: scripted\n  name: demo-script\n  script: answers.md\nruntime:\n  work_dir: work\n  max_steps: 8\n",
    )
    .unwrap();
    let task = "The test suite fails. Find the bug and fix it, then confirm the tests pass.";
    let out = codepilot(dir.path(), &["run", "--session-id", "demo1", task]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = codepilot(
        dir.path(),
        &["sessions", "export", "demo1", "-o", "demo.jsonl"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = codepilot(dir.path(), &["replay", "demo.jsonl", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["identical"], true, "{report:#}");
    assert_eq!(out.status.code(), Some(0));
    assert!(report["messages"].as_u64().unwrap() >= 6, "{report}");
}

/// 200 steps in a first turn, two more in a second: the whole session replays identically, and so does the second
/// turn alone (`--from-checkpoint 2`); checkpoints a replay cannot start at are refused with the ones it can. (The
/// context window is large: token counts include the work directory's path, so a session that crossed a context
/// threshold by a few tokens may cross it a step earlier or later where the path is longer or shorter.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_step_session_replays_identically_from_the_start_and_from_a_later_turn() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    std::fs::write(dir.path().join("work/seed.txt"), "seed\n").unwrap();
    let mut first: Vec<String> = (1..=200)
        .map(|i| {
            let shell = if i % 25 == 0 {
                "\nexecute(\"main\", \"ls | wc -l\")"
            } else {
                ""
            };
            format!(
                "Step {i}.\n```codepilot\nwrite_file(\"n{}.txt\")\nprint(read_file(\"n{}.txt\")){shell}\n```\n```text filename=n{}.txt\nline {i}\n```",
                i % 40,
                i % 40,
                i % 40
            )
        })
        .collect();
    first.push("```completion\nwrote them\n```".to_owned());
    std::fs::write(
        dir.path().join("first.txt"),
        first.join("\n--- next answer ---\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("second.txt"),
        "```codepilot\nwrite_file(\"seed.txt\")\n```\n```text filename=seed.txt\nsecond turn\n```\n--- next answer ---\n```completion\nchanged the seed\n```\n",
    )
    .unwrap();
    let agent = |script: &str| {
        std::fs::write(
            dir.path().join("agent.yaml"),
            format!(
                "name: Long\nmodel:\n  provider: scripted\n  name: scripted\n  script: {script}\n  context_window: 1000000\nruntime:\n  work_dir: work\n  max_steps: 250\n  checkpoints: step\n  checkpoint_keep: 1000\n"
            ),
        )
        .unwrap();
    };
    agent("first.txt");
    let out = codepilot(
        dir.path(),
        &["run", "--session-id", "long", "write forty files"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    agent("second.txt");
    let out = codepilot(
        dir.path(),
        &["run", "--session-id", "long", "change the seed"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = codepilot(
        dir.path(),
        &["sessions", "export", "long", "-o", "long.jsonl"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("long.jsonl")).unwrap();
    let workspaces: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["type"] == "workspace")
        .collect();
    assert_eq!(workspaces.len(), 2, "one before each turn");
    assert!(
        workspaces[1]["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["data"].is_null())
            .count()
            >= 1,
        "content the first line holds is named by its hash"
    );

    let replay = |args: &'static [&'static str]| {
        let dir = dir.path().to_path_buf();
        async move {
            let mut all = vec!["replay", "long.jsonl", "--json"];
            all.extend_from_slice(args);
            codepilot(&dir, &all).await
        }
    };
    let out = replay(&[]).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["identical"], true, "{report:#}");
    assert_eq!(report["tasks"], 2);
    assert!(report["messages"].as_u64().unwrap() > 400, "{report}");
    assert_eq!(out.status.code(), Some(0));

    let out = replay(&["--from-checkpoint", "2"]).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["identical"], true, "{report:#}");
    assert_eq!(report["tasks"], 1);
    assert_eq!(out.status.code(), Some(0));

    let out = replay(&["--from-checkpoint", "1.3"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "checkpoint 1.3 is inside turn 1: a replay starts before a turn; use checkpoint 1"
        ),
        "{}",
        stderr(&out)
    );
    let out = replay(&["--from-checkpoint", "9"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no checkpoint 9; a replay can start at 1, 2"),
        "{}",
        stderr(&out)
    );
}
