//! A JSON-RPC test client and a daemon on a temporary Unix socket.

use std::collections::VecDeque;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use codepilot_server::Daemon;
use codepilot_server::DaemonConfig;
use codepilot_server::Listen;
use codepilot_testkit::ScriptedServer;
use serde_json::Value;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::unix::OwnedWriteHalf;

pub const DONE: &str = "```completion\ndone\n```";

/// A daemon serving a socket in a temporary directory.
pub struct TestDaemon {
    pub daemon: Daemon,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestDaemon {
    pub async fn start(mut config: DaemonConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cps")
            .tempdir_in("/tmp")
            .unwrap();
        config
            .checkpoint_dir
            .get_or_insert_with(|| dir.path().join("checkpoints"));
        config
            .index_dir
            .get_or_insert_with(|| dir.path().join("index"));
        let socket = dir.path().join("d").join("rt.sock");
        let daemon = Daemon::start(config).await.unwrap();
        let serving = daemon.clone();
        let path = socket.clone();
        tokio::spawn(async move { serving.serve(vec![Listen::Unix(path)]).await.unwrap() });
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Self {
            daemon,
            socket,
            dir,
        }
    }

    pub async fn client(&self) -> Client {
        let mut c = Client::connect(&self.socket).await;
        let init = c
            .call(
                "initialize",
                json!({"client": {"name": "test", "version": "1"}}),
            )
            .await
            .unwrap();
        assert_eq!(init["protocol"], 1);
        c
    }

    pub fn work_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("work");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Agent YAML for the scripted server (OpenAI wire format, no key needed), with `extra` appended.
pub fn agent_yaml(server: &ScriptedServer, work: &Path, extra: &str) -> String {
    format!(
        "agent:\n  name: DaemonTest\n  model:\n    provider: openai-compatible\n    name: test-model\n    base_url: {}/v1\n  \
         runtime:\n    work_dir: {}\n    max_steps: 8\n    sandbox: off\n{extra}",
        server.base_url(),
        serde_json::to_string(&work.display().to_string()).unwrap()
    )
}

pub struct Client {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    next_id: i64,
    pub backlog: VecDeque<Value>,
}

impl Client {
    /// Connects, waiting (up to 10 s) for a daemon that is still starting: its socket file appears when it is
    /// bound, a moment before it listens.
    pub async fn connect(path: &Path) -> Self {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e)
                    if std::time::Instant::now() < deadline
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                        ) =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("connecting to {}: {e}", path.display()),
            }
        };
        let (read, write) = stream.into_split();
        Self {
            lines: BufReader::new(read).lines(),
            write,
            next_id: 1,
            backlog: VecDeque::new(),
        }
    }

    pub async fn send_raw(&mut self, line: &str) {
        self.write.write_all(line.as_bytes()).await.unwrap();
        self.write.write_all(b"\n").await.unwrap();
    }

    /// The next message from the daemon (10 s at most).
    pub async fn read(&mut self) -> Value {
        self.read_within(Duration::from_secs(10)).await
    }

    /// The next message from the daemon, `limit` at most.
    pub async fn read_within(&mut self, limit: Duration) -> Value {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the daemon said nothing for {} s", limit.as_secs()))
            .unwrap()
            .expect("the daemon closed the connection");
        serde_json::from_str(&line).unwrap()
    }

    /// Calls `method`; messages that arrive meanwhile go to the backlog.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        self.send_raw(&line).await;
        loop {
            let msg = self.read().await;
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                return match msg.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(msg["result"].clone()),
                };
            }
            self.backlog.push_back(msg);
        }
    }

    /// `session/start` with the agent file's YAML; the session id.
    pub async fn start_session(&mut self, agent: String) -> String {
        let started = self
            .call("session/start", json!({ "agent": agent }))
            .await
            .unwrap();
        started["session_id"].as_str().unwrap().to_owned()
    }

    /// The next notification or server request (backlog first).
    pub async fn next(&mut self) -> Value {
        match self.backlog.pop_front() {
            Some(m) => m,
            None => self.read().await,
        }
    }

    /// [`Client::next`], waiting `limit` at most for a new message.
    pub async fn next_within(&mut self, limit: Duration) -> Value {
        match self.backlog.pop_front() {
            Some(m) => m,
            None => self.read_within(limit).await,
        }
    }

    /// Reads until `turn/completed` (or `turn/failed`); returns everything up to and including it.
    pub async fn until_completed(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let msg = self.next().await;
            let done = matches!(
                msg["method"].as_str(),
                Some("turn/completed" | "turn/failed")
            );
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }

    pub async fn respond(&mut self, id: &Value, result: Value) {
        let line = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        self.send_raw(&line).await;
    }
}

/// The `seq`s of the `event` notifications in `messages`.
pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m["method"] == "event")
        .map(|m| m["params"]["seq"].as_u64().unwrap())
        .collect()
}
