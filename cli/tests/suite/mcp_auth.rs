//! OAuth for remote MCP servers through the binary (SPEC §18) against a local authorization server: a server that
//! needs a login says so, `codepilot mcp login` logs in with a browser (here a script that follows the redirect),
//! tokens are kept 0600 and never shown, an expired token is refreshed during a run, a revoked one makes the server
//! ask for a login again without stalling the run.

use std::io::BufRead as _;
use std::path::Path;

use codepilot_testkit::OAuthMcpServer;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::codepilot;
use super::support::stderr;
use super::support::stdout;
use super::support::write_agent;

const DONE: &str = "```completion\ndone\n```";

/// `codepilot mcp login remote`, with a "browser" that follows the authorization URL back to the loopback redirect.
fn login(dir: &Path) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"))
        .current_dir(dir)
        .args(["mcp", "login", "remote"])
        .env("CODEPILOT_HOME", dir.join("home"))
        .env("ANTHROPIC_API_KEY", "test-key")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let browser = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()",
            first.trim(),
        ])
        .status()
        .unwrap();
    assert!(browser.success(), "the browser could not follow {first}");
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_and_revocation_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let oauth = OAuthMcpServer::start(2).await.unwrap();
    let block = "```codepilot\nprint(\"FIRST\", remote__whoami())\nexecute(\"main\", \"sleep 3\")\nprint(\"SECOND\", remote__whoami())\nprint(execute(\"main\", \"env | grep -c -e access- -e refresh- || true\"))\n```";
    let model = ScriptedServer::start(vec![Turn::answer(block), Turn::answer(DONE)])
        .await
        .unwrap();
    let servers = format!(
        "  mcp_servers:\n    - name: remote\n      url: {}\n",
        oauth.mcp_url()
    );
    write_agent(dir.path(), &model, Wire::Anthropic, true, &servers);

    // Before a login: the server says so, and nothing waits.
    let out = codepilot(dir.path(), &["mcp", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("remote  needs login"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("codepilot mcp login remote"),
        "{}",
        stdout(&out)
    );

    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || login(&dir_path))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("home/mcp-auth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&files[0]).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(oauth.grants(), ["authorization_code"]);

    // A run: the token works, expires during the run and is refreshed; the shell never sees it.
    let out = codepilot(dir.path(), &["run", "--session", "memory", "who am i"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = codepilot_testkit::last_user_text(&model.requests()[1].body);
    assert!(
        seen.contains("FIRST {'result': 'authorized'}") || seen.contains("FIRST authorized"),
        "{seen}"
    );
    assert!(seen.contains("SECOND"), "{seen}");
    assert!(!seen.contains("SECOND Error"), "{seen}");
    assert!(
        oauth.grants().contains(&"refresh_token".to_owned()),
        "{:?}",
        oauth.grants()
    );
    assert!(
        seen.contains("\n0\n"),
        "no token in the shell's environment: {seen}"
    );
    for token in oauth.presented() {
        assert!(
            !stdout(&out).contains(&token)
                && !stderr(&out).contains(&token)
                && !seen.contains(&token)
        );
    }

    // Revoked: the next run goes on without the server's tools, and says once that it needs a login.
    oauth.revoke_all();
    let model2 = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nprint(\"HAS TOOL\", \"remote__whoami\" in dir())\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    write_agent(dir.path(), &model2, Wire::Anthropic, true, &servers);
    let out = codepilot(dir.path(), &["run", "--session", "memory", "again"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("codepilot mcp login remote").count(),
        1,
        "{err}"
    );
    let system = codepilot_testkit::system_text(&model2.requests()[0].body);
    assert!(
        !system.contains("remote__whoami"),
        "a server that needs a login offers no tools"
    );
}

/// A free loopback port for a login's redirect.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// In the daemon, a server that needs a login sends its URL to the clients (`mcp/login`) instead of stalling the
/// session; once the person approves in a browser, the server connects and its tools come with the next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sends_the_login_to_its_clients_and_the_tools_come_after_the_approval() {
    let dir = tempfile::Builder::new()
        .prefix("cpl")
        .tempdir_in("/tmp")
        .unwrap();
    let oauth = OAuthMcpServer::start(300).await.unwrap();
    let model = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nprint(\"WHO\", remote__whoami())\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let servers = format!(
        "  mcp_servers:\n    - name: remote\n      url: {}\n      oauth:\n        redirect_port: {}\n",
        oauth.mcp_url(),
        free_port()
    );
    let agent = write_agent(dir.path(), &model, Wire::Anthropic, true, &servers);
    let mut daemon = super::support::StdioDaemon::start(dir.path()).await;
    let session = daemon.start_session(&agent).await;
    let login = daemon.until("mcp/login").await;
    assert_eq!(login["params"]["session_id"], session.as_str());
    assert_eq!(login["params"]["server"], "remote");
    let url = login["params"]["url"].as_str().unwrap().to_owned();
    assert!(url.contains("code_challenge="), "{url}");
    // The person's browser: the authorization server approves and sends it back to the daemon's loopback address.
    let followed = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&followed.stdout).contains("you can close this tab"),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    // The daemon connects with the new token on its own (nothing asked it to); a turn then finds the tools.
    for _ in 0..200 {
        if !oauth.presented().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !oauth.presented().is_empty(),
        "the daemon never connected after the login"
    );
    // Nobody answered the request; the login's end took it back from every client.
    let resolved = daemon.until("serverRequest/resolved").await;
    assert_eq!(resolved["params"]["request_id"], login["id"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    daemon
        .call(
            "turn/start",
            serde_json::json!({"session_id": session, "text": "who am i"}),
        )
        .await;
    let done = daemon.until("turn/completed").await;
    assert_eq!(done["params"]["outcome"]["status"], "completed", "{done}");
    let seen = codepilot_testkit::last_user_text(&model.requests()[1].body);
    assert!(
        seen.contains("WHO") && seen.contains("authorized"),
        "{seen}"
    );
    assert_eq!(oauth.grants(), ["authorization_code"]);
    daemon.close().await;
}
