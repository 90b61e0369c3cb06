//! The tool host of one control block: the permission gate, dispatch to the tool, the `ToolCall`/`ToolResult`
//! events, and the observation entries, in true call order.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use codepilot_protocol::Action;
use codepilot_protocol::Observation;
use codepilot_protocol::PermissionRefusal;
use codepilot_protocol::ToolError;
use codepilot_telemetry::KeyValue;
use codepilot_telemetry::Span;
use codepilot_telemetry::SpanKind;
use codepilot_telemetry::names;
use serde_json::Map;
use serde_json::Value;

use super::Context;
use crate::events::Event;
use crate::events::PermissionRequestEvent;
use crate::events::ToolCallEvent;
use crate::events::ToolResultEvent;
use crate::handlers::PermissionDecision;
use crate::handlers::PermissionRequest;
use crate::toolbox::ToolSet;
use crate::tools::StepContext;
use crate::tools::ToolCall;

/// Serves the tool calls of one control block.
pub(super) struct StepHost {
    cx: Arc<Context>,
    toolset: Arc<ToolSet>,
    ctx: StepContext,
    observation: Mutex<Observation>,
    task: u64,
    step: u32,
    calls: AtomicU32,
    /// The block's span, parent of each call's.
    span: Span,
}

/// Emits a failed `ToolResult` for a call whose future was dropped (abort, block timeout), so every `ToolCall` a
/// host sees is closed.
struct CallGuard<'a> {
    cx: &'a Context,
    call_id: String,
    tool: String,
    armed: bool,
    /// The call's span, marked failed with the call.
    span: Span,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.span
                .fail("cancelled", || "cancelled before it finished".to_owned());
            self.cx.emit(Event::ToolResult(ToolResultEvent {
                call_id: std::mem::take(&mut self.call_id),
                tool: std::mem::take(&mut self.tool),
                ok: false,
                result: "[cancelled before it finished]".to_owned(),
            }));
        }
    }
}

impl StepHost {
    pub(super) fn new(
        cx: &Arc<Context>,
        toolset: &Arc<ToolSet>,
        action: &Action,
        context: Arc<Mutex<crate::context::ContextBook>>,
        task: u64,
        step: u32,
        span: Span,
    ) -> Self {
        Self {
            cx: Arc::clone(cx),
            toolset: Arc::clone(toolset),
            ctx: StepContext {
                env: Arc::clone(&cx.env),
                payloads: Mutex::new(action.payloads.iter().cloned().collect()),
                context,
            },
            observation: Mutex::new(Observation::new()),
            task,
            step,
            calls: AtomicU32::new(0),
            span,
        }
    }

    fn push(&self, entry: String) {
        if let Ok(mut o) = self.observation.lock() {
            o.push(entry);
        }
    }

    pub(super) fn take_observation(&self) -> Observation {
        match self.observation.lock() {
            Ok(mut o) => std::mem::take(&mut *o),
            Err(_) => Observation::new(),
        }
    }

    /// Payload blocks no `write_file` call consumed, their filenames quoted.
    pub(super) fn leftover_payloads(&self) -> Vec<String> {
        match self.ctx.payloads.lock() {
            Ok(q) => q.iter().map(|p| format!("'{}'", p.filename)).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(super) fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Asks the host's permission handler; `Err` is the `PermissionError` message.
    async fn permitted(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        description: String,
    ) -> Result<(), String> {
        self.cx
            .emit(Event::PermissionRequest(PermissionRequestEvent {
                tool: tool.to_owned(),
                description: description.clone(),
            }));
        let Some(handler) = self.cx.permission.as_ref().filter(|h| h.available()) else {
            return Err(PermissionRefusal::NoHandler.message(&description));
        };
        let request = PermissionRequest {
            tool: tool.to_owned(),
            args: Value::Object(args.clone()),
            description,
        };
        match handler.decide(&request).await {
            PermissionDecision::Allow => Ok(()),
            PermissionDecision::Deny { reason } => {
                Err(PermissionRefusal::Denied(reason).message(&request.description))
            }
        }
    }
}

#[async_trait::async_trait]
impl codepilot_script::ToolHost for StepHost {
    async fn call_tool(&self, name: &str, args: Map<String, Value>) -> Result<Value, ToolError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let call_id = format!("t{}s{}c{n}", self.task, self.step);
        let Some(registered) = self.toolset.registry.get(name).cloned() else {
            return Err(ToolError::runtime(format!("{name} is not a tool")));
        };
        let tool = registered.tool;
        let label = tool
            .label(&args)
            .unwrap_or_else(|| format!("Calling {name}"));
        let permission = registered.settings.require_permission.then(|| {
            tool.describe_call(&args)
                .unwrap_or_else(|| format!("Call {name}"))
        });
        self.cx.emit(Event::ToolCall(ToolCallEvent {
            call_id: call_id.clone(),
            tool: name.to_owned(),
            args: Value::Object(args.clone()),
            label,
        }));
        let span = self.span.child(
            || format!("execute_tool {name}").into(),
            SpanKind::Internal,
            || {
                let mut attributes = vec![
                    KeyValue::new(names::GEN_AI_OPERATION_NAME, "execute_tool"),
                    KeyValue::new(names::GEN_AI_TOOL_NAME, name.to_owned()),
                    KeyValue::new(names::GEN_AI_TOOL_CALL_ID, call_id.clone()),
                    KeyValue::new(
                        names::GEN_AI_TOOL_TYPE,
                        if self.cx.tools.mcp().is_some_and(|hub| hub.is_mcp_tool(name)) {
                            "extension"
                        } else {
                            "function"
                        },
                    ),
                ];
                if self.span.records_content() {
                    attributes.push(KeyValue::new(
                        names::GEN_AI_TOOL_CALL_ARGUMENTS,
                        crate::traces::capped(&Value::Object(args.clone()).to_string())
                            .into_owned(),
                    ));
                }
                attributes
            },
        );
        let mut guard = CallGuard {
            cx: &self.cx,
            call_id: call_id.clone(),
            tool: name.to_owned(),
            armed: true,
            span: span.clone(),
        };
        let denied = match permission {
            Some(description) => self.permitted(name, &args, description).await.err(),
            None => None,
        };
        let (entry, result) = match denied {
            Some(message) => {
                crate::tools::builtin::discard_refused(&self.ctx, name, &args);
                (
                    codepilot_protocol::permission_denied_entry(name, &message),
                    Err(ToolError::permission(message)),
                )
            }
            None => {
                let call = ToolCall {
                    args,
                    call_id: &call_id,
                    step: Some(&self.ctx),
                    span: span.clone(),
                };
                match tool.call(call).await {
                    Ok(out) => (
                        out.observation.unwrap_or_else(|| {
                            codepilot_protocol::tool_value_entry(name, &out.value)
                        }),
                        Ok(out.value),
                    ),
                    Err(e) => (
                        codepilot_protocol::tool_error_entry(name, &e.message),
                        Err(e),
                    ),
                }
            }
        };
        guard.armed = false;
        if span.is_recording() {
            span.set(names::TOOL_OK, result.is_ok());
            match &result {
                Ok(value) => {
                    if let Some(code) = value.get("exit_code").and_then(Value::as_i64) {
                        span.set(names::EXIT_CODE, code);
                    }
                }
                Err(e) => span.fail("tool_error", || {
                    // The message may quote what the tool read: content.
                    if span.records_content() {
                        e.message.clone()
                    } else {
                        String::new()
                    }
                }),
            }
            if span.records_content() {
                span.set(
                    names::GEN_AI_TOOL_CALL_RESULT,
                    crate::traces::capped(&entry).into_owned(),
                );
            }
            span.end();
        }
        self.push(entry.clone());
        self.cx.emit(Event::ToolResult(ToolResultEvent {
            call_id,
            tool: name.to_owned(),
            ok: result.is_ok(),
            result: entry,
        }));
        result
    }

    fn print(&self, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        if !text.is_empty() {
            self.push(text.to_owned());
        }
    }
}
