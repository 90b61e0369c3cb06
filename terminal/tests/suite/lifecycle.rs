use codepilot_terminal::TerminalError;
use codepilot_terminal::TerminalState;
use pretty_assertions::assert_eq;

use super::helpers::T;
use super::helpers::manager;
use super::helpers::wait_gone;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_validated_and_unique() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    for bad in ["", "a b", "../x", "x.sock", &"n".repeat(65)] {
        let err = m.create(bad).await.err().unwrap();
        assert!(
            matches!(err, TerminalError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    m.create("ok_name-1").await.unwrap();
    let err = m.create("ok_name-1").await.err().unwrap();
    insta::assert_snapshot!("already_exists", err.to_string());
    let names: Vec<String> = m.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["ok_name-1"]);
    assert!(matches!(
        m.terminate("nope").await.unwrap_err(),
        TerminalError::NotFound { .. }
    ));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_shells_and_removes_the_socket_dir() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let dir = m.socket_dir().to_path_buf();
    let a = m.create("a").await.unwrap();
    let b = m.create("b").await.unwrap();
    a.execute("sleep 1000 &", T).await.unwrap();
    b.execute("true", T).await.unwrap();
    assert!(dir.join("a.sock").exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    let token_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("token")).unwrap().permissions(),
    );
    assert_eq!(token_mode & 0o777, 0o600);
    let tree = codepilot_terminal::procs::tree(a.pid());
    assert!(tree.len() >= 2, "{tree:?}");
    m.shutdown().await;
    assert!(!dir.exists(), "{} left behind", dir.display());
    for pid in tree.into_iter().chain([b.pid()]) {
        wait_gone(pid).await;
    }
    assert!(matches!(a.info().state, TerminalState::Exited { .. }));
    assert!(matches!(
        m.create("c").await.err().unwrap(),
        TerminalError::ShutDown
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_manager_handle_cleans_up() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let dir = m.socket_dir().to_path_buf();
    let t = m.create("main").await.unwrap();
    t.execute("true", T).await.unwrap();
    let pid = t.pid();
    let clone = m.clone();
    drop(m);
    assert!(dir.exists());
    drop(clone);
    assert!(!dir.exists());
    wait_gone(pid).await;
}

/// A declared terminal starts no shell until it is used; then it is a terminal like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_terminal_starts_on_first_use() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    m.declare("main").unwrap();
    let listed = m.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].pid, &listed[0].state),
        ("main", 0, &TerminalState::Idle)
    );
    assert_eq!(listed[0].cwd, work.path());
    assert!(
        m.socket_dir().join("main.sock").exists(),
        "its socket listens before it starts"
    );
    assert!(matches!(
        m.create("main").await.err().unwrap(),
        TerminalError::AlreadyExists { .. }
    ));
    assert!(matches!(
        m.declare("main").unwrap_err(),
        TerminalError::AlreadyExists { .. }
    ));

    let t = m.get("main").expect("started by its first use");
    assert!(t.pid() > 0);
    assert_eq!(m.list()[0].pid, t.pid());
    assert_eq!(m.get("main").unwrap().pid(), t.pid(), "started once");
    let r = t.execute("echo started", T).await.unwrap();
    assert_eq!(r.output, "started");
    m.shutdown().await;
    wait_gone(t.pid()).await;
}

/// A person attaching to a declared terminal's socket starts it, and sees its shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_starts_a_declared_terminal() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    m.declare("main").unwrap();
    let c = codepilot_terminal::client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    let pid = m.list()[0].pid;
    assert!(pid > 0, "the attach started the shell");
    assert_eq!(c.hello.pid, pid);
    let r = m
        .get("main")
        .unwrap()
        .execute("echo seen", T)
        .await
        .unwrap();
    assert_eq!(r.output, "seen");
    m.shutdown().await;
}

/// Terminating a declared terminal that never started removes it (and its socket) without killing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_terminal_can_go_before_it_starts() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    m.declare("main").unwrap();
    let report = m.terminate("main").await.unwrap();
    assert_eq!((report.pid, report.killed.len()), (0, 0));
    insta::assert_snapshot!("terminated_before_start", report.render());
    assert!(m.list().is_empty());
    assert!(m.get("main").is_none());
    assert!(!m.socket_dir().join("main.sock").exists());
    m.create("main").await.unwrap();
    m.shutdown().await;
}
