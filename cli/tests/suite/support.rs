//! Running the real binary against a scripted server.

use std::path::Path;
use std::path::PathBuf;
use std::process::Output;

use codepilot_testkit::ScriptedServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    OpenAi,
}

pub const BOTH: [Wire; 2] = [Wire::Anthropic, Wire::OpenAi];

/// Writes `agent.yaml` in `dir` pointing at `server`, with the work dir `dir/work`. `extra` is appended under
/// `agent:` (lines indented by two spaces).
pub fn write_agent(
    dir: &Path,
    server: &ScriptedServer,
    wire: Wire,
    stream: bool,
    extra: &str,
) -> PathBuf {
    let (provider, base) = match wire {
        Wire::Anthropic => ("anthropic", server.base_url()),
        Wire::OpenAi => ("openai-compatible", format!("{}/v1", server.base_url())),
    };
    let path = dir.join("agent.yaml");
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::write(
        &path,
        format!(
            "agent:\n  name: E2E\n  model:\n    provider: {provider}\n    name: test-model\n    base_url: {base}\n    \
             stream: {stream}\n  runtime:\n    work_dir: work\n    max_steps: 8\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Runs `codepilot ARGS` in `dir` with an isolated home, off the async runtime's threads.
pub async fn codepilot(dir: &Path, args: &[&str]) -> Output {
    codepilot_with(dir, args, &[]).await
}

pub async fn codepilot_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
    cmd.current_dir(dir)
        .args(args)
        .env("CODEPILOT_HOME", dir.join("home"))
        .env("ANTHROPIC_API_KEY", "test-key")
        .env_remove("OPENAI_API_KEY")
        .env_remove("CODEPILOT_DB_URL")
        .env_remove("TRACEPARENT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_SDK_DISABLED")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    detach_from_terminal(&mut cmd);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every stdout line as JSON; panics (with the output) if a line is not JSON.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {}", stderr(o)))
        })
        .collect()
}

/// The events of a `--json` run: the `event` of every `{"type":"event",...}` line, after checking that the
/// envelope names the session and numbers events 1, 2, 3, … without gaps.
pub fn events(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let envelopes: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "event").collect();
    let mut last = None;
    for e in &envelopes {
        assert!(e["session_id"].is_string(), "{e}");
        let seq = e["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {e}"));
        if let Some(last) = last {
            assert!(seq > last, "seq must increase: {last} then {seq}");
        }
        last = Some(seq);
    }
    envelopes.into_iter().map(|e| e["event"].clone()).collect()
}

/// The `turn_completed` lines of a `--json` run.
pub fn turns(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| l["type"] == "turn_completed")
        .cloned()
        .collect()
}

pub use codepilot_testkit::last_user_text;
/// The test Postgres server's URL (`CODEPILOT_TEST_PG_URL`, from `.ci/postgres.sh`); without it the test (or its
/// Postgres case) is skipped with a notice, and fails under CI.
pub use codepilot_testkit::service::pg_url;

/// Runs the child in its own session, without a controlling terminal, as under CI: prompts that need `/dev/tty`
/// must then fail fast instead of waiting for a person.
pub fn detach_from_terminal(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// `codepilot serve --listen stdio://` in `dir` (isolated home), spoken to over its stdin and stdout.
pub struct StdioDaemon {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    next_id: i64,
    /// Messages read while waiting for a call's result, in order.
    pub backlog: std::collections::VecDeque<serde_json::Value>,
}

impl StdioDaemon {
    /// Starts the daemon and initializes the connection.
    pub async fn start(dir: &Path) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codepilot"))
            .current_dir(dir)
            .args(["serve", "--listen", "stdio://"])
            .env("CODEPILOT_HOME", dir.join("home"))
            .env("ANTHROPIC_API_KEY", "test-key")
            .env_remove("CODEPILOT_DB_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut daemon = Self {
            child,
            stdin,
            lines,
            next_id: 0,
            backlog: std::collections::VecDeque::new(),
        };
        daemon
            .call(
                "initialize",
                serde_json::json!({"client": {"name": "test"}}),
            )
            .await;
        daemon
    }

    async fn send(&mut self, message: &serde_json::Value) {
        use tokio::io::AsyncWriteExt as _;
        self.stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn read(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the daemon said nothing for 90 s")
            .unwrap()
            .expect("the daemon closed its stdout");
        serde_json::from_str(&line).unwrap()
    }

    /// Calls `method`; its result (panics on an error).
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(
            &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .await;
        loop {
            let m = self.read().await;
            if m["id"] == id && m.get("method").is_none() {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.backlog.push_back(m);
        }
    }

    /// `session/start` with the agent file at `agent`; the session id.
    pub async fn start_session(&mut self, agent: &Path) -> String {
        let started = self
            .call(
                "session/start",
                serde_json::json!({"agent_file": agent.display().to_string()}),
            )
            .await;
        started["session_id"].as_str().unwrap().to_owned()
    }

    /// The next message (the backlog first).
    pub async fn next(&mut self) -> serde_json::Value {
        match self.backlog.pop_front() {
            Some(m) => m,
            None => self.read().await,
        }
    }

    /// Skips messages until one with `method`; returns it.
    pub async fn until(&mut self, method: &str) -> serde_json::Value {
        loop {
            let m = self.next().await;
            if m["method"] == method {
                return m;
            }
        }
    }

    /// Answers the daemon's request `id`.
    pub async fn respond(&mut self, id: &serde_json::Value, result: serde_json::Value) {
        self.send(&serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
            .await;
    }

    /// Closes stdin and waits for the daemon to exit.
    pub async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
    }
}
