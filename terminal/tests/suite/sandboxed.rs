//! Shells in the sandbox: what they can write, see and reach.

use std::time::Duration;

use codepilot_sandbox::Mode;
use codepilot_sandbox::Policy;
use codepilot_terminal::CommandStatus;
use codepilot_terminal::TerminalConfig;

use super::helpers::T;
use super::helpers::manager_with;

/// Whether this machine can sandbox shells; when not, the test is skipped, saying so (and fails under CI).
fn sandbox_available() -> bool {
    match &codepilot_sandbox::probe().namespaces {
        Ok(()) => true,
        Err(why) => {
            codepilot_testkit::service::sandbox_missing(why);
            false
        }
    }
}

fn sandboxed(work: &std::path::Path, mode: Mode, network: bool) -> TerminalConfig {
    let mut cfg = TerminalConfig::new(work);
    cfg.sandbox = Some(Policy::new(mode, network, vec![work.to_path_buf()]));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_shell_writes_only_where_it_may_and_cannot_see_the_runtime() {
    if !sandbox_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let outside = codepilot_testkit::outside_temp_dir();
    let m = manager_with(sandboxed(work.path(), Mode::WorkspaceWrite, false)).await;
    let t = m.create("main").await.unwrap();
    let r = t.execute("touch inside && echo ok", T).await.unwrap();
    assert_eq!((r.exit_code, r.output.as_str()), (Some(0), "ok"), "{r:?}");
    assert!(work.path().join("inside").exists());
    let target = outside.path().join("nope");
    let r = t
        .execute(&format!("touch {}", target.display()), T)
        .await
        .unwrap();
    assert_ne!(r.exit_code, Some(0), "{r:?}");
    assert!(!target.exists());
    let r = t
        .execute(
            "touch /tmp/codepilot-sandbox-probe && rm /tmp/codepilot-sandbox-probe && echo tmp ok",
            T,
        )
        .await
        .unwrap();
    assert_eq!(r.output, "tmp ok", "{r:?}");
    // The sockets and the token are out of sight (they would let the shell attach to, and type into, every
    // terminal).
    let sockets = m.socket_dir().display().to_string();
    let r = t
        .execute(&format!("cat {sockets}/token; ls -A {sockets} | wc -l"), T)
        .await
        .unwrap();
    assert_eq!(r.output.lines().last(), Some("0"), "{r:?}");
    assert!(!r.output.contains(m.token()), "{r:?}");
    // The runtime is invisible and unreachable: the shell is PID 1 of its own namespace.
    let me = std::process::id();
    let r = t
        .execute("echo $$ $PPID; ls /proc | grep -c '^[0-9]'", T)
        .await
        .unwrap();
    let first = r.output.lines().next().unwrap();
    assert_eq!(first, "1 0", "{r:?}");
    let r = t
        .execute(&format!("cat /proc/{me}/environ; kill -0 {me}"), T)
        .await
        .unwrap();
    assert_ne!(r.exit_code, Some(0), "{r:?}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_is_off_unless_allowed_and_loopback_works() {
    if !sandbox_available() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo unreachable"
    );
    for (network, want) in [(false, "unreachable"), (true, "reached")] {
        let work = tempfile::tempdir().unwrap();
        let m = manager_with(sandboxed(work.path(), Mode::WorkspaceWrite, network)).await;
        let t = m.create("main").await.unwrap();
        let r = t.execute(&probe, T).await.unwrap();
        assert_eq!(r.output, want, "network={network}: {r:?}");
        m.shutdown().await;
    }
    // Without the network, servers on the sandbox's own loopback still work.
    let work = tempfile::tempdir().unwrap();
    let m = manager_with(sandboxed(work.path(), Mode::WorkspaceWrite, false)).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute(
            "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(); \
             c=socket.create_connection(s.getsockname()); print(\"loopback ok\")'",
            T,
        )
        .await
        .unwrap();
    assert_eq!(r.output, "loopback ok", "{r:?}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_writes_nowhere_and_killing_the_shell_ends_its_namespace() {
    if !sandbox_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let m = manager_with(sandboxed(work.path(), Mode::ReadOnly, true)).await;
    let t = m.create("main").await.unwrap();
    let r = t.execute("touch inside", T).await.unwrap();
    assert_ne!(r.exit_code, Some(0), "{r:?}");
    assert!(!work.path().join("inside").exists());
    let r = t
        .execute("sleep 300", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(r.status, CommandStatus::Running);
    let report = m.terminate("main").await.unwrap();
    assert!(!report.killed.is_empty());
    m.shutdown().await;
}

#[test]
fn a_shell_outlives_the_thread_that_started_it() {
    if !sandbox_available() {
        return;
    }
    // A host that drives the runtime from short-lived threads (a Python thread calling `Runtime.run`, say):
    // the shell is forked on such a thread, which then ends. The shell must live on.
    let rt = std::sync::Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    );
    let work = tempfile::tempdir().unwrap();
    let m = rt.block_on(manager_with(sandboxed(
        work.path(),
        Mode::WorkspaceWrite,
        true,
    )));
    let m2 = m.clone();
    let rt2 = std::sync::Arc::clone(&rt);
    std::thread::spawn(move || rt2.block_on(m2.create("short")).unwrap())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = m.get("short").unwrap();
    let r = rt.block_on(t.execute("echo alive", T)).unwrap();
    assert_eq!(r.output, "alive", "{r:?}");
    rt.block_on(m.shutdown());
}
