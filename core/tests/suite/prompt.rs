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
