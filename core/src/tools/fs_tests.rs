use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::symlink;

use pretty_assertions::assert_eq;

use super::ReadLedger;
use super::WriteMode;
use super::WriteRequest;
use super::read_file;
use super::write_file;
use crate::tools::workspace::Workspace;
use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolError;

struct Env {
    dir: tempfile::TempDir,
    ws: Workspace,
    ledger: ReadLedger,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&dir.path().join("ws"), false).unwrap();
    Env {
        dir,
        ws,
        ledger: ReadLedger::default(),
    }
}

impl Env {
    fn put(&self, rel: &str, content: &str) {
        let p = self.ws.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn get(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.root().join(rel)).unwrap()
    }

    fn read(&self, rel: &str) -> String {
        read_file(&self.ws, &self.ledger, rel, 1, None, 400)
            .unwrap()
            .observation
            .unwrap()
    }

    fn write(&self, req: WriteRequest) -> Result<String, ToolError> {
        write_file(&self.ws, &self.ledger, req).map(|o| {
            let text = o.observation.unwrap();
            assert_eq!(o.value, serde_json::Value::String(text.clone()));
            text
        })
    }
}

fn req(path: &str, mode: WriteMode, payload: &str) -> WriteRequest {
    WriteRequest {
        path: path.to_string(),
        mode,
        start_line: None,
        end_line: None,
        after_line: None,
        edits: None,
        payloads: vec![payload.to_string()],
    }
}

fn edit(path: &str, a: i64, b: i64, payload: &str) -> WriteRequest {
    WriteRequest {
        start_line: Some(a),
        end_line: Some(b),
        ..req(path, WriteMode::Edit, payload)
    }
}

fn insert(path: &str, after: i64, payload: &str) -> WriteRequest {
    WriteRequest {
        after_line: Some(after),
        ..req(path, WriteMode::Insert, payload)
    }
}

fn multi(path: &str, edits: &[(i64, i64)], payloads: &[&str]) -> WriteRequest {
    WriteRequest {
        edits: Some(edits.to_vec()),
        payloads: payloads.iter().map(|s| (*s).to_string()).collect(),
        ..req(path, WriteMode::MultiEdit, "")
    }
}

const FIVE: &str = "one\ntwo\nthree\nfour\nfive\n";

#[test]
fn read_formats() {
    let e = env();
    e.put("a.txt", FIVE);
    let out = read_file(&e.ws, &e.ledger, "a.txt", 1, None, 400).unwrap();
    insta::assert_snapshot!("read_whole", out.observation.unwrap());
    assert_eq!(
        out.value,
        serde_json::json!(
            "    1 | one\n    2 | two\n    3 | three\n    4 | four\n    5 | five\n[END OF FILE]"
        )
    );
    insta::assert_snapshot!("read_range", e_read(&e, "a.txt", 2, Some(3), 400));
    insta::assert_snapshot!("read_paged", e_read(&e, "a.txt", 1, None, 2));
    insta::assert_snapshot!("read_paged_second", e_read(&e, "a.txt", 3, None, 2));
    // end_line past the end is clamped.
    assert!(e_read(&e, "a.txt", 4, Some(99), 400).ends_with("[END OF FILE]"));
    e.put("empty.txt", "");
    insta::assert_snapshot!("read_empty", e_read(&e, "empty.txt", 1, None, 400));
    e.put("crlf.txt", "a\r\nb\r\n");
    assert_eq!(
        e_read(&e, "crlf.txt", 1, None, 400),
        "[read_file] 'crlf.txt' (lines 1–2 of 2)\n    1 | a\n    2 | b\n[END OF FILE]"
    );
    e.put("long.txt", &format!("{}\n", "x".repeat(2005)));
    assert!(e_read(&e, "long.txt", 1, None, 400).contains(" … [line cut: 5 more characters]"));
}

fn e_read(e: &Env, p: &str, s: i64, end: Option<i64>, max: usize) -> String {
    read_file(&e.ws, &e.ledger, p, s, end, max)
        .unwrap()
        .observation
        .unwrap()
}

#[test]
fn read_errors() {
    let e = env();
    e.put("a.txt", FIVE);
    e.put("bin.dat", "ab\0cd");
    std::fs::create_dir(e.ws.root().join("dir")).unwrap();
    let cases = [
        ("a.txt", 0, None, ExcKind::ValueError),
        ("a.txt", 3, Some(2), ExcKind::ValueError),
        ("a.txt", 6, None, ExcKind::ValueError),
        ("nope.txt", 1, None, ExcKind::FileNotFoundError),
        ("dir", 1, None, ExcKind::ValueError),
        ("bin.dat", 1, None, ExcKind::ValueError),
        ("../x", 1, None, ExcKind::PermissionError),
    ];
    let mut all = String::new();
    for (p, s, end, kind) in cases {
        let f = read_file(&e.ws, &e.ledger, p, s, end, 400).unwrap_err();
        assert_eq!(f.kind, kind, "{p}");
        all.push_str(
            &f.message
                .replace(&e.ws.root().display().to_string(), "<ROOT>"),
        );
        all.push('\n');
    }
    insta::assert_snapshot!("read_errors", all);
}

#[test]
fn write_modes_and_messages() {
    let e = env();
    let mut log = String::new();
    let mut step = |r: WriteRequest, e: &Env| {
        log.push_str(&e.write(r).unwrap());
        log.push('\n');
    };
    step(req("src/new/a.txt", WriteMode::Write, "one\ntwo"), &e);
    assert_eq!(e.get("src/new/a.txt"), "one\ntwo\n");
    step(req("src/new/a.txt", WriteMode::Append, "three\n"), &e);
    assert_eq!(e.get("src/new/a.txt"), "one\ntwo\nthree\n");
    step(edit("src/new/a.txt", 2, 2, "TWO\nTWO-B\n"), &e);
    assert_eq!(e.get("src/new/a.txt"), "one\nTWO\nTWO-B\nthree\n");
    step(insert("src/new/a.txt", 0, "zero"), &e);
    assert_eq!(e.get("src/new/a.txt"), "zero\none\nTWO\nTWO-B\nthree\n");
    step(insert("src/new/a.txt", 5, "end"), &e);
    assert_eq!(
        e.get("src/new/a.txt"),
        "zero\none\nTWO\nTWO-B\nthree\nend\n"
    );
    step(
        multi("src/new/a.txt", &[(5, 6), (1, 1)], &["last\n", ""]),
        &e,
    );
    assert_eq!(e.get("src/new/a.txt"), "one\nTWO\nTWO-B\nlast\n");
    step(edit("src/new/a.txt", 1, 4, ""), &e);
    assert_eq!(e.get("src/new/a.txt"), "");
    insta::assert_snapshot!("write_messages", log);
}

#[test]
fn append_adds_missing_newline_and_creates_file() {
    let e = env();
    e.put("a.txt", "no newline");
    e.write(req("a.txt", WriteMode::Append, "more")).unwrap();
    assert_eq!(e.get("a.txt"), "no newline\nmore\n");
    e.write(req("fresh.txt", WriteMode::Append, "x\n")).unwrap();
    assert_eq!(e.get("fresh.txt"), "x\n");
}

#[test]
fn crlf_is_preserved() {
    let e = env();
    e.put("w.txt", "a\r\nb\r\nc\r\n");
    e.read("w.txt");
    e.write(edit("w.txt", 2, 2, "B1\nB2\n")).unwrap();
    assert_eq!(e.get("w.txt"), "a\r\nB1\r\nB2\r\nc\r\n");
    e.write(insert("w.txt", 4, "d")).unwrap();
    assert_eq!(e.get("w.txt"), "a\r\nB1\r\nB2\r\nc\r\nd\r\n");
    e.write(multi("w.txt", &[(1, 1), (5, 5)], &["A", "D\r\n"]))
        .unwrap();
    assert_eq!(e.get("w.txt"), "A\r\nB1\r\nB2\r\nc\r\nD\r\n");
    e.write(req("w.txt", WriteMode::Append, "e\nf")).unwrap();
    assert_eq!(e.get("w.txt"), "A\r\nB1\r\nB2\r\nc\r\nD\r\ne\r\nf\r\n");
    e.write(req("w.txt", WriteMode::Write, "x\ny\n")).unwrap();
    assert_eq!(e.get("w.txt"), "x\r\ny\r\n");
}

#[test]
fn missing_final_newline_is_kept_by_line_edits() {
    let e = env();
    e.put("n.txt", "a\nb");
    e.read("n.txt");
    e.write(edit("n.txt", 2, 2, "B\n")).unwrap();
    assert_eq!(e.get("n.txt"), "a\nB");
    e.write(insert("n.txt", 2, "c\n")).unwrap();
    assert_eq!(e.get("n.txt"), "a\nB\nc");
    e.write(insert("n.txt", 0, "top")).unwrap();
    assert_eq!(e.get("n.txt"), "top\na\nB\nc");
}

#[test]
fn mode_bits_are_preserved_and_new_files_are_0644() {
    let e = env();
    e.put("run.sh", "#!/bin/sh\necho hi\n");
    let p = e.ws.root().join("run.sh");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    e.read("run.sh");
    e.write(edit("run.sh", 2, 2, "echo bye\n")).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o755
    );
    e.write(req("run.sh", WriteMode::Write, "#!/bin/sh\n"))
        .unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o755
    );
    e.write(req("new.txt", WriteMode::Write, "x")).unwrap();
    let mode = std::fs::metadata(e.ws.root().join("new.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn invalid_requests_change_nothing() {
    let e = env();
    e.put("a.txt", FIVE);
    e.read("a.txt");
    let bad = [
        edit("a.txt", 0, 1, "x"),
        edit("a.txt", 3, 2, "x"),
        edit("a.txt", 5, 6, "x"),
        WriteRequest {
            end_line: None,
            ..edit("a.txt", 1, 1, "x")
        },
        insert("a.txt", 6, "x"),
        insert("a.txt", -1, "x"),
        multi("a.txt", &[(1, 2), (4, 9)], &["x", "y"]),
        multi("a.txt", &[(1, 3), (3, 4)], &["x", "y"]),
        multi("a.txt", &[(1, 2)], &["x", "y"]),
        multi("a.txt", &[], &[]),
        WriteRequest {
            start_line: Some(1),
            ..req("a.txt", WriteMode::Write, "x")
        },
        WriteRequest {
            after_line: Some(1),
            ..edit("a.txt", 1, 1, "x")
        },
        req("../escape.txt", WriteMode::Write, "x"),
        req(".", WriteMode::Write, "x"),
    ];
    let mut all = String::new();
    for r in bad {
        let f = e.write(r.clone()).unwrap_err();
        assert!(!is_stale(&f), "{r:?}");
        assert!(f.message.ends_with("No file was changed."), "{}", f.message);
        assert_eq!(e.get("a.txt"), FIVE, "{r:?}");
        all.push_str(
            &f.message
                .replace(&e.ws.root().display().to_string(), "<ROOT>"),
        );
        all.push('\n');
    }
    insta::assert_snapshot!("write_errors", all);
    let f = WriteMode::parse("replace").unwrap_err();
    assert_eq!(f.kind, ExcKind::ValueError);
    insta::assert_snapshot!("write_bad_mode", f.message);
    assert_eq!(
        WriteMode::parse("multi_edit").unwrap(),
        WriteMode::MultiEdit
    );
}

#[test]
fn overlapping_multi_edit_is_refused_naming_both_ranges() {
    let e = env();
    e.put("a.txt", FIVE);
    e.read("a.txt");
    let f = e
        .write(multi("a.txt", &[(4, 5), (1, 2), (2, 3)], &["a", "b", "c"]))
        .unwrap_err();
    assert!(
        f.message.contains("edits (1, 2) and (2, 3) overlap"),
        "{}",
        f.message
    );
    assert_eq!(e.get("a.txt"), FIVE);
}

/// A refused line-number edit of a file the agent has not seen in its current state: a `ValueError` telling the
/// model to re-read the file.
fn is_stale(f: &ToolError) -> bool {
    f.kind == ExcKind::ValueError && f.message.contains("since you last read it")
}

#[test]
fn stale_read_refused_until_reread() {
    let e = env();
    e.put("a.txt", FIVE);
    // Never read.
    let f = e.write(edit("a.txt", 1, 1, "x")).unwrap_err();
    assert!(is_stale(&f));
    insta::assert_snapshot!("write_stale", f.message);
    e.read("a.txt");
    // Changed on disk after the read.
    e.put("a.txt", "zero\none\ntwo\nthree\nfour\nfive\n");
    for r in [
        edit("a.txt", 1, 1, "x"),
        insert("a.txt", 0, "x"),
        multi("a.txt", &[(1, 1)], &["x"]),
    ] {
        assert!(is_stale(&e.write(r).unwrap_err()));
    }
    // w and a do not need a read.
    e.put("b.txt", "b\n");
    e.write(req("b.txt", WriteMode::Append, "c")).unwrap();
    // ... but an append to an unread file does not count as having seen it.
    assert!(is_stale(&e.write(edit("b.txt", 1, 1, "x")).unwrap_err()));
    // Re-read, then edits chain without re-reading (the agent's own writes are recorded).
    e.read("a.txt");
    e.write(edit("a.txt", 1, 1, "ZERO")).unwrap();
    e.write(insert("a.txt", 6, "six")).unwrap();
    assert_eq!(e.get("a.txt"), "ZERO\none\ntwo\nthree\nfour\nfive\nsix\n");
    // A file created with w can be edited right away.
    e.write(req("c.txt", WriteMode::Write, "1\n2\n")).unwrap();
    e.write(edit("c.txt", 2, 2, "two")).unwrap();
    assert_eq!(e.get("c.txt"), "1\ntwo\n");
}

#[test]
fn writes_through_symlinks_stay_confined() {
    let e = env();
    let outside = e.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("t.txt"), "keep\n").unwrap();
    symlink(&outside, e.ws.root().join("out")).unwrap();
    symlink(outside.join("t.txt"), e.ws.root().join("t.txt")).unwrap();
    for r in [
        req("out/new.txt", WriteMode::Write, "x"),
        req("out/sub/new.txt", WriteMode::Write, "x"),
        req("t.txt", WriteMode::Write, "x"),
        req("t.txt", WriteMode::Append, "x"),
    ] {
        assert_eq!(e.write(r).unwrap_err().kind, ExcKind::PermissionError);
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("t.txt")).unwrap(),
        "keep\n"
    );
    assert!(!outside.join("new.txt").exists());
    assert!(!outside.join("sub").exists());
    // A symlink inside the workspace is written through, and stays a symlink.
    e.put("real.txt", "r\n");
    symlink("real.txt", e.ws.root().join("alias.txt")).unwrap();
    e.write(req("alias.txt", WriteMode::Write, "new")).unwrap();
    assert_eq!(e.get("real.txt"), "new\n");
    assert!(
        std::fs::symlink_metadata(e.ws.root().join("alias.txt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn unsafe_mode_writes_outside() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&dir.path().join("ws"), true).unwrap();
    let ledger = ReadLedger::default();
    write_file(&ws, &ledger, req("../o.txt", WriteMode::Write, "x")).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("o.txt")).unwrap(),
        "x\n"
    );
}

#[test]
fn no_temp_files_left_behind() {
    let e = env();
    e.write(req("a.txt", WriteMode::Write, "x")).unwrap();
    e.read("a.txt");
    e.write(edit("a.txt", 1, 1, "y")).unwrap();
    let names: Vec<String> = std::fs::read_dir(e.ws.root())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["a.txt".to_string()]);
}

#[test]
fn a_rewrite_keeps_owner_and_mode_but_never_set_id_bits() {
    use std::os::unix::fs::MetadataExt;
    let e = env();
    e.put("tool.sh", "echo old\n");
    let path = e.ws.root().join("tool.sh");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }
    e.write(req("tool.sh", WriteMode::Write, "echo new"))
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o755,
        "set-id bits are not carried to new content"
    );
    if root {
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "the owner stays");
    }
    assert_eq!(e.get("tool.sh"), "echo new\n");
}
