//! Keeping the index fresh: edits, deletes, renames, files written by a shell; what is never indexed; the store.

use std::time::Duration;
use std::time::Instant;

use codepilot_search::SkipReason;
use pretty_assertions::assert_eq;

use super::built;
use super::defs;
use super::settle;
use super::write;

#[test]
fn edits_deletes_renames_and_shell_writes_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &[
            ("a.py", "def alpha():\n    return 1\n"),
            ("b.py", "def beta():\n    return alpha()\n"),
        ],
    );
    let index = built(root, None);
    assert_eq!(defs(&index, "alpha"), ["a.py:1 function alpha"]);

    // An edit: the old name goes, the new one comes.
    std::fs::write(root.join("a.py"), "\n\ndef alpha_two():\n    return 2\n").unwrap();
    settle();
    let stats = index.refresh().unwrap();
    assert_eq!((stats.updated, stats.removed), (1, 0));
    assert_eq!(defs(&index, "alpha"), Vec::<String>::new());
    assert_eq!(defs(&index, "alpha_two"), ["a.py:3 function alpha_two"]);

    // A rename.
    std::fs::rename(root.join("b.py"), root.join("c.py")).unwrap();
    settle();
    let stats = index.refresh().unwrap();
    assert_eq!((stats.updated, stats.removed), (1, 1));
    assert_eq!(
        defs(&index, "beta"),
        ["c.py:1 function beta"],
        "b.py is gone"
    );

    // A delete.
    std::fs::remove_file(root.join("c.py")).unwrap();
    index.refresh().unwrap();
    assert_eq!(defs(&index, "beta"), Vec::<String>::new());
    assert!(index.references("alpha").is_empty());
    assert!(
        index.search("beta", 5, None).is_empty(),
        "its chunks are gone from the ranking too"
    );

    // A file a shell wrote.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("mkdir -p pkg && printf 'def gamma():\\n    return alpha_two()\\n' > pkg/g.py")
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success());
    index.refresh().unwrap();
    assert_eq!(defs(&index, "gamma"), ["pkg/g.py:1 function gamma"]);
    assert_eq!(index.references("alpha_two")[0].file, "pkg/g.py");

    // Nothing changed: nothing read again.
    settle();
    index.refresh().unwrap();
    let stats = index.refresh().unwrap();
    assert_eq!((stats.updated, stats.removed), (0, 0));
}

#[test]
fn new_folders_ignore_rules_and_moves_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &[
            ("src/a.py", "def keep():\n    pass\n"),
            ("src/gen/b.py", "def generated():\n    pass\n"),
        ],
    );
    let index = built(root, None);
    assert_eq!(
        defs(&index, "generated"),
        ["src/gen/b.py:1 function generated"]
    );

    // A new folder two levels deep.
    write(root, &[("src/new/deeper/c.py", "def fresh():\n    pass\n")]);
    index.refresh().unwrap();
    assert_eq!(
        defs(&index, "fresh"),
        ["src/new/deeper/c.py:1 function fresh"]
    );

    // A new ignore rule takes its files out; removing it brings them back.
    write(root, &[(".gitignore", "gen/\n")]);
    index.refresh().unwrap();
    assert_eq!(defs(&index, "generated"), Vec::<String>::new());
    std::fs::remove_file(root.join(".gitignore")).unwrap();
    settle();
    index.refresh().unwrap();
    assert_eq!(
        defs(&index, "generated"),
        ["src/gen/b.py:1 function generated"]
    );

    // A folder moved and a folder removed.
    std::fs::rename(root.join("src/new"), root.join("moved")).unwrap();
    std::fs::remove_dir_all(root.join("src/gen")).unwrap();
    settle();
    let stats = index.refresh().unwrap();
    assert_eq!((stats.updated, stats.removed), (1, 2), "{stats:?}");
    assert_eq!(
        defs(&index, "fresh"),
        ["moved/deeper/c.py:1 function fresh"]
    );
    assert_eq!(defs(&index, "generated"), Vec::<String>::new());
    assert_eq!(defs(&index, "keep"), ["src/a.py:1 function keep"]);
}

#[test]
fn a_same_size_rewrite_right_after_a_scan_is_not_missed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, &[("x.py", "def aaaa():\n    pass\n")]);
    let index = built(root, None);
    // Same size, possibly the same timestamp on a coarse clock: the file was read too close to its change to trust.
    std::fs::write(root.join("x.py"), "def bbbb():\n    pass\n").unwrap();
    index.refresh().unwrap();
    assert_eq!(defs(&index, "bbbb"), ["x.py:1 function bbbb"]);
}

#[test]
fn update_paths_reads_the_agents_own_writes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, &[("m.rs", "fn one() {}\n")]);
    let index = built(root, None);
    std::fs::write(root.join("m.rs"), "fn two() {}\n").unwrap();
    index.update_paths(&[
        root.join("m.rs"),
        root.join("../outside.rs"),
        "gone.rs".into(),
    ]);
    assert_eq!(defs(&index, "two"), ["m.rs:1 function two"]);
    assert_eq!(defs(&index, "one"), Vec::<String>::new());
}

#[test]
fn ignored_binary_minified_huge_and_linked_files_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &[
            (".gitignore", "build/\n*.gen.py\n"),
            ("build/out.py", "def ignored_folder():\n    pass\n"),
            ("x.gen.py", "def ignored_file():\n    pass\n"),
            ("real.py", "def real():\n    pass\n"),
            (".git/hooks/h.py", "def in_git():\n    pass\n"),
        ],
    );
    write(
        outside.path(),
        &[("secret.py", "def leaked():\n    pass\n")],
    );
    std::os::unix::fs::symlink(outside.path(), root.join("linked_dir")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.py"), root.join("linked.py")).unwrap();
    // A 1 MB minified file and a binary one.
    let minified = format!("var a=1;{}\n", "function f(){return 1};".repeat(45_000));
    std::fs::write(root.join("app.min.js"), &minified).unwrap();
    let mut binary = b"def looks_like_code():\n".to_vec();
    binary.extend([0u8, 159, 146, 150].repeat(1000));
    std::fs::write(root.join("blob.py"), binary).unwrap();
    std::fs::write(root.join("huge.py"), "x = 1\n".repeat(400_000)).unwrap();

    let started = Instant::now();
    let index = built(root, None);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the index stalled: {:?}",
        started.elapsed()
    );
    for name in [
        "ignored_folder",
        "ignored_file",
        "in_git",
        "leaked",
        "looks_like_code",
    ] {
        assert_eq!(defs(&index, name), Vec::<String>::new(), "{name}");
    }
    assert_eq!(defs(&index, "real"), ["real.py:1 function real"]);
    let status = index.status();
    let mut skipped = status.skipped;
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        skipped,
        [
            ("app.min.js".to_owned(), SkipReason::Minified),
            ("blob.py".to_owned(), SkipReason::Binary),
            ("huge.py".to_owned(), SkipReason::TooLarge),
        ]
    );
    assert!(index.search("leaked", 5, None).is_empty());
}

#[test]
fn the_index_is_stored_and_a_later_start_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &[
            ("a.py", "def alpha():\n    pass\n"),
            ("b.py", "def beta():\n    alpha()\n"),
        ],
    );
    drop(built(root, Some(home.path())));
    let index = built(root, Some(home.path()));
    let stats = index.status().last_refresh.unwrap();
    assert!(stats.loaded, "{stats:?}");
    assert_eq!(stats.updated, 0, "unchanged files are not read again");
    assert_eq!(defs(&index, "alpha"), ["a.py:1 function alpha"]);
    assert_eq!(index.references("alpha")[0].file, "b.py");
    let status = index.status();
    assert!(
        status
            .path
            .unwrap()
            .starts_with(home.path().to_str().unwrap())
    );
    assert!(status.bytes.unwrap() > 0);

    // A damaged store is rebuilt, not trusted.
    let stored = home
        .path()
        .join(codepilot_search::store_key(&root.canonicalize().unwrap()))
        .join("index.bin");
    std::fs::write(&stored, b"garbage").unwrap();
    let index = built(root, Some(home.path()));
    assert!(!index.status().last_refresh.unwrap().loaded);
    assert_eq!(defs(&index, "beta"), ["b.py:1 function beta"]);

    // A rebuild starts from nothing.
    let stats = index.rebuild().unwrap();
    assert_eq!((stats.loaded, stats.updated), (false, 2));
}

#[test]
fn a_file_swapped_for_a_link_after_indexing_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &[
            ("notes.py", "def notes():\n    pass\n"),
            ("src/m.py", "def m():\n    pass\n"),
        ],
    );
    write(
        outside.path(),
        &[("secret.py", "def leaked_secret():\n    pass\n")],
    );
    let index = built(root, None);
    std::fs::remove_file(root.join("notes.py")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.py"), root.join("notes.py")).unwrap();
    std::fs::remove_dir_all(root.join("src")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("src")).unwrap();
    settle();
    index.refresh().unwrap();
    index.update_paths(&[
        root.join("notes.py"),
        root.join("src/secret.py"),
        root.join("../x.py"),
    ]);
    assert_eq!(defs(&index, "leaked_secret"), Vec::<String>::new());
    assert_eq!(defs(&index, "notes"), Vec::<String>::new());
    assert!(index.search("leaked secret", 5, None).is_empty());
}

#[test]
fn one_long_line_does_not_hide_a_hand_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let code: String = (0..200)
        .map(|i| format!("def f{i}():\n    return {i}\n"))
        .collect();
    let table = format!(
        "DATA = \"{}\"\n\ndef after_the_table():\n    return DATA\n{code}",
        "x".repeat(10_000)
    );
    write(root, &[("table.py", table.as_str())]);
    let index = built(root, None);
    assert_eq!(
        defs(&index, "after_the_table"),
        ["table.py:3 function after_the_table"]
    );
}

#[test]
fn words_of_deleted_files_are_dropped_when_the_index_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let root = dir.path();
    let many: String = (0..6000).map(|i| format!("word{i}\n")).collect();
    write(
        root,
        &[
            ("keep.md", "the payment gateway\n"),
            ("many.md", many.as_str()),
        ],
    );
    let index = built(root, Some(home.path()));
    let before = std::fs::metadata(
        home.path()
            .join(codepilot_search::store_key(&root.canonicalize().unwrap()))
            .join("index.bin"),
    )
    .unwrap()
    .len();
    std::fs::remove_file(root.join("many.md")).unwrap();
    settle();
    index.refresh().unwrap();
    index.save().unwrap();
    let stored = home
        .path()
        .join(codepilot_search::store_key(&root.canonicalize().unwrap()))
        .join("index.bin");
    let after = std::fs::metadata(&stored).unwrap().len();
    assert!(
        after < before / 2,
        "the 6,000 words are gone from the store: {before} → {after} bytes"
    );
    assert_eq!(index.search("payment gateway", 1, None)[0].file, "keep.md");
    let again = built(root, Some(home.path()));
    assert_eq!(again.search("payment gateway", 1, None)[0].file, "keep.md");
    assert!(again.search("word42", 1, None).is_empty());
}

#[test]
fn a_missing_work_dir_is_a_clear_error() {
    let err = codepilot_search::CodeIndex::new(
        std::path::Path::new("/nonexistent/dir"),
        Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot index /nonexistent/dir") && err.contains("exists"),
        "{err}"
    );
}
