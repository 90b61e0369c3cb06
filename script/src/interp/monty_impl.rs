//! [`ControlInterpreter`] on monty 0.0.23. Everything monty-specific lives in this file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use monty::MontyRun;
use monty::RunProgress;
use monty_types::CompileOptions;
use monty_types::ExcType;
use monty_types::ExtFunctionResult;
use monty_types::MontyException;
use monty_types::MontyObject;
use monty_types::NameLookupResult;
use monty_types::PrintWriter;
use monty_types::PrintWriterCallback;
use monty_types::ResourceLimits;
use monty_types::ResourceTracker;
use num_bigint::BigInt;
use serde_json::Map;
use serde_json::Number;
use serde_json::Value;

use crate::error::FailureKind;
use crate::error::ScriptFailure;
use crate::interp::Bridge;
use crate::interp::ControlInterpreter;
use crate::interp::Program;
use crate::interp::Reply;
use crate::interp::StopReason;
use codepilot_protocol::ExcKind;
use codepilot_protocol::ToolSpec;

/// The file name tracebacks show for the block.
pub(crate) const SCRIPT_NAME: &str = "<codepilot-control-block>";

/// Prefix of the message monty gives its own (uncatchable) time-limit `TimeoutError`.
const MONTY_TIME_LIMIT_PREFIX: &str = "time limit exceeded";

/// The monty-backed interpreter.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MontyInterpreter;

impl ControlInterpreter for MontyInterpreter {
    fn run(&self, program: &Program<'_>, bridge: &mut dyn Bridge) -> Result<(), ScriptFailure> {
        let runner = match MontyRun::new(
            program.code.to_owned(),
            SCRIPT_NAME,
            Vec::new(),
            CompileOptions::default(),
        ) {
            Ok(runner) => runner,
            Err(exc) => {
                return Err(failure(
                    FailureKind::Syntax,
                    &exc,
                    program,
                    bridge.tool_calls(),
                ));
            }
        };
        let mut limits = ResourceLimits::default()
            .max_duration(program.deadline.saturating_duration_since(Instant::now()))
            .max_recursion_depth(program.limits.max_recursion_depth)
            // The runner enforces the tool-call cap; this is monty's own backstop, kept above it.
            .max_suspensions(usize::MAX);
        if let Some(bytes) = program.limits.max_memory_bytes {
            limits = limits.max_memory(bytes);
            crate::alloc::start_budget();
        }
        let mut io = Io {
            bridge,
            printed: 0,
            max_print: program.limits.max_print_bytes,
            stop: None,
        };
        let session = Session::new(program);
        let mut progress = runner.start(
            Vec::new(),
            ResourceTracker::new(limits),
            PrintWriter::Callback(&mut io),
        );
        loop {
            progress = match progress {
                Ok(RunProgress::Complete(_)) => {
                    io.bridge.flush();
                    return Ok(());
                }
                Err(exc) => {
                    io.bridge.flush();
                    let stop = io.stop.take();
                    return Err(classify(&exc, stop, program, io.bridge.tool_calls()));
                }
                Ok(RunProgress::NameLookup(lookup)) => {
                    let answer = session.lookup(&lookup.name);
                    lookup.resume(answer, PrintWriter::Callback(&mut io))
                }
                Ok(RunProgress::OsCall(call)) => {
                    let exc = session.os_denied(call.function_call.name());
                    call.resume(
                        ExtFunctionResult::Error(exc),
                        PrintWriter::Callback(&mut io),
                    )
                }
                Ok(RunProgress::ResolveFutures(pending)) => {
                    let exc = MontyException::new(
                        ExcType::RuntimeError,
                        Some(
                            "awaiting tool calls is not supported in a control block; call tools \
                             directly, one after another"
                                .to_owned(),
                        ),
                    );
                    pending.abort(exc, PrintWriter::Callback(&mut io))
                }
                Ok(RunProgress::FunctionCall(mut call)) => {
                    let Some(spec) = session.tools.get(call.function_name.as_str()) else {
                        let name = call.function_name.clone();
                        let result = ExtFunctionResult::NotFound(name);
                        progress = call.resume(result, PrintWriter::Callback(&mut io));
                        continue;
                    };
                    let args = std::mem::take(&mut call.args);
                    let kwargs = std::mem::take(&mut call.kwargs);
                    let bound = if call.object_id.is_some() {
                        Err(format!("{}() cannot be called as a method", spec.name))
                    } else {
                        convert_args(spec, args, kwargs)
                            .and_then(|(pos, kw)| crate::bind::bind(spec, pos, kw))
                    };
                    let reply = match bound {
                        Ok(bound) => io.bridge.call_tool(&spec.name, bound),
                        Err(message) => Reply::Raise {
                            exc: ExcKind::TypeError,
                            message,
                        },
                    };
                    let remaining = program.deadline.saturating_duration_since(Instant::now());
                    let reply = match reply {
                        Reply::Stop(reason) => Reply::Stop(reason),
                        _ if remaining.is_zero() => Reply::Stop(StopReason::Timeout),
                        other => other,
                    };
                    match reply {
                        Reply::Value(value) => {
                            // monty's clock pauses while a tool runs: restart it with what is left
                            // of the block's wall clock, so tool time counts.
                            call.tracker_mut().set_max_duration(remaining);
                            call.resume(from_json(value), PrintWriter::Callback(&mut io))
                        }
                        Reply::Raise { exc, message } => {
                            call.tracker_mut().set_max_duration(remaining);
                            let exc = MontyException::new(exc_type(exc), Some(message));
                            call.resume(
                                ExtFunctionResult::Error(exc),
                                PrintWriter::Callback(&mut io),
                            )
                        }
                        Reply::Stop(reason) => {
                            let exc = stop_exception(&reason, program);
                            io.stop = Some(reason);
                            call.abort(exc, PrintWriter::Callback(&mut io))
                        }
                    }
                }
            };
        }
    }
}

/// Per-run lookup tables.
struct Session<'a> {
    tools: HashMap<&'a str, &'a ToolSpec>,
    globals: HashMap<&'a str, &'a Value>,
    tool_list: String,
}

impl<'a> Session<'a> {
    fn new(program: &Program<'a>) -> Self {
        let mut tools = HashMap::with_capacity(program.tools.len());
        for spec in program.tools {
            tools.entry(spec.name.as_str()).or_insert(spec);
        }
        let globals = program
            .globals
            .iter()
            .map(|(name, value)| (name.as_str(), value))
            .collect();
        let tool_list = program
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            tools,
            globals,
            tool_list,
        }
    }

    /// Registered tools and globals resolve; every other name is undefined (`NameError`).
    fn lookup(&self, name: &str) -> NameLookupResult {
        if let Some(spec) = self.tools.get(name) {
            return NameLookupResult::Value(MontyObject::Function {
                name: spec.name.clone(),
                docstring: Some(spec.doc.clone()),
            });
        }
        match self.globals.get(name) {
            Some(value) => NameLookupResult::Value(from_json((*value).clone())),
            None => NameLookupResult::Undefined,
        }
    }

    fn os_denied(&self, what: &str) -> MontyException {
        let tools = if self.tool_list.is_empty() {
            String::from("no tools are available in this block")
        } else {
            format!("use the tools instead: {}", self.tool_list)
        };
        MontyException::new(
            ExcType::PermissionError,
            Some(format!(
                "{what}() is not allowed: the control block has no direct OS access (files, \
                 environment, clock); {tools}"
            )),
        )
    }
}

/// Receives `print()` output and the VM's periodic checkpoint.
struct Io<'b> {
    bridge: &'b mut dyn Bridge,
    printed: usize,
    max_print: usize,
    stop: Option<StopReason>,
}

impl Io<'_> {
    fn account(&mut self, bytes: usize) -> Result<(), MontyException> {
        self.printed = self.printed.saturating_add(bytes);
        if self.printed > self.max_print {
            return Err(MontyException::new(
                ExcType::MemoryError,
                Some(format!(
                    "print output limit of {} bytes exceeded; print less (slice or summarise large values)",
                    self.max_print
                )),
            ));
        }
        Ok(())
    }
}

impl PrintWriterCallback for Io<'_> {
    fn stdout_write(&mut self, output: Cow<'_, str>) -> Result<(), MontyException> {
        self.account(output.len())?;
        self.bridge.print(&output);
        Ok(())
    }

    fn stdout_push(&mut self, end: char) -> Result<(), MontyException> {
        self.account(end.len_utf8())?;
        let mut buf = [0u8; 4];
        self.bridge.print(end.encode_utf8(&mut buf));
        Ok(())
    }

    fn poll_flush(&mut self) -> Result<(), MontyException> {
        match self.bridge.poll() {
            None => Ok(()),
            Some(reason) => {
                // Raised from the checkpoint, so it is catchable; KeyboardInterrupt escapes
                // `except Exception`, and the checkpoint raises again every few hundred instructions.
                let exc = match reason {
                    StopReason::Timeout => MontyException::new(
                        ExcType::KeyboardInterrupt,
                        Some("the control block ran out of time".to_owned()),
                    ),
                    _ => MontyException::new(
                        ExcType::KeyboardInterrupt,
                        Some("the control block was cancelled".to_owned()),
                    ),
                };
                self.stop = Some(reason);
                Err(exc)
            }
        }
    }
}

fn exc_type(kind: ExcKind) -> ExcType {
    match kind {
        ExcKind::TypeError => ExcType::TypeError,
        ExcKind::ValueError => ExcType::ValueError,
        ExcKind::KeyError => ExcType::KeyError,
        ExcKind::IndexError => ExcType::IndexError,
        ExcKind::RuntimeError => ExcType::RuntimeError,
        ExcKind::NotImplementedError => ExcType::NotImplementedError,
        ExcKind::OsError => ExcType::OSError,
        ExcKind::PermissionError => ExcType::PermissionError,
        ExcKind::FileNotFoundError => ExcType::FileNotFoundError,
        ExcKind::FileExistsError => ExcType::FileExistsError,
        ExcKind::IsADirectoryError => ExcType::IsADirectoryError,
        ExcKind::NotADirectoryError => ExcType::NotADirectoryError,
        ExcKind::TimeoutError => ExcType::TimeoutError,
        ExcKind::AssertionError => ExcType::AssertionError,
    }
}

fn stop_exception(reason: &StopReason, program: &Program<'_>) -> MontyException {
    let (ty, message) = reason.describe(program.limits);
    MontyException::new(ty.parse().unwrap_or(ExcType::RuntimeError), Some(message))
}

/// Maps the exception that ended the run to a [`ScriptFailure`].
fn classify(
    exc: &MontyException,
    stop: Option<StopReason>,
    program: &Program<'_>,
    tool_calls: u32,
) -> ScriptFailure {
    let monty_timeout = exc.exc_type() == ExcType::TimeoutError
        && exc
            .message()
            .is_some_and(|m| m.starts_with(MONTY_TIME_LIMIT_PREFIX));
    let stop = if monty_timeout {
        Some(StopReason::Timeout)
    } else {
        stop
    };
    let Some(reason) = stop else {
        let kind = if exc.exc_type() == ExcType::SyntaxError {
            FailureKind::Syntax
        } else {
            FailureKind::Exception
        };
        let mut failure = failure(kind, exc, program, tool_calls);
        if exc.exc_type() == ExcType::ModuleNotFoundError {
            failure.message.push_str(
                "; the control block has no direct OS access and only a few pure modules \
                 (json, re, math, collections, itertools, functools, datetime, …); use the tools",
            );
        }
        return failure;
    };
    let (ty, message) = reason.describe(program.limits);
    let ty = ty.parse().unwrap_or(ExcType::RuntimeError);
    let replaced = MontyException::with_traceback(ty, Some(message), exc.traceback().to_vec());
    failure(reason.kind(), &replaced, program, tool_calls)
}

/// Builds a [`ScriptFailure`] from a monty exception: type, message, innermost line in the block, traceback.
fn failure(
    kind: FailureKind,
    exc: &MontyException,
    program: &Program<'_>,
    tool_calls: u32,
) -> ScriptFailure {
    let line = exc
        .traceback()
        .iter()
        .rev()
        .find(|frame| frame.filename == SCRIPT_NAME)
        .and_then(|frame| usize::try_from(frame.start.line).ok())
        .filter(|line| *line > 0);
    let line_text = line
        .and_then(|l| program.code.lines().nth(l - 1))
        .map(str::to_owned);
    let traceback = if exc.traceback().is_empty() {
        None
    } else {
        Some(exc.to_string())
    };
    ScriptFailure {
        kind,
        exc_type: exc.exc_type().to_string(),
        message: exc.message().map(str::to_owned).unwrap_or_default(),
        line,
        line_text,
        traceback,
        tool_calls,
    }
}

/// Positional and keyword arguments as JSON.
type JsonArgs = (Vec<Value>, Vec<(String, Value)>);

/// Converts call arguments to JSON; the error is a `TypeError` message.
fn convert_args(
    spec: &ToolSpec,
    args: Vec<MontyObject>,
    kwargs: Vec<(MontyObject, MontyObject)>,
) -> Result<JsonArgs, String> {
    let mut positional = Vec::with_capacity(args.len());
    for (i, arg) in args.into_iter().enumerate() {
        let label = spec
            .params
            .get(i)
            .map_or_else(|| format!("#{}", i + 1), |p| format!("'{}'", p.name));
        positional.push(to_json(arg).map_err(|e| arg_error(spec, &label, &e))?);
    }
    let mut keywords = Vec::with_capacity(kwargs.len());
    for (key, value) in kwargs {
        let MontyObject::String(key) = key else {
            return Err(format!("{}() keywords must be strings", spec.name));
        };
        let label = format!("'{key}'");
        let value = to_json(value).map_err(|e| arg_error(spec, &label, &e))?;
        keywords.push((key, value));
    }
    Ok((positional, keywords))
}

fn arg_error(spec: &ToolSpec, label: &str, detail: &str) -> String {
    format!(
        "{}() argument {label}: {detail}; tools accept str, int, float, bool, None, list, tuple and \
         dict with str keys",
        spec.name
    )
}

/// A Python value as JSON: dict/list/tuple/str/int/float/bool/None (tuples become arrays).
fn to_json(obj: MontyObject) -> Result<Value, String> {
    Ok(match obj {
        MontyObject::None => Value::Null,
        MontyObject::Bool(b) => Value::Bool(b),
        MontyObject::Int(i) => Value::Number(Number::from(i)),
        MontyObject::BigInt(big) => {
            if let Ok(u) = u64::try_from(&big) {
                Value::Number(Number::from(u))
            } else {
                return Err(format!("int {big} is too large to pass to a tool"));
            }
        }
        MontyObject::Float(f) => match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => return Err(format!("float {f} cannot be passed to a tool")),
        },
        MontyObject::String(s) | MontyObject::Path(s) => Value::String(s),
        MontyObject::List(items) | MontyObject::Tuple(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        MontyObject::NamedTuple { values, .. } => {
            Value::Array(values.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        MontyObject::Dict(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (key, value) in pairs {
                let MontyObject::String(key) = key else {
                    return Err(format!("dict keys must be str, not {}", key.type_name()));
                };
                map.insert(key, to_json(value)?);
            }
            Value::Object(map)
        }
        other => return Err(format!("unsupported type '{}'", other.type_name())),
    })
}

/// A JSON value as a Python value.
fn from_json(value: Value) -> MontyObject {
    match value {
        Value::Null => MontyObject::None,
        Value::Bool(b) => MontyObject::Bool(b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MontyObject::Int(i)
            } else if let Some(u) = n.as_u64() {
                MontyObject::BigInt(BigInt::from(u))
            } else {
                MontyObject::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MontyObject::String(s),
        Value::Array(items) => MontyObject::List(items.into_iter().map(from_json).collect()),
        Value::Object(map) => MontyObject::dict(
            map.into_iter()
                .map(|(k, v)| (MontyObject::String(k), from_json(v)))
                .collect::<Vec<_>>(),
        ),
    }
}
