//! The `codepilot` command-line interface.
//!
//! stdout is a contract: human mode prints only the final summary there, `--json` exactly one JSON event per line.
//! Progress, streamed text, prompts and errors go to stderr. Exit codes: 0 completed (or replied), 1 other errors,
//! 2 bad configuration or usage, 3 step limit reached, 4 aborted.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod checkpoints;
mod cli;
mod connect;
mod demo;
mod mcp;
mod output;
mod prompts;
mod replay;
mod search;
mod secrets;
mod serve;
mod sessions;
mod signals;
mod snapshots;

use std::io::IsTerminal;
use std::io::Read;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::Outcome;
use codepilot::StoreConfig;
use codepilot::store::snapshot::RestoreMode;

use cli::AgentArgs;
pub use cli::Cli;
pub use cli::Command;
use cli::SessionKind;
pub use codepilot::script::CountingAllocator;
use output::HumanOutput;
use output::JsonlOutput;
use output::Output;

/// Process exit codes (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The task completed, or the agent replied.
    Completed = 0,
    /// Any other error.
    Error = 1,
    /// Bad configuration or usage.
    Usage = 2,
    /// The step limit was reached.
    MaxSteps = 3,
    /// The run was aborted.
    Aborted = 4,
    /// A limit on tokens, cost or time was reached (SPEC §21).
    LimitExceeded = 5,
    /// The result never matched the output schema (SPEC §21).
    InvalidOutput = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error that knows its exit code.
struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        let exit = match error.downcast_ref::<codepilot::Error>() {
            Some(e) if e.is_config() => Exit::Usage,
            _ => Exit::Error,
        };
        Self { exit, error }
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::Usage,
        error: anyhow::anyhow!(msg.into()),
    }
}

/// A command with what it needs read before the async runtime starts.
enum Prepared {
    /// `run`: the agent and the task.
    Run(AgentFile, cli::RunArgs, String),
    PrintPrompt(AgentFile, cli::RunArgs),
    /// `chat`: the agent.
    Chat(AgentFile, cli::ChatArgs),
    Init(cli::InitArgs),
    Demo(cli::DemoArgs),
    Attach(cli::AttachArgs),
    Sessions(cli::SessionsArgs),
    Sandbox(cli::SandboxArgs),
    /// `run --connect`: the task, for a daemon.
    Connect(cli::RunArgs, String),
    Serve(cli::ServeArgs),
    Snapshots(cli::SnapshotsArgs),
    /// `mcp list`: the agent, whether to print JSON.
    McpList(AgentFile, bool),
    /// `mcp conformance`: the server's URL.
    McpConformance(String),
    /// `mcp login`: the agent, the server's name.
    McpLogin(AgentFile, String),
    /// `mcp logout`: the agent, the server's name.
    McpLogout(AgentFile, String),
    Checkpoints(cli::CheckpointsArgs),
    Rewind(AgentFile, cli::RewindArgs),
    Index(cli::IndexArgs),
    Search(cli::SearchArgs),
    Replay(cli::ReplayArgs),
}

/// Reads the task and the agent file, then takes secrets out of the process's reach (which must happen while
/// it has a single thread).
fn prepare(cli: Cli) -> Result<(Prepared, secrets::EnvSnapshot), Failure> {
    let prepared = match cli.command {
        Command::Run(mut args) if args.print_prompt => {
            let agent = load_agent(&args.agent.config)?;
            // Nothing to keep: a new session is not stored (one named with --session-id is read as it is).
            if args.agent.session_id.is_none() {
                args.agent.session = cli::SessionKind::Memory;
            }
            Prepared::PrintPrompt(agent, args)
        }
        Command::Run(mut args) => {
            let task = read_task(args.task.take())?;
            if args.connect.is_some() {
                Prepared::Connect(args, task)
            } else {
                let agent = load_agent(&args.agent.config)?;
                Prepared::Run(agent, args, task)
            }
        }
        Command::Chat(args) => {
            let agent = load_agent(&args.agent.config)?;
            Prepared::Chat(agent, args)
        }
        Command::Init(args) => Prepared::Init(args),
        Command::Demo(args) => Prepared::Demo(args),
        Command::Attach(args) => Prepared::Attach(args),
        Command::Sessions(args) => Prepared::Sessions(args),
        Command::Sandbox(args) => Prepared::Sandbox(args),
        Command::Serve(args) => Prepared::Serve(args),
        Command::Snapshots(args) => Prepared::Snapshots(args),
        Command::Checkpoints(args) => Prepared::Checkpoints(args),
        Command::Rewind(mut args) => {
            if args.agent.session_id.is_some() {
                return Err(usage(
                    "rewind takes the session as its first argument; leave out --session-id",
                ));
            }
            args.agent.session_id = Some(args.target.clone());
            let agent = load_agent(&args.agent.config)?;
            Prepared::Rewind(agent, args)
        }
        Command::Index(args) => Prepared::Index(args),
        Command::Search(args) => Prepared::Search(args),
        Command::Replay(args) => Prepared::Replay(args),
        Command::Mcp(args) => match args.command {
            cli::McpCommand::List { config, json } => Prepared::McpList(load_agent(&config)?, json),
            cli::McpCommand::Conformance { url } => Prepared::McpConformance(url),
            cli::McpCommand::Login { server, config } => {
                Prepared::McpLogin(load_agent(&config)?, server)
            }
            cli::McpCommand::Logout { server, config } => {
                Prepared::McpLogout(load_agent(&config)?, server)
            }
        },
    };
    let hidden: Vec<String> = match &prepared {
        Prepared::Run(agent, ..)
        | Prepared::PrintPrompt(agent, _)
        | Prepared::Chat(agent, _)
        | Prepared::McpList(agent, _)
        | Prepared::McpLogin(agent, _)
        | Prepared::McpLogout(agent, _)
        | Prepared::Rewind(agent, _) => agent
            .model
            .api_key_env
            .iter()
            .chain(
                agent
                    .search
                    .embeddings
                    .as_ref()
                    .and_then(|e| e.api_key_env.as_ref()),
            )
            .chain(
                agent
                    .mcp_servers
                    .iter()
                    .filter_map(|s| s.oauth.as_ref()?.client_secret_env.as_ref()),
            )
            .cloned()
            .collect(),
        Prepared::Init(_)
        | Prepared::Demo(_)
        | Prepared::Attach(_)
        | Prepared::Sessions(_)
        | Prepared::Sandbox(_)
        | Prepared::Connect(..)
        | Prepared::Serve(_)
        | Prepared::Snapshots(_)
        | Prepared::Checkpoints(_)
        | Prepared::Index(_)
        | Prepared::Search(_)
        | Prepared::Replay(_)
        | Prepared::McpConformance(_) => Vec::new(),
    };
    if secrets::argv_has_credentials() {
        output::err_line(
            "codepilot: warning: a password on the command line is visible to other users (ps); set it in \
             CODEPILOT_DB_URL instead. It was masked in this process's command line.",
        );
    }
    let env = secrets::protect(&hidden);
    Ok((prepared, env))
}

/// Runs the parsed command line and returns the process exit code.
pub fn run_main(cli: Cli) -> ExitCode {
    init_tracing();
    let (prepared, env) = match prepare(cli) {
        Ok(p) => p,
        Err(f) => {
            output::err_line(&format!(
                "codepilot: {}",
                output::printable(&output::render_error(&f.error))
            ));
            return f.exit.into();
        }
    };
    // One worker: a CLI process runs one session, and a second worker only stole its tasks back and forth (a
    // thread wake-up and switch each time) — 0.34–0.40 ms of CPU per agent step with two, 0.24 ms with one. Blocking
    // work goes to the blocking pool, blocks run on their own interpreter thread.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::err_line(&format!(
                "codepilot: could not start the async runtime: {e}"
            ));
            return Exit::Error.into();
        }
    };
    // The command runs on the worker pool, not on this thread: a future driven by `block_on` is woken by a futex
    // hand-off from the workers at every streamed chunk and event, which cost ~5 ms of CPU per agent step.
    let result = rt.block_on(async {
        match tokio::spawn(dispatch(prepared, env)).await {
            Ok(result) => result,
            Err(e) => Err(Failure {
                exit: Exit::Error,
                error: anyhow::anyhow!("the command stopped unexpectedly: {e}"),
            }),
        }
    });
    // Terminals and their processes are torn down by the runtime before we get here; don't wait for stray tasks.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(exit) => exit.into(),
        Err(f) => {
            output::err_line(&format!(
                "codepilot: {}",
                output::printable(&output::render_error(&f.error))
            ));
            f.exit.into()
        }
    }
}

/// Warnings from CodePilot's own crates reach the user like the CLI's other notices (`codepilot: warning: …`);
/// other libraries' log lines do not (what they fail with reaches the user once, as the error that caused it).
/// With `RUST_LOG` (or `CODEPILOT_LOG`) set, `tracing`'s full format at the level asked for instead.
fn init_tracing() {
    let asked = ["CODEPILOT_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|var| tracing_subscriber::EnvFilter::try_from_env(var).ok());
    let _ = match asked {
        Some(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("off,codepilot=warn"))
            .with_writer(std::io::stderr)
            .event_format(output::Notice)
            .try_init(),
    };
}

async fn dispatch(prepared: Prepared, env: secrets::EnvSnapshot) -> Result<Exit, Failure> {
    match prepared {
        Prepared::Run(agent, args, task) => {
            let options = run_options(&args)?;
            run_one(agent, &args.agent, &task, &options, env).await
        }
        Prepared::PrintPrompt(agent, args) => print_prompt(agent, &args.agent, env).await,
        Prepared::Chat(agent, args) => chat(agent, &args.agent, env).await,
        Prepared::Init(args) => init(&args.path, args.force),
        Prepared::Demo(args) => demo::run(args.keep, args.json).await,
        Prepared::Attach(args) => {
            codepilot::terminal::client::attach_interactive(&args.socket_dir, &args.name)
                .await
                .with_context(|| format!("attaching to terminal '{}'", args.name))?;
            Ok(Exit::Completed)
        }
        Prepared::Sessions(args) => sessions::run(args).await,
        Prepared::Sandbox(args) => match args.command {
            cli::SandboxCommand::Check => Ok(sandbox_check()),
        },
        Prepared::Connect(args, task) => {
            let url = args.connect.clone().unwrap_or_default();
            let out = make_output(args.agent.json);
            let options = run_options(&args)?;
            connect::run(&url, &args.agent.config, &args.agent, &task, &options, out).await
        }
        Prepared::Serve(args) => serve::run(args, env).await,
        Prepared::Snapshots(args) => snapshots::run(args, &env).await,
        Prepared::McpList(agent, json) => mcp::list(&agent, json, env).await,
        Prepared::McpConformance(url) => mcp::conformance(&url).await,
        Prepared::McpLogin(agent, server) => mcp::login(&agent, &server, env).await,
        Prepared::McpLogout(agent, server) => mcp::logout(&agent, &server),
        Prepared::Checkpoints(args) => checkpoints::list(args, &env).await,
        Prepared::Rewind(agent, args) => checkpoints::rewind(agent, &args, env).await,
        Prepared::Index(args) => search::index(args).await,
        Prepared::Search(args) => search::search(args).await,
        Prepared::Replay(args) => replay::run(args).await,
    }
}

fn read_task(task: Option<String>) -> Result<String, Failure> {
    let from_stdin = match task.as_deref() {
        Some("-") => true,
        Some(_) => false,
        None => !std::io::stdin().is_terminal(),
    };
    let task = if from_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("reading the task from stdin")?;
        buf
    } else {
        task.unwrap_or_default()
    };
    if task.trim().is_empty() {
        return Err(usage(
            "no task given. Usage: codepilot run \"describe the task\" (or pipe it on stdin, or pass - to read stdin)",
        ));
    }
    Ok(task)
}

pub(crate) fn load_agent(path: &Path) -> Result<AgentFile, Failure> {
    if !path.exists() {
        return Err(usage(format!(
            "agent file {} not found. Create one with `codepilot init`, or pass --config FILE",
            path.display()
        )));
    }
    AgentFile::load(path).map_err(|e| Failure {
        exit: Exit::Usage,
        error: e.into(),
    })
}

/// `$CODEPILOT_HOME`, default `~/.codepilot` (see [`codepilot::store::codepilot_home`]).
pub(crate) fn codepilot_home() -> Result<PathBuf, Failure> {
    codepilot::store::codepilot_home().map_err(|e| match e {
        codepilot::store::StoreError::Config(_) => usage(e.to_string()),
        other => other.into(),
    })
}

/// The session backend the flags ask for.
pub(crate) fn session_backend(
    kind: SessionKind,
    db_url: Option<&str>,
) -> Result<StoreConfig, Failure> {
    Ok(match kind {
        SessionKind::Memory => StoreConfig::Memory,
        SessionKind::File => StoreConfig::File {
            dir: codepilot_home()?.join("sessions"),
        },
        SessionKind::Db => match db_url {
            Some(url) => {
                codepilot::store::parse_db_url(url).map_err(|e| usage(format!("--db-url: {e}")))?
            }
            None => StoreConfig::sqlite_file(codepilot_home()?.join("sessions.db")),
        },
    })
}

pub(crate) async fn build_runtime(
    agent: AgentFile,
    args: &AgentArgs,
    out: &Arc<dyn Output>,
    env: secrets::EnvSnapshot,
) -> Result<AsyncRuntime, Failure> {
    if args.db_url.is_some() && args.session != SessionKind::Db {
        return Err(usage("--db-url only applies with --session db"));
    }
    let snapshots = snapshots::store(&args.snapshot, &env)?;
    // The agent file is recorded with the session, so `sessions export` (and another host) has it (SPEC §23).
    let mut builder = AsyncRuntime::builder(agent)
        .record_agent_file()
        .session(session_backend(args.session, args.db_url.as_deref())?)
        .env(move |var| env.get(var));
    if let Some(store) = snapshots {
        builder = builder.snapshots(store).restore(match args.restore {
            cli::RestoreArg::IfEmpty => RestoreMode::IfEmpty,
            cli::RestoreArg::Replace => RestoreMode::Replace,
            cli::RestoreArg::Skip => RestoreMode::Skip,
        });
    }
    if let Some(id) = &args.session_id {
        builder = builder.session_id(id.clone());
    }
    builder = prompts::install(builder, args.yes, Arc::clone(out));
    let rt = builder.build().await?;
    if let Some(codepilot::store::snapshot::Prepared::Restored { key, files, .. }) =
        rt.workspace_restore()
        && !args.json
    {
        output::err_line(&format!(
            "restored the workspace from snapshot {key} ({files} files)"
        ));
    }
    let sink = Arc::clone(out);
    out.starting_after(rt.last_event_seq());
    rt.on_envelope(move |e| sink.on_event(e));
    Ok(rt)
}

fn outcome_exit(outcome: &Outcome) -> Exit {
    match outcome {
        Outcome::Completed { .. } | Outcome::Replied { .. } => Exit::Completed,
        Outcome::MaxSteps { .. } => Exit::MaxSteps,
        Outcome::Aborted { .. } => Exit::Aborted,
        Outcome::LimitExceeded { .. } => Exit::LimitExceeded,
        Outcome::InvalidOutput { .. } => Exit::InvalidOutput,
    }
}

/// `codepilot run`'s limits and output schema (read from its file).
fn run_options(args: &cli::RunArgs) -> Result<codepilot::RunOptions, Failure> {
    let limits = codepilot::RunLimits {
        max_total_tokens: args.limits.max_total_tokens,
        max_cost_usd: args.limits.max_cost_usd,
        max_wall_s: args.limits.max_wall_s,
    };
    limits
        .validate()
        .map_err(|m| usage(format!("--{}", m.replacen('_', "-", 2))))?;
    let output_schema = match &args.output_schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--output-schema {}: {e}", path.display())))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                usage(format!(
                    "--output-schema {}: not JSON ({e}); give a JSON Schema file",
                    path.display()
                ))
            })?)
        }
        None => None,
    };
    Ok(codepilot::RunOptions {
        limits,
        output_schema,
        traceparent: env_traceparent(),
    })
}

/// The caller's trace context from `TRACEPARENT` (SPEC §23); a value that is not one is reported and ignored, as
/// W3C trace context asks.
pub(crate) fn env_traceparent() -> Option<codepilot::telemetry::TraceParent> {
    let value = std::env::var("TRACEPARENT").ok()?;
    match value.parse() {
        Ok(tp) => Some(tp),
        Err(e) => {
            output::err_line(&format!("codepilot: TRACEPARENT ignored: {e}"));
            None
        }
    }
}

/// Runs one task with Ctrl-C, SIGTERM and SIGHUP wired to abort; prints the outcome. Returns the stop signal
/// that arrived, if any, beside the exit code.
pub(crate) async fn run_task(
    rt: &AsyncRuntime,
    task: &str,
    options: &codepilot::RunOptions,
    out: &Arc<dyn Output>,
    signals: &mut signals::Signals,
) -> Result<(Exit, Option<signals::Stop>), Failure> {
    // The run is a task of its own: every wake-up of a step (a streamed chunk, an event) polls the run alone, not
    // this wait on the signals too.
    let run = {
        let (rt, task, options) = (rt.clone(), task.to_owned(), options.clone());
        tokio::spawn(async move { rt.run_with(&task, &options).await })
    };
    let abort_run = run.abort_handle();
    tokio::pin!(run);
    let mut stopped: Option<signals::Stop> = None;
    let result = loop {
        tokio::select! {
            r = &mut run => break r.map_err(|e| Failure {
                exit: Exit::Error,
                error: anyhow::anyhow!("the run stopped unexpectedly: {e}"),
            })?,
            stop = signals.next() => {
                if stopped.is_some() {
                    // A second signal: quit at once (the runtime's drop still kills the terminals).
                    abort_run.abort();
                    return Ok((Exit::Aborted, Some(stop)));
                }
                stopped = Some(stop);
                out.suspend();
                output::err_line(stop.notice());
                rt.abort();
            }
        }
    };
    let outcome = result?;
    out.suspend();
    out.on_outcome(
        &rt.session_id(),
        &outcome,
        &rt.last_spend().unwrap_or_default(),
    );
    Ok((outcome_exit(&outcome), stopped))
}

pub(crate) fn make_output(json: bool) -> Arc<dyn Output> {
    if json {
        Arc::new(JsonlOutput::default())
    } else {
        Arc::new(HumanOutput::new())
    }
}

async fn run_one(
    agent: AgentFile,
    args: &AgentArgs,
    task: &str,
    options: &codepilot::RunOptions,
    env: secrets::EnvSnapshot,
) -> Result<Exit, Failure> {
    let mut signals = signals::Signals::new();
    let out = make_output(args.json);
    let rt = build_runtime(agent, args, &out, env).await?;
    if !args.json {
        announce(&rt);
    }
    let exit = run_task(&rt, task, options, &out, &mut signals).await;
    if let Err(e) = rt.close().await {
        output::err_line(&format!("codepilot: closing the session: {e}"));
    }
    exit.map(|(exit, _)| exit)
}

/// `codepilot run --print-prompt`: the runtime starts (terminals, MCP servers), the prompt goes to stdout, and
/// no model is called.
async fn print_prompt(
    agent: AgentFile,
    args: &AgentArgs,
    env: secrets::EnvSnapshot,
) -> Result<Exit, Failure> {
    let out = make_output(args.json);
    let rt = build_runtime(agent, args, &out, env).await?;
    let prompt = rt.system_prompt();
    if let Err(e) = rt.close().await {
        output::err_line(&format!("codepilot: closing the session: {e}"));
    }
    output::emit_stdout(prompt?.trim_end());
    Ok(Exit::Completed)
}

fn announce(rt: &AsyncRuntime) {
    let mut line = format!(
        "session {} · work_dir {}",
        rt.session_id(),
        rt.work_dir().display()
    );
    if let Some(t) = rt.terminals() {
        line.push_str(&format!(
            " · watch the shell: codepilot attach --socket-dir {} main",
            t.socket_dir().display()
        ));
    }
    output::err_line(&line);
}

async fn chat(
    agent: AgentFile,
    args: &AgentArgs,
    env: secrets::EnvSnapshot,
) -> Result<Exit, Failure> {
    let traceparent = env_traceparent();
    let mut signals = signals::Signals::new();
    let out = make_output(args.json);
    let rt = build_runtime(agent, args, &out, env).await?;
    if !args.json {
        announce(&rt);
        output::err_line(
            "Type a task and press Enter. /checkpoints lists checkpoints, /rewind N goes back to before task N; /exit or Ctrl-D quits.",
        );
    }
    let mut last = Exit::Completed;
    let (tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1);
    // One reader thread for the whole chat: a line typed while a task runs waits for the next prompt.
    std::thread::spawn(move || {
        loop {
            let mut s = String::new();
            let read = std::io::stdin().read_line(&mut s);
            let done = matches!(read, Ok(0) | Err(_));
            if tx.blocking_send(read.map(|_| s)).is_err() || done {
                break;
            }
        }
    });
    loop {
        if !args.json {
            output::err_write("› ");
        }
        let line = tokio::select! {
            l = lines.recv() => l,
            stop = signals.next() => {
                output::err_line("");
                if stop.ends_program() {
                    last = Exit::Aborted;
                }
                break;
            }
        };
        let text = match line {
            Some(Ok(text)) if !text.is_empty() => text,
            Some(Err(e)) => {
                output::err_line(&format!("codepilot: reading stdin: {e}"));
                break;
            }
            Some(Ok(_)) | None => break,
        };
        let text = text.trim();
        if text == "/exit" || text == "/quit" {
            break;
        }
        if text.is_empty() {
            continue;
        }
        if let Some(command) = checkpoints::ChatCommand::parse(text) {
            if let Err(f) = command.run(&rt, args.json).await {
                output::err_line(&format!(
                    "codepilot: {}",
                    output::printable(&output::render_error(&f.error))
                ));
            }
            continue;
        }
        match run_task(
            &rt,
            text,
            &codepilot::RunOptions {
                traceparent,
                ..codepilot::RunOptions::default()
            },
            &out,
            &mut signals,
        )
        .await
        {
            Ok((exit, stop)) => {
                last = exit;
                // SIGTERM or SIGHUP ends the conversation too; Ctrl-C only the task.
                if stop.is_some_and(signals::Stop::ends_program) {
                    break;
                }
            }
            Err(f) => {
                // One failed task (a provider outage, say) does not end the conversation.
                output::err_line(&format!(
                    "codepilot: {}",
                    output::printable(&output::render_error(&f.error))
                ));
                last = f.exit;
            }
        }
    }
    rt.close().await?;
    Ok(last)
}

/// `codepilot sandbox check`: each guarantee, enforced or not and why, on stdout.
fn sandbox_check() -> Exit {
    let support = codepilot::sandbox::probe();
    let report = support.report();
    for (what, result) in &report {
        match result {
            Ok(how) => output::emit_stdout(&format!("yes  {what} ({how})")),
            Err(why) => output::emit_stdout(&format!("no   {what}: {why}")),
        }
    }
    if report.iter().all(|(_, r)| r.is_ok()) {
        Exit::Completed
    } else {
        output::err_line(
            "codepilot: some guarantees are missing here; agents still run, with what is enforced (set \
             runtime.sandbox: off to silence the notice)",
        );
        Exit::Error
    }
}

fn init(path: &Path, force: bool) -> Result<Exit, Failure> {
    if path.exists() && !force {
        return Err(usage(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    std::fs::write(path, codepilot::config::STARTER_AGENT_YAML)
        .with_context(|| format!("writing {}", path.display()))?;
    output::err_line(&format!(
        "wrote {}. Set your provider's API key variable, then: codepilot run \"your task\"",
        path.display()
    ));
    Ok(Exit::Completed)
}
