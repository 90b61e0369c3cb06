//! Hosted persistence (SPEC §17) through the real binary: daemons sharing one Postgres and one S3-compatible store
//! (moto), workspace snapshots, a daemon killed mid-turn, and every snapshot failure a host can meet.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::message_texts as texts;
use codepilot_testkit::moto::MotoServer;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWriteExt;

use super::support::codepilot_with;
use super::support::detach_from_terminal;
use super::support::pg_url;
use super::support::stderr;

const DONE: &str = "Finished.\n```completion\nall good\n```";

/// A `codepilot serve` process, SIGKILLed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts a daemon named `node` in `dir` (home `dir/<node>-home`), with `args` after `serve`.
    fn start(dir: &Path, node: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let socket = dir.join(format!("{node}.sock"));
        let log = dir.join(format!("{node}.log"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
        cmd.current_dir(dir)
            .arg("serve")
            .args(["--listen", &format!("unix://{}", socket.display())])
            .args(["--node", node])
            .args(args)
            .env("CODEPILOT_HOME", dir.join(format!("{node}-home")))
            .env_remove("CODEPILOT_DB_URL")
            .env_remove("CODEPILOT_SNAPSHOTS")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        detach_from_terminal(&mut cmd);
        let child = cmd.spawn().unwrap();
        let daemon = Self { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "{node} did not start: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no lease release, nothing flushed.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn client(&self) -> Client {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        let (read, write) = stream.into_split();
        let mut client = Client {
            lines: tokio::io::BufReader::new(read).lines(),
            write,
            next: 1,
            notes: Vec::new(),
        };
        client
            .call("initialize", json!({"client": {"name": "hosted-test"}}))
            .await
            .unwrap();
        client
    }
}

/// A JSON-RPC client on a daemon's socket that keeps the notifications it reads.
struct Client {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
    next: i64,
    notes: Vec<Value>,
}

impl Client {
    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("no message from the daemon within 60 s")
            .unwrap()
            .expect("the daemon closed the connection");
        serde_json::from_str(&line).unwrap()
    }

    /// `Ok(result)` or `Err(error object)`.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next;
        self.next += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let msg = self.read().await;
            if msg["id"] == json!(id) && msg.get("method").is_none() {
                return match msg.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(msg["result"].clone()),
                };
            }
            self.notes.push(msg);
        }
    }

    /// The first notification (kept or new) that `pred` accepts; kept ones before it are dropped.
    async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.notes.iter().position(&pred) {
            return self.notes.drain(..=i).next_back().unwrap();
        }
        self.notes.clear();
        loop {
            let msg = self.read().await;
            if pred(&msg) {
                return msg;
            }
        }
    }

    /// Waits for `turn/completed` and returns its outcome; `events` gets the event bodies seen before it.
    async fn turn(&mut self, session: &str, text: &str, events: &mut Vec<Value>) -> Value {
        self.call("turn/start", json!({"session_id": session, "text": text}))
            .await
            .unwrap();
        loop {
            let msg = if self.notes.is_empty() {
                self.read().await
            } else {
                self.notes.remove(0)
            };
            match msg["method"].as_str() {
                Some("event") => events.push(msg["params"]["event"].clone()),
                Some("turn/completed") => return msg["params"]["outcome"].clone(),
                _ => {}
            }
        }
    }
}

/// `session`'s entry in `session/list`.
async fn listed(c: &mut Client, session: &str) -> Value {
    let list = c.call("session/list", json!({})).await.unwrap();
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == json!(session))
        .unwrap_or_else(|| panic!("{session} is not listed: {list}"))
        .clone()
}

fn agent(server: &ScriptedServer) -> String {
    format!(
        "agent:\n  name: Hosted\n  model:\n    provider: openai-compatible\n    name: test-model\n    base_url: {}/v1\n    \
         stream: true\n  runtime:\n    max_steps: 8\n",
        server.base_url()
    )
}

fn short_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cph")
        .tempdir_in("/tmp")
        .unwrap()
}

/// What the real parts need; `None` when one is missing (the test is skipped, saying so; under CI it fails).
fn parts(bucket: &str) -> Option<(String, MotoServer)> {
    let pg = pg_url()?;
    let moto = MotoServer::start(bucket).unwrap()?;
    Some((pg, moto))
}

/// Exactly the variables a MinIO (or moto, or a local gateway) user sets for an `http://` store.
fn minio_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_endpoint_with_aws_allow_http_saves_workspaces_from_run_and_serve() {
    let Some(moto) = MotoServer::start("codepilot-minio").unwrap() else {
        return;
    };
    let env = minio_env(&moto.endpoint());
    let dir = short_dir();
    let root = dir.path();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();

    // `codepilot run --snapshots s3://…` saves the workspace at the end of the task.
    let runner = root.join("runner");
    std::fs::create_dir_all(&runner).unwrap();
    std::fs::write(
        runner.join("agent.yaml"),
        format!(
            "agent:\n  name: Minio\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: {}/v1\n  \
             runtime:\n    work_dir: checkout\n    max_steps: 4\n",
            server.base_url()
        ),
    )
    .unwrap();
    let run_store = moto.url("minio-run");
    let out = codepilot_with(
        &runner,
        &["run", "--snapshots", &run_store, "write a"],
        &env_refs(&env),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("workspace saved"),
        "the run saved its workspace: {}",
        stderr(&out)
    );
    let list = codepilot_with(
        root,
        &["snapshots", "list", "--snapshots", &run_store, "--json"],
        &env_refs(&env),
    )
    .await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        1,
        "one snapshot stored: {}",
        stderr(&list)
    );

    // `codepilot serve --snapshots s3://…` saves a turn's workspace, and `session/snapshot` saves on request.
    server.push(Turn::answer(
        "```codepilot\nwrite_file(\"b.txt\")\n```\n\n```text filename=b.txt\nB\n```",
    ));
    server.push(Turn::answer(DONE));
    let d = Daemon::start(
        root,
        "node-m",
        &["--snapshots", &moto.url("minio-serve")],
        &env,
    );
    let mut c = d.client().await;
    let started = c
        .call(
            "session/start",
            json!({"agent": agent(&server), "work_dir": root.join("wm")}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let id = started["session_id"].as_str().unwrap().to_owned();
    let mut events = Vec::new();
    let outcome = c.turn(&id, "write b", &mut events).await;
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert!(
        events.iter().any(|e| e["type"] == "workspace_saved"),
        "the turn saved its workspace: {events:?}\n{}",
        d.log()
    );
    std::fs::write(root.join("wm/c.txt"), "C").unwrap();
    let saved = c
        .call("session/snapshot", json!({"session_id": id}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(saved["saved"], true, "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_s3_endpoint_is_a_clear_error_at_start() {
    let dir = short_dir();
    let root = dir.path();
    // Nothing is asked of the model: the store is refused first.
    std::fs::write(
        root.join("agent.yaml"),
        "agent:\n  name: Bad\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: http://127.0.0.1:9/v1\n",
    )
    .unwrap();
    let cases = [
        (
            "ftp://127.0.0.1:9000",
            "true",
            &[
                "AWS_ENDPOINT_URL",
                "ftp://127.0.0.1:9000",
                "http:// or https://",
            ][..],
        ),
        (
            "http://127.0.0.1:9000",
            "false",
            &[
                "AWS_ENDPOINT_URL",
                "http://127.0.0.1:9000",
                "AWS_ALLOW_HTTP=true",
                "https://",
            ][..],
        ),
        (
            "http://127.0.0.1:9000",
            "maybe",
            &["AWS_ALLOW_HTTP", "maybe", "true or false"][..],
        ),
    ];
    for (endpoint, allow_http, says) in cases {
        let mut env = minio_env(endpoint);
        env[1].1 = allow_http.to_owned();
        let out = codepilot_with(
            root,
            &["run", "--snapshots", "s3://bucket/prefix", "a task"],
            &env_refs(&env),
        )
        .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{endpoint} {allow_http}: {err}");
        for part in says {
            assert!(
                err.contains(part),
                "{endpoint} {allow_http}: says {part:?}: {err}"
            );
        }
        assert!(!err.contains("builder error"), "{err}");
        // The daemon refuses to start the same way.
        let out = codepilot_with(
            root,
            &[
                "serve",
                "--listen",
                &format!("unix://{}", root.join("bad.sock").display()),
                "--snapshots",
                "s3://bucket/prefix",
            ],
            &env_refs(&env),
        )
        .await;
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "serve, {endpoint} {allow_http}: {err}"
        );
        assert!(err.contains(says[0]), "serve: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_another_daemon_with_its_workspace_after_a_kill_mid_turn() {
    let Some((pg, moto)) = parts("codepilot-hosted") else {
        return;
    };
    let dir = short_dir();
    let root = dir.path();
    let server = ScriptedServer::start(vec![
        // Turn 1 on A: files, an ignored build output.
        Turn::answer(
            "Writing.\n```codepilot\nwrite_file(\"notes.txt\")\nexecute(\"main\", \"mkdir -p src build && echo 'fn main() {}' > src/main.rs && echo junk > build/out.bin && printf 'build/\\n' > .gitignore\")\n```\n\n```text filename=notes.txt\nremember the plan\n```",
        ),
        Turn::answer(DONE),
        // Turn 2 on A: one step completes, then the model hangs and A is killed.
        Turn::answer("Step one.\n```codepilot\nwrite_file(\"step1.txt\")\n```\n\n```text filename=step1.txt\nfrom the killed turn\n```"),
        Turn::delay(120_000, Turn::answer(DONE)),
    ])
    .await
    .unwrap();
    let session = format!("hosted-{}", std::process::id());
    let snapshots = moto.url("hosted");
    let common = [
        "--db-url",
        pg.as_str(),
        "--snapshots",
        snapshots.as_str(),
        "--lease-ttl-s",
        "6",
    ];
    let mut a = Daemon::start(root, "node-a", &common, &moto.env());
    let mut ca = a.client().await;
    let started = ca
        .call(
            "session/start",
            json!({"agent": agent(&server), "work_dir": root.join("wa"), "session_id": session}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    assert_eq!(
        started.get("restored"),
        None,
        "a new session has nothing to restore"
    );

    let mut events = Vec::new();
    let outcome = ca.turn(&session, "write notes", &mut events).await;
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let saved: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "workspace_saved")
        .collect();
    // Saved in the background after the step; the turn's own save at its end found nothing changed since.
    assert_eq!(saved.len(), 1, "{events:?}");
    assert_eq!(
        saved[0]["files"], 3,
        "notes.txt, src/main.rs, .gitignore: {saved:?}"
    );

    let ours = listed(&mut ca, &session).await;
    assert_eq!(ours["status"], "idle");
    assert!(
        ours["runs_on"]
            .as_str()
            .unwrap()
            .starts_with("node-a (pid "),
        "{ours}"
    );
    assert!(
        ours["snapshot"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{session}/")),
        "{ours}"
    );

    // Turn 2: step one lands (checkpointed, snapshot in the background), then the model hangs: kill A there.
    ca.call(
        "turn/start",
        json!({"session_id": session, "text": "keep going"}),
    )
    .await
    .unwrap();
    ca.wait_for(|m| m["method"] == "event" && m["params"]["event"]["type"] == "workspace_saved")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the hung step was never asked for"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The checkpoint A took before turn 2 reaches the store in the background: a fresh machine lists it there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = codepilot_with(
            root,
            &[
                "checkpoints",
                "list",
                &session,
                "--snapshots",
                &snapshots,
                "--json",
            ],
            &env_refs(&moto.env()),
        )
        .await;
        assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
        if String::from_utf8_lossy(&list.stdout).contains("\"id\":\"2\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint 2 never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill();
    drop(ca);
    std::fs::remove_dir_all(root.join("wa")).unwrap();
    std::fs::remove_dir_all(root.join("node-a-home")).unwrap();

    let b = Daemon::start(root, "node-b", &common, &moto.env());
    let mut cb = b.client().await;
    // B resumes the session by its id alone: the agent and the work directory are the ones A recorded in the
    // store. A's lease is still live for B (another node): refused, naming the holder, until A's heartbeat is 6 s
    // old.
    let params = json!({"session_id": session});
    let refused = cb.call("session/resume", params.clone()).await.unwrap_err();
    assert_eq!(refused["code"], 1003, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("node-a"),
        "{refused}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        match cb.call("session/resume", params.clone()).await {
            Ok(r) => break r,
            Err(e) if e["code"] == 1003 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{e}\n{}", b.log()),
        }
    };
    let restored = &resumed["restored"];
    assert!(
        restored["snapshot"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{session}/")),
        "{resumed}"
    );
    // A's work directory, deleted with A, is restored on B's side.
    let wa = root.join("wa");
    assert_eq!(
        std::fs::read_to_string(wa.join("notes.txt")).unwrap(),
        "remember the plan\n"
    );
    assert_eq!(
        std::fs::read_to_string(wa.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        std::fs::read_to_string(wa.join("step1.txt")).unwrap(),
        "from the killed turn\n",
        "the step before the kill was saved in the background"
    );
    assert!(!wa.join("build").exists(), ".gitignore is respected");

    // History: turn 1 and the completed step of turn 2, not the step in flight.
    let history = texts(&resumed["messages"]);
    assert!(
        history.contains("write notes") && history.contains("keep going"),
        "{history}"
    );
    assert!(history.contains("step1.txt"), "{history}");
    assert_eq!(
        history.matches("all good").count(),
        1,
        "only turn 1 completed: {history}"
    );

    let ours = listed(&mut cb, &session).await;
    assert!(
        ours["runs_on"]
            .as_str()
            .unwrap()
            .starts_with("node-b (pid "),
        "{ours}"
    );

    // The next turn continues on B with the files.
    server.push(Turn::answer(
        "```codepilot\nprint(read_file(\"notes.txt\"))\n```",
    ));
    server.push(Turn::answer(DONE));
    let mut events = Vec::new();
    let outcome = cb.turn(&session, "what was the plan?", &mut events).await;
    assert_eq!(outcome["status"], "completed", "{outcome}\n{}", b.log());
    let last = server.requests().last().unwrap().body.to_string();
    assert!(
        last.contains("remember the plan"),
        "the model read the restored file: {last}"
    );

    // B rewinds to checkpoint 2, which A took (B's home never held it): the files and the conversation as they
    // were before the killed turn.
    let listed = cb
        .call("session/checkpoints", json!({"session_id": session}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    let ids: Vec<&str> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{listed}");
    let done = cb
        .call(
            "session/rewind",
            json!({"session_id": session, "checkpoint": "2"}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    assert_eq!(
        done["messages"], 4,
        "turn 1: task, two answers, one observation: {done}"
    );
    assert_eq!(done["files_deleted"], 1, "step1.txt: {done}");
    assert!(!wa.join("step1.txt").exists());
    assert_eq!(
        std::fs::read_to_string(wa.join("notes.txt")).unwrap(),
        "remember the plan\n"
    );
    let read = cb
        .call("session/read", json!({"session_id": session}))
        .await
        .unwrap();
    let history = texts(&read["messages"]);
    assert!(
        history.contains("write notes") && !history.contains("keep going"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_failures_are_clear_keep_the_history_and_the_daemon_serving() {
    let Some((pg, moto)) = parts("codepilot-failures") else {
        return;
    };
    let dir = short_dir();
    let root = dir.path();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let snapshots = moto.url("failures");
    let d = Daemon::start(
        root,
        "node-f",
        &[
            "--db-url",
            &pg,
            "--snapshots",
            &snapshots,
            "--snapshot-max-mb",
            "1",
        ],
        &moto.env(),
    );
    let mut c = d.client().await;
    let x = format!("failing-{}", std::process::id());
    let start = |work: &str, restore: Option<&str>| {
        let mut p = json!({"agent": agent(&server), "work_dir": root.join(work), "session_id": x});
        if let Some(r) = restore {
            p["restore"] = json!(r);
        }
        p
    };
    c.call("session/start", start("w1", None)).await.unwrap();
    let outcome = c.turn(&x, "write a", &mut Vec::new()).await;
    assert_eq!(outcome["status"], "completed");
    c.call("session/close", json!({"session_id": x}))
        .await
        .unwrap();
    let key = listed(&mut c, &x).await["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();

    // Corrupt: a clear error naming the snapshot; nothing restored; the history is there.
    moto.put_object(&format!("failures/{key}"), b"not a snapshot")
        .await
        .unwrap();
    let err = c
        .call("session/start", start("w2", None))
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1005, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("corrupt") && message.contains(&key),
        "{message}"
    );
    assert!(
        message.contains("restore `skip`"),
        "says what to do: {message}"
    );
    let read = c
        .call("session/read", json!({"session_id": x}))
        .await
        .unwrap();
    assert!(texts(&read["messages"]).contains("write a"), "history kept");

    // The daemon keeps serving: another session runs a turn.
    server.push(Turn::answer(DONE));
    let other = c
        .call(
            "session/start",
            json!({"agent": agent(&server), "work_dir": root.join("other")}),
        )
        .await
        .unwrap();
    let other_id = other["session_id"].as_str().unwrap().to_owned();
    let outcome = c.turn(&other_id, "hello", &mut Vec::new()).await;
    assert_eq!(outcome["status"], "completed");

    // Missing: a clear error too; restore `skip` starts the session on the work_dir as it is.
    moto.delete_object(&format!("failures/{key}"))
        .await
        .unwrap();
    let err = c
        .call("session/start", start("w2", None))
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1005, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("missing"),
        "{err}"
    );
    c.call("session/start", start("w2", Some("skip")))
        .await
        .unwrap();

    // Over the size cap: the turn completes, the failure is an event, the history is stored.
    server.push(Turn::answer(
        "```codepilot\nexecute(\"main\", \"head -c 2097152 /dev/urandom > big.bin\")\n```",
    ));
    server.push(Turn::answer(DONE));
    let mut events = Vec::new();
    let outcome = c.turn(&x, "make it big", &mut events).await;
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let failures: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "runtime_error" && e["kind"] == "snapshot")
        .collect();
    assert!(!failures.is_empty(), "{events:?}");
    let message = failures[0]["message"].as_str().unwrap();
    assert!(
        message.contains("big.bin") && message.contains("snapshot cap"),
        "{message}"
    );
    let err = c
        .call("session/snapshot", json!({"session_id": x}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], 1005, "{err}");
    let read = c
        .call("session/read", json!({"session_id": x}))
        .await
        .unwrap();
    assert!(texts(&read["messages"]).contains("make it big"));

    // Back under the cap, session/snapshot stores it; asked again with nothing changed, it uploads nothing.
    std::fs::remove_file(root.join("w2/big.bin")).unwrap();
    let saved = c
        .call("session/snapshot", json!({"session_id": x}))
        .await
        .unwrap();
    assert_eq!(saved["saved"], true, "{saved}");
    let again = c
        .call("session/snapshot", json!({"session_id": x}))
        .await
        .unwrap();
    assert_eq!(
        again,
        json!({"snapshot": saved["snapshot"], "saved": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_fails_the_snapshot_not_the_turn() {
    let Some(pg) = pg_url() else {
        return;
    };
    let dir = short_dir();
    let root = dir.path();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = vec![
        (
            "AWS_ENDPOINT_URL".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), "k".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "s".to_owned()),
    ];
    let d = Daemon::start(
        root,
        "node-u",
        &["--db-url", &pg, "--snapshots", "s3://unreachable/x"],
        &env,
    );
    let mut c = d.client().await;
    let started = c
        .call(
            "session/start",
            json!({"agent": agent(&server), "work_dir": root.join("w")}),
        )
        .await
        .unwrap();
    let id = started["session_id"].as_str().unwrap().to_owned();
    let mut events = Vec::new();
    let outcome = c.turn(&id, "write a", &mut events).await;
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let failure = events
        .iter()
        .find(|e| e["type"] == "runtime_error" && e["kind"] == "snapshot")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("s3://unreachable/x"),
        "{failure}"
    );
    let read = c
        .call("session/read", json!({"session_id": id}))
        .await
        .unwrap();
    assert!(texts(&read["messages"]).contains("write a"));
    assert_eq!(
        std::fs::read_to_string(root.join("w/a.txt")).unwrap(),
        "A\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_bot_resumes_a_run_on_another_runner() {
    let dir = short_dir();
    let root = dir.path();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\nwrite_file(\"fix.patch\")\n```\n\n```text filename=fix.patch\n-bug\n+fix\n```"),
        Turn::answer(DONE),
        Turn::answer("```codepilot\nprint(read_file(\"fix.patch\"))\n```"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let objects = format!("file://{}", root.join("objects").display());
    let db = format!("sqlite:///{}", root.join("shared/sessions.db").display());
    let runner = |name: &str| {
        let runner_dir = root.join(name);
        std::fs::create_dir_all(&runner_dir).unwrap();
        std::fs::write(
            runner_dir.join("agent.yaml"),
            format!(
                "agent:\n  name: Bot\n  model:\n    provider: openai-compatible\n    name: m\n    base_url: {}/v1\n  \
                 runtime:\n    work_dir: checkout\n    max_steps: 4\n",
                server.base_url()
            ),
        )
        .unwrap();
        runner_dir
    };
    let args = |task: &'static str| {
        vec![
            "run".to_owned(),
            "--db-url".to_owned(),
            db.clone(),
            "--session-id".to_owned(),
            "bot-1".to_owned(),
            "--snapshots".to_owned(),
            objects.clone(),
            task.to_owned(),
        ]
    };
    let first = runner("runner-1");
    let a: Vec<String> = args("fix the bug");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = codepilot_with(&first, &a, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("workspace saved"), "{}", stderr(&out));

    // Another runner, another home and checkout: the workspace comes back before the task runs.
    let second = runner("runner-2");
    let b: Vec<String> = args("show the fix");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let out = codepilot_with(&second, &b, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("restored the workspace from snapshot bot-1/"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(second.join("checkout/fix.patch")).unwrap(),
        "-bug\n+fix\n"
    );
    let last = server.requests().last().unwrap().body.to_string();
    assert!(last.contains("+fix"), "{last}");

    // The snapshots are listed, restored by hand and pruned.
    let list = codepilot_with(
        root,
        &["snapshots", "list", "--snapshots", &objects, "--json"],
        &[],
    )
    .await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let keys: Vec<Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "the second run changed nothing: {keys:?}");
    let key = keys[0]["key"].as_str().unwrap().to_owned();
    let inspect = root.join("inspect");
    let restored = codepilot_with(
        root,
        &[
            "snapshots",
            "restore",
            "--snapshots",
            &objects,
            &key,
            inspect.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
    assert!(inspect.join("fix.patch").exists());
    let pruned = codepilot_with(
        root,
        &["snapshots", "prune", "--snapshots", &objects, "--keep", "1"],
        &[],
    )
    .await;
    assert_eq!(pruned.status.code(), Some(0));
    assert!(
        stderr(&pruned).contains("deleted 0 snapshot(s)"),
        "the newest is always kept: {}",
        stderr(&pruned)
    );
    // The snapshot a session's history points to is not deleted by mistake.
    let refused = codepilot_with(
        root,
        &[
            "snapshots",
            "rm",
            "--snapshots",
            &objects,
            "--db-url",
            &db,
            &key,
        ],
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("bot-1's current snapshot"),
        "{}",
        stderr(&refused)
    );
    let forced = codepilot_with(
        root,
        &[
            "snapshots",
            "rm",
            "--snapshots",
            &objects,
            "--db-url",
            &db,
            "--force",
            &key,
        ],
        &[],
    )
    .await;
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    let missing = codepilot_with(root, &["snapshots", "list"], &[]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--snapshots"),
        "{}",
        stderr(&missing)
    );
}
