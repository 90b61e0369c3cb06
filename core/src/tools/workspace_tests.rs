use std::os::unix::fs::symlink;

use pretty_assertions::assert_eq;

use super::Workspace;
use codepilot_protocol::ExcKind;

fn setup() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ws")).unwrap();
    let ws = Workspace::new(&dir.path().join("ws"), false).unwrap();
    (dir, ws)
}

#[test]
fn new_creates_and_canonicalizes_root() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&dir.path().join("a/b/../c"), false).unwrap();
    assert_eq!(ws.root(), dir.path().canonicalize().unwrap().join("a/c"));
    assert!(ws.root().is_dir());
}

#[test]
fn relative_and_absolute_inside_resolve() {
    let (_d, ws) = setup();
    std::fs::create_dir(ws.root().join("src")).unwrap();
    assert_eq!(ws.resolve("src/a.rs").unwrap(), ws.root().join("src/a.rs"));
    assert_eq!(
        ws.resolve("./src/../b.txt").unwrap(),
        ws.root().join("b.txt")
    );
    let abs = ws.root().join("src/new/deep.txt");
    assert_eq!(ws.resolve(abs.to_str().unwrap()).unwrap(), abs);
    assert_eq!(ws.resolve(".").unwrap(), ws.root());
    assert_eq!(ws.display(&ws.root().join("src/a.rs")), "src/a.rs");
    assert_eq!(ws.display(ws.root()), ".");
    assert_eq!(
        ws.display(std::path::Path::new("/etc/passwd")),
        "/etc/passwd"
    );
}

#[test]
fn dotdot_escape_refused() {
    let (_d, ws) = setup();
    for p in ["../x.txt", "a/../../x", "/etc/passwd", "missing/../../x"] {
        let e = ws.resolve(p).unwrap_err();
        assert_eq!(e.kind, ExcKind::PermissionError, "{p}");
    }
    let msg = ws.resolve("../secret.txt").unwrap_err().message;
    let shown = msg.replace(&ws.root().display().to_string(), "<ROOT>");
    insta::assert_snapshot!("workspace_outside", shown);
}

#[test]
fn symlinked_file_pointing_out_refused() {
    let (d, ws) = setup();
    std::fs::write(d.path().join("secret.txt"), "s").unwrap();
    symlink(d.path().join("secret.txt"), ws.root().join("link.txt")).unwrap();
    assert_eq!(
        ws.resolve("link.txt").unwrap_err().kind,
        ExcKind::PermissionError
    );
    // A dangling link to a not-yet-existing file outside is refused too.
    symlink(d.path().join("later.txt"), ws.root().join("dangling.txt")).unwrap();
    assert_eq!(
        ws.resolve("dangling.txt").unwrap_err().kind,
        ExcKind::PermissionError
    );
}

#[test]
fn symlinked_dir_pointing_out_refused_also_for_new_files() {
    let (d, ws) = setup();
    std::fs::create_dir(d.path().join("outside")).unwrap();
    symlink(d.path().join("outside"), ws.root().join("out")).unwrap();
    for p in ["out/new.txt", "out/deeper/new.txt", "out", "nope/../out/x"] {
        assert_eq!(
            ws.resolve(p).unwrap_err().kind,
            ExcKind::PermissionError,
            "{p}"
        );
    }
    // `..` after a symlinked dir applies to the target's parent, as the kernel does.
    std::fs::create_dir(d.path().join("outside/sub")).unwrap();
    symlink(d.path().join("outside/sub"), ws.root().join("sub")).unwrap();
    assert_eq!(
        ws.resolve("sub/../x").unwrap_err().kind,
        ExcKind::PermissionError
    );
}

#[test]
fn symlinks_inside_are_followed() {
    let (_d, ws) = setup();
    std::fs::create_dir(ws.root().join("real")).unwrap();
    std::fs::write(ws.root().join("real/f.txt"), "x").unwrap();
    symlink("real", ws.root().join("alias")).unwrap();
    assert_eq!(
        ws.resolve("alias/f.txt").unwrap(),
        ws.root().join("real/f.txt")
    );
    assert_eq!(
        ws.resolve("alias/new.txt").unwrap(),
        ws.root().join("real/new.txt")
    );
}

#[test]
fn symlink_loop_is_an_error_not_a_hang() {
    let (_d, ws) = setup();
    symlink("b", ws.root().join("a")).unwrap();
    symlink("a", ws.root().join("b")).unwrap();
    assert_eq!(ws.resolve("a/x").unwrap_err().kind, ExcKind::RuntimeError);
}

#[test]
fn unsafe_mode_allows_outside() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&dir.path().join("ws"), true).unwrap();
    let outside = dir.path().canonicalize().unwrap().join("x.txt");
    assert_eq!(ws.resolve("../x.txt").unwrap(), outside);
    assert_eq!(ws.resolve(outside.to_str().unwrap()).unwrap(), outside);
}

#[test]
fn empty_and_nul_paths_rejected() {
    let (_d, ws) = setup();
    assert_eq!(ws.resolve("").unwrap_err().kind, ExcKind::ValueError);
    assert_eq!(ws.resolve("a\0b").unwrap_err().kind, ExcKind::ValueError);
}

#[test]
fn the_open_itself_refuses_a_symlink_out_of_the_root() {
    // As if a symlink had been swapped in after `resolve` checked the path: the kernel refuses the open.
    let (dir, ws) = setup();
    std::fs::create_dir(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret.txt"), "s").unwrap();
    symlink(dir.path().join("outside"), ws.root().join("link")).unwrap();
    let checked = ws.root().join("link/secret.txt");
    let err = ws
        .open(
            &checked,
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_exdev()), "{err}");
    // Inside the root, opening works.
    std::fs::write(ws.root().join("ok.txt"), "fine").unwrap();
    ws.open(
        &ws.root().join("ok.txt"),
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
}

/// `EXDEV`: what `openat2` answers for a path that leaves the directory with `RESOLVE_BENEATH`.
fn libc_exdev() -> i32 {
    rustix::io::Errno::XDEV.raw_os_error()
}
