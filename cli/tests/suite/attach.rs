//! `codepilot attach`: a person's terminal on the agent's shell.

use std::io::Write;
use std::time::Duration;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use pretty_assertions::assert_eq;

use super::support::stderr;
use super::support::stdout;

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
    let out = tokio::task::spawn_blocking(move || {
        stdin.write_all(b"echo via-$((6*7))-attach\r").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stdin.write_all(&[0x1d]).unwrap(); // Ctrl-] detaches
        std::thread::sleep(Duration::from_millis(200));
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("via-42-attach"), "{}", stdout(&out));
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
