//! MCP tools (SPEC §18) through the binary, against real MCP servers: one written with the official Python SDK
//! (stdio and streamable HTTP) and `@modelcontextprotocol/server-filesystem` from npm.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Wire;
use super::support::codepilot;
use super::support::codepilot_with;
use super::support::events;
use super::support::json_lines;
use super::support::stderr;
use super::support::write_agent;

const DONE: &str = "Finished.\n```completion\nall good\n```";

/// What installs the MCP fixtures.
const FIXTURES: &str = "run `bash scripts/mcp-fixtures.sh` and export its two lines as CODEPILOT_TEST_MCP_PYTHON and CODEPILOT_TEST_MCP_FS";

/// The Python with the `mcp` SDK (`CODEPILOT_TEST_MCP_PYTHON`, from `scripts/mcp-fixtures.sh`); `None` when it is
/// missing: the test is skipped, saying so (and fails under CI).
fn python() -> Option<PathBuf> {
    codepilot_testkit::service::fixture_path("CODEPILOT_TEST_MCP_PYTHON", FIXTURES)
}

fn server_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mcp/server.py")
        .display()
        .to_string()
}

/// `mcp_servers:` YAML for the Python server over stdio as `name`, with `extra` lines (indented by 6).
fn stdio_server(python: &Path, name: &str, extra: &str) -> String {
    format!(
        "    - name: {name}\n      command: {}\n      args: [{}, stdio]\n{extra}",
        python.display(),
        serde_json::to_string(&server_script()).unwrap()
    )
}

fn agent_with(dir: &Path, server: &ScriptedServer, servers: &str) -> PathBuf {
    write_agent(
        dir,
        server,
        Wire::OpenAi,
        true,
        &format!("  mcp_servers:\n{servers}"),
    )
}

/// Runs `codepilot run` (memory session) with the Python server as `calc` against `turns`; asserts it succeeded.
async fn run_with_calc(dir: &Path, python: &Path, turns: Vec<Turn>) -> ScriptedServer {
    let server = ScriptedServer::start(turns).await.unwrap();
    agent_with(dir, &server, &stdio_server(python, "calc", ""));
    let out = codepilot(dir, &["run", "--session", "memory", "go"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    server
}

/// The observation the model read in request `i` (its last user message).
fn observation(server: &ScriptedServer, i: usize) -> String {
    codepilot_testkit::last_user_text(&server.requests()[i].body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_block_functions_with_values_errors_and_signatures() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let block = "```codepilot\nr = calc__add(a=2, b=3)\nprint(\"sum\", r[\"result\"] * 10)\nprint(calc__echo(text=\"ab\", times=2))\ntry:\n    calc__fail(message=\"boom\")\nexcept RuntimeError as e:\n    print(\"caught:\", e)\ntry:\n    calc__add(a=\"x\", b=1)\nexcept TypeError as e:\n    print(\"type:\", e)\n```";
    let server = ScriptedServer::start(vec![Turn::answer(block), Turn::answer(DONE)])
        .await
        .unwrap();
    agent_with(dir.path(), &server, &stdio_server(&python, "calc", ""));
    let out = codepilot(dir.path(), &["run", "--session", "memory", "--json", "add"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = observation(&server, 1);
    assert!(seen.contains("sum 50"), "{seen}");
    assert!(seen.contains("{'result': 'abab'}"), "{seen}");
    assert!(
        seen.contains("caught: Error executing tool fail: boom"),
        "the server's message: {seen}"
    );
    assert!(
        seen.contains("type: calc__add() argument 'a' must be int, not str"),
        "{seen}"
    );
    let system = codepilot_testkit::system_text(&server.requests()[0].body);
    assert!(
        system.contains("calc__add(a: int, b: int) -> dict"),
        "{system}"
    );
    assert!(system.contains("Add two integers."), "{system}");
    assert!(
        system.contains("calc__echo(text: str, times: int = 1) -> dict"),
        "{system}"
    );
    let evs = events(&json_lines(&out));
    let call = evs
        .iter()
        .find(|e| e["type"] == "tool_call" && e["tool"] == "calc__add")
        .unwrap();
    assert_eq!(call["args"]["a"], 2);
    assert!(
        call["label"].as_str().unwrap().contains("MCP server calc"),
        "{call}"
    );
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_crashes_and_dead_servers_never_stall_the_run() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("mcp-marker-{}", std::process::id());
    let block = "```codepilot\ntry:\n    calc__slow(seconds=30)\nexcept TimeoutError as e:\n    print(\"timeout:\", e)\nprint(\"after timeout\", calc__add(a=1, b=1))\ntry:\n    calc__crash()\nexcept RuntimeError as e:\n    print(\"crashed:\", e)\nprint(\"restarted\", calc__add(a=2, b=2))\ntry:\n    calc__crash()\nexcept RuntimeError as e:\n    print(\"crashed again\")\ntry:\n    calc__add(a=3, b=3)\nexcept RuntimeError as e:\n    print(\"gone:\", e)\n```";
    let server = ScriptedServer::start(vec![Turn::answer(block), Turn::answer(DONE)])
        .await
        .unwrap();
    let calc = format!(
        "    - name: calc\n      command: {}\n      args: [{}, stdio, {marker}]\n      timeout_s: 2\n",
        python.display(),
        serde_json::to_string(&server_script()).unwrap()
    );
    let servers = format!(
        "{calc}    - name: broken\n      command: /nonexistent/mcp-server\n    - name: web\n      url: http://127.0.0.1:9/mcp\n      timeout_s: 3\n"
    );
    agent_with(dir.path(), &server, &servers);
    let started = Instant::now();
    let out = codepilot(dir.path(), &["run", "--session", "memory", "--json", "go"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "nothing hung for long"
    );
    let seen = observation(&server, 1);
    assert!(
        seen.contains("timeout: calc__slow timed out after 2 s"),
        "{seen}"
    );
    assert!(seen.contains("after timeout {'result': 2}"), "{seen}");
    assert!(
        seen.contains("crashed: calc__crash: MCP server `calc` stopped"),
        "{seen}"
    );
    assert!(
        seen.contains("restarted {'result': 4}"),
        "restarted once on the next call: {seen}"
    );
    assert!(seen.contains("crashed again"), "{seen}");
    assert!(seen.contains("gone: "), "{seen}");
    assert!(seen.contains("restarted once already"), "{seen}");
    let warnings: Vec<String> = events(&json_lines(&out))
        .iter()
        .filter(|e| e["type"] == "runtime_error" && e["kind"] == "mcp")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`broken`") && w.contains("did not start")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`web`") && w.contains("did not start")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`calc`") && w.contains("stopped")),
        "{warnings:?}"
    );
    assert!(
        processes_with(&marker).is_empty(),
        "no server outlives the runtime: {:?}",
        processes_with(&marker)
    );

    // The human output says it too.
    let server = ScriptedServer::start(vec![Turn::answer(DONE)])
        .await
        .unwrap();
    agent_with(dir.path(), &server, &servers);
    let out = codepilot(dir.path(), &["run", "--session", "memory", "go"]).await;
    assert!(
        stderr(&out).contains("! warning: MCP server `broken`"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_between_calls_is_restarted_by_the_next_call() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = run_with_calc(
        dir.path(),
        &python,
        vec![
            Turn::answer("```codepilot\nprint(calc__exit_soon())\n```"),
            // The model thinks for a second; meanwhile the server exits.
            Turn::delay(
                1000,
                Turn::answer("```codepilot\nprint(\"after\", calc__add(a=1, b=1))\n```"),
            ),
            Turn::answer(DONE),
        ],
    )
    .await;
    let seen = observation(&server, 2);
    assert!(seen.contains("after {'result': 2}"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_server_asks_first_and_env_is_clean() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let block = "```codepilot\ntry:\n    print(\"value\", calc__secret(name=\"GREETING\"))\nexcept PermissionError as e:\n    print(\"denied:\", e)\n```";
    let servers = stdio_server(
        &python,
        "calc",
        "      require_permission: true\n      env: {GREETING: \"hello ${MCP_TEST_NAME}\"}\n",
    );
    for (yes, expect) in [
        (false, "denied:"),
        (true, "value {'result': 'hello world'}"),
    ] {
        let server = ScriptedServer::start(vec![Turn::answer(block), Turn::answer(DONE)])
            .await
            .unwrap();
        agent_with(dir.path(), &server, &servers);
        let mut args = vec!["run", "--session", "memory", "go"];
        if yes {
            args.insert(1, "--yes");
        }
        let out = codepilot_with(dir.path(), &args, &[("MCP_TEST_NAME", "world")]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let seen = observation(&server, 1);
        assert!(seen.contains(expect), "{seen}");
    }
    // A clean environment: the runtime's API key never reaches a server.
    let block = "```codepilot\nprint(\"key\", calc__secret(name=\"ANTHROPIC_API_KEY\"))\n```";
    let server = run_with_calc(
        dir.path(),
        &python,
        vec![Turn::answer(block), Turn::answer(DONE)],
    )
    .await;
    let seen = observation(&server, 1);
    assert!(seen.contains("key {'result': '<unset>'}"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_refreshes_the_tools_at_the_next_step() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = run_with_calc(
        dir.path(),
        &python,
        vec![
            Turn::answer("```codepilot\nprint(calc__grow())\n```"),
            Turn::answer("```codepilot\nprint(\"doubled\", calc__double(x=21))\n```"),
            Turn::answer(DONE),
        ],
    )
    .await;
    let first = codepilot_testkit::system_text(&server.requests()[0].body);
    assert!(!first.contains("calc__double"), "{first}");
    let second = codepilot_testkit::system_text(&server.requests()[1].body);
    assert!(second.contains("calc__double(x: int) -> dict"), "{second}");
    let seen = observation(&server, 2);
    assert!(seen.contains("doubled {'result': 42}"), "{seen}");
}

/// The Python server over streamable HTTP on a free port, killed on drop.
struct HttpServer {
    child: Child,
    url: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server(python: &Path) -> HttpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(python)
        .args([server_script(), "http".to_owned(), port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTP MCP server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    HttpServer {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_and_an_npm_server_in_one_block() {
    let Some(python) = python() else { return };
    let Some(fs_server) =
        codepilot_testkit::service::fixture_path("CODEPILOT_TEST_MCP_FS", FIXTURES)
    else {
        return;
    };
    let http = http_server(&python);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let block = format!(
        "```codepilot\nn = web__add(a=20, b=22)[\"result\"]\nfs__write_file(path={path}, content=\"answer \" + str(n))\nprint(fs__read_text_file(path={path}))\nprint(fs__list_directory(path={dir}))\n```",
        path = serde_json::to_string(&work.join("answer.txt").display().to_string()).unwrap(),
        dir = serde_json::to_string(&work.display().to_string()).unwrap(),
    );
    let server = ScriptedServer::start(vec![Turn::answer(block), Turn::answer(DONE)])
        .await
        .unwrap();
    let servers = format!(
        "    - name: web\n      url: {}\n      headers: {{X-Test: \"${{MCP_TEST_NAME}}\"}}\n    - name: fs\n      command: node\n      args: [{}, {}]\n",
        http.url,
        serde_json::to_string(&fs_server.display().to_string()).unwrap(),
        serde_json::to_string(&work.display().to_string()).unwrap(),
    );
    agent_with(dir.path(), &server, &servers);
    let out = codepilot_with(
        dir.path(),
        &["run", "--session", "memory", "go"],
        &[("MCP_TEST_NAME", "x")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(work.join("answer.txt")).unwrap(),
        "answer 42"
    );
    let seen = observation(&server, 1);
    assert!(seen.contains("answer 42"), "{seen}");
    assert!(seen.contains("[FILE] answer.txt"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_list_prints_servers_and_signatures() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let servers = format!(
        "{}      tools: {{exclude: [crash, grow]}}\n    - name: broken\n      command: /nonexistent/mcp-server\n",
        stdio_server(&python, "calc", "")
    );
    agent_with(dir.path(), &server, &servers);
    let out = codepilot(dir.path(), &["mcp", "list"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a server is down: {}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("calc  ready  stdio: "), "{text}");
    assert!(
        text.contains("  calc__add(a: int, b: int) -> dict\n      Add two integers."),
        "{text}"
    );
    assert!(!text.contains("calc__crash"), "excluded: {text}");
    assert!(
        text.contains("broken  failed  stdio: /nonexistent/mcp-server"),
        "{text}"
    );

    // A bad entry names its key and line.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "agent:\n  name: x\n  model: {provider: anthropic, name: m}\n  mcp_servers:\n    - name: Calc\n      command: x\n",
    )
    .unwrap();
    let bad = codepilot(dir.path(), &["mcp", "list", "-c", "bad.yaml"]).await;
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(
        err.contains("mcp_servers.name") && err.contains("bad.yaml:5"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_outlives_sigterm_or_sighup() {
    let Some(python) = python() else { return };
    for (signal, name) in [(libc::SIGTERM, "sigterm"), (libc::SIGHUP, "sighup")] {
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("mcp-{name}-{}", std::process::id());
        // The block waits on the server when the signal comes.
        let server = ScriptedServer::start(vec![
            Turn::answer("```codepilot\ncalc__slow(seconds=60)\n```"),
            Turn::answer(DONE),
        ])
        .await
        .unwrap();
        let servers = format!(
            "    - name: calc\n      command: {}\n      args: [{}, stdio, {marker}]\n",
            python.display(),
            serde_json::to_string(&server_script()).unwrap()
        );
        agent_with(dir.path(), &server, &servers);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codepilot"));
        cmd.current_dir(dir.path())
            .args(["run", "--session", "memory", "go"])
            .env("CODEPILOT_HOME", dir.path().join("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        super::support::detach_from_terminal(&mut cmd);
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.requests().is_empty() || processes_with(&marker).is_empty() {
            assert!(Instant::now() < deadline, "{name}: the run did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(i32::try_from(child.id()).unwrap(), signal);
        }
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{name}: {}", stderr(&out));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with(&marker).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{name}: the server outlived the runtime: {:?}",
                processes_with(&marker)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_prompts_are_block_functions() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let block = "```codepilot\nfor r in mcp_resources(\"calc\"):\n    print(\"R\", r.get(\"uri\") or r.get(\"uriTemplate\"))\nprint(\"READ\", mcp_read(\"calc\", \"note://greeting\")[0][\"text\"])\nprint(\"TEMPLATE\", mcp_read(\"calc\", \"note://rust\")[0][\"text\"])\nprint(\"PROMPTS\", [p[\"name\"] for p in mcp_prompts(\"calc\")])\np = mcp_prompt(\"calc\", \"review\", language=\"rust\", strict=\"yes\")\nprint(\"PROMPT\", p[\"messages\"][0][\"content\"][\"text\"])\ntry:\n    mcp_read(\"nope\", \"x\")\nexcept ValueError as e:\n    print(\"ERR\", e)\n```";
    let server = run_with_calc(
        dir.path(),
        &python,
        vec![Turn::answer(block), Turn::answer(DONE)],
    )
    .await;
    let seen = observation(&server, 1);
    assert!(seen.contains("R note://greeting"), "{seen}");
    assert!(seen.contains("R note://{topic}"), "{seen}");
    assert!(seen.contains("READ hello from the resource"), "{seen}");
    assert!(seen.contains("TEMPLATE a note about rust"), "{seen}");
    assert!(seen.contains("PROMPTS ['review']"), "{seen}");
    assert!(
        seen.contains("PROMPT Review this rust code (strict: yes)."),
        "{seen}"
    );
    assert!(
        seen.contains("ERR no MCP server `nope`; the agent has: calc"),
        "{seen}"
    );
    let system = codepilot_testkit::system_text(&server.requests()[0].body);
    assert!(
        system.contains("mcp_prompt(server: str, name: str, **args) -> dict"),
        "{system}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_denied_by_default_and_answered_by_the_agents_model_when_allowed() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let block = "```codepilot\ntry:\n    print(\"ANSWER\", calc__ask_model(question=\"two plus two?\"))\nexcept RuntimeError as e:\n    print(\"REFUSED\", e)\n```";
    // Denied: the server's request never reaches the model.
    let server = run_with_calc(
        dir.path(),
        &python,
        vec![Turn::answer(block), Turn::answer(DONE)],
    )
    .await;
    let seen = observation(&server, 1);
    assert!(
        seen.contains("REFUSED") && seen.contains("sampling: deny"),
        "{seen}"
    );
    assert_eq!(
        server.requests().len(),
        2,
        "no sampling request reached the model"
    );

    // Allowed: the agent's model answers, the server gets the text.
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer(block),
        Turn::answer("four"),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    agent_with(
        dir.path(),
        &server,
        &stdio_server(&python, "calc", "      sampling: allow\n"),
    );
    let out = codepilot(dir.path(), &["run", "--session", "memory", "ask"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        codepilot_testkit::last_user_text(&requests[1].body),
        "two plus two?"
    );
    assert!(codepilot_testkit::system_text(&requests[1].body).contains("Answer in one word."));
    let seen = observation(&server, 2);
    assert!(seen.contains("ANSWER {'result': 'four'}"), "{seen}");
}

/// `elicitation: ask` (the default): a server's form goes to the host's ask-user handler, one question per field,
/// typed and defaulted; without anyone to ask, it is declined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_question_goes_to_the_hosts_ask_user_handler() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let block = "```codepilot\nprint(\"RESULT\", calc__book())\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(block),
        Turn::answer(DONE),
        Turn::answer(block),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let path = agent_with(dir.path(), &server, &stdio_server(&python, "calc", ""));
    let agent = codepilot::AgentFile::load(&path).unwrap();
    let asked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
    let log = std::sync::Arc::clone(&asked);
    let rt = codepilot::AsyncRuntime::builder(agent)
        .env(|var| (var == "OPENAI_API_KEY").then(|| "test-key".to_owned()))
        .checkpoint_dir(dir.path().join("checkpoints"))
        .index_dir(dir.path().join("index"))
        .ask_user_handler(move |question: String| {
            let log = std::sync::Arc::clone(&log);
            async move {
                let answer = if question.contains("nights") {
                    ""
                } else {
                    "Ada"
                };
                log.lock().unwrap().push(question);
                Some(answer.to_owned())
            }
        })
        .build()
        .await
        .unwrap();
    rt.run("book").await.unwrap();
    rt.close().await.unwrap();
    let seen = observation(&server, 1);
    assert!(
        seen.contains("RESULT {'result': 'booked 1 night(s) for Ada'}"),
        "{seen}"
    );
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|q| q.starts_with("MCP server `calc` asks: Book a room")
                && q.contains("how many nights")
                && q.contains("Enter for 1")),
        "{asked:?}"
    );

    // The CLI without a terminal to ask on declines.
    let out = codepilot(dir.path(), &["run", "--session", "memory", "book"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = observation(&server, 3);
    assert!(seen.contains("booking decline"), "{seen}");
}

/// Through the daemon, a server's form goes whole to the clients (`ask_user/request` with its `schema`): an answer
/// that does not fit is asked again saying why, and fields left out take their defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_form_is_answered_whole_by_a_daemon_client() {
    let Some(python) = python() else { return };
    let dir = tempfile::Builder::new()
        .prefix("cpf")
        .tempdir_in("/tmp")
        .unwrap();
    let block = "```codepilot\nprint(\"RESULT\", calc__book())\n```";
    let server = ScriptedServer::start(vec![Turn::answer(block), Turn::answer(DONE)])
        .await
        .unwrap();
    let agent = agent_with(
        dir.path(),
        &server,
        &stdio_server(&python, "calc", "      timeout_s: 2\n"),
    );
    let mut daemon = super::support::StdioDaemon::start(dir.path()).await;
    let session = daemon.start_session(&agent).await;
    daemon
        .call(
            "turn/start",
            serde_json::json!({"session_id": session, "text": "book"}),
        )
        .await;
    let form = daemon.until("ask_user/request").await;
    assert!(
        form["params"]["question"]
            .as_str()
            .unwrap()
            .starts_with("MCP server `calc` asks: Book a room"),
        "{form}"
    );
    let schema = &form["params"]["schema"];
    assert_eq!(schema["properties"]["nights"]["default"], 1, "{schema}");
    assert_eq!(schema["required"], serde_json::json!(["guest"]), "{schema}");
    // A person slower than the call's 2 s timeout_s: the wait for the answer does not count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    daemon
        .respond(
            &form["id"],
            serde_json::json!({"content": {"nights": "two"}}),
        )
        .await;
    let again = daemon.until("ask_user/request").await;
    let question = again["params"]["question"].as_str().unwrap();
    assert!(question.contains("did not fit"), "{question}");
    daemon
        .respond(
            &again["id"],
            serde_json::json!({"content": {"guest": "Ada"}}),
        )
        .await;
    let done = daemon.until("turn/completed").await;
    assert_eq!(done["params"]["outcome"]["status"], "completed", "{done}");
    let seen = observation(&server, 1);
    assert!(
        seen.contains("RESULT {'result': 'booked 1 night(s) for Ada'}"),
        "{seen}"
    );
    daemon.close().await;
}
