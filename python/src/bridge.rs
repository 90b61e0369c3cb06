//! The bridge between a run on the engine's threads and the Python code that drives it.
//!
//! A run sends everything Python must see or answer — events, custom tool calls, permission requests, questions —
//! down one channel to its driver: the thread that called `Runtime.run`, or the event loop awaiting
//! `AsyncRuntime.run`. The driver calls the hooks and tools there and answers through a [`Reply`]. So hooks run on
//! the caller's thread (or the loop's), in the order the runtime emitted the events, and nothing on the engine's
//! threads ever waits for the GIL except to hand a batch over.
//!
//! Events emitted while no run is driven (a `send_message` while idle, a reset) wait in a short queue until the next
//! call that delivers hooks.

use codepilot::protocol::sync::lock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use codepilot::BoxFuture;
use codepilot::Event;
use codepilot::ExcKind;
use codepilot::Outcome;
use codepilot::PermissionDecision;
use codepilot::PermissionRequest;
use codepilot::Tool;
use codepilot::ToolCall;
use codepilot::ToolError;
use codepilot::ToolOutput;
use codepilot::ToolSpec;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use serde_json::Map;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::convert;
use crate::errors;
use crate::events::hook_call;

/// How many undelivered idle events are kept; older ones are dropped.
const IDLE_EVENTS: usize = 1024;

/// Something a run needs its Python driver to see or answer.
pub(crate) enum HostItem {
    /// An event for the hooks.
    Event(Event),
    /// Call the custom tool `name` with `args`.
    Tool {
        name: String,
        args: Map<String, Value>,
        reply: Reply,
    },
    /// Ask the permission hooks.
    Permission {
        request: PermissionRequest,
        reply: Reply,
    },
    /// Ask the ask-user hooks.
    AskUser { question: String, reply: Reply },
    /// Show the `mcp_auth` hooks an MCP server's authorization URL.
    McpAuth { server: String, url: String },
    /// The run ended, with what it spent.
    Done(Result<(Outcome, codepilot::Spend), codepilot::Error>),
}

impl<'py> IntoPyObject<'py> for HostItem {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    /// `("event", name, kwargs)`, `("tool", name, args, reply)`, `("permission", kwargs, reply)`,
    /// `("ask_user", kwargs, reply)`, `("done", status, text, steps)` or `("error", exception)`.
    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tuple = match self {
            HostItem::Event(event) => match hook_call(&event) {
                Some((name, kwargs)) => PyTuple::new(
                    py,
                    [
                        "event".into_pyobject(py)?.into_any(),
                        name.into_pyobject(py)?.into_any(),
                        convert::dict(py, &kwargs)?.into_any(),
                    ],
                )?,
                None => PyTuple::new(py, ["skip"])?,
            },
            HostItem::Tool { name, args, reply } => PyTuple::new(
                py,
                [
                    "tool".into_pyobject(py)?.into_any(),
                    name.into_pyobject(py)?.into_any(),
                    convert::dict(py, &args)?.into_any(),
                    Bound::new(py, reply)?.into_any(),
                ],
            )?,
            HostItem::Permission { request, reply } => {
                let mut kwargs = Map::new();
                kwargs.insert("tool".to_owned(), Value::String(request.tool));
                kwargs.insert("description".to_owned(), Value::String(request.description));
                kwargs.insert("args".to_owned(), request.args);
                PyTuple::new(
                    py,
                    [
                        "permission".into_pyobject(py)?.into_any(),
                        convert::dict(py, &kwargs)?.into_any(),
                        Bound::new(py, reply)?.into_any(),
                    ],
                )?
            }
            HostItem::AskUser { question, reply } => {
                let mut kwargs = Map::new();
                kwargs.insert("question".to_owned(), Value::String(question));
                PyTuple::new(
                    py,
                    [
                        "ask_user".into_pyobject(py)?.into_any(),
                        convert::dict(py, &kwargs)?.into_any(),
                        Bound::new(py, reply)?.into_any(),
                    ],
                )?
            }
            HostItem::McpAuth { server, url } => {
                let mut kwargs = Map::new();
                kwargs.insert("url".to_owned(), Value::String(url));
                kwargs.insert("server".to_owned(), Value::String(server));
                PyTuple::new(
                    py,
                    [
                        "event".into_pyobject(py)?.into_any(),
                        "mcp_auth".into_pyobject(py)?.into_any(),
                        convert::dict(py, &kwargs)?.into_any(),
                    ],
                )?
            }
            HostItem::Done(Ok((outcome, spend))) => {
                let whole = serde_json::to_value(&outcome).unwrap_or(Value::Null);
                let spend = serde_json::to_value(spend).unwrap_or(Value::Null);
                PyTuple::new(
                    py,
                    [
                        "done".into_pyobject(py)?.into_any(),
                        outcome.status().into_pyobject(py)?.into_any(),
                        outcome.text().into_pyobject(py)?.into_any(),
                        outcome.steps().into_pyobject(py)?.into_any(),
                        convert::to_py(py, &whole)?,
                        convert::to_py(py, &spend)?,
                    ],
                )?
            }
            HostItem::Done(Err(error)) => {
                let exception = errors::to_py_err(py, &error).into_value(py).into_bound(py);
                PyTuple::new(
                    py,
                    ["error".into_pyobject(py)?.into_any(), exception.into_any()],
                )?
            }
        };
        Ok(tuple.into_any())
    }
}

/// Python's answer to a tool call, permission request or question.
pub(crate) enum Answer {
    /// A value: the tool's result, the decision (`True`/`False`/`None`), the answer (`str`/`None`).
    Value(Value),
    /// The tool raised `exc` (the exception's class name) with `message`.
    Raised { exc: String, message: String },
}

/// The way back for one [`HostItem`]'s answer. Answering twice, or after the run stopped waiting, does nothing.
#[pyclass(module = "codepilot._native", frozen)]
pub(crate) struct Reply {
    tx: Mutex<Option<oneshot::Sender<Answer>>>,
}

impl Reply {
    fn answer(&self, answer: Answer) {
        if let Some(tx) = lock(&self.tx).take() {
            // The run may have stopped waiting (aborted); the answer is then moot.
            let _ = tx.send(answer);
        }
    }
}

#[pymethods]
impl Reply {
    /// Answers with `value` (converted to JSON; objects without a JSON form are sent as their `str()`).
    fn send(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.answer(Answer::Value(convert::from_py(
            value,
            convert::Other::Stringify,
        )?));
        Ok(())
    }

    /// Answers that the tool raised an exception of class `exc` with `message`.
    fn fail(&self, exc: String, message: String) {
        self.answer(Answer::Raised { exc, message });
    }
}

/// The driver a run reports to, and what waits for one.
#[derive(Default)]
struct Route {
    driver: Option<(u64, mpsc::UnboundedSender<HostItem>)>,
    idle: VecDeque<HostItem>,
}

/// Shared by a runtime, its runs and its Python-backed handlers and tools.
#[derive(Default)]
pub(crate) struct Bridge {
    route: Mutex<Route>,
    permission_hooks: AtomicBool,
    ask_user_hooks: AtomicBool,
    mcp_auth_hooks: AtomicBool,
}

impl Bridge {
    /// Makes run `run` the driver of everything from now on; idle events go to it first.
    pub(crate) fn attach(&self, run: u64, tx: mpsc::UnboundedSender<HostItem>) {
        let mut route = lock(&self.route);
        for item in route.idle.drain(..) {
            let _ = tx.send(item);
        }
        route.driver = Some((run, tx));
    }

    /// Whether a driver other than a detached one is attached.
    pub(crate) fn driven(&self) -> bool {
        lock(&self.route)
            .driver
            .as_ref()
            .is_some_and(|(_, tx)| !tx.is_closed())
    }

    /// Run `run` stopped being driven (it ended, or Python stopped waiting for it).
    pub(crate) fn detach(&self, run: u64) {
        let mut route = lock(&self.route);
        if route.driver.as_ref().is_some_and(|(r, _)| *r == run) {
            route.driver = None;
        }
    }

    /// Run `run` ended with `result`: tells its driver last, then detaches it.
    pub(crate) fn finish(
        &self,
        run: u64,
        result: Result<(Outcome, codepilot::Spend), codepilot::Error>,
    ) {
        let mut route = lock(&self.route);
        if let Some((r, tx)) = &route.driver
            && *r == run
        {
            let _ = tx.send(HostItem::Done(result));
            route.driver = None;
        }
    }

    /// Delivers an event to the driver, or keeps it for the next one.
    pub(crate) fn event(&self, event: Event) {
        self.deliver(HostItem::Event(event));
    }

    /// Delivers an item that needs no answer to the driver, or keeps it for the next one.
    fn deliver(&self, item: HostItem) {
        let mut route = lock(&self.route);
        let item = match &route.driver {
            Some((_, tx)) => match tx.send(item) {
                Ok(()) => return,
                Err(mpsc::error::SendError(item)) => item,
            },
            None => item,
        };
        if route.idle.len() == IDLE_EVENTS {
            route.idle.pop_front();
        }
        route.idle.push_back(item);
    }

    /// The events kept while nobody drove a run.
    pub(crate) fn take_idle(&self) -> Vec<HostItem> {
        lock(&self.route).idle.drain(..).collect()
    }

    /// Sends a request built around a fresh [`Reply`] and waits for the answer; `None` when no driver is there
    /// or it dropped the request.
    async fn ask(&self, make: impl FnOnce(Reply) -> HostItem) -> Option<Answer> {
        let (tx, rx) = oneshot::channel();
        let item = make(Reply {
            tx: Mutex::new(Some(tx)),
        });
        let sent = {
            let route = lock(&self.route);
            route
                .driver
                .as_ref()
                .is_some_and(|(_, driver)| driver.send(item).is_ok())
        };
        if !sent {
            return None;
        }
        rx.await.ok()
    }

    /// Python registered (`true`) or cleared (`false`) the hooks of `kind` (`permission_request`, `ask_user`,
    /// `mcp_auth`).
    pub(crate) fn set_hooks(&self, kind: &str, present: bool) -> bool {
        match kind {
            "permission_request" => self.permission_hooks.store(present, Ordering::Relaxed),
            "ask_user" => self.ask_user_hooks.store(present, Ordering::Relaxed),
            "mcp_auth" => self.mcp_auth_hooks.store(present, Ordering::Relaxed),
            _ => return false,
        }
        true
    }
}

/// Permission requests answered by the `permission_request` hooks.
pub(crate) struct PermissionHooks(pub(crate) Arc<Bridge>);

impl codepilot::PermissionHandler for PermissionHooks {
    fn available(&self) -> bool {
        self.0.permission_hooks.load(Ordering::Relaxed)
    }

    fn decide<'a>(&'a self, request: &'a PermissionRequest) -> BoxFuture<'a, PermissionDecision> {
        Box::pin(async move {
            let answer = self
                .0
                .ask(|reply| HostItem::Permission {
                    request: request.clone(),
                    reply,
                })
                .await;
            match answer {
                Some(Answer::Value(Value::Bool(true))) => PermissionDecision::Allow,
                Some(Answer::Value(Value::Bool(false))) => {
                    PermissionDecision::Deny { reason: None }
                }
                Some(Answer::Value(Value::String(reason))) => PermissionDecision::Deny {
                    reason: Some(reason),
                },
                Some(Answer::Raised { exc, message }) => PermissionDecision::Deny {
                    reason: Some(format!("the permission hook raised {exc}: {message}")),
                },
                Some(Answer::Value(_)) | None => PermissionDecision::Deny {
                    reason: Some("no permission hook gave a decision".to_owned()),
                },
            }
        })
    }
}

/// `ask_user` answered by the `ask_user` hooks.
pub(crate) struct AskUserHooks(pub(crate) Arc<Bridge>);

impl codepilot::AskUserHandler for AskUserHooks {
    fn available(&self) -> bool {
        self.0.ask_user_hooks.load(Ordering::Relaxed)
    }

    fn ask<'a>(&'a self, question: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let answer = self
                .0
                .ask(|reply| HostItem::AskUser {
                    question: question.to_owned(),
                    reply,
                })
                .await;
            match answer {
                Some(Answer::Value(Value::String(s))) => Some(s),
                Some(Answer::Value(Value::Null) | Answer::Raised { .. }) | None => None,
                Some(Answer::Value(other)) => Some(other.to_string()),
            }
        })
    }
}

/// MCP logins shown by the `mcp_auth` hooks: the URL goes to the run being driven, or to the next one.
pub(crate) struct McpAuthHooks(pub(crate) Arc<Bridge>);

impl codepilot::mcp::loopback::LoginHandler for McpAuthHooks {
    fn available(&self) -> bool {
        self.0.mcp_auth_hooks.load(Ordering::Relaxed)
    }

    fn open(&self, server: &str, url: &str) {
        self.0.deliver(HostItem::McpAuth {
            server: server.to_owned(),
            url: url.to_owned(),
        });
    }
}

/// A tool whose body is a Python callable, called by the driver.
pub(crate) struct PyTool {
    pub(crate) spec: ToolSpec,
    pub(crate) require_permission: bool,
    pub(crate) bridge: Arc<Bridge>,
}

impl Tool for PyTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn requires_permission(&self) -> bool {
        self.require_permission
    }

    fn call<'a>(&'a self, call: ToolCall<'a>) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let name = self.spec.name.clone();
            let answer = self
                .bridge
                .ask(|reply| HostItem::Tool {
                    name,
                    args: call.args,
                    reply,
                })
                .await;
            match answer {
                Some(Answer::Value(value)) => Ok(ToolOutput::value(value)),
                Some(Answer::Raised { exc, message }) => Err(raised(&exc, message)),
                None => Err(ToolError::runtime(format!(
                    "{}() could not run: the Python program stopped waiting for this run",
                    self.spec.name
                ))),
            }
        })
    }
}

/// A Python exception from a tool as the exception the control block sees: the same class where the interpreter
/// has it, else `RuntimeError` naming the original class.
fn raised(exc: &str, message: String) -> ToolError {
    let kind = match exc {
        "TypeError" => ExcKind::TypeError,
        "ValueError" => ExcKind::ValueError,
        "KeyError" => ExcKind::KeyError,
        "IndexError" => ExcKind::IndexError,
        "RuntimeError" => ExcKind::RuntimeError,
        "NotImplementedError" => ExcKind::NotImplementedError,
        "OSError" | "IOError" => ExcKind::OsError,
        "PermissionError" => ExcKind::PermissionError,
        "FileNotFoundError" => ExcKind::FileNotFoundError,
        "FileExistsError" => ExcKind::FileExistsError,
        "IsADirectoryError" => ExcKind::IsADirectoryError,
        "NotADirectoryError" => ExcKind::NotADirectoryError,
        "TimeoutError" => ExcKind::TimeoutError,
        "AssertionError" => ExcKind::AssertionError,
        other => return ToolError::runtime(format!("{other}: {message}")),
    };
    ToolError::new(kind, message)
}
