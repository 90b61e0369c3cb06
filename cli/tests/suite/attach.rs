//! `codepilot attach`: a person's terminal on the agent's shell.

use std::io::Write;
use std::time::Duration;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use pretty_assertions::assert_eq;

use super::support::stderr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_shows_the_shell_and_types_into_it_until_detached() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: a\nmodel: {{provider: scripted, name: s}}\nruntime: {{work_dir: {}}}\n",
        serde_json::to_string(&dir.path().display().to_string()).unwrap()
    );
    let rt = AsyncRuntime::builder(AgentFile::from_yaml_str(&yaml, None).unwrap())
        .provider(std::sync::Arc::new(codepilot::llm::ScriptedProvider::new(
            Vec::new(),
        )))
        .build()
        .await
        .unwrap();
    let socket_dir = rt.terminals().unwrap().socket_dir().to_path_buf();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"))
        .args([
            "attach",
            "--socket-dir",
            socket_dir.to_str().unwrap(),
            "main",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut child_out = child.stdout.take().unwrap();
    let shared = rt.clone();
    let (status, seen) = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        stdin.write_all(b"echo via-$((6*7))-attach\r").unwrap();
        // Detach once the output is on our screen and the runtime recorded the command as typed by a person.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("via-42-attach") {
            let n = child_out.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "attach ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared.terminals().unwrap().pending_human_input() == 0 {
            assert!(std::time::Instant::now() < deadline, "never recorded");
            std::thread::sleep(Duration::from_millis(20));
        }
        stdin.write_all(&[0x1d]).unwrap(); // Ctrl-] detaches
        child_out.read_to_end(&mut seen).unwrap();
        let status = child.wait().unwrap();
        drop(stdin);
        (status, String::from_utf8_lossy(&seen).into_owned())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{seen}");
    let typed = rt.terminals().unwrap().take_human_input();
    assert_eq!(typed.len(), 1, "{typed:?}");
    assert_eq!(typed[0].command, "echo via-$((6*7))-attach");
    rt.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_missing_socket_dir_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = super::support::codepilot(
        dir.path(),
        &["attach", "--socket-dir", missing.to_str().unwrap(), "main"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
}
