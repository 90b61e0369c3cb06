//! The sandbox through the binary, as root and as an ordinary user: writes stay in the work directory, the
//! runtime is out of sight, the network is off when the agent file says so, and the file tools obey the same
//! rules.

use std::os::unix::fs::PermissionsExt;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use pretty_assertions::assert_eq;

use super::support::stderr;
use super::support::stdout;

/// Who runs the binary: this user, and (when the tests run as root, as in CI) an unprivileged one.
fn users() -> Vec<Option<&'static str>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        vec![None, Some("65534")]
    } else {
        vec![None]
    }
}

/// `program` run as `user` (through `setpriv`), or as this user.
pub(super) fn as_user(user: Option<&str>, program: &str) -> std::process::Command {
    match user {
        Some(uid) => {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".to_owned(),
                program.to_owned(),
            ]);
            c
        }
        None => std::process::Command::new(program),
    }
}

/// Whether the observation has `line` as a line of command output (not just inside the echoed command).
fn printed(seen: &str, line: &str) -> bool {
    seen.lines().any(|l| l.trim() == line)
}

pub(super) fn open_to_all(path: &std::path::Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shells_and_file_tools_stay_inside_the_sandbox() {
    if let Err(why) = &codepilot::sandbox::probe().namespaces {
        codepilot_testkit::service::sandbox_missing(why);
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for user in users() {
        let dir = tempfile::tempdir().unwrap();
        // Outside the temporary folders (which the sandbox lets shells write), and writable by the user without it.
        let outside = codepilot_testkit::outside_temp_dir();
        for d in [dir.path(), outside.path()] {
            open_to_all(d);
        }
        let control = outside.path().join("control.txt");
        let mut touch = as_user(user, "touch");
        assert!(
            touch.arg(&control).status().unwrap().success(),
            "the user can write there without the sandbox"
        );
        let escape = outside.path().join("escape.txt");
        let by_tool = outside.path().join("by-tool.txt");
        let block = format!(
            "```codepilot\n\
             execute(\"main\", \"touch inside.txt && echo inside=ok; touch {escape} 2>/dev/null && echo escape=yes || echo escape=no\")\n\
             execute(\"main\", \"for p in /proc/[0-9]*; do tr '\\\\0' ' ' < $p/cmdline; echo; done | grep -c codepilo[t] || true\")\n\
             execute(\"main\", \"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo net=reached || echo net=unreachable\")\n\
             try:\n    write_file(\"{by_tool}\")\nexcept PermissionError:\n    print(\"tool refused\")\n\
             ```\n\n```text filename={by_tool}\nno\n```\n",
            escape = escape.display(),
            by_tool = by_tool.display(),
        );
        let server = ScriptedServer::start(vec![
            Turn::answer(block),
            Turn::answer("```completion\nprobed\n```"),
        ])
        .await
        .unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        open_to_all(&work);
        std::fs::write(
            dir.path().join("agent.yaml"),
            format!(
                "agent:\n  name: Box\n  model:\n    provider: openai-compatible\n    name: m\n    context_window: 32000\n    \
                 base_url: {}/v1\n  runtime:\n    work_dir: work\n    unsafe_mode: true\n    network: false\n",
                server.base_url()
            ),
        )
        .unwrap();
        let mut cmd = as_user(user, env!("CARGO_BIN_EXE_codepilot"));
        cmd.current_dir(dir.path())
            .args(["run", "--session", "memory", "probe the box"])
            .env("CODEPILOT_HOME", dir.path().join("home"))
            .env("HOME", dir.path())
            .stdin(std::process::Stdio::null());
        super::support::detach_from_terminal(&mut cmd);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let who = user.unwrap_or("self");
        assert_eq!(out.status.code(), Some(0), "{who}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "probed", "{who}");
        let seen = super::support::last_user_text(&server.requests()[1].body);
        assert!(printed(&seen, "inside=ok"), "{who}: {seen}");
        assert!(work.join("inside.txt").exists(), "{who}");
        assert!(printed(&seen, "escape=no"), "{who}: {seen}");
        assert!(
            !escape.exists(),
            "{who}: a shell wrote outside the work directory"
        );
        // No process of the runtime (whose command line names codepilot) is visible from the shell.
        let count_line = seen
            .lines()
            .skip_while(|l| !l.contains("grep -c codepilo"))
            .nth(1)
            .unwrap_or_default();
        assert_eq!(count_line, "0", "{who}: {seen}");
        assert!(printed(&seen, "net=unreachable"), "{who}: {seen}");
        assert!(seen.contains("tool refused"), "{who}: {seen}");
        assert!(!by_tool.exists(), "{who}: write_file left the sandbox");
    }
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_check_reports_what_is_enforced() {
    let out = super::support::codepilot(std::path::Path::new("/"), &["sandbox", "check"]).await;
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 8, "{text}");
    let support = codepilot::sandbox::probe();
    if support.available() {
        assert!(
            text.lines().take(3).all(|l| l.starts_with("yes  ")),
            "{text}"
        );
    } else {
        assert_eq!(out.status.code(), Some(1));
    }
    // The machine CI runs on: namespaces, Landlock, and the cgroup v1 pids, memory and cpu controllers.
    if support.available()
        && support.landlock_abi.is_some()
        && matches!(
            support.limits,
            codepilot::sandbox::resources::Mechanism::CgroupV1 {
                pids: Some(_),
                memory: Some(_),
                cpu: Some(_)
            }
        )
    {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // The Landlock version is the kernel's.
        let text: String = text
            .lines()
            .map(|l| match l.split_once("Landlock ABI ") {
                Some((head, _)) => format!("{head}Landlock ABI [n])\n"),
                None => format!("{l}\n"),
            })
            .collect();
        insta::assert_snapshot!("sandbox_check_cgroup_v1", text);
    }
}
