//! `run_block`: the interpreter on a pooled big-stack thread, tool calls served on tokio.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use serde_json::Map;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::FailureKind;
use crate::error::Result;
use crate::error::ScriptFailure;
use crate::interp::Bridge;
use crate::interp::ControlInterpreter;
use crate::interp::Program;
use crate::interp::Reply;
use crate::interp::StopReason;
use crate::interp::monty_impl::MontyInterpreter;
use crate::pool::Finish;
use crate::pool::Job;
use crate::pool::POOL;
use crate::spec::RunReport;
use crate::spec::RunRequest;
use codepilot_protocol::ToolError;

/// How long buffered prints may wait while the block computes without calling a tool.
const PRINT_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// After a cancel, how long to wait for the interpreter to unwind (for its traceback and last prints).
const CANCEL_GRACE: Duration = Duration::from_millis(50);
/// After the deadline, how long the interpreter gets to stop by itself before the runner gives up on it.
const TIMEOUT_BACKSTOP: Duration = Duration::from_millis(500);
/// After a forced stop, how long to wait for the interpreter's own failure report.
const STOP_GRACE: Duration = Duration::from_millis(200);

const STOP_NONE: u8 = 0;
const STOP_CANCELLED: u8 = 1;
const STOP_TIMEOUT: u8 = 2;

/// Messages from the interpreter thread to the async side, in program order.
enum ToHost {
    Print(String),
    Call {
        name: String,
        args: Map<String, Value>,
        reply: oneshot::Sender<Reply>,
    },
    Done(Result<()>),
}

/// The host services a running block needs.
///
/// Implemented by the embedding runtime (the tool registry). Both methods are called on the async
/// side, never on the interpreter thread.
#[async_trait::async_trait]
pub trait ToolHost: Send + Sync {
    /// Runs a tool. `args` are already bound against the [`crate::ToolSpec`]: every parameter is
    /// present, defaults filled (keyed by parameter name; iteration order is serde_json's `Map` order, i.e.
    /// declared order only if the `preserve_order` feature of serde_json is enabled).
    ///
    /// # Errors
    /// A [`ToolError`] raises its Python exception at the call site; the block may catch it.
    async fn call_tool(
        &self,
        name: &str,
        args: Map<String, Value>,
    ) -> std::result::Result<Value, ToolError>;

    /// Text the block printed, delivered in true order relative to tool calls.
    fn print(&self, text: &str);
}

/// Runs one control block.
///
/// The interpreter runs on a big-stack thread of its own for the whole block (taken from a small
/// pool of finished threads, or spawned); each tool call suspends it and is awaited here, so the
/// tokio executor is never blocked. Prints are delivered through [`ToolHost::print`] before
/// each tool call, every 50 ms while the block computes, at the end, and on failure.
///
/// Cancelling `cancel` ends the call within a short grace period plus scheduling delay, also while a
/// tool is pending (its future is dropped).
///
/// # Errors
/// A [`ScriptFailure`] says what stopped the block, where, and with which traceback.
pub async fn run_block(
    req: RunRequest,
    host: Arc<dyn ToolHost>,
    cancel: CancellationToken,
) -> Result<RunReport> {
    run_with(&MontyInterpreter, req, host, cancel).await
}

async fn run_with<I: ControlInterpreter + Copy + 'static>(
    interpreter: &I,
    req: RunRequest,
    host: Arc<dyn ToolHost>,
    cancel: CancellationToken,
) -> Result<RunReport> {
    let started = Instant::now();
    let deadline = started
        .checked_add(req.limits.wall_clock)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    let stop = Arc::new(AtomicU8::new(STOP_NONE));
    let calls = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let limits = req.limits.clone();
    start_interpreter(
        *interpreter,
        req,
        deadline,
        tx,
        Arc::clone(&stop),
        Arc::clone(&calls),
    )?;

    let tokio_deadline = tokio::time::Instant::from_std(deadline);
    let runner = AsyncSide {
        host,
        stop,
        calls,
        started,
        limits,
    };
    loop {
        let msg = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                return runner.stopped(StopReason::Cancelled, &mut rx, CANCEL_GRACE).await;
            }
            () = tokio::time::sleep_until(tokio_deadline + TIMEOUT_BACKSTOP) => {
                return runner.stopped(StopReason::Timeout, &mut rx, STOP_GRACE).await;
            }
            msg = rx.recv() => msg,
        };
        let Some(msg) = msg else {
            return Err(runner.crash("the interpreter thread ended without reporting a result"));
        };
        match msg {
            ToHost::Print(text) => runner.host.print(&text),
            ToHost::Done(result) => return runner.done(result),
            ToHost::Call { name, args, reply } => {
                let answer = tokio::select! {
                    biased;
                    () = cancel.cancelled() => Reply::Stop(StopReason::Cancelled),
                    () = tokio::time::sleep_until(tokio_deadline) => Reply::Stop(StopReason::Timeout),
                    result = runner.host.call_tool(&name, args) => match result {
                        Ok(value) => Reply::Value(value),
                        Err(ToolError { kind, message }) => Reply::Raise { exc: kind, message },
                    },
                };
                let cancelled = matches!(answer, Reply::Stop(StopReason::Cancelled));
                if cancelled {
                    runner.stop.store(STOP_CANCELLED, Ordering::SeqCst);
                }
                // The thread may already be gone (it only waits while we answer); nothing to do then.
                let _ = reply.send(answer);
                if cancelled {
                    return runner
                        .stopped(StopReason::Cancelled, &mut rx, CANCEL_GRACE)
                        .await;
                }
            }
        }
    }
}

/// State of the async side of one run.
struct AsyncSide {
    host: Arc<dyn ToolHost>,
    stop: Arc<AtomicU8>,
    calls: Arc<AtomicU32>,
    started: Instant,
    limits: crate::spec::Limits,
}

impl AsyncSide {
    fn done(&self, result: Result<()>) -> Result<RunReport> {
        let tool_calls = self.calls.load(Ordering::SeqCst);
        let elapsed = self.started.elapsed();
        match &result {
            Ok(()) => tracing::debug!(tool_calls, ?elapsed, "control block completed"),
            Err(failure) => tracing::debug!(
                tool_calls,
                ?elapsed,
                kind = %failure.kind,
                line = ?failure.line,
                "control block failed: {failure}"
            ),
        }
        result.map(|()| RunReport {
            tool_calls,
            elapsed,
        })
    }

    fn crash(&self, message: &str) -> ScriptFailure {
        ScriptFailure {
            kind: FailureKind::InterpreterCrash,
            exc_type: "SystemError".to_owned(),
            message: message.to_owned(),
            line: None,
            line_text: None,
            traceback: None,
            tool_calls: self.calls.load(Ordering::SeqCst),
        }
    }

    /// Asks the interpreter to stop, waits up to `grace` for its report (forwarding prints), and
    /// returns a failure of `reason`'s kind either way.
    async fn stopped(
        &self,
        reason: StopReason,
        rx: &mut mpsc::UnboundedReceiver<ToHost>,
        grace: Duration,
    ) -> Result<RunReport> {
        let code = if reason == StopReason::Cancelled {
            STOP_CANCELLED
        } else {
            STOP_TIMEOUT
        };
        let _ = self
            .stop
            .compare_exchange(STOP_NONE, code, Ordering::SeqCst, Ordering::SeqCst);
        let until = tokio::time::Instant::now() + grace;
        loop {
            let msg = tokio::select! {
                () = tokio::time::sleep_until(until) => None,
                msg = rx.recv() => msg,
            };
            match msg {
                Some(ToHost::Print(text)) => self.host.print(&text),
                Some(ToHost::Call { reply, .. }) => {
                    let _ = reply.send(Reply::Stop(reason.clone()));
                }
                Some(ToHost::Done(Ok(()))) if reason != StopReason::Cancelled => {
                    return self.done(Ok(()));
                }
                Some(ToHost::Done(Err(mut failure))) => {
                    if failure.kind != reason.kind() {
                        let (exc_type, message) = reason.describe(&self.limits);
                        exc_type.clone_into(&mut failure.exc_type);
                        failure.message = message;
                        failure.kind = reason.kind();
                    }
                    return Err(failure);
                }
                Some(ToHost::Done(Ok(()))) | None => break,
            }
        }
        let (exc_type, message) = reason.describe(&self.limits);
        Err(ScriptFailure {
            kind: reason.kind(),
            exc_type: exc_type.to_owned(),
            message,
            line: None,
            line_text: None,
            traceback: None,
            tool_calls: self.calls.load(Ordering::SeqCst),
        })
    }
}

fn start_interpreter<I: ControlInterpreter + 'static>(
    interpreter: I,
    req: RunRequest,
    deadline: Instant,
    tx: mpsc::UnboundedSender<ToHost>,
    stop: Arc<AtomicU8>,
    calls: Arc<AtomicU32>,
) -> Result<()> {
    let job: Job = Box::new(move || {
        let mut bridge = ThreadBridge {
            tx,
            buf: String::new(),
            last_flush: Instant::now(),
            polls: 0,
            stop,
            calls,
            max_calls: req.limits.max_tool_calls,
            deadline,
        };
        let program = Program {
            code: &req.code,
            globals: &req.globals,
            tools: &req.tools,
            limits: &req.limits,
            deadline,
        };
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| interpreter.run(&program, &mut bridge)));
        // A thread whose interpreter panicked is not trusted again (monty 0.0.23 keeps no
        // thread-local state, but a future interpreter behind the seam might). Neither is one
        // whose run_block already returned (cancelled or timed out): it kept running past its
        // caller. Either way the next block gets another worker.
        let reusable = outcome.is_ok() && !bridge.tx.is_closed();
        let result = outcome.unwrap_or_else(|panic| {
            bridge.flush();
            Err(ScriptFailure {
                kind: FailureKind::InterpreterCrash,
                exc_type: "SystemError".to_owned(),
                message: format!(
                    "the interpreter crashed ({}); this is a bug in the interpreter, not in \
                     your code: rewrite the block more simply",
                    panic_text(panic.as_ref())
                ),
                line: None,
                line_text: None,
                traceback: None,
                tool_calls: bridge.tool_calls(),
            })
        });
        let tx = bridge.tx;
        Finish {
            reusable,
            then: Box::new(move || {
                let _ = tx.send(ToHost::Done(result));
            }),
        }
    });
    let spawned = POOL.execute(job);
    match spawned {
        Ok(()) => Ok(()),
        Err(err) => Err(ScriptFailure {
            kind: FailureKind::InterpreterCrash,
            exc_type: "SystemError".to_owned(),
            message: format!("could not start the interpreter thread: {err}"),
            line: None,
            line_text: None,
            traceback: None,
            tool_calls: 0,
        }),
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

/// The interpreter thread's end of the channel.
struct ThreadBridge {
    tx: mpsc::UnboundedSender<ToHost>,
    buf: String,
    last_flush: Instant,
    polls: u32,
    stop: Arc<AtomicU8>,
    calls: Arc<AtomicU32>,
    max_calls: u32,
    deadline: Instant,
}

impl ThreadBridge {
    fn stop_reason(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::Relaxed) {
            STOP_CANCELLED => Some(StopReason::Cancelled),
            STOP_TIMEOUT => Some(StopReason::Timeout),
            _ => None,
        }
    }
}

impl Bridge for ThreadBridge {
    fn print(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    fn call_tool(&mut self, name: &str, args: Map<String, Value>) -> Reply {
        self.flush();
        if let Some(reason) = self.stop_reason() {
            return Reply::Stop(reason);
        }
        if self.calls.load(Ordering::SeqCst) >= self.max_calls {
            return Reply::Stop(StopReason::ToolCallLimit);
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (reply, answer) = oneshot::channel();
        let msg = ToHost::Call {
            name: name.to_owned(),
            args,
            reply,
        };
        if self.tx.send(msg).is_err() {
            // The async side is gone: run_block returned (cancelled or timed out).
            return Reply::Stop(self.stop_reason().unwrap_or(StopReason::Cancelled));
        }
        answer
            .blocking_recv()
            .unwrap_or_else(|_| Reply::Stop(self.stop_reason().unwrap_or(StopReason::Cancelled)))
    }

    fn poll(&mut self) -> Option<StopReason> {
        if let Some(reason) = self.stop_reason() {
            return Some(reason);
        }
        // Reading the clock every 16th checkpoint keeps polling cheap on tight loops.
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(16) {
            let now = Instant::now();
            if !self.buf.is_empty() && now.duration_since(self.last_flush) >= PRINT_FLUSH_INTERVAL {
                self.flush();
            }
            if now > self.deadline + TIMEOUT_BACKSTOP {
                return Some(StopReason::Timeout);
            }
        }
        None
    }

    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if !self.buf.is_empty() {
            let text = std::mem::take(&mut self.buf);
            let _ = self.tx.send(ToHost::Print(text));
        }
    }

    fn tool_calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
