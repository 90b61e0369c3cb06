//! MCP resources and prompts as block functions (SPEC §18): `mcp_resources(server)`, `mcp_read(server, uri)`,
//! `mcp_prompts(server)`, `mcp_prompt(server, name, **args)`. They exist when the agent has MCP servers; each names
//! its server, and returns what the server gives (the protocol's JSON shapes).

use std::sync::Arc;

use codepilot_protocol::ParamSpec;
use codepilot_protocol::ToolError;
use codepilot_protocol::ToolSpec;
use serde_json::Value;

use super::McpHub;
use crate::handlers::BoxFuture;
use crate::tools::Tool;
use crate::tools::ToolCall;
use crate::tools::ToolOutput;

/// One of the four functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
    Resources,
    Read,
    Prompts,
    Prompt,
}

impl Function {
    pub(super) const ALL: [Self; 4] = [Self::Resources, Self::Read, Self::Prompts, Self::Prompt];

    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Resources => "mcp_resources",
            Self::Read => "mcp_read",
            Self::Prompts => "mcp_prompts",
            Self::Prompt => "mcp_prompt",
        }
    }
}

/// A function over every server of a hub.
pub(super) struct HubFunction {
    pub(super) hub: Arc<McpHub>,
    pub(super) function: Function,
}

fn text(args: &serde_json::Map<String, Value>, name: &str, key: &str) -> Result<String, ToolError> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ToolError::type_error(format!(
            "{name}(): `{key}` must be a str"
        ))),
    }
}

impl Tool for HubFunction {
    fn spec(&self) -> ToolSpec {
        let server = ParamSpec::required("server").annotated("str");
        let (params, doc, returns) = match self.function {
            Function::Resources => (
                vec![server],
                "The resources MCP server `server` offers: a list of {uri, name, description, mimeType} and of \
                 {uriTemplate, name, …} for templates.",
                "list",
            ),
            Function::Read => (
                vec![server, ParamSpec::required("uri").annotated("str")],
                "The contents of resource `uri` of MCP server `server`: a list of {uri, mimeType, text} (or blob, \
                 base64).",
                "list",
            ),
            Function::Prompts => (
                vec![server],
                "The prompts MCP server `server` offers: a list of {name, description, arguments}.",
                "list",
            ),
            Function::Prompt => (
                vec![server, ParamSpec::required("name").annotated("str")],
                "Prompt `name` of MCP server `server`, its arguments given as keywords: {description, messages: \
                 [{role, content}]}.",
                "dict",
            ),
        };
        let mut spec = ToolSpec::new(self.function.name(), params, doc);
        spec.returns = Some(returns.to_owned());
        if self.function == Function::Prompt {
            spec = spec.with_var_keyword("args");
        }
        spec
    }

    fn call<'a>(&'a self, call: ToolCall<'a>) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let name = self.function.name();
            let args = &call.args;
            let server = text(args, name, "server")?;
            let (peer, limit) = self.hub.peer(&server).await?;
            let failed = |e: rmcp::ServiceError| {
                ToolError::runtime(format!("{name}(): MCP server `{server}` answered: {e}"))
            };
            let work = async {
                Ok::<Value, ToolError>(match self.function {
                    Function::Resources => {
                        let mut list =
                            serde_json::to_value(peer.list_all_resources().await.map_err(failed)?)
                                .unwrap_or_default();
                        // Templates are optional: a server without them answers "method not found".
                        if let Ok(templates) = peer.list_all_resource_templates().await
                            && let (Value::Array(items), Ok(Value::Array(more))) =
                                (&mut list, serde_json::to_value(templates))
                        {
                            items.extend(more);
                        }
                        list
                    }
                    Function::Read => {
                        let uri = text(args, name, "uri")?;
                        let read = peer
                            .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
                            .await
                            .map_err(failed)?;
                        serde_json::to_value(read.contents).unwrap_or_default()
                    }
                    Function::Prompts => {
                        serde_json::to_value(peer.list_all_prompts().await.map_err(failed)?)
                            .unwrap_or_default()
                    }
                    Function::Prompt => {
                        let prompt = text(args, name, "name")?;
                        let arguments = match args.get("args") {
                            Some(Value::Object(map)) => map.clone(),
                            _ => serde_json::Map::new(),
                        };
                        let got = peer
                            .get_prompt(
                                rmcp::model::GetPromptRequestParams::new(prompt)
                                    .with_arguments(arguments),
                            )
                            .await
                            .map_err(failed)?;
                        serde_json::to_value(got).unwrap_or_default()
                    }
                })
            };
            let value = tokio::time::timeout(limit, work).await.map_err(|_| {
                ToolError::new(
                    codepilot_protocol::ExcKind::TimeoutError,
                    format!(
                        "{name}() timed out after {} s (MCP server `{server}`, timeout_s)",
                        limit.as_secs()
                    ),
                )
            })??;
            Ok(ToolOutput::value(value))
        })
    }

    /// Gated when any server is (`require_permission: true`): the server is an argument, so a gated server's
    /// resources cannot be reached around its gate.
    fn requires_permission(&self) -> bool {
        self.hub.any_gated()
    }

    fn describe_call(&self, args: &serde_json::Map<String, Value>) -> Option<String> {
        let shown: Vec<String> = args
            .iter()
            .map(|(k, v)| format!("{k}={}", codepilot_protocol::py_literal(v)))
            .collect();
        Some(format!("{}({})", self.function.name(), shown.join(", ")))
    }

    fn label(&self, args: &serde_json::Map<String, Value>) -> Option<String> {
        let server = args.get("server").and_then(Value::as_str).unwrap_or("?");
        Some(match self.function {
            Function::Resources => format!("Listing the resources of MCP server {server}"),
            Function::Read => format!(
                "Reading {} from MCP server {server}",
                args.get("uri").and_then(Value::as_str).unwrap_or("?")
            ),
            Function::Prompts => format!("Listing the prompts of MCP server {server}"),
            Function::Prompt => format!(
                "Getting prompt {} from MCP server {server}",
                args.get("name").and_then(Value::as_str).unwrap_or("?")
            ),
        })
    }
}
