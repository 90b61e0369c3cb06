use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

#[test]
fn files_and_parent_directories_are_created() {
    let ws = temp_workspace(&[("a.txt", "A"), ("src/deep/b.rs", "fn b() {}\n")]);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("a.txt")).unwrap(),
        "A"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("src/deep/b.rs")).unwrap(),
        "fn b() {}\n"
    );
}

#[test]
#[should_panic(expected = "must be a relative path inside the workspace")]
fn escaping_paths_are_refused() {
    let _ws = temp_workspace(&[("../escape.txt", "x")]);
}
