//! `codepilot index` and `codepilot search` (SPEC §22) on a small project: the index is built and stored under
//! CODEPILOT_HOME, each mode answers, JSON is JSON, bad input is a usage error.

use pretty_assertions::assert_eq;

use super::support::codepilot;
use super::support::stderr;
use super::support::stdout;

fn project(dir: &std::path::Path) {
    let src = dir.join("proj/src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "/// Reads the settings file.\npub fn load_settings(path: &str) -> Settings {\n    parse_settings(&std::fs::read_to_string(path).unwrap())\n}\n\nfn parse_settings(text: &str) -> Settings {\n    Settings { verbose: text.contains(\"verbose\") }\n}\n\npub struct Settings { pub verbose: bool }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("main.rs"),
        "fn main() {\n    let s = lib::load_settings(\"a.toml\");\n}\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_and_search_answer_for_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());

    let out = codepilot(dir.path(), &["index", "status", "--dir", "proj"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("files       2") && text.contains("parsed      rust 2"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "stored at   {}",
            dir.path().join("home/index").display()
        )),
        "{text}"
    );

    let out = codepilot(
        dir.path(),
        &[
            "search",
            "read the settings file",
            "--dir",
            "proj",
            "-k",
            "1",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("1. src/lib.rs:1-4  load_settings (function)"),
        "{}",
        stdout(&out)
    );

    let out = codepilot(
        dir.path(),
        &[
            "search",
            "Settings",
            "-m",
            "definition",
            "-d",
            "proj",
            "--json",
        ],
    )
    .await;
    let defs: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(defs[0]["file"], "src/lib.rs");
    assert_eq!(defs[0]["line"], 10);
    assert_eq!(defs[0]["kind"], "struct");

    let out = codepilot(
        dir.path(),
        &[
            "search",
            "parse_settings",
            "-m",
            "trace-callers",
            "-d",
            "proj",
        ],
    )
    .await;
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "load_settings → parse_settings  src/lib.rs:3  parse_settings(&std::fs::read_to_string(path).unwrap())  [parse_settings at src/lib.rs:6]",
            "  main → load_settings  src/main.rs:2  let s = lib::load_settings(\"a.toml\");  [load_settings at src/lib.rs:2]",
        ]
    );
    let out = codepilot(
        dir.path(),
        &["search", "Settings", "-m", "references", "-d", "proj"],
    )
    .await;
    assert!(
        stdout(&out).starts_with("3 references (0 calls):\nsrc/lib.rs:2 ref in load_settings:"),
        "{}",
        stdout(&out)
    );

    let out = codepilot(
        dir.path(),
        &["index", "map", "-d", "proj", "--max-tokens", "64"],
    )
    .await;
    assert!(
        stdout(&out).starts_with("src/lib.rs:\n"),
        "{}",
        stdout(&out)
    );

    let out = codepilot(
        dir.path(),
        &[
            "search",
            "nothing_like_this",
            "-m",
            "definition",
            "-d",
            "proj",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "nothing found is exit 1");
    assert!(
        stdout(&out).contains("no definition of \"nothing_like_this\""),
        "{}",
        stdout(&out)
    );

    let out = codepilot(dir.path(), &["index", "rebuild", "-d", "proj", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["last_refresh"]["loaded"], false);
    assert_eq!(status["last_refresh"]["updated"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = codepilot(dir.path(), &["search", "x", "--dir", "missing"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot index missing"),
        "{}",
        stderr(&out)
    );
    let out = codepilot(dir.path(), &["search", "  "]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the query is empty"),
        "{}",
        stderr(&out)
    );
    let out = codepilot(dir.path(), &["search", "x", "-k", "0"]).await;
    assert_eq!(out.status.code(), Some(2));
}
