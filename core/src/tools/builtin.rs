//! The built-in tools: their signatures and docs as the model sees them, and their dispatch.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use codepilot_protocol::AskUserEvent;
use codepilot_protocol::Event;
use codepilot_protocol::ParamSpec;
use codepilot_protocol::Payload;
use codepilot_protocol::ToolError;
use codepilot_protocol::ToolSpec;
use codepilot_terminal::TerminalManager;
use serde_json::Value;
use serde_json::json;

use super::StepContext;
use super::Tool;
use super::ToolCall;
use super::ToolOutput;
use super::find;
use super::fs;
use crate::handlers::BoxFuture;

/// Lines `read_file` returns per call before it pages.
const READ_PAGE_LINES: usize = 400;
/// Longest timeout a terminal tool accepts, in seconds.
const MAX_TERMINAL_TIMEOUT_S: f64 = 600.0;

/// A built-in tool. [`Builtin::ALL`] is the one list of them: the default tool set, `BUILTIN_TOOLS` and the agent
/// file's validation all derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    ReadFile,
    WriteFile,
    Find,
    Execute,
    ReadOutput,
    SendInput,
    TerminateTerminal,
    AskUser,
    ArchiveContext,
    RevealContext,
    ListArchivedContext,
    SpawnSubagent,
    AwaitSubagent,
    ReplySubagent,
    ListSubagents,
    AskMainAgent,
    SemanticSearch,
    Definition,
    References,
    RepoMap,
}

fn req(name: &str) -> ParamSpec {
    ParamSpec::required(name)
}

fn opt(name: &str, default: Value) -> ParamSpec {
    ParamSpec::optional(name, default)
}

impl Builtin {
    /// Every built-in, in the order the default tool set lists them.
    pub(crate) const ALL: [Builtin; 20] = [
        Self::ReadFile,
        Self::WriteFile,
        Self::Find,
        Self::SemanticSearch,
        Self::Definition,
        Self::References,
        Self::RepoMap,
        Self::Execute,
        Self::ReadOutput,
        Self::SendInput,
        Self::TerminateTerminal,
        Self::AskUser,
        Self::ArchiveContext,
        Self::RevealContext,
        Self::ListArchivedContext,
        Self::SpawnSubagent,
        Self::AwaitSubagent,
        Self::ReplySubagent,
        Self::ListSubagents,
        Self::AskMainAgent,
    ];

    /// The name the block calls.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::ReadFile => "read_file",
            Self::WriteFile => "write_file",
            Self::Find => "find",
            Self::Execute => "execute",
            Self::ReadOutput => "read_output",
            Self::SendInput => "send_input",
            Self::TerminateTerminal => "terminate_terminal",
            Self::AskUser => "ask_user",
            Self::ArchiveContext => "archive_context",
            Self::RevealContext => "reveal_context",
            Self::ListArchivedContext => "list_archived_context",
            Self::SpawnSubagent => "spawn_subagent",
            Self::AwaitSubagent => "await_subagent",
            Self::ReplySubagent => "reply_subagent",
            Self::ListSubagents => "list_subagents",
            Self::AskMainAgent => "ask_main_agent",
            Self::SemanticSearch => "semantic_search",
            Self::Definition => "definition",
            Self::References => "references",
            Self::RepoMap => "repo_map",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The `config:` keys the agent file may set for this tool. A misspelt key must not silently turn a safety
    /// setting off, so any other key is an error.
    pub(crate) fn config_keys(self) -> &'static [&'static str] {
        match self {
            Self::Execute | Self::ReadOutput | Self::SendInput => {
                &["require_permission", "max_output_chars"]
            }
            Self::ReadFile
            | Self::WriteFile
            | Self::Find
            | Self::TerminateTerminal
            | Self::AskUser
            | Self::ArchiveContext
            | Self::RevealContext
            | Self::ListArchivedContext
            | Self::SpawnSubagent
            | Self::AwaitSubagent
            | Self::ReplySubagent
            | Self::ListSubagents
            | Self::AskMainAgent
            | Self::SemanticSearch
            | Self::Definition
            | Self::References
            | Self::RepoMap => &["require_permission"],
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        match self {
            Self::Execute | Self::ReadOutput | Self::SendInput | Self::TerminateTerminal => true,
            Self::ReadFile
            | Self::WriteFile
            | Self::Find
            | Self::AskUser
            | Self::ArchiveContext
            | Self::RevealContext
            | Self::ListArchivedContext
            | Self::SpawnSubagent
            | Self::AwaitSubagent
            | Self::ReplySubagent
            | Self::ListSubagents
            | Self::AskMainAgent
            | Self::SemanticSearch
            | Self::Definition
            | Self::References
            | Self::RepoMap => false,
        }
    }

    fn make_spec(self) -> ToolSpec {
        let (params, doc) = match self {
            Self::ReadFile => (
                vec![
                    req("path"),
                    opt("start_line", json!(1)),
                    opt("end_line", Value::Null),
                ],
                "Read a text file with line numbers, at most 400 lines per call. Returns the numbered lines and \
                 a footer: [END OF FILE], or [TRUNCATED: k lines remaining — use start_line=m]. Read a file \
                 before editing it by line number.",
            ),
            Self::WriteFile => (
                vec![
                    req("path"),
                    opt("mode", json!("w")),
                    opt("start_line", Value::Null),
                    opt("end_line", Value::Null),
                    opt("after_line", Value::Null),
                    opt("edits", Value::Null),
                ],
                "Write a file. The content is NOT an argument: it is the next payload block (```lang \
                 filename=PATH) after the control block, consumed in call order. Modes: \"w\" create/overwrite \
                 (parents created); \"a\" append; \"edit\" replace lines start_line..end_line (1-based, inclusive); \
                 \"insert\" insert after after_line (0 = top); \"multi_edit\" replace several non-overlapping ranges \
                 edits=[(a, b), ...], one payload block per range, in the order listed. Line-number modes need the \
                 file read (or written) by you since its last change. Returns a short status string.",
            ),
            Self::Find => (
                vec![
                    req("pattern"),
                    opt("scope", json!("codebase")),
                    opt("target", Value::Null),
                    opt("include", Value::Null),
                    opt("max_results", json!(50)),
                ],
                "Search file contents with a regular expression (ripgrep engine, .gitignore respected). scope: \
                 \"codebase\" (optionally include=\"*.py\"), \"file\" (target=path) or \"files\" (target=[paths]). \
                 Returns a list of {path, line, text}.",
            ),
            Self::SemanticSearch => (
                vec![
                    req("query"),
                    opt("mode", json!("search")),
                    opt("depth", json!(super::code_search::DEFAULT_DEPTH)),
                    opt("top_k", json!(super::code_search::DEFAULT_TOP_K)),
                ],
                "Search the code by meaning and structure (a local index, always up to date). mode \"search\": \
                 query in words (\"where passwords are validated\") → the top_k best chunks {file, start_line, \
                 end_line, symbol, kind, score, snippet}. mode \"trace_callers\" | \"trace_callees\" | \
                 \"trace_graph\": query is a function name → call edges {caller, callee, file, line, depth, \
                 defined_at}, up to depth (1-5) calls away, matched by name.",
            ),
            Self::Definition => (
                vec![req("name")],
                "Where a name (or Type.method) is defined → [{name, kind, container, file, line, end_line, \
                 signature}].",
            ),
            Self::References => (
                vec![req("name")],
                "Every use of a name outside its definitions → [{file, line, kind (\"call\" or \"reference\"), \
                 symbol, text}].",
            ),
            Self::RepoMap => (
                vec![
                    opt(
                        "max_tokens",
                        json!(codepilot_search::DEFAULT_REPO_MAP_TOKENS),
                    ),
                    opt("focus", Value::Null),
                ],
                "Overview of the repository: the most used files with their key definitions' signatures, ranked \
                 by references (focus: a path or list of paths to rank around), in about max_tokens. Returns text.",
            ),
            Self::Execute => (
                vec![
                    req("terminal"),
                    req("command"),
                    opt("timeout", json!(10)),
                    opt("new_terminal", json!(false)),
                ],
                "Run a shell command in a persistent bash terminal (cwd and variables persist). Waits up to \
                 timeout seconds; if the command is still going, returns status \"running\" and it keeps running \
                 (use read_output / send_input). new_terminal=True creates the named terminal first (use it for \
                 servers and other long-lived processes). Returns {status, exit_code, output, cwd, pid, terminal}.",
            ),
            Self::ReadOutput => (
                vec![req("terminal"), opt("timeout", json!(5))],
                "Wait up to timeout seconds for more output of the terminal's current command. Returns the same \
                 dict as execute.",
            ),
            Self::SendInput => (
                vec![req("terminal"), req("text"), opt("timeout", json!(5))],
                "Type raw text into the terminal (no newline is added: end with \"\\n\" to press Enter; \"\\x03\" \
                 is Ctrl-C). Returns the same dict as execute.",
            ),
            Self::TerminateTerminal => (
                vec![req("terminal")],
                "Kill a terminal and every process it started. Returns a status string.",
            ),
            Self::AskUser => (
                vec![req("question")],
                "Ask the user a question and wait for the answer. Returns the answer string. Use it only when you \
                 cannot proceed without the user.",
            ),
            Self::ArchiveContext => (
                vec![req("task"), req("summary")],
                "Replace a finished task (a number, or a list of consecutive numbers) in your context by \
                 [ARCHIVED TASK N] and your summary; the original stays retrievable with reveal_context. Write a \
                 dense summary: what was asked, done, decided and left open. Returns a status string.",
            ),
            Self::RevealContext => (
                vec![req("task")],
                "Return the full original history of a task (archived or not) as text, without putting it back \
                 into your context.",
            ),
            Self::ListArchivedContext => (
                vec![],
                "List the archived tasks with the tokens each saved and the start of its summary.",
            ),
            Self::SpawnSubagent => (
                vec![
                    req("task"),
                    opt("context", json!("")),
                    opt("tools", Value::Null),
                    opt("model", Value::Null),
                ],
                "Start a worker agent on a bounded, self-contained task; returns its agent_id at once while it \
                 works alongside you. It has no access to your conversation: put everything it needs (file \
                 contents, constraints, the output you expect) into `context`. `tools`: the tools it may use \
                 (default read_file, execute, read_output, send_input, find); `model`: another model for it. \
                 Get its result with await_subagent(agent_id); its questions reach you as [Sub-Agent #N →] \
                 messages, answer them with reply_subagent.",
            ),
            Self::AwaitSubagent => (
                vec![req("agent_id"), opt("timeout", json!(600))],
                "Wait for worker agent_id to finish (at most `timeout` seconds) and return its result: its \
                 summary and the files it wrote, or why it failed.",
            ),
            Self::ReplySubagent => (
                vec![req("agent_id"), req("message")],
                "Answer a worker's question (a [Sub-Agent #N →] message); it continues with your reply.",
            ),
            Self::ListSubagents => (
                vec![],
                "List the workers started so far: agent_id, task, status and seconds since their start.",
            ),
            Self::AskMainAgent => (
                vec![req("message"), opt("timeout", json!(300))],
                "Ask the agent that started you a question and wait (at most `timeout` seconds) for its reply.",
            ),
        };
        ToolSpec::new(self.name(), params, doc)
    }
}

pub(super) fn arg_str(
    args: &serde_json::Map<String, Value>,
    tool: &str,
    name: &str,
) -> Result<String, ToolError> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(ToolError::type_error(format!(
            "{tool}(): `{name}` must be a string, got {}",
            type_name(other)
        ))),
    }
}

pub(super) fn arg_opt_int(
    args: &serde_json::Map<String, Value>,
    tool: &str,
    name: &str,
) -> Result<Option<i64>, ToolError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        other => Err(ToolError::type_error(format!(
            "{tool}(): `{name}` must be an integer or None, got {}",
            type_name(other)
        ))),
    }
}

fn arg_seconds(
    args: &serde_json::Map<String, Value>,
    tool: &str,
    name: &str,
) -> Result<Duration, ToolError> {
    let secs = match args.get(name) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(-1.0),
        other => {
            return Err(ToolError::type_error(format!(
                "{tool}(): `{name}` must be a number of seconds, got {}",
                type_name(other)
            )));
        }
    };
    if !(0.0..=MAX_TERMINAL_TIMEOUT_S).contains(&secs) {
        return Err(ToolError::value(format!(
            "{tool}(): `{name}` must be between 0 and {MAX_TERMINAL_TIMEOUT_S} seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None | Some(Value::Null) => "None",
        Some(Value::Bool(_)) => "bool",
        Some(Value::Number(n)) if n.is_f64() => "float",
        Some(Value::Number(_)) => "int",
        Some(Value::String(_)) => "str",
        Some(Value::Array(_)) => "list",
        Some(Value::Object(_)) => "dict",
    }
}

/// An argument as the label shows it: its JSON text (a number, a list).
fn num(args: &serde_json::Map<String, Value>, key: &str) -> String {
    args.get(key).map_or_else(String::new, Value::to_string)
}

fn truncate_label(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > max || first.len() < s.len() {
        let cut: String = first.chars().take(max).collect();
        format!("{cut}…")
    } else {
        first.to_owned()
    }
}

impl Builtin {
    fn make_label(self, args: &serde_json::Map<String, Value>) -> String {
        let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match self {
            Self::ReadFile => format!("Reading {}", s("path")),
            Self::WriteFile => match args.get("mode").and_then(Value::as_str).unwrap_or("w") {
                "a" => format!("Appending to {}", s("path")),
                "edit" | "insert" | "multi_edit" => format!("Editing {}", s("path")),
                _ => format!("Writing {}", s("path")),
            },
            Self::Find => format!("Searching for {}", s("pattern")),
            Self::Execute => format!(
                "Running `{}` in {}",
                truncate_label(&s("command"), 80),
                s("terminal")
            ),
            Self::ReadOutput => format!("Reading output of {}", s("terminal")),
            Self::SendInput => format!("Typing into {}", s("terminal")),
            Self::TerminateTerminal => format!("Terminating {}", s("terminal")),
            Self::AskUser => "Asking the user".to_owned(),
            Self::ArchiveContext => format!("Archiving task {}", num(args, "task")),
            Self::RevealContext => format!("Revealing task {}", num(args, "task")),
            Self::ListArchivedContext => "Listing archived tasks".to_owned(),
            Self::SpawnSubagent => format!("Starting a worker: {}", truncate_label(&s("task"), 80)),
            Self::AwaitSubagent => format!("Waiting for worker #{}", num(args, "agent_id")),
            Self::ReplySubagent => format!("Replying to worker #{}", num(args, "agent_id")),
            Self::ListSubagents => "Listing workers".to_owned(),
            Self::AskMainAgent => "Asking the main agent".to_owned(),
            Self::SemanticSearch => {
                match args.get("mode").and_then(Value::as_str).unwrap_or("search") {
                    "search" => {
                        format!("Searching the code for {}", truncate_label(&s("query"), 80))
                    }
                    mode => format!(
                        "Tracing {} ({})",
                        truncate_label(&s("query"), 80),
                        mode.trim_start_matches("trace_")
                    ),
                }
            }
            Self::Definition => format!("Finding the definition of {}", s("name")),
            Self::References => format!("Finding references to {}", s("name")),
            Self::RepoMap => "Mapping the repository".to_owned(),
        }
    }

    fn make_description(self, args: &serde_json::Map<String, Value>) -> String {
        let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match self {
            Self::WriteFile => {
                let op = match args.get("mode").and_then(Value::as_str).unwrap_or("w") {
                    "a" => "append".to_owned(),
                    "edit" => format!(
                        "replace lines {}–{}",
                        args.get("start_line").unwrap_or(&Value::Null),
                        args.get("end_line").unwrap_or(&Value::Null)
                    ),
                    "insert" => format!(
                        "insert after line {}",
                        args.get("after_line").unwrap_or(&Value::Null)
                    ),
                    "multi_edit" => "replace several line ranges".to_owned(),
                    _ => "full file".to_owned(),
                };
                format!("Write '{}' ({op})", s("path"))
            }
            Self::Execute => format!("Execute in {}: {}", s("terminal"), s("command")),
            Self::SendInput => format!("Send input to terminal {}: {:?}", s("terminal"), s("text")),
            Self::TerminateTerminal => format!("Terminate terminal {}", s("terminal")),
            Self::ReadFile => format!("Read '{}'", s("path")),
            Self::Find => format!("Search for {:?}", s("pattern")),
            Self::ReadOutput => format!("Read output of terminal {}", s("terminal")),
            Self::AskUser => "Ask the user a question".to_owned(),
            Self::ArchiveContext => format!("Archive task {}", num(args, "task")),
            Self::RevealContext => format!("Reveal task {}", num(args, "task")),
            Self::ListArchivedContext => "List archived tasks".to_owned(),
            Self::SpawnSubagent => format!("Start a worker: {}", truncate_label(&s("task"), 80)),
            Self::AwaitSubagent => format!("Wait for worker #{}", num(args, "agent_id")),
            Self::ReplySubagent => format!("Reply to worker #{}", num(args, "agent_id")),
            Self::ListSubagents => "List workers".to_owned(),
            Self::AskMainAgent => "Ask the main agent".to_owned(),
            Self::SemanticSearch => format!("Search the code for {:?}", s("query")),
            Self::Definition => format!("Find the definition of {}", s("name")),
            Self::References => format!("Find references to {}", s("name")),
            Self::RepoMap => "Map the repository".to_owned(),
        }
    }
}

impl Tool for Builtin {
    fn spec(&self) -> ToolSpec {
        self.make_spec()
    }

    fn label(&self, args: &serde_json::Map<String, Value>) -> Option<String> {
        Some(self.make_label(args))
    }

    fn describe_call(&self, args: &serde_json::Map<String, Value>) -> Option<String> {
        Some(self.make_description(args))
    }

    fn call<'a>(&'a self, call: ToolCall<'a>) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        let tool = *self;
        Box::pin(async move {
            let Some(ctx) = call.step else {
                return Err(ToolError::runtime(format!(
                    "{}() can only run inside a control block",
                    tool.name()
                )));
            };
            let args = &call.args;
            match tool {
                Self::ReadFile => read_file(ctx, args).await,
                Self::WriteFile => write_file(ctx, args).await,
                Self::Find => find_tool(ctx, args).await,
                Self::Execute => execute(ctx, args).await,
                Self::ReadOutput => read_output(ctx, args).await,
                Self::SendInput => send_input(ctx, args).await,
                Self::TerminateTerminal => terminate(ctx, args).await,
                Self::AskUser => ask_user(ctx, args).await,
                Self::ArchiveContext => super::context_tools::archive(ctx, args),
                Self::RevealContext => super::context_tools::reveal(ctx, args),
                Self::ListArchivedContext => Ok(super::context_tools::list(ctx)),
                Self::SpawnSubagent => spawn_subagent(ctx, args, &call.span),
                Self::AwaitSubagent => await_subagent(ctx, args).await,
                Self::ReplySubagent => reply_subagent(ctx, args),
                Self::ListSubagents => list_subagents(ctx),
                Self::AskMainAgent => ask_main_agent(ctx, args).await,
                Self::SemanticSearch => super::code_search::semantic_search(ctx, args).await,
                Self::Definition => super::code_search::definition(ctx, args).await,
                Self::References => super::code_search::references(ctx, args).await,
                Self::RepoMap => super::code_search::repo_map(ctx, args).await,
            }
        })
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    tool: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::runtime(format!("{tool}() failed internally: {e}")))
}

async fn read_file(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let path = arg_str(args, "read_file", "path")?;
    let start = arg_opt_int(args, "read_file", "start_line")?.unwrap_or(1);
    let end = arg_opt_int(args, "read_file", "end_line")?;
    let ws = Arc::clone(&ctx.env.workspace);
    let ledger = Arc::clone(&ctx.env.ledger);
    let out = blocking("read_file", move || {
        fs::read_file(&ws, &ledger, &path, start, end, READ_PAGE_LINES)
    })
    .await?;
    let out = out?;
    Ok(out)
}

fn parse_edits(
    args: &serde_json::Map<String, Value>,
) -> Result<Option<Vec<(i64, i64)>>, ToolError> {
    let bad = |what: String| {
        ToolError::type_error(format!(
            "write_file(): `edits` must be a list of (start_line, end_line) pairs; {what}"
        ))
    };
    match args.get("edits") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let mut edits = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let pair = item.as_array().filter(|a| a.len() == 2);
                let nums = pair.and_then(|a| Some((a[0].as_i64()?, a[1].as_i64()?)));
                match nums {
                    Some(p) => edits.push(p),
                    None => return Err(bad(format!("item {i} is {item}"))),
                }
            }
            Ok(Some(edits))
        }
        Some(other) => Err(bad(format!("got {other}"))),
    }
}

/// How many payload blocks a `write_file` call takes: one per edit range for `multi_edit`, else one. Read
/// leniently from the raw arguments, so a call refused for any reason still takes its own payloads.
fn payloads_wanted(args: &serde_json::Map<String, Value>) -> usize {
    if args.get("mode").and_then(Value::as_str) == Some("multi_edit") {
        args.get("edits")
            .and_then(Value::as_array)
            .map_or(1, Vec::len)
            .max(1)
    } else {
        1
    }
}

/// Takes the payload blocks of one `write_file` call off the step's queue: as many as it wants, or all that
/// remain when there are fewer (then none is left for a later call to take by mistake).
fn take_payloads(ctx: &StepContext, args: &serde_json::Map<String, Value>) -> Vec<Payload> {
    let wanted = payloads_wanted(args);
    match ctx.payloads.lock() {
        Ok(mut queue) => {
            let n = wanted.min(queue.len());
            queue.drain(..n).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// A call of `tool` was refused before it ran (permission denied): a `write_file` still takes its payload
/// blocks, so the next `write_file` gets its own content, never this one's.
pub(crate) fn discard_refused(
    ctx: &StepContext,
    tool: &str,
    args: &serde_json::Map<String, Value>,
) {
    if tool == Builtin::WriteFile.name() {
        take_payloads(ctx, args);
    }
}

async fn write_file(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    // Payloads are consumed before any other check, so a rejected call never shifts later calls onto the wrong
    // payload.
    let payloads = take_payloads(ctx, args);
    let path = arg_str(args, "write_file", "path")?;
    let mode_text = arg_str(args, "write_file", "mode")?;
    let edits = parse_edits(args)?;
    let start_line = arg_opt_int(args, "write_file", "start_line")?;
    let end_line = arg_opt_int(args, "write_file", "end_line")?;
    let after_line = arg_opt_int(args, "write_file", "after_line")?;
    let wanted = payloads_wanted(args);
    if payloads.len() < wanted {
        return Err(ToolError::value(format!(
            "write_file('{path}', mode={mode_text:?}) needs {wanted} payload block(s) but only {} \
             remain. Put one ```lang filename={path} block per write (one per edit range for multi_edit) \
             after the control block, in call order. No file was changed.",
            payloads.len()
        )));
    }
    if let Some(mismatch) = payloads.iter().find(|p| !same_path(&p.filename, &path)) {
        return Err(ToolError::value(format!(
            "write_file('{path}') got the payload block for '{}'. Payload blocks must follow the order of the \
                 write_file calls. No file was changed.",
            mismatch.filename
        )));
    }
    let mode = fs::WriteMode::parse(&mode_text)?;
    let req = fs::WriteRequest {
        path,
        mode,
        start_line,
        end_line,
        after_line,
        edits,
        payloads: payloads.into_iter().map(|p| p.content).collect(),
    };
    if let Some(limits) = ctx.env.workspace.limits().cloned() {
        let adding: u64 = req.payloads.iter().map(|p| p.len() as u64).sum();
        if let Err(hit) = blocking("write_file", move || limits.check_write(adding)).await? {
            emit_limit(ctx, &hit, None);
            return Err(ToolError::new(
                codepilot_protocol::ExcKind::OsError,
                format!(
                    "'{}' was not written: {} No file was changed.",
                    req.path, hit.message
                ),
            ));
        }
    }
    let ws = Arc::clone(&ctx.env.workspace);
    let ledger = Arc::clone(&ctx.env.ledger);
    let written = ws.resolve(&req.path).ok();
    let out = blocking("write_file", move || fs::write_file(&ws, &ledger, req)).await?;
    let out = out?;
    if let (Some(search), Some(path)) = (&ctx.env.search, written) {
        search.wrote(path);
    }
    Ok(out)
}

fn same_path(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace('\\', "/").trim_start_matches("./").to_owned();
    norm(a) == norm(b)
}

async fn find_tool(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let pattern = arg_str(args, "find", "pattern")?;
    let scope = arg_str(args, "find", "scope")?;
    let target = match args.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ToolError::type_error(
                            "find(): `target` must be a path or a list of paths".to_owned(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(ToolError::type_error(
                "find(): `target` must be a path or a list of paths".to_owned(),
            ));
        }
    };
    let include = match args.get("include") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ToolError::type_error(
                "find(): `include` must be a glob string such as \"*.rs\"".to_owned(),
            ));
        }
    };
    let max_results = arg_opt_int(args, "find", "max_results")?.unwrap_or(50);
    let max_results = usize::try_from(max_results.clamp(1, 1000)).unwrap_or(50);
    let req = find::FindRequest {
        pattern,
        scope,
        target,
        include,
        max_results,
    };
    let ws = Arc::clone(&ctx.env.workspace);
    let stop = Arc::new(AtomicBool::new(false));
    let guard = StopOnDrop(Arc::clone(&stop));
    let out = blocking("find", move || find::find(&ws, &req, &stop)).await?;
    drop(guard);
    let (out, _matches) = out?;
    Ok(out)
}

/// Tells a blocking search to stop when the step is cancelled (the future holding this is dropped).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn terminals<'a>(ctx: &'a StepContext, tool: &str) -> Result<&'a TerminalManager, ToolError> {
    ctx.env.terminals.as_ref().ok_or_else(|| {
        ToolError::runtime(format!(
            "{tool}(): terminals are not enabled for this agent"
        ))
    })
}

fn terminal_error(e: &codepilot_terminal::TerminalError) -> ToolError {
    ToolError::runtime(e.to_string())
}

fn command_value(r: &codepilot_terminal::CommandResult) -> Value {
    json!({
        "status": match r.status {
            codepilot_terminal::CommandStatus::Completed => "completed",
            codepilot_terminal::CommandStatus::Running => "running",
        },
        "exit_code": r.exit_code,
        "output": r.output,
        "cwd": r.cwd.display().to_string(),
        "pid": r.pid,
        "terminal": r.terminal,
    })
}

/// The result of a terminal tool; a limit the command ran into is also an [`Event::ResourceLimit`].
fn command_output(ctx: &StepContext, r: &codepilot_terminal::CommandResult) -> ToolOutput {
    if let Some(hit) = &r.limit {
        emit_limit(ctx, hit, Some(&r.terminal));
    }
    ToolOutput::with_observation(r.render(), command_value(r))
}

fn emit_limit(
    ctx: &StepContext,
    hit: &codepilot_sandbox::resources::LimitHit,
    terminal: Option<&str>,
) {
    use codepilot_sandbox::resources::LimitKind;
    ctx.env
        .events
        .emit(Event::ResourceLimit(crate::events::ResourceLimitEvent {
            kind: match hit.kind {
                LimitKind::Processes => crate::events::ResourceKind::Processes,
                LimitKind::Memory => crate::events::ResourceKind::Memory,
                LimitKind::Disk => crate::events::ResourceKind::Disk,
                LimitKind::OpenFiles => crate::events::ResourceKind::OpenFiles,
            },
            limit: hit.limit,
            terminal: terminal.map(str::to_owned),
            message: hit.message.clone(),
        }));
}

async fn execute(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let name = arg_str(args, "execute", "terminal")?;
    let command = arg_str(args, "execute", "command")?;
    let timeout = arg_seconds(args, "execute", "timeout")?;
    let new_terminal = args
        .get("new_terminal")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mgr = terminals(ctx, "execute")?;
    let handle = if new_terminal {
        match mgr.open(&name).map_err(|e| terminal_error(&e))? {
            Some(h) => h,
            None => mgr.create(&name).await.map_err(|e| terminal_error(&e))?,
        }
    } else {
        mgr.open(&name).map_err(|e| terminal_error(&e))?.ok_or_else(|| {
            ToolError::not_found(format!(
                        "terminal '{name}' does not exist. Live terminals: {}. Pass new_terminal=True to create it.",
                        live_names(mgr)
                    ))
        })?
    };
    let interrupt = InterruptOnDrop(Some(handle.clone()));
    let r = handle
        .execute(&command, timeout)
        .await
        .map_err(|e| terminal_error(&e));
    interrupt.disarm();
    Ok(command_output(ctx, &r?))
}

/// If the step is aborted while `execute` waits, the command it started is interrupted (Ctrl-C) rather than left
/// running unseen. Commands that already returned `running` (servers in their own terminal) are not touched.
struct InterruptOnDrop(Option<codepilot_terminal::TerminalHandle>);

impl InterruptOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = handle.send_input("\x03", Duration::from_secs(2)).await {
                    tracing::debug!("interrupting an aborted command: {e}");
                }
            });
        }
    }
}

fn live_names(mgr: &TerminalManager) -> String {
    let names: Vec<String> = mgr.list().into_iter().map(|t| t.name).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn existing(
    mgr: &TerminalManager,
    name: &str,
) -> Result<codepilot_terminal::TerminalHandle, ToolError> {
    mgr.open(name)
        .map_err(|e| terminal_error(&e))?
        .ok_or_else(|| {
            ToolError::not_found(format!(
                "terminal '{name}' does not exist. Live terminals: {}.",
                live_names(mgr)
            ))
        })
}

async fn read_output(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let name = arg_str(args, "read_output", "terminal")?;
    let timeout = arg_seconds(args, "read_output", "timeout")?;
    let mgr = terminals(ctx, "read_output")?;
    let handle = existing(mgr, &name)?;
    let r = handle
        .read_output(timeout)
        .await
        .map_err(|e| terminal_error(&e))?;
    Ok(command_output(ctx, &r))
}

async fn send_input(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let name = arg_str(args, "send_input", "terminal")?;
    let text = arg_str(args, "send_input", "text")?;
    let timeout = arg_seconds(args, "send_input", "timeout")?;
    let mgr = terminals(ctx, "send_input")?;
    let handle = existing(mgr, &name)?;
    let r = handle
        .send_input(&text, timeout)
        .await
        .map_err(|e| terminal_error(&e))?;
    Ok(command_output(ctx, &r))
}

async fn terminate(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let name = arg_str(args, "terminate_terminal", "terminal")?;
    let mgr = terminals(ctx, "terminate_terminal")?;
    existing(mgr, &name)?;
    let report = mgr.terminate(&name).await.map_err(|e| terminal_error(&e))?;
    let code = report.exit_code.map_or_else(
        || "exit code unknown".to_owned(),
        |c| format!("exit code {c}"),
    );
    let text = format!(
        "[terminal:{name}] Terminal destroyed: {} process(es) killed (shell pid {}, {code}).",
        report.killed.len(),
        report.pid
    );
    Ok(ToolOutput::message(text))
}

async fn ask_user(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let question = arg_str(args, "ask_user", "question")?;
    ctx.env.events.emit(Event::AskUser(AskUserEvent {
        question: question.clone(),
    }));
    let Some(handler) = ctx.env.ask_user.as_ref().filter(|h| h.available()) else {
        return Err(ToolError::runtime(
            "nobody can answer: the host registered no ask-user handler. Decide yourself, or finish and put \
                 the question in your completion summary.",
        ));
    };
    let Some(answer) = handler.ask(&question).await else {
        return Err(ToolError::runtime(
            "the user gave no answer. Decide yourself, or finish and put the question in your completion \
                 summary.",
        ));
    };
    Ok(ToolOutput::with_observation(
        format!("[ask_user] Q: {question}\n[ask_user] A: {answer}"),
        Value::String(answer),
    ))
}

fn workers(ctx: &StepContext, tool: &str) -> Result<Arc<dyn super::Delegate>, ToolError> {
    ctx.env.workers.clone().ok_or_else(|| {
        ToolError::runtime(format!(
            "{tool}(): sub-agents are off for this agent (spawn_subagent is disabled); do the work yourself"
        ))
    })
}

fn agent_id(args: &serde_json::Map<String, Value>, tool: &str) -> Result<u32, ToolError> {
    arg_opt_int(args, tool, "agent_id")?
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            ToolError::value(format!(
                "{tool}(): `agent_id` must be a worker's id (an int from spawn_subagent)"
            ))
        })
}

fn spawn_subagent(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
    span: &codepilot_telemetry::Span,
) -> Result<ToolOutput, ToolError> {
    let workers = workers(ctx, "spawn_subagent")?;
    let task = arg_str(args, "spawn_subagent", "task")?;
    let context = match args.get("context") {
        None | Some(Value::Null) => String::new(),
        Some(_) => arg_str(args, "spawn_subagent", "context")?,
    };
    let tools = match args.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ToolError::type_error(
                            "spawn_subagent(): `tools` must be a list of tool names",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(ToolError::type_error(
                "spawn_subagent(): `tools` must be a list of tool names or None",
            ));
        }
    };
    let model = match args.get("model") {
        None | Some(Value::Null) => None,
        Some(_) => Some(arg_str(args, "spawn_subagent", "model")?),
    };
    let id = workers
        .spawn(&task, &context, tools, model, span.traceparent())
        .map_err(|e| ToolError::runtime(format!("spawn_subagent(): {e}")))?;
    Ok(ToolOutput::with_observation(
        format!("[spawn_subagent] started sub-agent #{id}"),
        json!(id),
    ))
}

async fn await_subagent(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let workers = workers(ctx, "await_subagent")?;
    let id = agent_id(args, "await_subagent")?;
    let timeout = match args.get("timeout") {
        Some(Value::Number(n)) => {
            Duration::from_secs_f64(n.as_f64().unwrap_or(600.0).clamp(0.0, 86_400.0))
        }
        _ => Duration::from_secs(600),
    };
    let text = workers.wait(id, timeout).await;
    Ok(ToolOutput::with_observation(
        format!("[await_subagent] {text}"),
        Value::String(text),
    ))
}

fn reply_subagent(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let workers = workers(ctx, "reply_subagent")?;
    let id = agent_id(args, "reply_subagent")?;
    let message = arg_str(args, "reply_subagent", "message")?;
    workers
        .reply(id, message)
        .map_err(|e| ToolError::runtime(format!("reply_subagent(): {e}")))?;
    Ok(ToolOutput::with_observation(
        format!("[reply_subagent] sent to sub-agent #{id}"),
        Value::Null,
    ))
}

fn list_subagents(ctx: &StepContext) -> Result<ToolOutput, ToolError> {
    let workers = workers(ctx, "list_subagents")?;
    let list = workers.list();
    let lines: Vec<String> = list
        .iter()
        .map(|w| {
            format!(
                "#{} [{}] {}s: {}",
                w["agent_id"],
                w["status"].as_str().unwrap_or(""),
                w["elapsed_seconds"],
                w["task"].as_str().unwrap_or("")
            )
        })
        .collect();
    let text = if lines.is_empty() {
        "[list_subagents] no sub-agents started".to_owned()
    } else {
        format!("[list_subagents]\n{}", lines.join("\n"))
    };
    Ok(ToolOutput::with_observation(text, Value::Array(list)))
}

async fn ask_main_agent(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let Some(link) = ctx.env.worker.clone() else {
        return Err(ToolError::runtime(
            "ask_main_agent(): only a sub-agent can ask the main agent; you are the main agent",
        ));
    };
    let message = arg_str(args, "ask_main_agent", "message")?;
    let timeout = match args.get("timeout") {
        Some(Value::Number(n)) => {
            Duration::from_secs_f64(n.as_f64().unwrap_or(300.0).clamp(0.0, 86_400.0))
        }
        _ => Duration::from_secs(300),
    };
    if let Some(bus) = link.parent_events.upgrade() {
        bus.emit(Event::SubagentMessage(
            codepilot_protocol::SubagentMessageEvent {
                agent_id: link.agent_id,
                message: message.clone(),
            },
        ));
    }
    if let Some(control) = link.parent_control.upgrade() {
        control.queue(format!("[Sub-Agent #{} →] {message}", link.agent_id));
    }
    let mut replies = link.replies.lock().await;
    let reply = match tokio::time::timeout(timeout, replies.recv()).await {
        Ok(Some(reply)) => reply,
        Ok(None) => {
            return Err(ToolError::runtime(
                "ask_main_agent(): the main agent is gone; decide yourself",
            ));
        }
        Err(_) => format!(
            "Timeout: no reply from the main agent within {}s. Proceeding.",
            timeout.as_secs()
        ),
    };
    Ok(ToolOutput::with_observation(
        format!("[ask_main_agent] Q: {message}\n[ask_main_agent] A: {reply}"),
        Value::String(reply),
    ))
}
