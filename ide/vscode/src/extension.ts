// The CodePilot extension: a timeline view, permission prompts as notifications, and the agent's terminals as
// pseudoterminals, all over one connection to the daemon (see ./client.ts).
import * as path from "node:path";
import * as vscode from "vscode";
import {
  DaemonClient,
  DaemonError,
  attachTerminal,
  checkpointDetail,
  checkpointLabel,
  defaultSocketPath,
  formFields,
  parseField,
  limitAmount,
  rewindChanges,
  rewoundSummary,
  spendSummary,
  stoppedSummary,
  subagentLine,
  type Notification,
  type ServerRequest,
} from "./client";
import type { Message, RewindScope, SessionResumeResult } from "./protocol";

let client: DaemonClient | undefined;
let session: string | undefined;
let running = false;
let timeline: TimelineView | undefined;

/** The webview that shows the session's events. */
class TimelineView implements vscode.WebviewViewProvider {
  private view: vscode.WebviewView | undefined;
  private readonly backlog: unknown[] = [];

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    view.webview.options = { enableScripts: true };
    view.webview.html = PAGE;
    view.webview.onDidReceiveMessage((m: { task?: string }) => {
      if (m.task) void runTask(m.task);
    });
    for (const item of this.backlog.splice(0)) void view.webview.postMessage(item);
  }

  post(item: unknown): void {
    if (this.view) void this.view.webview.postMessage(item);
    else this.backlog.push(item);
  }
}

const PAGE = `<!doctype html><html><body style="font-family: var(--vscode-font-family); font-size: 12px">
<div id="t" style="white-space: pre-wrap"></div>
<form id="f" style="display:flex;gap:4px;margin-top:8px"><input id="i" style="flex:1" placeholder="Task or message"><button>Send</button></form>
<script>
const vscode = acquireVsCodeApi();
const t = document.getElementById("t");
let stream = null;
function add(text, style) { const d = document.createElement("div"); d.textContent = text; d.style.cssText = style || ""; t.appendChild(d); return d; }
window.addEventListener("message", (m) => {
  const e = m.data;
  if (e.kind === "text") { if (!stream) stream = add(""); stream.textContent += e.text; return; }
  stream = null;
  add(e.text, e.style);
});
document.getElementById("f").onsubmit = (ev) => { ev.preventDefault(); const i = document.getElementById("i"); if (i.value) vscode.postMessage({ task: i.value }); i.value = ""; };
</script></body></html>`;

function socketPath(): string {
  const configured = vscode.workspace.getConfiguration("codepilot").get<string>("socket");
  return configured && configured.trim() !== "" ? configured : defaultSocketPath();
}

/** The agent file and work directory of this workspace's sessions; `undefined` without a folder. */
function workspaceAgent(): { agent_file: string; work_dir: string } | undefined {
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (!folder) return undefined;
  const agentFile = vscode.workspace.getConfiguration("codepilot").get<string>("agentFile") || "agent.yaml";
  return { agent_file: path.resolve(folder.uri.fsPath, agentFile), work_dir: folder.uri.fsPath };
}

/** Opens a stored session in the daemon (or finds it open there) and subscribes this connection: with the agent and
 * work directory the store recorded for it, or — for a session no daemon recorded an agent for (the CLI's) — with
 * this workspace's agent file, in this workspace's folder. */
async function resume(c: DaemonClient, sessionId: string): Promise<SessionResumeResult> {
  try {
    return await c.call("session/resume", { session_id: sessionId });
  } catch (e) {
    const agent = workspaceAgent();
    if (!(e instanceof DaemonError && e.code === -32602) || !agent) throw e;
    return c.call("session/resume", { session_id: sessionId, ...agent });
  }
}

/** The connection to the daemon. A new one (the daemon restarted, or the old connection broke) resumes the
 * current session there first: it is opened again if the daemon lacks it, and this connection subscribed. */
async function connected(): Promise<DaemonClient> {
  if (client) return client;
  const c = await DaemonClient.connect(socketPath());
  c.onNotification(onNotification);
  c.onRequest(onRequest);
  c.onClose(() => {
    if (client === c) client = undefined;
    running = false;
  });
  if (session) {
    try {
      await resume(c, session);
    } catch (e) {
      if (!(e instanceof DaemonError && e.code === 1001)) {
        c.close();
        throw e;
      }
      timeline?.post({ text: `session ${session} is gone from the daemon; the next task starts a new one`, style: "opacity:0.6" });
      session = undefined;
    }
  }
  client = c;
  return c;
}

/** Shows a resumed session's conversation in the timeline. */
function showHistory(messages: Message[]): void {
  for (const m of messages) {
    if (m.role === "user") timeline?.post({ text: "▶ " + m.content, style: "font-weight:bold" });
    else timeline?.post({ text: m.content, style: "opacity:0.8" });
  }
}

function onNotification(n: Notification): void {
  if (n.method === "event" && n.params.session_id === session) {
    const worker = subagentLine(n.params);
    if (worker) timeline?.post({ text: worker, style: "color: var(--vscode-textLink-foreground)" });
    // A worker's own events are summarised by the line above, never taken for the session's.
    if (n.params.agent_id != null) return;
    const e = n.params.event;
    switch (e.type) {
      case "stream":
        if (e.kind === "text") timeline?.post({ kind: "text", text: e.text });
        break;
      case "start":
        running = true;
        timeline?.post({ text: "▶ " + e.task, style: "font-weight:bold" });
        break;
      case "tool_call":
        timeline?.post({ text: "⚙ " + e.label, style: "color: var(--vscode-textLink-foreground)" });
        break;
      case "tool_result":
        timeline?.post({ text: e.result, style: "opacity:0.8;max-height:10em;overflow:auto" });
        break;
      case "finish":
        // A limit or an output schema never matched also ends a turn: not a success.
        if (e.reason === "limit_exceeded" || e.reason === "invalid_output") {
          timeline?.post({ text: "✖ " + e.summary, style: "color: var(--vscode-errorForeground)" });
        } else {
          timeline?.post({ text: "✔ " + e.summary, style: "font-weight:bold" });
        }
        break;
      case "runtime_error":
        timeline?.post({ text: "✖ " + e.message, style: "color: var(--vscode-errorForeground)" });
        break;
      case "workspace_saved":
        timeline?.post({ text: `workspace saved: ${e.files} files`, style: "opacity:0.6" });
        break;
      case "resource_limit":
        timeline?.post({
          text: "⚠ " + (e.terminal ? `terminal ${e.terminal}: ` : "") + e.message,
          style: "color: var(--vscode-editorWarning-foreground)",
        });
        void vscode.window.showWarningMessage(`CodePilot: ${e.kind.replace("_", " ")} limit (${e.limit}) reached`);
        break;
      case "rewound":
        timeline?.post({ text: "↶ " + rewoundSummary(e), style: "color: var(--vscode-textLink-foreground)" });
        break;
      case "limit_warning":
        timeline?.post({
          text: `⚠ ${e.scope} limit ${e.limit}: ${limitAmount(e.limit, e.spent)} of ${limitAmount(e.limit, e.max)} spent`,
          style: "color: var(--vscode-editorWarning-foreground)",
        });
        break;
      default:
        break;
    }
  } else if ((n.method === "turn/completed" || n.method === "turn/failed") && n.params.session_id === session) {
    running = false;
    if (n.method === "turn/failed") {
      void vscode.window.showErrorMessage(`CodePilot: ${n.params.error.message}`);
    } else {
      const stopped = stoppedSummary(n.params.outcome);
      if (stopped) void vscode.window.showWarningMessage(`CodePilot: ${stopped}`);
      if (n.params.spend) timeline?.post({ text: spendSummary(n.params.spend), style: "opacity:0.6" });
    }
  }
}

async function onRequest(request: ServerRequest) {
  if (request.method === "permission/request") {
    const choice = await vscode.window.showWarningMessage(
      `CodePilot wants to ${request.params.description}`,
      { modal: false },
      "Allow",
      "Deny",
    );
    return choice === "Allow" ? { decision: "allow" as const } : { decision: "deny" as const, reason: null };
  }
  if (request.method === "mcp/login") {
    const { server, url } = request.params;
    const choice = await vscode.window.showInformationMessage(
      `CodePilot: MCP server ${server} needs a login (the browser returns to the daemon's machine).`,
      "Open",
    );
    if (choice !== "Open" || !/^https?:\/\//.test(url)) return { opened: false };
    return { opened: await vscode.env.openExternal(vscode.Uri.parse(url, true)) };
  }
  if (request.params.schema) return fillForm(request.params.question, request.params.schema);
  const answer = await vscode.window.showInputBox({ prompt: request.params.question, ignoreFocusOut: true });
  return { answer: answer ?? null };
}

/** An MCP server's form, one field at a time (VS Code has no form widget); Escape declines the whole form. */
async function fillForm(message: string, schema: { [k: string]: unknown }) {
  const content: Record<string, unknown> = {};
  for (const field of formFields(schema)) {
    const title = `${message} — ${field.title}${field.required ? "" : " (optional)"}`;
    if (field.choices || field.type === "boolean") {
      const items = (field.choices ?? [["true", "Yes"], ["false", "No"]]).map(([value, label]) => ({ label, value }));
      const picked = await vscode.window.showQuickPick(items, {
        title,
        placeHolder: field.description,
        canPickMany: field.type === "array",
        ignoreFocusOut: true,
      });
      if (picked === undefined) return {};
      const values = (Array.isArray(picked) ? picked : [picked]).map((p) => p.value);
      content[field.name] =
        field.type === "array" ? values : field.type === "boolean" ? values[0] === "true" : values[0];
      continue;
    }
    const text = await vscode.window.showInputBox({
      title,
      prompt: field.description,
      value: field.default === undefined ? "" : String(field.default),
      ignoreFocusOut: true,
      validateInput: (t) => {
        const v = parseField(field, t);
        if (v === null) return `a ${field.type}`;
        return v === undefined && field.required ? "required" : undefined;
      },
    });
    if (text === undefined) return {};
    const value = parseField(field, text);
    if (value !== undefined && value !== null) content[field.name] = value;
  }
  return { content };
}

async function newSession(): Promise<void> {
  const agent = workspaceAgent();
  if (!agent) {
    void vscode.window.showErrorMessage("CodePilot: open a folder with an agent.yaml first");
    return;
  }
  try {
    const c = await connected();
    const started = await c.call("session/start", agent);
    session = started.session_id;
    timeline?.post({ text: `session ${session}`, style: "opacity:0.6" });
  } catch (e) {
    void vscode.window.showErrorMessage(`CodePilot: ${(e as Error).message}`);
  }
}

/** Picks a stored session and resumes it in the daemon (see `resume`). */
async function resumeSession(): Promise<void> {
  try {
    const c = await connected();
    const { sessions } = await c.call("session/list", {});
    const picked = await vscode.window.showQuickPick(
      sessions.map((s) => ({ label: s.title || s.session_id, description: `${s.status} · ${s.updated_at}`, id: s.session_id })),
      { placeHolder: "A session to resume" },
    );
    if (!picked) return;
    const resumed = await resume(c, picked.id);
    session = resumed.session_id;
    running = sessions.find((s) => s.session_id === session)?.status === "running";
    timeline?.post({ text: `session ${session}`, style: "opacity:0.6" });
    showHistory(resumed.messages);
    if (resumed.restored) {
      timeline?.post({ text: `workspace restored: ${resumed.restored.files} files`, style: "opacity:0.6" });
    }
  } catch (e) {
    void vscode.window.showErrorMessage(`CodePilot: ${(e as Error).message}`);
  }
}

async function runTask(text?: string): Promise<void> {
  if (!session) await newSession();
  if (!session) return;
  const task = text ?? (await vscode.window.showInputBox({ prompt: running ? "A message for the agent" : "A task" }));
  if (!task) return;
  try {
    const c = await connected();
    if (running) await c.call("turn/steer", { session_id: session, text: task });
    else await c.call("turn/start", { session_id: session, text: task });
  } catch (e) {
    void vscode.window.showErrorMessage(`CodePilot: ${(e as Error).message}`);
  }
}

/** Rewinds the current session's files, conversation or both to one of its checkpoints (SPEC §19): picks the
 * checkpoint (newest first) and what to rewind, previews it (`dry_run`) and asks in a modal what it changes. The
 * state it replaces is kept as a checkpoint of its own (`rewind-N`), so this command undoes it too. */
async function rewindSession(): Promise<void> {
  if (!session) {
    void vscode.window.showErrorMessage("CodePilot: start or resume a session first");
    return;
  }
  const sessionId = session;
  try {
    const c = await connected();
    const { checkpoints } = await c.call("session/checkpoints", { session_id: sessionId });
    if (checkpoints.length === 0) {
      void vscode.window.showInformationMessage("CodePilot: the session has no checkpoints yet");
      return;
    }
    const picked = await vscode.window.showQuickPick(
      checkpoints
        .slice()
        .reverse()
        .map((cp) => ({ label: checkpointLabel(cp), description: cp.id, detail: checkpointDetail(cp), id: cp.id })),
      { placeHolder: "A checkpoint to rewind to", matchOnDetail: true },
    );
    if (!picked) return;
    const scopes: Array<{ label: string; scope: RewindScope }> = [
      { label: "Files and conversation", scope: "both" },
      { label: "Files only", scope: "files" },
      { label: "Conversation only", scope: "conversation" },
    ];
    const how = await vscode.window.showQuickPick(scopes, { placeHolder: `What to rewind to ${picked.label}` });
    if (!how) return;
    const rewind = { session_id: sessionId, checkpoint: picked.id, scope: how.scope };
    const preview = await c.call("session/rewind", { ...rewind, dry_run: true });
    const choice = await vscode.window.showWarningMessage(
      `Rewind to ${picked.label}?`,
      {
        modal: true,
        detail: `This ${rewindChanges(preview)}. The current state is kept as a checkpoint: rewinding to it undoes this.`,
      },
      "Rewind",
    );
    if (choice !== "Rewind") return;
    const done = await c.call("session/rewind", rewind);
    void vscode.window.showInformationMessage(`CodePilot: ${rewoundSummary(done)}`);
  } catch (e) {
    void vscode.window.showErrorMessage(`CodePilot: ${(e as Error).message}`);
  }
}

async function openTerminals(): Promise<void> {
  if (!session) {
    void vscode.window.showErrorMessage("CodePilot: start a session first");
    return;
  }
  const c = await connected();
  const { terminals } = await c.call("terminal/list", { session_id: session });
  for (const info of terminals) {
    if (!info.attach) continue;
    const attach = info.attach;
    const write = new vscode.EventEmitter<string>();
    const close = new vscode.EventEmitter<void>();
    const decoder = new TextDecoder("utf-8");
    let connection: Awaited<ReturnType<typeof attachTerminal>> | undefined;
    const pty: vscode.Pseudoterminal = {
      onDidWrite: write.event,
      onDidClose: close.event,
      open: () => {
        attachTerminal(attach).then(
          (conn) => {
            connection = conn;
            conn.onData((d) => write.fire(decoder.decode(d, { stream: true })));
            conn.onClose(() => close.fire());
          },
          (e: Error) => {
            write.fire(`CodePilot: cannot attach: ${e.message}\r\n`);
            close.fire();
          },
        );
      },
      close: () => connection?.close(),
      handleInput: (data) => connection?.write(data),
    };
    vscode.window.createTerminal({ name: `CodePilot: ${info.name}`, pty }).show();
  }
}

export function activate(context: vscode.ExtensionContext): void {
  timeline = new TimelineView();
  context.subscriptions.push(
    vscode.window.registerWebviewViewProvider("codepilot.timeline", timeline),
    vscode.commands.registerCommand("codepilot.newSession", newSession),
    vscode.commands.registerCommand("codepilot.resumeSession", resumeSession),
    vscode.commands.registerCommand("codepilot.runTask", () => runTask()),
    vscode.commands.registerCommand("codepilot.interrupt", async () => {
      if (session) await (await connected()).call("turn/interrupt", { session_id: session });
    }),
    vscode.commands.registerCommand("codepilot.openTerminals", openTerminals),
    vscode.commands.registerCommand("codepilot.rewind", rewindSession),
  );
}

export function deactivate(): void {
  client?.close();
}
