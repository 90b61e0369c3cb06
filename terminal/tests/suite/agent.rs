use std::time::Duration;

use codepilot_terminal::CommandStatus;
use codepilot_terminal::TerminalConfig;
use codepilot_terminal::TerminalState;
use pretty_assertions::assert_eq;

use super::helpers::T;
use super::helpers::manager;
use super::helpers::manager_with;
use super::helpers::wait_children;
use super::helpers::wait_gone;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_command_right_after_create_gets_its_own_output() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t.execute("echo hello; (exit 3)", T).await.unwrap();
    assert_eq!(
        (r.command_index, r.status, r.exit_code, r.output.as_str()),
        (1, CommandStatus::Completed, Some(3), "hello")
    );
    assert_eq!(r.cwd, work.path());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_quick_commands_each_get_exactly_their_output() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    for i in 0..50u32 {
        let r = t
            .execute(&format!("echo out{i}; (exit {})", i % 4), T)
            .await
            .unwrap();
        assert_eq!(
            (r.command_index, r.exit_code, r.output),
            (
                i + 1,
                Some(i32::try_from(i % 4).unwrap()),
                format!("out{i}")
            )
        );
    }
    assert_eq!(t.info().commands_run, 50);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_exits_1_and_cd_persists() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t.execute("false", T).await.unwrap();
    assert_eq!((r.exit_code, r.output.as_str()), (Some(1), ""));
    let r = t.execute("cd /tmp", T).await.unwrap();
    assert_eq!(r.cwd.to_str(), Some("/tmp"));
    let r = t.execute("pwd", T).await.unwrap();
    assert_eq!((r.output.as_str(), r.cwd.to_str()), ("/tmp", Some("/tmp")));
    assert_eq!(t.info().cwd.to_str(), Some("/tmp"));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_returns_running_then_read_output_returns_the_rest() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let first = t
        .execute("echo start; sleep 2; echo end", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        (first.status, first.exit_code),
        (CommandStatus::Running, None)
    );
    assert!(matches!(t.info().state, TerminalState::Running { .. }));
    // A second execute while the first runs is refused with a clear error.
    let busy = t.execute("true", T).await.unwrap_err().to_string();
    assert!(busy.contains("still running cmd1"), "{busy}");
    let rest = t.read_output(T).await.unwrap();
    assert_eq!(
        (rest.status, rest.exit_code),
        (CommandStatus::Completed, Some(0))
    );
    assert!(rest.output.ends_with("end"), "{rest:?}");
    let joined = format!("{}\n{}", first.output, rest.output);
    assert_eq!(joined.trim_start(), "start\nend");
    // Once the completion was seen, read_output gives the whole output again.
    let again = t.read_output(T).await.unwrap();
    assert_eq!(again.output, "start\nend");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_works_when_the_host_ignores_sigint() {
    // A host started in the background (`cmd &`, `nohup`) ignores SIGINT, and ignored signals survive `exec`: the
    // shell must get the defaults back, or Ctrl-C never reaches its commands. Ignoring it here is harmless to the
    // other tests of this binary, which is the point.
    // SAFETY: setting a disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute("sleep 100", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(r.status, CommandStatus::Running);
    let r = t.send_input("\x03", T).await.unwrap();
    assert_eq!(
        (r.status, r.exit_code),
        (CommandStatus::Completed, Some(130))
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_foreground_job_and_its_children() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute("sleep 100 | sleep 101", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(r.status, CommandStatus::Running);
    let kids = wait_children(t.pid(), 2).await;
    let r = t.send_input("\x03", T).await.unwrap();
    assert_eq!(
        (r.status, r.exit_code),
        (CommandStatus::Completed, Some(130))
    );
    for pid in kids {
        wait_gone(pid).await;
    }
    let r = t.execute("echo still-usable", T).await.unwrap();
    assert_eq!(r.output, "still-usable");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_kills_the_whole_process_tree() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute("sleep 1000 & sleep 1000; wait", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(r.status, CommandStatus::Running);
    let kids = wait_children(t.pid(), 2).await;
    let report = m.terminate("main").await.unwrap();
    assert!(report.killed.contains(&t.pid()), "{report:?}");
    for pid in &kids {
        assert!(report.killed.contains(pid), "{report:?}");
    }
    for pid in kids.into_iter().chain([t.pid()]) {
        wait_gone(pid).await;
    }
    assert!(m.get("main").is_none());
    let err = t.execute("true", T).await.unwrap_err();
    assert!(err.is_exited(), "{err}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_prompt_is_answered_with_send_input() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute("read -p 'name? ' n; echo hi $n", Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(r.status, CommandStatus::Running);
    let r = t.send_input("bob\n", T).await.unwrap();
    assert_eq!((r.status, r.exit_code), (CommandStatus::Completed, Some(0)));
    assert!(r.output.ends_with("hi bob"), "{r:?}");
    let full = t.read_output(T).await.unwrap();
    assert_eq!(full.output, "name? bob\nhi bob");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_and_stale_markers_do_not_complete_a_command() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let fake = r"printf '\033]6973;D;0123456789abcdef0123456789abcdef;0;/fake\007'; printf '\033]6973;D;;0;/fake\033\\'; printf '\033]6973;C\007\033]6973;B\007'; sleep 1; echo after; exit_code_is=5; (exit 5)";
    let r = t.execute(fake, T).await.unwrap();
    assert_eq!(
        (r.status, r.exit_code, r.output.as_str()),
        (CommandStatus::Completed, Some(5), "after")
    );
    assert_eq!(r.cwd, work.path());
    let r = t.execute("echo next", T).await.unwrap();
    assert_eq!((r.command_index, r.output.as_str()), (2, "next"));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_cannot_read_the_nonce_and_forge_its_completion() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    // A program the command runs (not the shell) reads the nonce files (the shells' private folders are in the
    // temporary folder) and prints a marker with what it found. Other tests' shells come and go meanwhile: a
    // folder that vanished between the glob and the read is skipped.
    let forger = format!(
        r#"bash -c 'for f in {}/codepilot-shell-*/main.nonce; do n=$(cat $f 2>/dev/null) || continue; printf "\033]6973;D;%s;0;/forged\007" "$n"; done; sleep 1; echo real; exit 3'"#,
        std::env::temp_dir().display()
    );
    for _ in 0..3 {
        let r = t.execute(&forger, T).await.unwrap();
        assert_eq!(
            (r.status, r.exit_code, r.output.as_str()),
            (CommandStatus::Completed, Some(3), "real"),
            "{r:?}"
        );
        assert_eq!(r.cwd, work.path());
    }
    // With noclobber on, the nonce file is still emptied.
    t.execute("set -C", T).await.unwrap();
    let r = t.execute(&forger, T).await.unwrap();
    assert_eq!((r.exit_code, r.output.as_str()), (Some(3), "real"), "{r:?}");
    t.execute("set +C", T).await.unwrap();
    // A command that sends the shell's output elsewhere does not hide the next command's end.
    let r = t.execute("exec >out.log", T).await.unwrap();
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let r = t
        .execute("echo to-the-log; exec >/dev/tty", T)
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    // Commands whose first statement defines a function still complete.
    let r = t.execute("f() { echo fn; }; f", T).await.unwrap();
    assert_eq!((r.exit_code, r.output.as_str()), (Some(0), "fn"));
    let r = t.execute("g() { echo g; }", T).await.unwrap();
    assert_eq!(r.exit_code, Some(0));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_line_and_incomplete_commands() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute(
            "echo a\nfor i in 1 2; do\n  echo $i\ndone\ncat <<EOF\nheredoc\nEOF\n",
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        (r.exit_code, r.output.as_str()),
        (Some(0), "a\n1\n2\nheredoc")
    );
    let r = t.execute("echo 'unclosed", T).await.unwrap();
    assert_eq!(r.exit_code, Some(2), "{r:?}");
    assert!(r.output.contains("incomplete"), "{r:?}");
    let r = t.execute("echo fine", T).await.unwrap();
    assert_eq!((r.command_index, r.output.as_str()), (3, "fine"));
    m.shutdown().await;
}

/// The Ctrl-C cancelling an incomplete command is sent the moment the continuation prompt's marker is read. bash
/// acts on it only if it interrupts readline's wait for input; one that arrives while readline is still drawing the
/// prompt is noted and left, and the shell waited at the continuation prompt for good (on a busy machine, by
/// chance). Under strace each of bash's writes returns 0.2 s late, so the Ctrl-C always arrives that early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ctrl_c_that_lands_while_the_continuation_prompt_is_drawn_still_cancels_the_command() {
    use std::os::unix::fs::PermissionsExt as _;

    let strace_runs = std::process::Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !strace_runs {
        codepilot_testkit::service::missing("strace", "apt-get install strace");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let shell = work.path().join("bash-under-strace");
    std::fs::write(
        &shell,
        "#!/bin/sh\nexec strace -o /dev/null -e trace=write -e inject=write:delay_exit=200000 bash \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&shell, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = TerminalConfig::new(work.path());
    cfg.shell = shell;
    let m = manager_with(cfg).await;
    let t = m.create("main").await.unwrap();
    let r = t.execute("echo 'unclosed", T).await.unwrap();
    assert_eq!(
        (r.status, r.exit_code),
        (CommandStatus::Completed, Some(2)),
        "{r:?}"
    );
    assert!(r.output.contains("incomplete"), "{r:?}");
    // Nothing is left pending in the shell to mangle the next command.
    let r = t.execute("echo fine", T).await.unwrap();
    assert_eq!((r.exit_code, r.output.as_str()), (Some(0), "fine"), "{r:?}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_is_truncated_head_and_tail() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute(
            "yes | head -c 100000000; echo; echo THE-END",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.exit_code), (CommandStatus::Completed, Some(0)));
    assert!(r.truncated);
    assert!(r.output.chars().count() <= 10_000, "{}", r.output.len());
    assert!(r.output.starts_with("y\ny\n"));
    assert!(r.output.ends_with("THE-END"));
    assert!(r.output.contains("characters omitted"), "marker missing");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_screen_programs_return_the_rendered_screen() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute(
            r"printf '\033[?1049h\033[2J\033[5;10HFULL\033[6;10HSCREEN'; sleep 100",
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(r.status, CommandStatus::Running);
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(lines.len(), 6, "{:?}", r.output);
    assert_eq!(lines[4].trim(), "FULL");
    assert_eq!(lines[5], "         SCREEN");
    let r = t.send_input("\x03", T).await.unwrap();
    assert_eq!(r.exit_code, Some(130));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_normalised() {
    let work = tempfile::tempdir().unwrap();
    let mut cfg = TerminalConfig::new(work.path());
    cfg.env = vec![("CP_EXTRA".into(), "x1".into())];
    let m = manager_with(cfg).await;
    let t = m.create("main").await.unwrap();
    let r = t
        .execute("echo $TERM $PAGER $GIT_PAGER $CP_EXTRA $(printenv PROMPT_COMMAND || echo unexported) $CODEPILOT_TERMINAL", T)
        .await
        .unwrap();
    assert_eq!(r.output, "xterm-256color cat cat x1 unexported main");
    // The integration is read-only, so a command cannot break completion.
    let r = t.execute("PROMPT_COMMAND=; echo ok", T).await.unwrap();
    assert!(r.output.contains("readonly"), "{r:?}");
    let r = t.execute("echo $((6*7))", T).await.unwrap();
    assert_eq!(r.output, "42");
    m.shutdown().await;
}

#[test]
fn secret_variables_are_removed() {
    let base = [
        ("OPENAI_API_KEY", "1"),
        ("GITHUB_TOKEN", "1"),
        ("MACHINE_SECRET", "1"),
        ("DB_PASSWORD", "1"),
        ("aws_secret_access_key", "1"),
        ("MY_LLM", "sk-configured-elsewhere"),
        ("DATABASE_URL", "postgres://app:hunter2@db.internal/app"),
        ("PUBLIC_URL", "https://user@example.com/x"),
        (
            "DB_DSN",
            "postgres://app@db/app?sslmode=require&password=hunter3",
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=abc"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "authorization=Basic eA==",
        ),
        ("PATH", "/bin"),
        ("PS1", "x"),
        ("LC_ALL", "C"),
    ]
    .map(|(k, v)| (k.into(), v.into()));
    let env = codepilot_terminal::config::normalised_env(base, &[], &["MY_LLM".to_owned()], "t");
    let mut names: Vec<String> = env
        .iter()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "CODEPILOT_TERMINAL",
            "GIT_PAGER",
            "LC_ALL",
            "PAGER",
            "PATH",
            "PUBLIC_URL",
            "TERM"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exited_shell_is_reported_clearly() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let r = t.execute("exit 3", T).await.unwrap();
    assert_eq!((r.status, r.exit_code), (CommandStatus::Completed, Some(3)));
    let err = t.execute("true", T).await.unwrap_err();
    insta::assert_snapshot!("exited_error", err.to_string());
    assert_eq!(t.info().state, TerminalState::Exited { code: 3 });
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_input_at_the_prompt_is_raw_and_not_human_input() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    t.execute("true", T).await.unwrap();
    let r = t.send_input("echo typed-raw\n", T).await.unwrap();
    assert!(r.output.contains("typed-raw"), "{r:?}");
    assert_eq!(m.take_human_input(), []);
    let r = t.execute("echo after-raw", T).await.unwrap();
    assert_eq!((r.command_index, r.output.as_str()), (2, "after-raw"));
    m.shutdown().await;
}

#[test]
fn render_formats() {
    use codepilot_terminal::CommandResult;
    let mut r = CommandResult {
        terminal: "main".into(),
        command_index: 3,
        command: "ls".into(),
        status: CommandStatus::Completed,
        exit_code: Some(0),
        output: "a\nb".into(),
        truncated: false,
        cwd: "/work".into(),
        pid: 42,
        limit: None,
    };
    insta::assert_snapshot!("render_completed", r.render());
    let mut killed = r.clone();
    killed.exit_code = Some(137);
    killed.output = "Killed".into();
    killed.limit = Some(codepilot_sandbox::resources::LimitHit {
        kind: codepilot_sandbox::resources::LimitKind::Memory,
        limit: 256,
        message: "[killed: memory limit 256 MiB reached (runtime.resources.max_memory_mb); use less memory at once]"
            .into(),
    });
    insta::assert_snapshot!("render_limit", killed.render());
    r.status = CommandStatus::Running;
    r.exit_code = None;
    r.output = String::new();
    insta::assert_snapshot!("render_running", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_input_left_at_the_prompt_does_not_leak_into_the_next_command() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    t.execute("true", T).await.unwrap();
    t.send_input("echo dangling", Duration::from_millis(300))
        .await
        .unwrap();
    let r = t.execute("echo clean", T).await.unwrap();
    assert_eq!(
        (r.exit_code, r.output.as_str()),
        (Some(0), "clean"),
        "{r:?}"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_work_dir_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(&work.path().join("missing")).await;
    let err = m.create("main").await.err().unwrap();
    assert!(
        err.to_string().contains("check that the shell exists"),
        "{err}"
    );
    assert!(m.list().is_empty());
    m.shutdown().await;
}
