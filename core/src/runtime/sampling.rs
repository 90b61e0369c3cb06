//! The agent's model answering MCP servers' sampling requests (SPEC §18, `sampling: ask | allow`): through the
//! runtime's provider, approved by the host's permission handler when asked to, counted in the run's usage and
//! limits like a worker's calls.

use std::sync::Arc;
use std::sync::Mutex;

use codepilot_llm::ChatRequest;
use codepilot_llm::Provider;
use codepilot_llm::WireMessage;

use crate::handlers::BoxFuture;
use crate::handlers::PermissionDecision;
use crate::handlers::PermissionHandler;
use crate::handlers::PermissionRequest;
use crate::mcp::Sampler;
use crate::mcp::SamplingRequest;
use crate::state::WorkerSpend;

/// How much of a sampling request the permission prompt quotes.
const QUOTED_CHARS: usize = 300;

pub(super) struct RuntimeSampler {
    pub(super) provider: Arc<dyn Provider>,
    pub(super) permission: Option<Arc<dyn PermissionHandler>>,
    pub(super) spend: Arc<Mutex<WorkerSpend>>,
    pub(super) prices: Option<codepilot_llm::Pricing>,
    pub(super) model: String,
}

impl Sampler for RuntimeSampler {
    fn sample<'a>(
        &'a self,
        server: &'a str,
        ask: bool,
        request: SamplingRequest,
    ) -> BoxFuture<'a, Result<(String, String), String>> {
        Box::pin(async move {
            if ask {
                let Some(handler) = self.permission.as_ref().filter(|h| h.available()) else {
                    return Err(format!(
                        "MCP server `{server}` asked for a completion (sampling: ask) and nobody can approve it here"
                    ));
                };
                let last: String = request
                    .messages
                    .last()
                    .map(|(_, text)| text.chars().take(QUOTED_CHARS).collect())
                    .unwrap_or_default();
                let decision = handler
                    .decide(&PermissionRequest {
                        tool: format!("{server} sampling"),
                        args: serde_json::json!({
                            "system": request.system,
                            "messages": request.messages.iter().map(|(role, text)| serde_json::json!({"role": role, "text": text})).collect::<Vec<_>>(),
                        }),
                        description: format!("MCP server `{server}` asks the model: {last}"),
                    })
                    .await;
                if let PermissionDecision::Deny { reason } = decision {
                    return Err(match reason {
                        Some(reason) => format!("the completion was not allowed: {reason}"),
                        None => "the completion was not allowed".to_owned(),
                    });
                }
            }
            let messages: Vec<WireMessage> = request
                .messages
                .iter()
                .map(|(role, text)| WireMessage::new(*role, text.as_str()))
                .collect();
            let system = request.system.unwrap_or_default();
            let completion = self
                .provider
                .complete(
                    ChatRequest {
                        system: &system,
                        system_dynamic: "",
                        messages: &messages,
                        cache_marks: None,
                    },
                    &mut |_| {},
                )
                .await
                .map_err(|e| format!("the model failed: {e}"))?;
            {
                let mut spend = codepilot_protocol::sync::lock(&self.spend);
                spend.tokens.add(&completion.usage);
                if let Some(prices) = &self.prices {
                    spend.cost_usd += prices.cost(&completion.usage);
                }
            }
            Ok((completion.text, self.model.clone()))
        })
    }
}
