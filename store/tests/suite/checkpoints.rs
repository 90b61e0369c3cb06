//! Checkpoints of a work directory (SPEC §19): what is recorded, what a rewind of files changes, retention, and a
//! mirror on a real S3-compatible server (moto).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use codepilot_protocol::CheckpointKind;
use codepilot_protocol::Message;
use codepilot_store::SessionId;
use codepilot_store::checkpoint::CheckpointError;
use codepilot_store::checkpoint::CheckpointOptions;
use codepilot_store::checkpoint::Cut;
use codepilot_store::checkpoint::HistoryDigest;
use codepilot_store::checkpoint::Position;
use codepilot_store::checkpoint::SessionCheckpoints;
use codepilot_testkit::tree_contents;
use pretty_assertions::assert_eq;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn opts(dir: &Path) -> CheckpointOptions {
    CheckpointOptions {
        dir: Some(dir.to_path_buf()),
        ..CheckpointOptions::default()
    }
}

fn turn(n: u64, history: &[Message]) -> Position {
    Position {
        kind: CheckpointKind::Turn,
        turn: n,
        step: None,
        messages: history.len() as u64,
        digest: HistoryDigest::of(history),
        archives: Vec::new(),
        cut: None,
    }
}

/// Everything but `.git` and the ignored files: what a checkpoint covers.
fn covered(root: &Path) -> std::collections::BTreeMap<String, (String, u32)> {
    let mut all = tree_contents(root);
    all.retain(|k, _| {
        !k.starts_with(".git/") && k != ".git" && !k.starts_with("target") && k != "debug.log"
    });
    all
}

#[test]
fn files_rewind_to_the_exact_tree_and_never_touch_git_or_ignored_files() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    write(root, "src/main.rs", b"fn main() {}\n");
    write(root, "src/lib/deep.rs", b"pub fn deep() {}\n");
    write(root, "run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(root, ".gitignore", b"target/\n*.log\n");
    write(root, "notes.txt", b"sed me\n");
    std::os::unix::fs::symlink("src/main.rs", root.join("main")).unwrap();
    write(root, ".git/HEAD", b"ref: refs/heads/main\n");
    write(root, ".git/objects/ab/cdef", b"object");
    write(root, "target/debug/app", b"binary");
    let session = SessionId::generate();
    let mut cps = SessionCheckpoints::open(&session, opts(home.path())).unwrap();
    let first = cps.capture(root, &turn(1, &[])).unwrap();
    assert_eq!(first.info.id, "1");
    assert_eq!(first.info.files, 5);
    let before = covered(root);
    let git_before = tree_contents(&root.join(".git"));

    // What a shell command does: a folder deleted, files created, an edit, a mode, a link retargeted, an ignored
    // file and a `.git` change that a rewind must leave alone.
    fs::remove_dir_all(root.join("src")).unwrap();
    write(root, "generated/out.txt", b"new");
    write(root, "extra.rs", b"// new");
    write(root, "notes.txt", b"sedded\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(root.join("main")).unwrap();
    std::os::unix::fs::symlink("notes.txt", root.join("main")).unwrap();
    write(root, "debug.log", b"ignored, created since");
    write(root, ".git/index", b"index");
    let git_after = tree_contents(&root.join(".git"));
    let ino = fs::metadata(root).unwrap().ino();

    let history = vec![Message::user("task")];
    let current = cps
        .capture(
            root,
            &Position {
                kind: CheckpointKind::Rewind,
                ..turn(1, &history)
            },
        )
        .unwrap();
    assert_eq!(current.info.id, "rewind-1");
    let target = cps.find("1").unwrap().clone();
    let now = cps.find("rewind-1").unwrap().clone();
    let plan = cps.file_plan(&target, &now, root).unwrap();
    let preview = cps.preview_files(&target, root).unwrap();
    assert_eq!(preview, plan, "a preview plans what the rewind does");
    assert_eq!(
        plan.files_restored(),
        5,
        "main.rs, deep.rs, notes, the mode, the link"
    );
    assert_eq!(plan.files_deleted(), 2, "out.txt and extra.rs");
    cps.apply_files(root, &plan, "rewind-1").unwrap();
    assert_eq!(covered(root), before);
    assert_eq!(
        tree_contents(&root.join(".git")),
        git_after,
        "`.git` is never written"
    );
    assert_ne!(git_after, git_before);
    assert_eq!(
        fs::read(root.join("debug.log")).unwrap(),
        b"ignored, created since"
    );
    assert_eq!(
        fs::metadata(root).unwrap().ino(),
        ino,
        "the work dir is kept"
    );
    let scratch: Vec<_> = fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with(".codepilot"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");

    // And back again: the rewind's own checkpoint holds the state it replaced.
    let back = cps.find("rewind-1").unwrap().clone();
    cps.capture(
        root,
        &Position {
            kind: CheckpointKind::Rewind,
            ..turn(1, &history)
        },
    )
    .unwrap();
    let now = cps.find("rewind-2").unwrap().clone();
    let plan = cps.file_plan(&back, &now, root).unwrap();
    cps.apply_files(root, &plan, "rewind-2").unwrap();
    assert_eq!(fs::read(root.join("generated/out.txt")).unwrap(), b"new");
    assert_eq!(
        fs::read_link(root.join("main")).unwrap(),
        Path::new("notes.txt")
    );
    assert!(!root.join("src").exists());
}

use std::os::unix::fs::MetadataExt as _;

#[test]
fn unchanged_files_are_not_stored_again_and_big_ones_are_left_out() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    for i in 0..20 {
        write(
            root,
            &format!("f{i}.txt"),
            &codepilot_testkit::noise(4096, i),
        );
    }
    write(root, "big.bin", &vec![7_u8; 3 << 20]);
    let session = SessionId::generate();
    let mut cps = SessionCheckpoints::open(
        &session,
        CheckpointOptions {
            max_file_bytes: 1 << 20,
            ..opts(home.path())
        },
    )
    .unwrap();
    let first = cps.capture(root, &turn(1, &[])).unwrap();
    assert_eq!(first.info.skipped, ["big.bin"]);
    assert!(first.info.stored_bytes > 10 * 1024, "{:?}", first.info);
    // Nothing changed: nothing new but the (shared) records.
    let second = cps.capture(root, &turn(2, &[])).unwrap();
    assert!(second.new_objects.len() <= 1, "{:?}", second.new_objects);
    write(root, "f3.txt", b"changed");
    let third = cps.capture(root, &turn(3, &[])).unwrap();
    assert!(third.info.stored_bytes < 4096, "{:?}", third.info);
    // The big file left out is never deleted by a rewind.
    let target = cps.find("1").unwrap().clone();
    let plan = cps.preview_files(&target, root).unwrap();
    assert_eq!((plan.files_restored(), plan.files_deleted()), (1, 0));
}

#[test]
fn conversation_plans_follow_the_branch_and_retention_collects_objects() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let session = SessionId::generate();
    let mut cps = SessionCheckpoints::open(
        &session,
        CheckpointOptions {
            keep: 3,
            ..opts(home.path())
        },
    )
    .unwrap();
    let history: Vec<Message> = (0..6).map(|i| Message::user(format!("m{i}"))).collect();
    cps.capture(root, &turn(1, &history[..2])).unwrap();
    cps.capture(root, &turn(2, &history[..4])).unwrap();
    let plan = cps
        .conversation_plan(cps.find("2").unwrap(), &history)
        .unwrap();
    assert_eq!((plan.keep, plan.append.len()), (4, 0));

    // A rewind to 1 records what it cuts; rewinding to that brings it back.
    cps.capture(
        root,
        &Position {
            kind: CheckpointKind::Rewind,
            cut: Some(Cut {
                base: 2,
                base_digest: HistoryDigest::of(&history[..2]),
                messages: history[2..].to_vec(),
            }),
            ..turn(2, &history)
        },
    )
    .unwrap();
    let mut branch = history[..2].to_vec();
    branch.push(Message::user("other"));
    let back = cps
        .conversation_plan(cps.find("rewind-1").unwrap(), &branch)
        .unwrap();
    assert_eq!(back.keep, 2);
    assert_eq!(back.append, history[2..]);
    // Checkpoint 2 was on the replaced branch.
    let err = cps
        .conversation_plan(cps.find("2").unwrap(), &branch)
        .unwrap_err();
    assert!(matches!(err, CheckpointError::OtherBranch { .. }), "{err}");
    assert!(
        err.to_string().contains("rewind to rewind-1 first"),
        "{err}"
    );

    // Keep 3: the oldest goes, and so do the objects only it used.
    write(root, "a.txt", &codepilot_testkit::noise(1000, 1));
    let c = cps.capture(root, &turn(3, &branch)).unwrap();
    assert!(c.pruned);
    let ids: Vec<String> = cps.list().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["2", "rewind-1", "3"]);
    fs::remove_file(root.join("a.txt")).unwrap();
    cps.capture(root, &turn(4, &branch)).unwrap();
    cps.capture(root, &turn(5, &branch)).unwrap();
    cps.capture(root, &turn(6, &branch)).unwrap();
    let objects = |p: &Path| walk_count(&p.join(session.as_str()).join("objects"));
    let before = objects(home.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(cps.collect_garbage().unwrap() > 0);
    assert!(objects(home.path()) < before);
    let err = cps.find("3").unwrap_err();
    assert!(err.to_string().contains("it has 4, 5, 6"), "{err}");
    // Reopened: the index is on disk.
    let again = SessionCheckpoints::open(&session, opts(home.path())).unwrap();
    assert_eq!(again.list().len(), 3);
}

fn walk_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk_count(&e.path())
                } else {
                    1
                }
            })
            .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_new_session_on_the_same_work_dir_starts_from_the_last_ones_checkpoint() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    for i in 0..100 {
        write(
            root,
            &format!("f{i}.txt"),
            &codepilot_testkit::noise(2048, i + 1),
        );
    }
    // Written a while ago: their metadata vouches for them.
    std::thread::sleep(std::time::Duration::from_millis(120));
    let first = SessionId::generate();
    let mut a = SessionCheckpoints::open(&first, opts(home.path())).unwrap();
    let taken = a.capture(root, &turn(1, &[])).unwrap();
    assert!(taken.info.stored_bytes > 100 * 1024);
    write(root, "f0.txt", b"changed in between");

    let second = SessionId::generate();
    let mut b = SessionCheckpoints::open(&second, opts(home.path())).unwrap();
    let borrowed = b.capture(root, &turn(1, &[])).unwrap();
    assert!(
        borrowed.info.stored_bytes < 8 * 1024,
        "only f0.txt and the manifest are stored anew: {:?}",
        borrowed.info
    );
    assert_eq!(borrowed.info.files, 100);
    // Its objects are its own: the first session gone, the second still rewinds.
    codepilot_store::checkpoint::delete_session(&first, &opts(home.path())).unwrap();
    fs::remove_file(root.join("f5.txt")).unwrap();
    let target = b.find("1").unwrap().clone();
    let now = b
        .capture(
            root,
            &Position {
                kind: CheckpointKind::Rewind,
                ..turn(1, &[])
            },
        )
        .unwrap();
    let now = b.find(&now.info.id).unwrap().clone();
    let plan = b.file_plan(&target, &now, root).unwrap();
    b.apply_files(root, &plan, &now.info.id).unwrap();
    assert_eq!(
        fs::read(root.join("f5.txt")).unwrap(),
        codepilot_testkit::noise(2048, 6)
    );
}

#[test]
fn a_rewind_never_writes_through_a_link_nor_over_a_file_it_did_not_record() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = work.path();
    write(root, "a/b/c.txt", b"checkpointed");
    write(root, "build.txt", b"checkpointed");
    let session = SessionId::generate();
    let mut cps = SessionCheckpoints::open(&session, opts(home.path())).unwrap();
    cps.capture(root, &turn(1, &[])).unwrap();

    // A command swaps a folder for a link to somewhere else that has the same shape, and a file becomes ignored.
    fs::create_dir_all(outside.path().join("b")).unwrap();
    fs::remove_dir_all(root.join("a")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("a")).unwrap();
    write(root, ".gitignore", b"build.txt\n");
    write(root, "build.txt", b"regenerated, ignored now");

    cps.capture(
        root,
        &Position {
            kind: CheckpointKind::Rewind,
            ..turn(1, &[])
        },
    )
    .unwrap();
    let target = cps.find("1").unwrap().clone();
    let now = cps.find("rewind-1").unwrap().clone();
    let plan = cps.file_plan(&target, &now, root).unwrap();
    assert_eq!(plan.left_alone(), ["build.txt"]);
    cps.apply_files(root, &plan, "rewind-1").unwrap();
    assert!(fs::symlink_metadata(root.join("a")).unwrap().is_dir());
    assert_eq!(fs::read(root.join("a/b/c.txt")).unwrap(), b"checkpointed");
    assert_eq!(
        tree_contents(outside.path()).keys().collect::<Vec<_>>(),
        ["b"],
        "nothing was staged or written through the link"
    );
    assert_eq!(
        fs::read(root.join("build.txt")).unwrap(),
        b"regenerated, ignored now",
        "a file the rewind could not bring back is not overwritten"
    );
    assert!(!root.join(".gitignore").exists(), "created since");
}
