// A client of the CodePilot daemon (`codepilot serve`, SPEC §13) over its Unix socket: JSON-RPC 2.0, one message
// per line. No `vscode` import, so it runs (and is tested) under plain node.
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import type {
  ExportResult,
  AskUserRequestParams,
  AskUserResponse,
  CheckpointInfo,
  CheckpointsResult,
  EventEnvelope,
  InitializeResult,
  McpLoginParams,
  McpLoginResponse,
  PermissionRequestParams,
  RequestId,
  RequestResolved,
  RewindParams,
  RewoundEvent,
  RpcError,
  SessionListResult,
  SessionReadResult,
  SessionResumeParams,
  SessionResumeResult,
  SessionStartParams,
  SessionStartResult,
  Spend,
  SubscribeResult,
  SubscriptionLagged,
  TerminalAttach,
  TerminalListResult,
  TurnCompleted,
  TurnFailed,
  TurnParams,
  TurnStartResult,
} from "./protocol";

/** The result type of each client method. */
export interface Methods {
  initialize: [{ client: { name: string; version: string } }, InitializeResult];
  "session/start": [SessionStartParams, SessionStartResult];
  "session/resume": [SessionResumeParams, SessionResumeResult];
  "session/read": [{ session_id: string }, SessionReadResult];
  "session/subscribe": [{ session_id: string; after_seq?: number }, SubscribeResult];
  "session/list": [Record<string, never>, SessionListResult];
  "session/close": [{ session_id: string }, Record<string, never>];
  "session/checkpoints": [{ session_id: string }, CheckpointsResult];
  "session/rewind": [RewindParams, RewoundEvent];
  "session/export": [{ session_id: string }, ExportResult];
  "turn/start": [TurnParams, TurnStartResult];
  "turn/steer": [{ session_id: string; text: string }, Record<string, never>];
  "turn/interrupt": [{ session_id: string }, Record<string, never>];
  "terminal/list": [{ session_id: string }, TerminalListResult];
}

/** What the daemon announces. */
export type Notification =
  | { method: "event"; params: EventEnvelope }
  | { method: "turn/completed"; params: TurnCompleted }
  | { method: "turn/failed"; params: TurnFailed }
  | { method: "serverRequest/resolved"; params: RequestResolved }
  | { method: "subscription/lagged"; params: SubscriptionLagged };

/** What the daemon asks. The handler's result is the answer. */
export type ServerRequest =
  | { id: RequestId; method: "permission/request"; params: PermissionRequestParams }
  | { id: RequestId; method: "ask_user/request"; params: AskUserRequestParams }
  | { id: RequestId; method: "mcp/login"; params: McpLoginParams };

/** The answers to server requests. */
export type PermissionAnswer = { decision: "allow" } | { decision: "deny"; reason?: string | null };
export type RequestHandler = (
  request: ServerRequest,
) => Promise<PermissionAnswer | AskUserResponse | McpLoginResponse>;

/** One field of an MCP server's form (`ask_user/request` with a `schema`), as a client asks it. */
export interface FormField {
  name: string;
  title: string;
  description?: string;
  type: "string" | "number" | "integer" | "boolean" | "array";
  required: boolean;
  /** `[value, label]` pairs for a choice (or, for an array, the choices to pick several of). */
  choices?: [string, string][];
  default?: unknown;
}

/** The fields of a form's flat JSON Schema, in order. */
export function formFields(schema: { [k: string]: unknown }): FormField[] {
  const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(props).map(([name, field]) => {
    const type = (field.type ?? "string") as FormField["type"];
    const source = type === "array" ? ((field.items ?? {}) as Record<string, unknown>) : field;
    return {
      name,
      title: typeof field.title === "string" ? field.title : name,
      description: typeof field.description === "string" ? field.description : undefined,
      type,
      required: required.has(name),
      choices: fieldChoices(source),
      default: field.default,
    };
  });
}

function fieldChoices(field: Record<string, unknown>): [string, string][] | undefined {
  if (Array.isArray(field.enum)) {
    const names = Array.isArray(field.enumNames) ? (field.enumNames as string[]) : [];
    return field.enum.map((v, i) => [String(v), names[i] ?? String(v)]);
  }
  const list = (field.oneOf ?? field.anyOf) as Array<Record<string, unknown>> | undefined;
  if (!Array.isArray(list)) return undefined;
  return list.filter((o) => o.const !== undefined).map((o) => [String(o.const), String(o.title ?? o.const)]);
}

/** A typed value from what the person typed: `undefined` for an empty answer, `null` when it does not fit. */
export function parseField(field: FormField, text: string): unknown {
  const t = text.trim();
  if (t === "") return undefined;
  switch (field.type) {
    case "integer":
      return /^-?\d+$/.test(t) ? Number(t) : null;
    case "number":
      return Number.isFinite(Number(t)) ? Number(t) : null;
    case "boolean":
      return /^(y|yes|true)$/i.test(t) ? true : /^(n|no|false)$/i.test(t) ? false : null;
    case "array":
      return t.split(",").map((v) => v.trim()).filter((v) => v !== "");
    default:
      return t;
  }
}

/** A JSON-RPC error from the daemon. */
export class DaemonError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "DaemonError";
  }
}

/** The extension's version, from its package.json (the one place it is written). */
export const VERSION: string = (require("../package.json") as { version: string }).version;

/** The daemon's default socket: `$XDG_RUNTIME_DIR/codepilot/runtime.sock`, else `$CODEPILOT_HOME/runtime.sock`. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "codepilot", "runtime.sock");
  const home = env.CODEPILOT_HOME || path.join(os.homedir(), ".codepilot");
  return path.join(home, "runtime.sock");
}

/** One connection to the daemon. */
export class DaemonClient {
  private nextId = 1;
  private buffer = "";
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners: Array<(n: Notification) => void> = [];
  private requestHandler: RequestHandler | undefined;
  private closedError: Error | undefined;
  private readonly closeListeners: Array<(e: Error | undefined) => void> = [];

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (e) => this.onClose(e));
    socket.on("close", () => this.onClose(undefined));
  }

  /** Connects to `socketPath` and calls `initialize`. */
  static async connect(socketPath: string, client = { name: "codepilot-vscode", version: VERSION }): Promise<DaemonClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ path: socketPath });
      s.once("connect", () => resolve(s));
      s.once("error", (e) =>
        reject(new Error(`cannot reach the CodePilot daemon at ${socketPath} (${e.message}); start it with \`codepilot serve\``)),
      );
    });
    const c = new DaemonClient(socket);
    await c.call("initialize", { client });
    return c;
  }

  /** Calls `method`; rejects with a {@link DaemonError} when the daemon answers with an error. */
  call<M extends keyof Methods>(method: M, params: Methods[M][0]): Promise<Methods[M][1]> {
    if (this.closedError !== undefined || this.socket.destroyed) {
      return Promise.reject(this.closedError ?? new Error("the connection to the daemon is closed"));
    }
    const id = this.nextId++;
    const promise = new Promise<unknown>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.send({ jsonrpc: "2.0", id, method, params });
    return promise as Promise<Methods[M][1]>;
  }

  /** Calls `listener` with every notification. */
  onNotification(listener: (n: Notification) => void): void {
    this.listeners.push(listener);
  }

  /** Answers the daemon's permission and ask-user requests with `handler`. */
  onRequest(handler: RequestHandler): void {
    this.requestHandler = handler;
  }

  /** Calls `listener` once the connection is gone (with the error, if it broke). */
  onClose(listener: (e: Error | undefined) => void): void;
  onClose(e: Error | undefined): void;
  onClose(arg: ((e: Error | undefined) => void) | Error | undefined): void {
    if (typeof arg === "function") {
      this.closeListeners.push(arg);
      return;
    }
    if (this.closedError !== undefined) return;
    this.closedError = arg ?? new Error("the daemon closed the connection");
    for (const w of this.waiting.values()) w.reject(this.closedError);
    this.waiting.clear();
    for (const l of this.closeListeners) l(arg);
  }

  close(): void {
    this.socket.end();
  }

  private send(message: unknown): void {
    this.socket.write(JSON.stringify(message) + "\n");
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 1);
      if (line.trim() !== "") this.onMessage(JSON.parse(line));
    }
  }

  private onMessage(m: { id?: RequestId; method?: string; params?: unknown; result?: unknown; error?: RpcError }): void {
    if (m.method === undefined) {
      const waiter = typeof m.id === "number" ? this.waiting.get(m.id) : undefined;
      if (waiter === undefined || typeof m.id !== "number") return;
      this.waiting.delete(m.id);
      if (m.error) waiter.reject(new DaemonError(m.error.code, m.error.message));
      else waiter.resolve(m.result);
      return;
    }
    if (m.id !== undefined) {
      const request = m as ServerRequest;
      const handler = this.requestHandler;
      const answer = handler
        ? handler(request)
        : Promise.resolve(
            request.method === "permission/request"
              ? { decision: "deny" as const, reason: "the client has no permission handler" }
              : request.method === "mcp/login"
                ? { opened: false }
                : { answer: null },
          );
      answer.then(
        (result) => this.send({ jsonrpc: "2.0", id: m.id, result }),
        (e: Error) => this.send({ jsonrpc: "2.0", id: m.id, error: { code: -32603, message: String(e) } }),
      );
      return;
    }
    for (const l of this.listeners) l(m as Notification);
  }
}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

/** How a checkpoint is named to a person: "before turn 3", "before step 2 of turn 3", "rewind-1 (undo a rewind)". */
export function checkpointLabel(c: CheckpointInfo): string {
  if (c.kind === "rewind") return `${c.id} (undo a rewind)`;
  if (c.kind === "step") return `before step ${c.step} of turn ${c.turn}`;
  return `before turn ${c.turn}`;
}

/** What a checkpoint holds: its conversation's length, its files, when it was taken. */
export function checkpointDetail(c: CheckpointInfo): string {
  const skipped = c.skipped?.length ? ` (${count(c.skipped.length, "file")} over the size cap left out)` : "";
  return `${count(c.messages, "message")} · ${count(c.files, "file")}${skipped} · ${new Date(c.created_ms).toLocaleString()}`;
}

/** What a rewind's preview (`dry_run`) says it would change, for a confirmation. */
export function rewindChanges(r: RewoundEvent): string {
  const parts: string[] = [];
  if (r.scope !== "conversation") {
    parts.push(`restores ${count(r.files_restored, "file")}, deletes ${count(r.files_deleted, "file")}`);
    if (r.files_left?.length) parts.push(`leaves ${r.files_left.join(", ")} as they are (not recorded now)`);
  }
  if (r.scope !== "files") parts.push(`the conversation goes back to ${count(r.messages, "message")}`);
  return parts.join("; ");
}

/** A line for a sub-agent's event (SPEC §20): its spawn, question and end, or (`agent_id` set) what the worker itself
 * does; `undefined` for what a timeline leaves out. */
export function subagentLine(envelope: EventEnvelope): string | undefined {
  const e = envelope.event;
  if (envelope.agent_id != null) {
    if (e.type === "tool_call") return `    [#${envelope.agent_id}] ⚙ ${e.label}`;
    if (e.type === "runtime_error") return `    [#${envelope.agent_id}] ! ${e.message.split("\n")[0]}`;
    return undefined;
  }
  switch (e.type) {
    case "subagent_spawn":
      return `⇢ sub-agent #${e.agent_id} (${e.model}): ${e.task_summary}`;
    case "subagent_message":
      return `✉ sub-agent #${e.agent_id} asks: ${e.message}`;
    case "subagent_finish":
      return `⇠ sub-agent #${e.agent_id} ${e.status} in ${e.elapsed_seconds.toFixed(1)} s: ${e.error ?? e.summary}`;
    default:
      return undefined;
  }
}

/** `value` in the unit of a limit (SPEC §21): tokens, US dollars or seconds. */
export function limitAmount(limit: string, value: number): string {
  if (limit === "max_cost_usd") return "$" + value.toFixed(4);
  if (limit === "max_wall_s") return value.toFixed(1) + " s";
  return Math.round(value).toLocaleString("en") + " tokens";
}

/** What a turn spent, from its `turn/completed`: `spent 12,345 tokens · $0.0123 · 4.2 s`. */
export function spendSummary(s: Spend): string {
  const t = s.tokens;
  const tokens = (t.input_tokens ?? 0) + (t.output_tokens ?? 0) + (t.cache_read_tokens ?? 0) + (t.cache_write_tokens ?? 0);
  const cost = s.cost_usd == null ? "" : ` · $${s.cost_usd.toFixed(4)}`;
  return `spent ${tokens.toLocaleString("en")} tokens${s.estimated ? " (estimated)" : ""}${cost} · ${(s.wall_s ?? 0).toFixed(1)} s`;
}

/** Why a turn stopped short, for a limit or an output schema never matched; `undefined` for the other outcomes. */
export function stoppedSummary(outcome: TurnCompleted["outcome"]): string | undefined {
  switch (outcome.status) {
    case "limit_exceeded":
      return `stopped: the ${outcome.scope}'s limit ${outcome.limit} was reached (${limitAmount(outcome.limit, outcome.spent)} of ${limitAmount(outcome.limit, outcome.max)})`;
    case "invalid_output":
      return "the result never matched the output schema: " + outcome.errors.join("; ");
    default:
      return undefined;
  }
}

/** What a rewind (its result, or its `rewound` event) did, and the checkpoint that undoes it. */
export function rewoundSummary(r: RewoundEvent): string {
  const parts: string[] = [];
  if (r.scope !== "conversation") parts.push(`${count(r.files_restored, "file")} restored, ${r.files_deleted} deleted`);
  if (r.files_left?.length) parts.push(`${r.files_left.join(", ")} left as they are`);
  if (r.scope !== "files") parts.push(`conversation back to ${count(r.messages, "message")}`);
  return `rewound to checkpoint ${r.checkpoint}: ${parts.join(", ")} · undo: rewind to ${r.saved_as}`;
}

/** A terminal attached through its multiplexer: raw PTY bytes both ways. */
export interface TerminalConnection {
  pid: number;
  cols: number;
  rows: number;
  onData(listener: (data: Buffer) => void): void;
  onClose(listener: () => void): void;
  write(data: string | Buffer): void;
  close(): void;
}

/** Attaches to a terminal (from `terminal/list`'s `attach`, given to local clients only). */
export async function attachTerminal(attach: TerminalAttach): Promise<TerminalConnection> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection({ path: attach.socket });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
  socket.write(attach.token + "\n");
  // The greeting is one JSON line; everything after it is terminal output.
  const { hello, rest } = await new Promise<{ hello: { pid: number; cols: number; rows: number }; rest: Buffer }>(
    (resolve, reject) => {
      let pending = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        const nl = pending.indexOf(10);
        if (nl < 0) return;
        socket.off("data", onData);
        try {
          const hello = JSON.parse(pending.subarray(0, nl).toString("utf8"));
          if (hello.error) reject(new Error(`the terminal refused: ${hello.error}`));
          else resolve({ hello, rest: pending.subarray(nl + 1) });
        } catch (e) {
          reject(e as Error);
        }
      };
      socket.on("data", onData);
      socket.once("close", () => reject(new Error("the terminal closed during the handshake")));
    },
  );
  const dataListeners: Array<(d: Buffer) => void> = [];
  let early: Buffer | undefined = rest.length > 0 ? rest : undefined;
  socket.on("data", (d: Buffer) => dataListeners.forEach((l) => l(d)));
  return {
    ...hello,
    onData(listener) {
      dataListeners.push(listener);
      if (early !== undefined) {
        listener(early);
        early = undefined;
      }
    },
    onClose(listener) {
      socket.on("close", listener);
    },
    write(data) {
      socket.write(data);
    },
    close() {
      socket.end();
    },
  };
}
