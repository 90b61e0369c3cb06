//! `NativeRuntime` (one engine runtime) and `RunHandle` (one run, as its driver sees it).

use codepilot::protocol::sync::lock;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::ParamSpec;
use codepilot::StoreConfig;
use codepilot::ToolSpec;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::mpsc;

use crate::bridge::AskUserHooks;
use crate::bridge::Bridge;
use crate::bridge::HostItem;
use crate::bridge::McpAuthHooks;
use crate::bridge::PermissionHooks;
use crate::bridge::PyTool;
use crate::convert;
use crate::errors;

/// How often a blocked `Runtime.run` wakes to let Python handle signals (Ctrl-C).
const SIGNAL_TICK: Duration = Duration::from_millis(100);

/// Most items handed to Python in one batch.
const BATCH: usize = 256;

/// The engine's threads, shared by every runtime in the process; checked against fork().
pub(crate) fn engine() -> PyResult<&'static tokio::runtime::Runtime> {
    if std::process::id() != crate::ENGINE_PID.load(Ordering::Relaxed) {
        return Err(PyErr::new::<pyo3::exceptions::PyRuntimeError, _>(
            "CodePilot cannot be used in a process forked from one that loaded it (its threads did not survive \
             the fork); create runtimes in the child after it starts, e.g. with the multiprocessing 'spawn' or \
             'forkserver' start method",
        ));
    }
    Ok(pyo3_async_runtimes::tokio::get_runtime())
}

fn config_error(py: Python<'_>, message: String) -> PyErr {
    errors::raise(py, "ConfigError", message)
}

/// The session id the original uses when none is given: the agent's name, lower-cased, spaces as `-` (here
/// reduced to the characters session ids allow).
fn default_session_id(agent_name: &str) -> String {
    let id: String = agent_name
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(codepilot::store::MAX_SESSION_ID_LEN)
        .collect();
    if id.is_empty() {
        "codepilot".to_owned()
    } else {
        id
    }
}

fn home(py: Python<'_>) -> PyResult<PathBuf> {
    codepilot::store::codepilot_home().map_err(|e| config_error(py, e.to_string()))
}

/// The store the constructor's `session`, `session_dir` and `db_url` describe.
fn store_config(
    py: Python<'_>,
    session: &str,
    session_dir: Option<PathBuf>,
    db_url: Option<&str>,
) -> PyResult<StoreConfig> {
    match session {
        "memory" => Ok(StoreConfig::Memory),
        "file" => Ok(StoreConfig::File {
            dir: match session_dir {
                Some(dir) => dir,
                None => home(py)?.join("sessions"),
            },
        }),
        "db" => match db_url {
            Some(url) => codepilot::store::parse_db_url(url)
                .map_err(|e| config_error(py, format!("db_url: {e}"))),
            None => Ok(StoreConfig::sqlite_file(home(py)?.join("sessions.db"))),
        },
        other => Err(config_error(
            py,
            format!("session must be \"memory\", \"file\" or \"db\", not {other:?}"),
        )),
    }
}

fn load_agent(py: Python<'_>, path: &Path) -> PyResult<AgentFile> {
    if !path.exists() {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        return Err(config_error(
            py,
            format!(
                "agent file {} not found (relative paths are read from the current directory, {cwd}); create one \
                 with `codepilot init` or pass the path of yours",
                path.display()
            ),
        ));
    }
    AgentFile::load(path).map_err(|e| config_error(py, e.to_string()))
}

/// One engine runtime with its bridge to Python. The public classes in `codepilot` wrap it.
#[pyclass(module = "codepilot._native", frozen)]
pub(crate) struct NativeRuntime {
    rt: AsyncRuntime,
    bridge: Arc<Bridge>,
    next_run: AtomicU64,
    /// The last run's supervisor, so a run started right after a cancelled one waits for it to stop.
    last_run: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[pymethods]
impl NativeRuntime {
    /// Loads the agent file, opens the session and declares terminal `main` (its shell starts on first use).
    #[new]
    #[pyo3(signature = (agent_file, session = "memory", session_id = None, session_dir = None, db_url = None, stream = None))]
    fn new(
        py: Python<'_>,
        agent_file: PathBuf,
        session: &str,
        session_id: Option<String>,
        session_dir: Option<PathBuf>,
        db_url: Option<&str>,
        stream: Option<bool>,
    ) -> PyResult<Self> {
        let engine = engine()?;
        let mut agent = load_agent(py, &agent_file)?;
        if let Some(stream) = stream {
            agent.model.stream = stream;
        }
        let store = store_config(py, session, session_dir, db_url)?;
        let session_id = session_id.unwrap_or_else(|| default_session_id(&agent.name));
        let bridge = Arc::new(Bridge::default());
        let builder = AsyncRuntime::builder(agent)
            .record_agent_file()
            .session(store)
            .session_id(session_id)
            .permission_handler(PermissionHooks(Arc::clone(&bridge)))
            .ask_user_handler(AskUserHooks(Arc::clone(&bridge)))
            .mcp_login_handler(McpAuthHooks(Arc::clone(&bridge)));
        let rt = py
            .detach(|| engine.block_on(builder.build()))
            .map_err(|e| errors::to_py_err(py, &e))?;
        let events = Arc::clone(&bridge);
        // The session's own agent's events, as the original's hooks saw them: a worker's come as subagent_* only.
        rt.on_envelope(move |e| {
            if e.agent_id.is_none() {
                events.event(e.event.clone());
            }
        });
        Ok(Self {
            rt,
            bridge,
            next_run: AtomicU64::new(1),
            last_run: Mutex::new(None),
        })
    }

    /// Starts a run of `task` and returns the handle its driver reads from. `limits` and `output_schema` are JSON
    /// texts (SPEC §21); `traceparent` is the caller's W3C trace context (SPEC §23).
    #[pyo3(signature = (task, limits=None, output_schema=None, traceparent=None))]
    fn start(
        &self,
        py: Python<'_>,
        task: String,
        limits: Option<&str>,
        output_schema: Option<&str>,
        traceparent: Option<&str>,
    ) -> PyResult<RunHandle> {
        let engine = engine()?;
        let options = codepilot::RunOptions {
            limits: match limits {
                Some(text) => serde_json::from_str(text).map_err(|e| {
                    pyo3::exceptions::PyValueError::new_err(format!(
                        "limits: {e}; use max_total_tokens, max_cost_usd and max_wall_s"
                    ))
                })?,
                None => codepilot::RunLimits::default(),
            },
            output_schema: output_schema
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| {
                    pyo3::exceptions::PyValueError::new_err(format!("output_schema: {e}"))
                })?,
            traceparent: traceparent.map(str::parse).transpose().map_err(
                |e: codepilot::telemetry::BadTraceParent| {
                    pyo3::exceptions::PyValueError::new_err(format!("traceparent: {e}"))
                },
            )?,
        };
        if self.bridge.driven() {
            return Err(errors::to_py_err(py, &codepilot::Error::Busy));
        }
        let run = self.next_run.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.bridge.attach(run, tx);
        let cancelled = Arc::new(AtomicBool::new(false));
        let previous = lock(&self.last_run).take();
        let job = {
            let rt = self.rt.clone();
            let cancelled = Arc::clone(&cancelled);
            engine.spawn(async move {
                if let Some(previous) = previous {
                    // A run whose driver went away is stopping; the session is free once it has.
                    let _ = previous.await;
                }
                if cancelled.load(Ordering::SeqCst) {
                    return Ok((
                        codepilot::Outcome::Aborted { steps: 0 },
                        codepilot::Spend::default(),
                    ));
                }
                let outcome = rt.run_with(&task, &options).await?;
                Ok((outcome, rt.last_spend().unwrap_or_default()))
            })
        };
        let bridge = Arc::clone(&self.bridge);
        let supervisor = engine.spawn(async move {
            let result = match job.await {
                Ok(result) => result,
                Err(e) => Err(codepilot::Error::Internal(format!(
                    "the run stopped unexpectedly: {e}"
                ))),
            };
            bridge.finish(run, result);
        });
        *lock(&self.last_run) = Some(supervisor);
        Ok(RunHandle {
            run,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            cancelled,
            rt: self.rt.clone(),
            bridge: Arc::clone(&self.bridge),
        })
    }

    /// Queues a message for the model (see `Runtime.send_message`).
    fn send_message(&self, text: String) -> PyResult<()> {
        engine()?;
        self.rt.send_message(text);
        Ok(())
    }

    /// Aborts the running task, if any.
    fn abort(&self) {
        self.rt.abort();
    }

    /// Starts a new session (blocking); returns its id.
    fn reset(&self, py: Python<'_>) -> PyResult<String> {
        let engine = engine()?;
        py.detach(|| engine.block_on(self.rt.reset()))
            .map_err(|e| errors::to_py_err(py, &e))
    }

    /// Starts a new session; an awaitable of its id.
    fn reset_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        engine()?;
        let rt = self.rt.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            rt.reset()
                .await
                .map_err(|e| Python::attach(|py| errors::to_py_err(py, &e)))
        })
    }

    /// The session's checkpoints, oldest first (blocking).
    fn checkpoints<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = engine()?;
        let list = py
            .detach(|| engine.block_on(self.rt.checkpoints()))
            .map_err(|e| errors::to_py_err(py, &e))?;
        to_python(py, &list)
    }

    /// Sends the spans that ended to the trace collector, waiting at most 3 seconds (blocking).
    fn flush_traces(&self, py: Python<'_>) -> PyResult<()> {
        let engine = engine()?;
        py.detach(|| engine.block_on(self.rt.flush_traces()));
        Ok(())
    }

    /// Writes the session as a trajectory (JSON lines) to `path`; returns how many messages, events and files it
    /// holds (blocking).
    fn export_trajectory<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = engine()?;
        let stats = py
            .detach(|| {
                engine.block_on(async {
                    let file = std::fs::File::create(&path).map_err(|e| {
                        codepilot::Error::Trajectory(format!(
                            "cannot create {}: {e}",
                            path.display()
                        ))
                    })?;
                    let mut out = std::io::BufWriter::new(file);
                    let stats = self.rt.export_trajectory(&mut out).await?;
                    std::io::Write::flush(&mut out).map_err(|e| {
                        codepilot::Error::Trajectory(format!(
                            "cannot write {}: {e}",
                            path.display()
                        ))
                    })?;
                    Ok::<_, codepilot::Error>(stats)
                })
            })
            .map_err(|e| errors::to_py_err(py, &e))?;
        to_python(
            py,
            &serde_json::json!({"messages": stats.messages, "events": stats.events, "files": stats.files, "lines": stats.lines}),
        )
    }

    /// The session's checkpoints; an awaitable.
    fn checkpoints_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        engine()?;
        let rt = self.rt.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let list = rt
                .checkpoints()
                .await
                .map_err(|e| Python::attach(|py| errors::to_py_err(py, &e)))?;
            Python::attach(|py| to_python(py, &list).map(Bound::unbind))
        })
    }

    /// Rewinds to checkpoint `checkpoint` (`scope`: files, conversation or both); with `dry_run`, only says what
    /// would change (blocking).
    fn rewind<'py>(
        &self,
        py: Python<'py>,
        checkpoint: &str,
        scope: &str,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = engine()?;
        let scope = parse_scope(scope)?;
        let done = py
            .detach(|| engine.block_on(rewind(&self.rt, checkpoint, scope, dry_run)))
            .map_err(|e| errors::to_py_err(py, &e))?;
        to_python(py, &done)
    }

    /// [`NativeRuntime::rewind`]; an awaitable.
    fn rewind_async<'py>(
        &self,
        py: Python<'py>,
        checkpoint: String,
        scope: &str,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        engine()?;
        let scope = parse_scope(scope)?;
        let rt = self.rt.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let done = rewind(&rt, &checkpoint, scope, dry_run)
                .await
                .map_err(|e| Python::attach(|py| errors::to_py_err(py, &e)))?;
            Python::attach(|py| to_python(py, &done).map(Bound::unbind))
        })
    }

    /// Registers a tool whose calls the driver answers. `params` are `(name, has_default, default, annotation)`.
    #[pyo3(signature = (name, doc, params, returns = None, replace = false, require_permission = false))]
    #[expect(
        clippy::too_many_arguments,
        reason = "the Python call's arguments, one by one"
    )]
    fn register_tool(
        &self,
        py: Python<'_>,
        name: String,
        doc: String,
        params: Vec<(String, bool, Bound<'_, PyAny>, Option<String>)>,
        returns: Option<String>,
        replace: bool,
        require_permission: bool,
    ) -> PyResult<bool> {
        let mut specs = Vec::with_capacity(params.len());
        for (param, has_default, default, annotation) in params {
            let spec = if has_default {
                let value = convert::from_py(&default, convert::Other::Refuse).map_err(|e| {
                    errors::raise(
                        py,
                        "ToolRegistrationError",
                        format!("tool `{name}`: the default of parameter `{param}`: {e}"),
                    )
                })?;
                ParamSpec::optional(param, value)
            } else {
                ParamSpec::required(param)
            };
            specs.push(match annotation {
                Some(a) => spec.annotated(a),
                None => spec,
            });
        }
        let mut spec = ToolSpec::new(name, specs, doc);
        spec.returns = returns;
        let tool = PyTool {
            spec,
            require_permission,
            bridge: Arc::clone(&self.bridge),
        };
        let result = if replace {
            self.rt.replace_tool(tool)
        } else {
            self.rt.register_tool(tool).map(|()| false)
        };
        result.map_err(|e| errors::to_py_err(py, &e))
    }

    /// Python has (`true`) or no longer has (`false`) hooks that answer `kind` (`permission_request`, `ask_user`)
    /// or show MCP logins (`mcp_auth`).
    fn set_hooks(&self, kind: &str, present: bool) -> PyResult<()> {
        if self.bridge.set_hooks(kind, present) {
            Ok(())
        } else {
            Err(pyo3::exceptions::PyValueError::new_err(format!(
                "no answering hooks for {kind:?}"
            )))
        }
    }

    /// The events emitted while no run was driven, for the caller to deliver.
    fn take_idle(&self) -> Vec<HostItem> {
        self.bridge.take_idle()
    }

    /// Stops (aborting a running task first), kills the terminals and releases the session.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let engine = engine()?;
        self.rt.abort();
        py.detach(|| engine.block_on(self.rt.close()))
            .map_err(|e| errors::to_py_err(py, &e))
    }

    /// The session id.
    #[getter]
    fn session_id(&self) -> String {
        self.rt.session_id()
    }

    /// The work directory.
    #[getter]
    fn work_dir(&self) -> PathBuf {
        self.rt.work_dir().to_path_buf()
    }

    /// The system prompt the next task's first model call would send (project instructions read now).
    fn system_prompt(&self, py: Python<'_>) -> PyResult<String> {
        self.rt
            .system_prompt()
            .map_err(|e| errors::to_py_err(py, &e))
    }

    /// The conversation as of the last checkpoint: `[{"role": "user"|"assistant", "content": str}]`.
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(self.rt.history())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        convert::to_py(py, &value)
    }

    /// Answers worker `agent_id`'s `ask_main_agent` (from a `subagent_message` hook's return value).
    fn reply_subagent(&self, py: Python<'_>, agent_id: u32, message: String) -> PyResult<()> {
        self.rt
            .reply_subagent(agent_id, message)
            .map_err(|e| errors::to_py_err(py, &e))
    }

    /// Token usage of the session as of the last checkpoint.
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let value = serde_json::to_value(self.rt.usage())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        match value {
            serde_json::Value::Object(map) => convert::dict(py, &map),
            _ => Ok(PyDict::new(py)),
        }
    }
}

/// A rewind, or its preview.
async fn rewind(
    rt: &AsyncRuntime,
    checkpoint: &str,
    scope: codepilot::RewindScope,
    dry_run: bool,
) -> codepilot::Result<codepilot::RewoundEvent> {
    if dry_run {
        rt.rewind_preview(checkpoint, scope).await
    } else {
        rt.rewind(checkpoint, scope).await
    }
}

fn parse_scope(scope: &str) -> PyResult<codepilot::RewindScope> {
    scope
        .parse()
        .map_err(pyo3::exceptions::PyValueError::new_err)
}

/// `value` as Python objects (dicts, lists, numbers, strings).
fn to_python<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(value)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    convert::to_py(py, &value)
}

/// One run as its driver reads it: batches of [`HostItem`]s, the last one `done` or `error`.
#[pyclass(module = "codepilot._native", frozen)]
pub(crate) struct RunHandle {
    run: u64,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<HostItem>>>,
    cancelled: Arc<AtomicBool>,
    rt: AsyncRuntime,
    bridge: Arc<Bridge>,
}

/// `first` and whatever else is already waiting, up to [`BATCH`] items.
fn batch(first: HostItem, rx: &mut mpsc::UnboundedReceiver<HostItem>) -> Vec<HostItem> {
    let mut items = vec![first];
    while items.len() < BATCH {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
    items
}

#[pymethods]
impl RunHandle {
    /// The next batch, blocking the calling thread (without the GIL); wakes every 100 ms so Ctrl-C works. Empty
    /// when the run is gone without an outcome.
    fn wait(&self, py: Python<'_>) -> PyResult<Vec<HostItem>> {
        let engine = engine()?;
        loop {
            let rx = Arc::clone(&self.rx);
            let got = py.detach(|| {
                engine.block_on(async move {
                    let mut rx = rx.lock().await;
                    match tokio::time::timeout(SIGNAL_TICK, rx.recv()).await {
                        Ok(Some(first)) => Some(batch(first, &mut rx)),
                        Ok(None) => Some(Vec::new()),
                        Err(_) => None,
                    }
                })
            });
            match got {
                Some(items) => return Ok(items),
                None => py.check_signals()?,
            }
        }
    }

    /// The next batch, as an awaitable for the running event loop.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        engine()?;
        let rx = Arc::clone(&self.rx);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut rx = rx.lock().await;
            Ok(match rx.recv().await {
                Some(first) => batch(first, &mut rx),
                None => Vec::new(),
            })
        })
    }

    /// Python stops driving this run: aborts it, answers nothing more (tool calls fail, permission is refused,
    /// questions go unanswered) and drops what was not read.
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.rt.abort();
        self.bridge.detach(self.run);
        if let Ok(mut rx) = self.rx.try_lock() {
            rx.close();
            while rx.try_recv().is_ok() {}
        }
    }
}
