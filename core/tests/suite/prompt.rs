//! The system prompt the model reads, snapshot-tested.

use codepilot_testkit::temp_workspace;

use super::support::Wire;
use super::support::start;
use super::support::system_text;

#[tokio::test]
async fn system_prompt_snapshot() {
    let dir = temp_workspace(&[]);
    let extra = "  system_prompt: Always write tests first.\n  tools:\n    - name: read_file\n    - name: write_file\n    - name: find\n    - name: execute\n    - name: read_output\n    - name: send_input\n    - name: terminate_terminal\n    - name: ask_user\n";
    let (server, rt, _rec) = start(&["hi"], Wire::OpenAi, dir.path(), extra).await;
    rt.run("hello").await.unwrap();
    let system = system_text(&server.requests()[0].body);
    let root = rt.work_dir().display().to_string();
    let redacted = system
        .replace(&root, "<WORK_DIR>")
        .replace(std::env::consts::OS, "<OS>");
    insta::assert_snapshot!("system_prompt_default_tools", redacted);
    rt.close().await.unwrap();
}

#[test]
fn the_crate_readme_names_every_built_in_tool() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    for name in codepilot::BUILTIN_TOOLS {
        assert!(
            readme.contains(&format!("`{name}`")),
            "core/README.md does not name the built-in `{name}`"
        );
    }
}

#[tokio::test]
async fn project_instructions_reach_the_prompt_nearest_last_and_edits_apply_next_turn() {
    let repo = temp_workspace(&[]);
    let root = repo.path().canonicalize().unwrap();
    std::fs::create_dir(root.join(".git")).unwrap();
    let work = root.join("app");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        root.join("AGENTS.md"),
        "Run `make test` before finishing.\n",
    )
    .unwrap();
    std::fs::write(work.join("AGENTS.md"), "This app uses 4-space indents.\n").unwrap();
    std::fs::write(root.join("STYLE.md"), "Name tests after behaviour.\n").unwrap();
    // Appended right after the `runtime:` keys, so the first line is one of them.
    let extra = format!(
        "    instructions_files: [{}]\n  system_prompt: Always write tests first.\n{}",
        serde_json::to_string(&root.join("STYLE.md").display().to_string()).unwrap(),
        super::support::FILE_TOOLS
    );
    let (server, rt, _rec) = start(&["one", "two"], Wire::OpenAi, &work, &extra).await;
    let printed = rt.system_prompt().unwrap();
    rt.run("first").await.unwrap();
    std::fs::write(work.join("AGENTS.md"), "This app now uses tabs.\n").unwrap();
    rt.run("second").await.unwrap();
    let first = system_text(&server.requests()[0].body);
    let second = system_text(&server.requests()[1].body);
    // The same but the context line: the call's request holds the task too.
    let without_context = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("Context: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_context(&printed),
        without_context(&first),
        "--print-prompt shows what the first call sends"
    );
    let redacted = first
        .replace(&root.display().to_string(), "<REPO>")
        .replace(std::env::consts::OS, "<OS>");
    let section = &redacted
        [redacted.find("# PROJECT INSTRUCTIONS").unwrap()..redacted.find("# ENVIRONMENT").unwrap()];
    insta::assert_snapshot!("project_instructions_section", section);
    assert!(
        second.contains("This app now uses tabs.") && !second.contains("4-space"),
        "{second}"
    );
    rt.close().await.unwrap();
}
