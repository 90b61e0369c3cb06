use std::os::unix::fs::symlink;
use std::sync::atomic::AtomicBool;

use pretty_assertions::assert_eq;

use super::FindMatch;
use super::FindRequest;
use super::find;
use crate::tools::workspace::Workspace;
use codepilot_protocol::ExcKind;

fn setup() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&dir.path().join("ws"), false).unwrap();
    let put = |rel: &str, content: &[u8]| {
        let p = ws.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    put("src/main.rs", b"fn main() {\n    helper();\n}\n");
    put("src/lib.rs", b"pub fn helper() {}\n// --pre=./x.sh\n");
    put("notes.txt", b"helper notes\n");
    put("target/debug/gen.rs", b"fn helper_generated() {}\n");
    put(".gitignore", b"target/\n");
    put("blob.bin", b"helper\0\x01\x02");
    (dir, ws)
}

fn req(pattern: &str) -> FindRequest {
    FindRequest {
        pattern: pattern.to_string(),
        scope: "codebase".to_string(),
        target: None,
        include: None,
        max_results: 50,
    }
}

fn run(ws: &Workspace, r: &FindRequest) -> (String, Vec<FindMatch>) {
    let stop = AtomicBool::new(false);
    let (out, matches) = find(ws, r, &stop).unwrap();
    let value_len = out.value.as_array().unwrap().len();
    assert_eq!(value_len, matches.len());
    (out.observation.unwrap(), matches)
}

#[test]
fn codebase_search_respects_gitignore_and_skips_binary() {
    let (_d, ws) = setup();
    let (obs, matches) = run(&ws, &req("helper"));
    insta::assert_snapshot!("find_codebase", obs);
    let paths: Vec<&str> = matches.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, vec!["notes.txt", "src/lib.rs", "src/main.rs"]);
    assert_eq!(
        matches[2],
        FindMatch {
            path: "src/main.rs".to_string(),
            line: 2,
            text: "    helper();".to_string()
        }
    );
}

#[test]
fn value_is_a_list_of_path_line_text() {
    let (_d, ws) = setup();
    let stop = AtomicBool::new(false);
    let (out, _) = find(&ws, &req("fn main"), &stop).unwrap();
    assert_eq!(
        out.value,
        serde_json::json!([{"path": "src/main.rs", "line": 1, "text": "fn main() {"}])
    );
}

#[test]
fn include_glob_filters() {
    let (_d, ws) = setup();
    let r = FindRequest {
        include: Some("*.rs".to_string()),
        ..req("helper")
    };
    let (obs, matches) = run(&ws, &r);
    assert_eq!(matches.len(), 2, "{obs}");
    let r = FindRequest {
        include: Some("src/m*.rs".to_string()),
        ..req("helper")
    };
    assert_eq!(run(&ws, &r).1.len(), 1);
    let r = FindRequest {
        include: Some("[".to_string()),
        ..req("helper")
    };
    let f = find(&ws, &r, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(f.kind, ExcKind::ValueError);
}

#[test]
fn max_results_shows_m_of_t() {
    let (_d, ws) = setup();
    let r = FindRequest {
        max_results: 2,
        ..req("helper")
    };
    let (obs, matches) = run(&ws, &r);
    assert_eq!(matches.len(), 2);
    insta::assert_snapshot!("find_truncated", obs);
}

#[test]
fn no_matches_and_bad_regex() {
    let (_d, ws) = setup();
    let (obs, matches) = run(&ws, &req("zzz_nothing"));
    assert_eq!(obs, "[find] No matches found.");
    assert!(matches.is_empty());
    let f = find(&ws, &req("fn ("), &AtomicBool::new(false)).unwrap_err();
    assert_eq!(f.kind, ExcKind::ValueError);
    assert!(
        f.message.starts_with("invalid regex 'fn (':"),
        "{}",
        f.message
    );
    assert_eq!(
        find(&ws, &req(""), &AtomicBool::new(false))
            .unwrap_err()
            .kind,
        ExcKind::ValueError
    );
}

#[test]
fn dash_dash_pattern_is_a_pattern() {
    let (_d, ws) = setup();
    let (_, matches) = run(&ws, &req("--pre=./x.sh"));
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].path, "src/lib.rs");
}

#[test]
fn file_and_files_scopes() {
    let (_d, ws) = setup();
    let r = FindRequest {
        scope: "file".to_string(),
        target: Some(vec!["src/main.rs".to_string()]),
        ..req("helper")
    };
    assert_eq!(run(&ws, &r).1.len(), 1);
    // An explicitly named ignored file is searched.
    let r = FindRequest {
        scope: "files".to_string(),
        target: Some(vec![
            "notes.txt".to_string(),
            "target/debug/gen.rs".to_string(),
        ]),
        ..req("helper")
    };
    let paths: Vec<String> = run(&ws, &r).1.into_iter().map(|m| m.path).collect();
    assert_eq!(paths, vec!["notes.txt", "target/debug/gen.rs"]);
    let bad_scope = FindRequest {
        scope: "everything".to_string(),
        ..req("x")
    };
    let f = find(&ws, &bad_scope, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(f.kind, ExcKind::ValueError);
    let missing = FindRequest {
        scope: "file".to_string(),
        target: Some(vec!["nope.rs".to_string()]),
        ..req("x")
    };
    assert_eq!(
        find(&ws, &missing, &AtomicBool::new(false))
            .unwrap_err()
            .kind,
        ExcKind::FileNotFoundError
    );
    let no_target = FindRequest {
        scope: "file".to_string(),
        ..req("x")
    };
    assert_eq!(
        find(&ws, &no_target, &AtomicBool::new(false))
            .unwrap_err()
            .kind,
        ExcKind::ValueError
    );
}

#[test]
fn confined_to_the_workspace() {
    let (d, ws) = setup();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "helper secret\n").unwrap();
    symlink(&outside, ws.root().join("out")).unwrap();
    symlink(outside.join("secret.txt"), ws.root().join("s.txt")).unwrap();
    // The walk does not follow symlinks out.
    let (_, matches) = run(&ws, &req("secret"));
    assert!(matches.is_empty(), "{matches:?}");
    for t in ["out", "s.txt", "../outside", "/etc"] {
        let r = FindRequest {
            scope: "file".to_string(),
            target: Some(vec![t.to_string()]),
            ..req("secret")
        };
        assert_eq!(
            find(&ws, &r, &AtomicBool::new(false)).unwrap_err().kind,
            ExcKind::PermissionError,
            "{t}"
        );
    }
}

#[test]
fn stop_flag_ends_the_search() {
    let (_d, ws) = setup();
    let stop = AtomicBool::new(true);
    let (out, matches) = find(&ws, &req("helper"), &stop).unwrap();
    assert!(matches.is_empty());
    assert_eq!(out.observation.as_deref(), Some("[find] No matches found."));
}

#[test]
fn long_lines_are_cut() {
    let (_d, ws) = setup();
    std::fs::write(
        ws.root().join("long.txt"),
        format!("needle{}\n", "y".repeat(1000)),
    )
    .unwrap();
    let (_, matches) = run(&ws, &req("needle"));
    assert_eq!(matches[0].text.chars().count(), 302);
    assert!(matches[0].text.ends_with(" …"));
}
