//! Span and attribute names: the OpenTelemetry GenAI semantic conventions where they name something, this
//! runtime's own under `codepilot.*` otherwise. One home, so a dashboard built on them has one list to read.

/// The semantic-conventions version the names follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// `invoke_agent` (run), `chat` (model call), `execute_tool` (tool call).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The provider: `anthropic`, `openai`, …
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The agent's name.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// The session id, as the GenAI conventions name a conversation.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// The model asked for.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// The answer's token cap.
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// The sampling temperature.
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// Input tokens of the call.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Output tokens of the call.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Why the model stopped, as a list.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// The tool's name.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// Pairs the tool span with the runtime's `tool_call`/`tool_result` events.
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// `function` for built-in tools, `extension` for MCP tools.
pub const GEN_AI_TOOL_TYPE: &str = "gen_ai.tool.type";
/// Content (only with `observability.log_content`): the system prompt.
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// Content: the messages sent, as JSON.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// Content: the answer, as JSON.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// Content: a tool call's arguments, as JSON.
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// Content: a tool call's result, as the model reads it.
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
/// A short class of what failed.
pub const ERROR_TYPE: &str = "error.type";
/// The MCP method (`tools/call`).
pub const MCP_METHOD_NAME: &str = "mcp.method.name";
/// The MCP server, as the agent file names it.
pub const MCP_SERVER_NAME: &str = "codepilot.mcp.server";

/// The session id.
pub const SESSION_ID: &str = "codepilot.session_id";
/// The turn (`turn-N`), as the daemon names it.
pub const TURN_ID: &str = "codepilot.turn_id";
/// The task's number in the session.
pub const TASK_NUMBER: &str = "codepilot.task_number";
/// The step's number in the task.
pub const STEP: &str = "codepilot.step";
/// How the run ended: `completed`, `replied`, `max_steps`, `aborted`, `limit_exceeded`, `invalid_output`, `error`.
pub const OUTCOME: &str = "codepilot.outcome";
/// Steps the run took.
pub const STEPS: &str = "codepilot.steps";
/// The tool (also on MCP spans).
pub const TOOL: &str = "codepilot.tool";
/// Whether the tool succeeded.
pub const TOOL_OK: &str = "codepilot.tool.ok";
/// The exit code of a command a tool ran.
pub const EXIT_CODE: &str = "codepilot.exit_code";
/// Lines of the control block.
pub const BLOCK_LINES: &str = "codepilot.block.lines";
/// Tool calls the block made.
pub const BLOCK_CALLS: &str = "codepilot.block.tool_calls";
/// How the block ended: `finished`, `failed`, `aborted`, `out_of_time`.
pub const BLOCK_END: &str = "codepilot.block.end";
/// The checkpoint's id.
pub const CHECKPOINT_ID: &str = "codepilot.checkpoint.id";
/// Files the checkpoint stored anew.
pub const CHECKPOINT_FILES: &str = "codepilot.checkpoint.files_stored";
/// The worker's id (sub-agent spans).
pub const AGENT_ID: &str = "codepilot.agent_id";
/// The spawning agent's id.
pub const PARENT_AGENT_ID: &str = "codepilot.parent_agent_id";
/// Attempts the model call took.
pub const MODEL_ATTEMPTS: &str = "codepilot.model.attempts";
/// Time to the first streamed token, on the model call span's `codepilot.model.first_token` event too.
pub const FIRST_TOKEN_MS: &str = "codepilot.model.first_token_ms";
/// The event a model call span gets when the first token arrives.
pub const EVENT_FIRST_TOKEN: &str = "codepilot.model.first_token";
/// The event a model call span gets for a retry.
pub const EVENT_RETRY: &str = "codepilot.model.retry";
/// A retry event's attempt number.
pub const RETRY_ATTEMPT: &str = "codepilot.model.retry.attempt";
/// A retry event's reason (an HTTP status, a connection error).
pub const RETRY_REASON: &str = "codepilot.model.retry.reason";
