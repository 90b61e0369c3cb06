//! Shared helpers: a fake [`ToolHost`] that records prints and calls in order.

mod binding;
mod cancel;
mod language;
mod limits;
mod output;
mod overhead;
mod sandbox;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot_script::ExcKind;
use codepilot_script::Limits;
use codepilot_script::ParamSpec;
use codepilot_script::RunReport;
use codepilot_script::RunRequest;
use codepilot_script::ScriptFailure;
use codepilot_script::ToolError;
use codepilot_script::ToolHost;
use codepilot_script::ToolSpec;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What the fake host saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Print(String),
    Call(String, Value),
}

/// A fake host. Tools:
/// - `execute(terminal, command, timeout=10, new_terminal=False)` → `{"exit_code": 0|1, "output": command, ...}`
///   (`exit_code` 1 when the command contains "fail").
/// - `read_file(path, start_line=1, end_line=None)` → `"contents of PATH"`; path "missing" raises FileNotFoundError.
/// - `echo(value=None)` → its argument.
/// - `boom(message)` → raises ValueError(message).
/// - `stop(message)` → aborts the block.
/// - `nap(seconds)` → sleeps, then returns "rested".
/// - `hang()` → never returns (records whether its future was dropped).
#[derive(Default)]
pub struct FakeHost {
    pub seen: Mutex<Vec<Seen>>,
    pub hang_dropped: Arc<AtomicBool>,
}

impl FakeHost {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// All printed text joined.
    pub fn printed(&self) -> String {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Print(t) => Some(t),
                Seen::Call(..) => None,
            })
            .collect()
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Call(n, a) => Some((n, a)),
                Seen::Print(_) => None,
            })
            .collect()
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ToolHost for FakeHost {
    async fn call_tool(&self, name: &str, args: Map<String, Value>) -> Result<Value, ToolError> {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Call(name.to_owned(), Value::Object(args.clone())));
        let text = |key: &str| {
            args.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match name {
            "execute" => {
                let command = text("command");
                let code = i64::from(command.contains("fail"));
                Ok(
                    json!({"status": "completed", "exit_code": code, "output": command, "terminal": text("terminal")}),
                )
            }
            "read_file" => {
                let path = text("path");
                if path == "missing" {
                    return Err(ToolError::new(
                        ExcKind::FileNotFoundError,
                        format!("no such file: '{path}'"),
                    ));
                }
                Ok(json!(format!("contents of {path}")))
            }
            "echo" => Ok(args.get("value").cloned().unwrap_or(Value::Null)),
            "prompt" => Ok(Value::Null),
            "boom" => Err(ToolError::new(ExcKind::ValueError, text("message"))),
            "nap" => {
                let secs = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                Ok(json!("rested"))
            }
            "hang" => {
                let _flag = DropFlag(Arc::clone(&self.hang_dropped));
                std::future::pending::<()>().await;
                Ok(Value::Null)
            }
            other => Err(ToolError::new(
                ExcKind::RuntimeError,
                format!("unknown tool {other}"),
            )),
        }
    }

    fn print(&self, text: &str) {
        self.seen.lock().unwrap().push(Seen::Print(text.to_owned()));
    }
}

pub fn tools() -> Arc<[ToolSpec]> {
    Arc::new([
        ToolSpec::new(
            "execute",
            vec![
                ParamSpec::required("terminal"),
                ParamSpec::required("command"),
                ParamSpec::optional("timeout", json!(10)),
                ParamSpec::optional("new_terminal", json!(false)),
            ],
            "Run a shell command in a terminal.",
        ),
        ToolSpec::new(
            "read_file",
            vec![
                ParamSpec::required("path"),
                ParamSpec::optional("start_line", json!(1)),
                ParamSpec::optional("end_line", Value::Null),
            ],
            "Read a file.",
        ),
        ToolSpec::new(
            "echo",
            vec![ParamSpec::optional("value", Value::Null)],
            "Return the value.",
        ),
        ToolSpec::new(
            "boom",
            vec![ParamSpec::required("message")],
            "Raise ValueError.",
        ),
        ToolSpec::new("nap", vec![ParamSpec::required("seconds")], "Sleep."),
        ToolSpec::new("hang", vec![], "Never return."),
        ToolSpec::new(
            "prompt",
            vec![ParamSpec::required("server"), ParamSpec::required("name")],
            "Get a prompt with its arguments.",
        )
        .with_var_keyword("args"),
    ])
}

pub fn request(code: &str) -> RunRequest {
    RunRequest {
        code: code.to_owned(),
        globals: vec![("WORK_DIR".to_owned(), json!("/work/dir"))],
        tools: tools(),
        limits: Limits::default(),
    }
}

/// Runs `code` with default limits; returns the host and the result.
pub async fn run(code: &str) -> (Arc<FakeHost>, Result<RunReport, ScriptFailure>) {
    run_req(request(code)).await
}

pub async fn run_req(req: RunRequest) -> (Arc<FakeHost>, Result<RunReport, ScriptFailure>) {
    let host = Arc::new(FakeHost::default());
    let result = codepilot_script::run_block(req, host.clone(), CancellationToken::new()).await;
    (host, result)
}

/// Runs `code`, expecting success; returns what the host printed.
pub async fn run_ok(code: &str) -> String {
    let (host, result) = run(code).await;
    if let Err(failure) = result {
        panic!("block failed: {failure:?}");
    }
    host.printed()
}

/// Runs `code`, expecting failure.
pub async fn run_err(code: &str) -> (Arc<FakeHost>, ScriptFailure) {
    let (host, result) = run(code).await;
    match result {
        Ok(report) => panic!(
            "block succeeded unexpectedly: {report:?}; printed {:?}",
            host.printed()
        ),
        Err(failure) => (host, failure),
    }
}

/// A compact, stable rendering of a failure for snapshots.
pub fn render(f: &ScriptFailure) -> String {
    format!(
        "kind: {}\nexc: {}: {}\nline: {:?} {:?}\ntool_calls: {}\n--- traceback\n{}",
        f.kind,
        f.exc_type,
        f.message,
        f.line,
        f.line_text,
        f.tool_calls,
        f.traceback.as_deref().unwrap_or("<none>")
    )
}
