// Generated from docs/protocol.schema.json by scripts/protocol.mjs (npm run protocol). Do not edit.

/**
 * Every message type of the protocol, for schema generation: the root of `docs/protocol.schema.json`.
 */
export type ProtocolMessage =
  | (
      | {
          method: "initialize";
          params: InitializeParams;
        }
      | {
          method: "session/start";
          params: SessionStartParams;
        }
      | {
          method: "session/resume";
          params: SessionResumeParams;
        }
      | {
          method: "session/read";
          params: SessionParams;
        }
      | {
          method: "session/subscribe";
          params: SubscribeParams;
        }
      | {
          method: "session/list";
          params: Empty;
        }
      | {
          method: "session/close";
          params: SessionParams;
        }
      | {
          method: "session/snapshot";
          params: SessionParams;
        }
      | {
          method: "session/checkpoints";
          params: SessionParams;
        }
      | {
          method: "session/export";
          params: SessionParams;
        }
      | {
          method: "session/rewind";
          params: RewindParams;
        }
      | {
          method: "turn/start";
          params: TurnParams;
        }
      | {
          method: "turn/steer";
          params: TurnParams;
        }
      | {
          method: "turn/interrupt";
          params: SessionParams;
        }
      | {
          method: "terminal/list";
          params: SessionParams;
        }
    )
  | (
      | {
          method: "event";
          params: EventEnvelope;
        }
      | {
          method: "turn/completed";
          params: TurnCompleted;
        }
      | {
          method: "turn/failed";
          params: TurnFailed;
        }
      | {
          method: "serverRequest/resolved";
          params: RequestResolved;
        }
      | {
          method: "subscription/lagged";
          params: SubscriptionLagged;
        }
    )
  | (
      | {
          method: "permission/request";
          params: PermissionRequestParams;
        }
      | {
          method: "ask_user/request";
          params: AskUserRequestParams;
        }
      | {
          method: "mcp/login";
          params: McpLoginParams;
        }
    )
  | InitializeResult
  | SessionStartResult
  | SessionResumeResult
  | SessionReadResult
  | SubscribeResult
  | SessionListResult
  | TurnStartResult
  | TerminalListResult
  | CheckpointsResult
  | RewoundEvent1
  | ExportResult
  | (
      | (TrajectoryHeader & {
          type: "header";
        })
      | (TrajectoryWorkspace & {
          type: "workspace";
        })
      | (TrajectoryMessage & {
          type: "message";
        })
      | (TrajectoryEvent & {
          type: "event";
        })
      | (CheckpointInfo & {
          type: "checkpoint";
        })
      | (TrajectoryEnd & {
          type: "end";
        })
    )
  | (
      | {
          decision: "allow";
        }
      | {
          decision: "deny";
          /**
           * Why, if the host says.
           */
          reason?: string | null;
        }
    )
  | AskUserResponse
  | McpLoginResponse
  | RawMessage;
/**
 * What `session/start` does with the work directory of a session that has a workspace snapshot (SPEC §17).
 */
export type RestoreMode = "if_empty" | "replace" | "skip";
/**
 * What a rewind brings back.
 */
export type RewindScope = "files" | "conversation" | "both";
/**
 * A request or response id: a number or a string.
 */
export type RequestId = number | string;

/**
 * `initialize` params.
 */
export interface InitializeParams {
  client: ClientInfo;
}
/**
 * The client.
 */
export interface ClientInfo {
  /**
   * The client's name, e.g. `codepilot-vscode`.
   */
  name: string;
  /**
   * Its version.
   */
  version?: string;
}
/**
 * `session/start` params: an agent file by path or as YAML text (exactly one), optionally a work directory and a
 * session id to create or open. The daemon records the agent (the file's text, its path, the work directory) with
 * the session, so `session/resume {session_id}` opens it again on any daemon sharing the store.
 */
export interface SessionStartParams {
  /**
   * An agent file's YAML text.
   */
  agent?: string | null;
  /**
   * Path of an agent file on the daemon's machine.
   */
  agent_file?: string | null;
  /**
   * When the daemon keeps snapshots and the session has one: what to do with a work directory that lacks it
   * (default [`RestoreMode::IfEmpty`]).
   */
  restore?: RestoreMode | null;
  /**
   * Create this session, or open it if it is stored (default: a new id).
   */
  session_id?: string | null;
  /**
   * Overrides `runtime.work_dir`.
   */
  work_dir?: string | null;
}
/**
 * `session/resume` params: a stored session to open in this daemon. `{session_id}` alone opens it with the agent
 * the store recorded for it (the agent file's text and work directory it was last opened with by a daemon, which
 * may be another one sharing the store). An agent file by path or as YAML text (at most one) runs it with that
 * agent instead, and is recorded in its place; a session no daemon recorded an agent for (created by the CLI, the
 * Python package or an older daemon) needs one. `work_dir` and `restore` as for `session/start` (`work_dir`
 * overrides the recorded work directory too). All are ignored when the session is already open in this daemon.
 */
export interface SessionResumeParams {
  /**
   * An agent file's YAML text; default: the agent the store recorded for the session.
   */
  agent?: string | null;
  /**
   * Path of an agent file on the daemon's machine; default: the agent the store recorded for the session.
   */
  agent_file?: string | null;
  /**
   * When the daemon keeps snapshots and the session has one: what to do with a work directory that lacks it
   * (default [`RestoreMode::IfEmpty`]).
   */
  restore?: RestoreMode | null;
  /**
   * The session.
   */
  session_id: string;
  /**
   * Overrides `runtime.work_dir` (of the recorded agent too); default: the agent's, the recorded one's being
   * the directory the session last ran in.
   */
  work_dir?: string | null;
}
/**
 * Params naming a session.
 */
export interface SessionParams {
  /**
   * The session.
   */
  session_id: string;
}
/**
 * `session/subscribe` params.
 */
export interface SubscribeParams {
  /**
   * Replay the session's events after this `seq` first (0: from its start); none: live events only.
   */
  after_seq?: number | null;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * An empty result (`{}`).
 */
export interface Empty {}
/**
 * `session/rewind` params (SPEC §19).
 */
export interface RewindParams {
  /**
   * The checkpoint: `"3"` (before turn 3), `"3.2"` (before its step 2) or `"rewind-1"` (the state a rewind
   * replaced).
   */
  checkpoint: string;
  /**
   * Say what would change, change nothing (for a confirmation). Default `false`.
   */
  dry_run?: boolean;
  /**
   * What to rewind. Default `both`.
   */
  scope?: RewindScope & string;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * `turn/start` and `turn/steer` params.
 */
export interface TurnParams {
  /**
   * `turn/start`: request metadata; its `traceparent` parents the turn's trace (SPEC §23).
   */
  _meta?: RequestMeta | null;
  /**
   * `turn/start`: limits for this turn, each replacing the agent's `runtime.limits` value (SPEC §21).
   */
  limits?: Limits | null;
  /**
   * `turn/start`: a JSON Schema (2020-12) the completion must match; the outcome then carries `structured`.
   */
  output_schema?: {
    [k: string]: unknown;
  };
  /**
   * The session.
   */
  session_id: string;
  /**
   * The task (`turn/start`) or the message for the running turn (`turn/steer`).
   */
  text: string;
}
/**
 * `_meta` of a request: metadata beside its parameters, as MCP carries it. Keys this daemon does not know are
 * ignored.
 */
export interface RequestMeta {
  /**
   * A W3C trace context (`00-<trace id>-<parent id>-<flags>`): the turn's spans join the caller's trace, and the
   * agent's shells get it as `TRACEPARENT`.
   */
  traceparent?: string | null;
}
/**
 * Bounds on what a run (or a whole session) may spend. A limit left out does not apply.
 *
 * `runtime.limits` in agent.yaml bounds each run, `runtime.session_limits` the session's whole life (a running total
 * kept in the store, so a resumed session keeps counting); a host overrides the run's limits per run.
 */
export interface Limits {
  /**
   * US dollars, from the tokens and the model's prices.
   */
  max_cost_usd?: number | null;
  /**
   * Tokens of every kind (input, output, cache read and write) over all model calls.
   */
  max_total_tokens?: number | null;
  /**
   * Seconds from the start of the run, whatever it is doing (a model call, a shell command); at most
   * [`MAX_WALL_S`]. Runs only: a session's time is not bounded.
   */
  max_wall_s?: number | null;
}
/**
 * One event as it crosses a process boundary: which session and turn it belongs to, and its number.
 */
export interface EventEnvelope {
  /**
   * The worker (sub-agent) whose event this is, numbered as `spawn_subagent` returned; `None` for the
   * session's own agent (SPEC §20).
   */
  agent_id?: number | null;
  /**
   * The event.
   */
  event:
    | (StartEvent & {
        type: "start";
      })
    | (StepEvent & {
        type: "step";
      })
    | (StreamEvent & {
        type: "stream";
      })
    | (ToolCallEvent & {
        type: "tool_call";
      })
    | (ToolResultEvent & {
        type: "tool_result";
      })
    | (AskUserEvent & {
        type: "ask_user";
      })
    | (PermissionRequestEvent & {
        type: "permission_request";
      })
    | (UserMessageEvent & {
        type: "user_message_queued";
      })
    | (UserMessageEvent & {
        type: "user_message_injected";
      })
    | (RuntimeErrorEvent & {
        type: "runtime_error";
      })
    | (ModelRetryEvent & {
        type: "model_retry";
      })
    | (UsageEvent & {
        type: "usage";
      })
    | (FinishEvent & {
        type: "finish";
      })
    | (MaxStepsEvent & {
        type: "max_steps";
      })
    | (AbortedEvent & {
        type: "aborted";
      })
    | (SessionResetEvent & {
        type: "session_reset";
      })
    | (ContextMaintenanceEvent & {
        type: "context_maintenance";
      })
    | (ContextDropEvent & {
        type: "context_drop";
      })
    | (WorkspaceSavedEvent & {
        type: "workspace_saved";
      })
    | (ResourceLimitEvent & {
        type: "resource_limit";
      })
    | (RewoundEvent & {
        type: "rewound";
      })
    | (LimitWarningEvent & {
        type: "limit_warning";
      })
    | (SubagentSpawnEvent & {
        type: "subagent_spawn";
      })
    | (SubagentMessageEvent & {
        type: "subagent_message";
      })
    | (SubagentFinishEvent & {
        type: "subagent_finish";
      });
  /**
   * For a worker's event: who spawned the worker — 0 for the session's own agent, else the spawning worker's
   * `agent_id` (a worker of a worker, when `subagents.max_depth` allows it).
   */
  parent?: number | null;
  /**
   * Increases by one with every event of the session, from 1, so a missing event is visible.
   */
  seq: number;
  /**
   * The session the event belongs to.
   */
  session_id: string;
  /**
   * The turn (one `run` of a task) it belongs to; `None` for events between turns, such as a message queued
   * while the agent is idle or a session reset.
   */
  turn_id?: string | null;
}
/**
 * [`Event::Start`].
 */
export interface StartEvent {
  /**
   * Session the task runs in.
   */
  session_id: string;
  /**
   * The task text.
   */
  task: string;
  /**
   * Task number within the session, from 1.
   */
  task_number: number;
}
/**
 * [`Event::Step`].
 */
export interface StepEvent {
  /**
   * The task's step limit.
   */
  max_steps: number;
  /**
   * Step number within the task, from 1.
   */
  step: number;
}
/**
 * [`Event::Stream`].
 */
export interface StreamEvent {
  /**
   * Text or thinking.
   */
  kind: "text" | "thinking";
  /**
   * The new text.
   */
  text: string;
}
/**
 * [`Event::ToolCall`].
 */
export interface ToolCallEvent {
  /**
   * Bound arguments, by parameter name.
   */
  args: {
    [k: string]: unknown;
  };
  /**
   * Pairs this call with its [`ToolResultEvent`].
   */
  call_id: string;
  /**
   * A short human label, e.g. "Reading src/lib.rs".
   */
  label: string;
  /**
   * Tool name.
   */
  tool: string;
}
/**
 * [`Event::ToolResult`].
 */
export interface ToolResultEvent {
  /**
   * Pairs this result with its [`ToolCallEvent`].
   */
  call_id: string;
  /**
   * Whether the tool succeeded.
   */
  ok: boolean;
  /**
   * The formatted result, as the model reads it.
   */
  result: string;
  /**
   * Tool name.
   */
  tool: string;
}
/**
 * [`Event::AskUser`].
 */
export interface AskUserEvent {
  /**
   * The question.
   */
  question: string;
}
/**
 * [`Event::PermissionRequest`].
 */
export interface PermissionRequestEvent {
  /**
   * What it wants to do, e.g. "Execute: rm -rf build".
   */
  description: string;
  /**
   * Tool asking.
   */
  tool: string;
}
/**
 * [`Event::UserMessageQueued`] and [`Event::UserMessageInjected`].
 */
export interface UserMessageEvent {
  /**
   * The message.
   */
  text: string;
}
/**
 * [`Event::RuntimeError`].
 */
export interface RuntimeErrorEvent {
  /**
   * Class of error.
   */
  kind: "parse" | "execution" | "provider" | "store" | "snapshot" | "mcp" | "checkpoint" | "search" | "internal";
  /**
   * Human-readable message.
   */
  message: string;
}
/**
 * [`Event::ModelRetry`].
 */
export interface ModelRetryEvent {
  /**
   * Retry number, from 1.
   */
  attempt: number;
  /**
   * Wait before the retry, in milliseconds.
   */
  delay_ms: number;
  /**
   * Why.
   */
  reason: string;
}
/**
 * [`Event::Usage`].
 */
export interface UsageEvent {
  call: Usage;
  /**
   * This call's cost in US dollars; `None` when the model's prices are not known.
   */
  cost_usd?: number | null;
  /**
   * Whether this call's counts are the runtime's estimate (the provider reported none).
   */
  estimated?: boolean;
  /**
   * The run so far.
   */
  run?: Spend & {
    [k: string]: unknown;
  };
  total: Usage2;
  /**
   * The session's cost so far, at today's prices.
   */
  total_cost_usd?: number | null;
}
/**
 * This call.
 */
export interface Usage {
  /**
   * Prompt tokens read from the provider's prompt cache.
   */
  cache_read_tokens?: number;
  /**
   * Prompt tokens written to the provider's prompt cache.
   */
  cache_write_tokens?: number;
  /**
   * Number of model calls this usage covers.
   */
  calls?: number;
  /**
   * Prompt tokens billed at the full rate.
   */
  input_tokens?: number;
  /**
   * Completion tokens.
   */
  output_tokens?: number;
  /**
   * Of `output_tokens`, those the model spent reasoning (when the provider says).
   */
  reasoning_tokens?: number;
}
/**
 * What a run spent: tokens by kind and their cost.
 */
export interface Spend {
  /**
   * Their cost in US dollars; `None` when the model's prices are not known.
   */
  cost_usd?: number | null;
  /**
   * Whether some token counts are the runtime's estimate (the provider reported none).
   */
  estimated?: boolean;
  tokens: Usage1;
  /**
   * Seconds the run took.
   */
  wall_s?: number;
}
/**
 * Tokens by kind, over the run's model calls.
 */
export interface Usage1 {
  /**
   * Prompt tokens read from the provider's prompt cache.
   */
  cache_read_tokens?: number;
  /**
   * Prompt tokens written to the provider's prompt cache.
   */
  cache_write_tokens?: number;
  /**
   * Number of model calls this usage covers.
   */
  calls?: number;
  /**
   * Prompt tokens billed at the full rate.
   */
  input_tokens?: number;
  /**
   * Completion tokens.
   */
  output_tokens?: number;
  /**
   * Of `output_tokens`, those the model spent reasoning (when the provider says).
   */
  reasoning_tokens?: number;
}
/**
 * The session so far.
 */
export interface Usage2 {
  /**
   * Prompt tokens read from the provider's prompt cache.
   */
  cache_read_tokens?: number;
  /**
   * Prompt tokens written to the provider's prompt cache.
   */
  cache_write_tokens?: number;
  /**
   * Number of model calls this usage covers.
   */
  calls?: number;
  /**
   * Prompt tokens billed at the full rate.
   */
  input_tokens?: number;
  /**
   * Completion tokens.
   */
  output_tokens?: number;
  /**
   * Of `output_tokens`, those the model spent reasoning (when the provider says).
   */
  reasoning_tokens?: number;
}
/**
 * [`Event::Finish`].
 */
export interface FinishEvent {
  /**
   * Completed or replied.
   */
  reason: "completed" | "replied" | "limit_exceeded" | "invalid_output";
  /**
   * The completion text, or the reply.
   */
  summary: string;
}
/**
 * [`Event::MaxSteps`].
 */
export interface MaxStepsEvent {
  /**
   * Steps taken.
   */
  steps: number;
}
/**
 * [`Event::Aborted`].
 */
export interface AbortedEvent {
  /**
   * Step at which the run stopped.
   */
  step: number;
}
/**
 * [`Event::SessionReset`].
 */
export interface SessionResetEvent {
  /**
   * The session.
   */
  session_id: string;
}
/**
 * [`Event::ContextMaintenance`].
 */
export interface ContextMaintenanceEvent {
  /**
   * Tokens a request may hold (window − `max_tokens` − thinking − margin).
   */
  budget: number;
  /**
   * The finished, unarchived tasks the model is asked to archive.
   */
  candidates: number[];
  /**
   * Tokens of the request as it stands.
   */
  context_tokens: number;
  /**
   * `context_tokens` as a percentage of `budget`.
   */
  stress_pct: number;
}
/**
 * [`Event::ContextDrop`].
 */
export interface ContextDropEvent {
  /**
   * Request tokens after.
   */
  after_tokens: number;
  /**
   * Request tokens before.
   */
  before_tokens: number;
  /**
   * Tokens a request may hold.
   */
  budget: number;
  /**
   * What happened.
   */
  kind: "archived" | "summarised" | "compacted";
  /**
   * Tasks archived, summarised or dropped whole.
   */
  tasks: number[];
}
/**
 * [`Event::WorkspaceSaved`].
 */
export interface WorkspaceSavedEvent {
  /**
   * Their total size in bytes.
   */
  content_bytes: number;
  /**
   * Time taken to archive and upload, in milliseconds.
   */
  elapsed_ms: number;
  /**
   * Files it holds.
   */
  files: number;
  /**
   * The snapshot's key in the snapshot store, `<session>/<unix-ms>-<random>.tar.zst`.
   */
  key: string;
  /**
   * The archive's (compressed) size in bytes.
   */
  size: number;
}
/**
 * [`Event::ResourceLimit`].
 */
export interface ResourceLimitEvent {
  /**
   * Which limit.
   */
  kind: "processes" | "memory" | "disk" | "open_files";
  /**
   * Its value: a count for processes and open files, MiB for memory and disk.
   */
  limit: number;
  /**
   * What the model reads about it, e.g. `[killed: memory limit 256 MiB reached (…)]`.
   */
  message: string;
  /**
   * The terminal whose command ran into it; `None` for a file tool's write.
   */
  terminal?: string | null;
}
/**
 * What a rewind did (and, for a preview, would do): the `rewound` event's data and `rewind`'s result.
 */
export interface RewoundEvent {
  /**
   * The checkpoint rewound to.
   */
  checkpoint: string;
  /**
   * Files and links created since the checkpoint, deleted.
   */
  files_deleted: number;
  /**
   * Files the checkpoint has that were left as they are: something not recorded now (a file `.gitignore`
   * excludes now, or one too large to record) stands there, which a rewind could not bring back.
   */
  files_left?: string[];
  /**
   * Files and links written back (changed or deleted since the checkpoint), modes included.
   */
  files_restored: number;
  /**
   * Messages in the conversation afterwards.
   */
  messages: number;
  /**
   * The checkpoint that holds the state before the rewind (`rewind-N`): rewinding to it undoes this one.
   * Empty for a preview.
   */
  saved_as: string;
  /**
   * What a rewind brings back.
   */
  scope: "files" | "conversation" | "both";
}
/**
 * [`crate::Event::LimitWarning`]: 80 % of a limit is spent. Once per limit and run.
 */
export interface LimitWarningEvent {
  /**
   * The limit.
   */
  limit: "max_total_tokens" | "max_cost_usd" | "max_wall_s";
  /**
   * The limit's value (tokens, US dollars or seconds).
   */
  max: number;
  /**
   * Whether it bounds the run or the session.
   */
  scope: "run" | "session";
  /**
   * What is spent so far, in the same unit.
   */
  spent: number;
}
/**
 * [`crate::Event::SubagentSpawn`]: the control block started a worker.
 */
export interface SubagentSpawnEvent {
  /**
   * The worker's number in this session, from 1; what `spawn_subagent` returned.
   */
  agent_id: number;
  /**
   * The model it runs on (the parent's, or the override).
   */
  model: string;
  /**
   * The task's first 120 characters.
   */
  task_summary: string;
  /**
   * The tools it may call (`None`: the default worker set).
   */
  tools?: string[] | null;
}
/**
 * [`crate::Event::SubagentMessage`]: a worker asked the parent something (`ask_main_agent`).
 */
export interface SubagentMessageEvent {
  /**
   * The worker.
   */
  agent_id: number;
  /**
   * Its message.
   */
  message: string;
}
/**
 * [`crate::Event::SubagentFinish`]: a worker ended.
 */
export interface SubagentFinishEvent {
  /**
   * The worker.
   */
  agent_id: number;
  /**
   * Seconds from spawn to end.
   */
  elapsed_seconds: number;
  /**
   * Why it failed or stopped, for `failed` and `stopped`.
   */
  error?: string | null;
  /**
   * Files its `write_file` calls wrote, relative to the work directory, in order.
   */
  files_written: string[];
  /**
   * How it ended.
   */
  status: "completed" | "stopped" | "failed" | "aborted";
  /**
   * Its completion summary or reply; empty when it has none.
   */
  summary: string;
}
/**
 * The end of a turn: how the task ended. The daemon's `turn/completed` notification, and the last line of
 * `codepilot run --json`.
 */
export interface TurnCompleted {
  /**
   * How it ended.
   */
  outcome:
    | {
        status: "completed";
        /**
         * Steps taken.
         */
        steps: number;
        /**
         * With an output schema: the completion parsed as JSON, valid against it.
         */
        structured?: {
          [k: string]: unknown;
        };
        /**
         * The completion text.
         */
        summary: string;
      }
    | {
        status: "replied";
        /**
         * Steps taken.
         */
        steps: number;
        /**
         * The reply.
         */
        text: string;
      }
    | {
        status: "max_steps";
        /**
         * Steps taken.
         */
        steps: number;
      }
    | {
        status: "aborted";
        /**
         * Steps started.
         */
        steps: number;
      }
    | {
        /**
         * The limit.
         */
        limit: "max_total_tokens" | "max_cost_usd" | "max_wall_s";
        /**
         * Its value (tokens, US dollars or seconds).
         */
        max: number;
        /**
         * Whether it bounds the run or the session.
         */
        scope: "run" | "session";
        /**
         * What was spent, in the same unit; for tokens and cost, what the next call could have added is not in
         * it (that call was not made).
         */
        spent: number;
        status: "limit_exceeded";
        /**
         * Steps taken.
         */
        steps: number;
      }
    | {
        /**
         * The validator's errors about the last completion.
         */
        errors: string[];
        /**
         * The last completion, as written.
         */
        last: string;
        status: "invalid_output";
        /**
         * Steps taken.
         */
        steps: number;
      };
  /**
   * The session.
   */
  session_id: string;
  /**
   * What the turn spent.
   */
  spend?: Spend & {
    [k: string]: unknown;
  };
  /**
   * The turn that ended.
   */
  turn_id: string;
}
/**
 * A turn that stopped with an error instead of an outcome (the provider failed after retries, the store failed):
 * the `turn/completed` of a failed turn.
 */
export interface TurnFailed {
  error: RpcError;
  /**
   * The session.
   */
  session_id: string;
  /**
   * The turn.
   */
  turn_id: string;
}
/**
 * A JSON-RPC error object.
 */
export interface RpcError {
  /**
   * One of [`codes`].
   */
  code: number;
  /**
   * More detail, when there is any.
   */
  data?: {
    [k: string]: unknown;
  };
  /**
   * What went wrong and what to do.
   */
  message: string;
}
/**
 * A server request or its resolution, naming the server request it is about.
 */
export interface RequestResolved {
  /**
   * A request or response id: a number or a string.
   */
  request_id: number | string;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * A subscription the daemon ended because the client fell behind.
 */
export interface SubscriptionLagged {
  /**
   * The last `seq` the client was sent; resubscribe with `after_seq` set to it.
   */
  last_sent_seq: number;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * `permission/request` params: a gated tool call waiting for a decision ([`PermissionDecision`]).
 */
export interface PermissionRequestParams {
  /**
   * The call's arguments.
   */
  args: {
    [k: string]: unknown;
  };
  /**
   * What it wants to do, e.g. "Execute in main: cargo test".
   */
  description: string;
  /**
   * The session.
   */
  session_id: string;
  /**
   * The tool, e.g. `execute`.
   */
  tool: string;
  /**
   * The turn.
   */
  turn_id: string;
}
/**
 * `ask_user/request` params: the agent's question, waiting for an [`AskUserResponse`].
 */
export interface AskUserRequestParams {
  /**
   * The question (for an MCP server's form, its message).
   */
  question: string;
  /**
   * An MCP server's form (`elicitation/create`): a flat JSON Schema object whose properties are strings,
   * numbers, integers, booleans or lists of choices. A client that can show a form answers with
   * [`AskUserResponse::content`]; one that answers with text only is asked field by field.
   */
  schema?: {
    [k: string]: unknown;
  };
  /**
   * The session.
   */
  session_id: string;
  /**
   * The turn.
   */
  turn_id: string;
}
/**
 * `mcp/login` params: an MCP server needs an OAuth login (SPEC §18). The client shows `url` to the person (opens it
 * in a browser); the authorization server sends the browser back to the daemon's loopback address, so the
 * browser must run on the daemon's machine. The login waits a while (the runtime's `LOGIN_WAIT`); the server's tools come with the step
 * after it is approved, and runs never wait for it.
 */
export interface McpLoginParams {
  /**
   * The server's name in the agent file.
   */
  server: string;
  /**
   * The session whose runtime connects to the server.
   */
  session_id: string;
  /**
   * The authorization URL to open.
   */
  url: string;
}
/**
 * `initialize`'s result.
 */
export interface InitializeResult {
  /**
   * [`PROTOCOL_VERSION`].
   */
  protocol: number;
  server: ClientInfo1;
}
/**
 * The daemon (`name` `codepilot`, its version).
 */
export interface ClientInfo1 {
  /**
   * The client's name, e.g. `codepilot-vscode`.
   */
  name: string;
  /**
   * Its version.
   */
  version?: string;
}
/**
 * `session/start`'s result.
 */
export interface SessionStartResult {
  /**
   * Set when the session's workspace was restored from its snapshot into the work directory.
   */
  restored?: RestoredWorkspace | null;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * A workspace restored from a snapshot when the session started.
 */
export interface RestoredWorkspace {
  /**
   * Time taken, in milliseconds.
   */
  elapsed_ms: number;
  /**
   * Files restored.
   */
  files: number;
  /**
   * Bytes downloaded.
   */
  size: number;
  /**
   * The snapshot's key.
   */
  snapshot: string;
}
/**
 * `session/resume`'s result.
 */
export interface SessionResumeResult {
  /**
   * Its conversation as stored.
   */
  messages: Message[];
  /**
   * Set when the session's workspace was restored from its snapshot into the work directory.
   */
  restored?: RestoredWorkspace | null;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * One message of the conversation history. The system prompt is not a message: it is rebuilt every step.
 */
export interface Message {
  /**
   * Text content, exactly as sent to the model.
   */
  content: string;
  /**
   * Author.
   */
  role: "user" | "assistant";
}
/**
 * `session/read`'s result.
 */
export interface SessionReadResult {
  /**
   * Its conversation as stored.
   */
  messages: Message[];
  /**
   * The session.
   */
  session_id: string;
}
/**
 * `session/subscribe`'s result.
 */
export interface SubscribeResult {
  /**
   * The `seq` of the session's newest event when the subscription started; replayed events are at most this.
   */
  last_seq: number;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * `session/list`'s result.
 */
export interface SessionListResult {
  /**
   * Open sessions first, then stored ones, newest first.
   */
  sessions: SessionSummary[];
}
/**
 * One session in `session/list`.
 */
export interface SessionSummary {
  /**
   * Which process drives it now, `HOST (pid N)`: this daemon or another sharing the store. None when no one
   * does.
   */
  runs_on?: string | null;
  /**
   * The session.
   */
  session_id: string;
  /**
   * Its latest workspace snapshot, when the daemons keep them.
   */
  snapshot?: string | null;
  /**
   * Whether it works.
   */
  status: "idle" | "running" | "stored";
  /**
   * Its title (from its first task).
   */
  title: string;
  /**
   * Last change, RFC 3339.
   */
  updated_at: string;
}
/**
 * `turn/start`'s result.
 */
export interface TurnStartResult {
  /**
   * The new turn; its events and `turn/completed` carry it.
   */
  turn_id: string;
}
/**
 * `terminal/list`'s result.
 */
export interface TerminalListResult {
  /**
   * The session's terminals.
   */
  terminals: TerminalInfo[];
}
/**
 * One terminal in `terminal/list`.
 */
export interface TerminalInfo {
  /**
   * How a client on the daemon's machine attaches to the terminal's multiplexer directly (raw PTY bytes after a
   * token line and a JSON greeting; see `codepilot attach`). Only sent over the Unix socket and stdio.
   */
  attach?: TerminalAttach | null;
  /**
   * Columns.
   */
  cols: number;
  /**
   * Its name, e.g. `main`.
   */
  name: string;
  /**
   * The shell's process id.
   */
  pid: number;
  /**
   * Rows.
   */
  rows: number;
}
/**
 * Where a local client attaches to a terminal.
 */
export interface TerminalAttach {
  /**
   * The terminal's Unix socket.
   */
  socket: string;
  /**
   * The token to send as the first line.
   */
  token: string;
}
/**
 * `session/checkpoints`' result.
 */
export interface CheckpointsResult {
  /**
   * Its checkpoints, oldest first.
   */
  checkpoints: CheckpointInfo[];
  /**
   * The session.
   */
  session_id: string;
}
/**
 * One checkpoint of a session, as `checkpoints()`, `codepilot checkpoints list` and `session/checkpoints` show it.
 */
export interface CheckpointInfo {
  /**
   * Their total size in bytes.
   */
  bytes: number;
  /**
   * Unix milliseconds.
   */
  created_ms: number;
  /**
   * Files in the work directory it recorded.
   */
  files: number;
  /**
   * What `rewind` takes: `"3"` (before turn 3), `"3.2"` (before step 2 of turn 3) or `"rewind-1"`.
   */
  id: string;
  /**
   * When it was taken.
   */
  kind: "turn" | "step" | "rewind";
  /**
   * Messages in the conversation at that point.
   */
  messages: number;
  /**
   * Files left out because they are over the size cap (`runtime.checkpoint_max_file_mb`), by path.
   */
  skipped?: string[];
  /**
   * The step about to start, for a step checkpoint.
   */
  step?: number | null;
  /**
   * Bytes this checkpoint added to storage (compressed contents not stored before, and its manifest).
   */
  stored_bytes: number;
  /**
   * The turn (task number) it belongs to: the turn about to start, or the last one before a rewind.
   */
  turn: number;
}
/**
 * What a rewind did (and, for a preview, would do): the `rewound` event's data and `rewind`'s result.
 */
export interface RewoundEvent1 {
  /**
   * The checkpoint rewound to.
   */
  checkpoint: string;
  /**
   * Files and links created since the checkpoint, deleted.
   */
  files_deleted: number;
  /**
   * Files the checkpoint has that were left as they are: something not recorded now (a file `.gitignore`
   * excludes now, or one too large to record) stands there, which a rewind could not bring back.
   */
  files_left?: string[];
  /**
   * Files and links written back (changed or deleted since the checkpoint), modes included.
   */
  files_restored: number;
  /**
   * Messages in the conversation afterwards.
   */
  messages: number;
  /**
   * The checkpoint that holds the state before the rewind (`rewind-N`): rewinding to it undoes this one.
   * Empty for a preview.
   */
  saved_as: string;
  /**
   * What a rewind brings back.
   */
  scope: "files" | "conversation" | "both";
}
/**
 * `session/export`'s result.
 */
export interface ExportResult {
  /**
   * Stored events in it.
   */
  events: number;
  /**
   * Files of its starting workspace.
   */
  files: number;
  /**
   * The trajectory, JSON lines ([`TrajectoryLine`](crate::TrajectoryLine)s); what `codepilot replay` reads.
   */
  jsonl: string;
  /**
   * Messages in it.
   */
  messages: number;
  /**
   * The session.
   */
  session_id: string;
}
/**
 * [`TrajectoryLine::Header`].
 */
export interface TrajectoryHeader {
  /**
   * The file it was read from: its folder is the base of the text's relative paths.
   */
  agent_file?: string | null;
  /**
   * The agent's name.
   */
  agent_name: string;
  /**
   * The agent file's YAML text, when the session recorded it.
   */
  agent_yaml?: string | null;
  /**
   * The CodePilot version that exported it.
   */
  codepilot_version: string;
  /**
   * When the session was created (Unix seconds).
   */
  created_at: number;
  /**
   * When it was exported (Unix seconds).
   */
  exported_at: number;
  /**
   * [`TRAJECTORY_FORMAT`].
   */
  format: string;
  /**
   * The session.
   */
  session_id: string;
  /**
   * Tasks run.
   */
  tasks: number;
  /**
   * The work directory the session ran in.
   */
  work_dir: string;
}
/**
 * [`TrajectoryLine::Workspace`].
 */
export interface TrajectoryWorkspace {
  /**
   * The checkpoint the files come from (`"1"`: before the first task, `"3"`: before the third).
   */
  checkpoint: string;
  /**
   * The files (what `.gitignore` leaves), sorted by path.
   */
  files: TrajectoryFile[];
  /**
   * Their tree hash.
   */
  tree_hash: string;
}
/**
 * One file of [`TrajectoryWorkspace`].
 */
export interface TrajectoryFile {
  /**
   * The content, base64 (regular files), unless an earlier workspace line of the file already held it.
   */
  data?: string | null;
  /**
   * Where the link points (symlinks).
   */
  link?: string | null;
  /**
   * Unix permission bits.
   */
  mode: number;
  /**
   * Relative to the work directory, `/`-separated.
   */
  path: string;
  /**
   * The content's sha256 (hex), by which a later workspace line names the same content without repeating it.
   */
  sha256?: string | null;
}
/**
 * [`TrajectoryLine::Message`].
 */
export interface TrajectoryMessage {
  /**
   * Its text as the history keeps it (and as it is sent back to the model).
   */
  content: string;
  /**
   * Its position in the conversation, from 0.
   */
  index: number;
  /**
   * For an answer stored compacted (its payload blocks left out of the history), the answer as the model gave
   * it: what a replay feeds back.
   */
  raw?: string | null;
  /**
   * Its author.
   */
  role: "user" | "assistant";
}
/**
 * [`TrajectoryLine::Event`].
 */
export interface TrajectoryEvent {
  /**
   * The event envelope as it was streamed.
   */
  envelope: {
    [k: string]: unknown;
  };
  /**
   * Its number in the session.
   */
  seq: number;
}
/**
 * [`TrajectoryLine::End`].
 */
export interface TrajectoryEnd {
  /**
   * Messages in the conversation.
   */
  messages: number;
  /**
   * The tree hash of the work directory when it was exported.
   */
  tree_hash: string;
}
/**
 * The answer to `ask_user/request`.
 */
export interface AskUserResponse {
  /**
   * The answer.
   */
  answer?: string | null;
  /**
   * The filled-in form, for a question that came with a `schema` (an MCP server's form): an object of the
   * schema's fields. Absent with no `answer`: the person declined.
   */
  content?: {
    [k: string]: unknown;
  };
}
/**
 * The answer to `mcp/login`.
 */
export interface McpLoginResponse {
  /**
   * Whether the client opened the URL (or showed it).
   */
  opened?: boolean;
}
/**
 * The envelope of every message.
 */
export interface RawMessage {
  /**
   * A failed response's error.
   */
  error?: RpcError1 | null;
  /**
   * Requests and responses.
   */
  id?: RequestId | null;
  /**
   * Always `"2.0"`.
   */
  jsonrpc: string;
  /**
   * Requests and notifications.
   */
  method?: string | null;
  /**
   * The method's params.
   */
  params?: {
    [k: string]: unknown;
  };
  /**
   * A successful response's result.
   */
  result?: {
    [k: string]: unknown;
  };
}
/**
 * A JSON-RPC error object.
 */
export interface RpcError1 {
  /**
   * One of [`codes`].
   */
  code: number;
  /**
   * More detail, when there is any.
   */
  data?: {
    [k: string]: unknown;
  };
  /**
   * What went wrong and what to do.
   */
  message: string;
}
