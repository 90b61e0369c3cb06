// The extension's client module against a real `codepilot serve` (CODEPILOT_BIN) and the scripted model server
// (CODEPILOT_TESTKIT).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createInterface } from "node:readline";
import {
  DaemonClient,
  DaemonError,
  VERSION,
  attachTerminal,
  checkpointDetail,
  checkpointLabel,
  defaultSocketPath,
  formFields,
  parseField,
  rewindChanges,
  rewoundSummary,
  spendSummary,
  stoppedSummary,
  subagentLine,
  type Notification,
} from "../client";
import type { EventEnvelope, TurnCompleted } from "../protocol";

const bin = process.env.CODEPILOT_BIN ?? "";
const testkit = process.env.CODEPILOT_TESTKIT ?? "";

function firstLine(child: ChildProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const m = line.match(pattern);
      if (m) resolve(m);
    });
    child.on("exit", (code) => reject(new Error(`exited with ${code}`)));
  });
}

async function setUp(t: { after(fn: () => void): void }) {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const dir = mkdtempSync(path.join("/tmp", "cpx-"));
  mkdirSync(path.join(dir, "work"));
  const model = spawn(testkit, [], { stdio: ["pipe", "pipe", "inherit"] });
  t.after(() => model.kill());
  const modelUrl = (await firstLine(model, /^(http:\/\/\S+)$/))[1];
  const socket = path.join(dir, "d", "rt.sock");
  // A daemon on the socket, with its sessions in the SQLite database of one home; the returned function stops it
  // (SIGTERM: its sessions are closed and their leases released).
  const startDaemon = async () => {
    const daemon = spawn(bin, ["serve", "--listen", `unix://${socket}`], {
      env: { ...process.env, CODEPILOT_HOME: path.join(dir, "home") },
      stdio: ["ignore", "ignore", "inherit"],
    });
    t.after(() => daemon.kill());
    for (let i = 0; i < 500 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 10));
    return () =>
      new Promise<void>((resolve) => {
        daemon.once("exit", () => {
          rmSync(socket, { force: true });
          resolve();
        });
        daemon.kill("SIGTERM");
      });
  };
  const stopDaemon = await startDaemon();
  const agent = (extra = "") =>
    [
      "agent:",
      "  name: Extension",
      "  model:",
      "    provider: openai-compatible",
      "    name: test-model",
      `    base_url: ${modelUrl}/v1`,
      "  runtime:",
      `    work_dir: ${JSON.stringify(path.join(dir, "work"))}`,
      "    max_steps: 6",
      extra,
    ].join("\n");
  const push = async (turns: unknown[]) => {
    const res = await fetch(`${modelUrl}/_testkit/turns`, { method: "POST", body: JSON.stringify(turns) });
    assert.equal(res.status, 200);
  };
  return { dir, socket, agent, push, startDaemon, stopDaemon };
}

function until(c: DaemonClient, done: (n: Notification) => boolean): Promise<Notification[]> {
  const seen: Notification[] = [];
  return new Promise((resolve) =>
    c.onNotification((n) => {
      seen.push(n);
      if (done(n)) resolve(seen);
    }),
  );
}

test("a turn stopped by a limit or an output schema says why", async (t) => {
  const { socket, agent, push } = await setUp(t);
  await push([
    { answer: '```completion\n{"files": "x"}\n```' },
    { answer: '```completion\n{"files": "y"}\n```' },
    { answer: "```codepilot\nprint(1)\n```", input_tokens: 30000 },
  ]);
  const c = await DaemonClient.connect(socket, { name: "test", version: "1" });
  t.after(() => c.close());
  const { session_id } = await c.call("session/start", { agent: agent("    output_retries: 1\n") });
  const schema = { type: "object", properties: { files: { type: "integer" } } };
  let completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "count", output_schema: schema });
  let end = (await completed).at(-1)!.params as TurnCompleted;
  assert.equal(end.outcome.status, "invalid_output");
  assert.match(stoppedSummary(end.outcome)!, /^the result never matched the output schema: at \/files: "y" is not of type "integer"/);

  completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "loop", limits: { max_total_tokens: 34000 } });
  end = (await completed).at(-1)!.params as TurnCompleted;
  assert.equal(
    stoppedSummary(end.outcome),
    "stopped: the run's limit max_total_tokens was reached (30,005 tokens of 34,000 tokens)",
  );
});

test("a worker's events arrive with its agent_id and read as lines of their own", async (t) => {
  const { socket, agent, push } = await setUp(t);
  await push([
    { answer: '```codepilot\na = spawn_subagent("list the files")\nprint(await_subagent(a))\n```' },
    { answer: '```codepilot\nprint(find("*", scope="files"))\n```' },
    { answer: "```completion\nno files\n```" },
    { answer: "```completion\ndelegated\n```" },
  ]);
  const c = await DaemonClient.connect(socket, { name: "test", version: "1" });
  t.after(() => c.close());
  const { session_id } = await c.call("session/start", { agent: agent() });
  const completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "delegate" });
  const envelopes = (await completed).filter((n) => n.method === "event").map((n) => n.params as EventEnvelope);
  const lines = envelopes.map(subagentLine).filter((l) => l !== undefined);
  assert.equal(lines[0], "⇢ sub-agent #1 (test-model): list the files");
  assert.match(lines[1], /^    \[#1\] ⚙ /);
  assert.match(lines.at(-1)!, /^⇠ sub-agent #1 completed in \d+\.\d s: no files$/);
  assert.ok(envelopes.filter((e) => e.agent_id === 1).every((e) => e.parent === 0));
});

test("an MCP server's form reads as typed fields with their choices and defaults", () => {
  const fields = formFields({
    type: "object",
    properties: {
      name: { type: "string", title: "Your name" },
      size: { type: "integer", default: 2 },
      tier: { type: "string", oneOf: [{ const: "f", title: "Free" }, { const: "p", title: "Pro" }] },
      tags: { type: "array", items: { enum: ["a", "b"] } },
    },
    required: ["name"],
  });
  assert.deepEqual(
    fields.map((f) => [f.name, f.title, f.type, f.required, f.choices, f.default]),
    [
      ["name", "Your name", "string", true, undefined, undefined],
      ["size", "size", "integer", false, undefined, 2],
      ["tier", "tier", "string", false, [["f", "Free"], ["p", "Pro"]], undefined],
      ["tags", "tags", "array", false, [["a", "a"], ["b", "b"]], undefined],
    ],
  );
  assert.equal(parseField(fields[1], "3"), 3);
  assert.equal(parseField(fields[1], "3.5"), null);
  assert.equal(parseField(fields[1], " "), undefined);
  assert.equal(parseField({ ...fields[0], type: "boolean" }, "yes"), true);
  assert.deepEqual(parseField({ ...fields[0], type: "array" }, "a, b,"), ["a", "b"]);
});

test("the default socket follows XDG_RUNTIME_DIR, else CODEPILOT_HOME", () => {
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: "/run/user/1" }), "/run/user/1/codepilot/runtime.sock");
  assert.equal(defaultSocketPath({ CODEPILOT_HOME: "/srv/cp" }), "/srv/cp/runtime.sock");
  assert.equal(defaultSocketPath({}), path.join(os.homedir(), ".codepilot", "runtime.sock"));
});

test("a task streams events, asks permission, and completes", async (t) => {
  const { dir, socket, agent, push } = await setUp(t);
  await push([
    { answer: 'Writing.\n```codepilot\nexecute("main", "echo from-the-extension > made.txt")\n```' },
    { answer: "Done.\n```completion\nMade it\n```" },
  ]);
  const c = await DaemonClient.connect(socket, { name: "test", version: "1" });
  t.after(() => c.close());
  const asked: string[] = [];
  c.onRequest(async (r) => {
    if (r.method === "permission/request") {
      asked.push(r.params.description);
      return { decision: "allow" };
    }
    return { answer: "n/a" };
  });
  const gated = "  tools:\n    - {name: execute, config: {require_permission: true}}\n";
  const { session_id } = await c.call("session/start", { agent: agent(gated) });
  const completed = until(c, (n) => n.method === "turn/completed");
  const { turn_id } = await c.call("turn/start", { session_id, text: "make the file" });
  assert.equal(turn_id, "turn-1");
  const seen = await completed;
  const seqs = seen.filter((n) => n.method === "event").map((n) => (n.params as { seq: number }).seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  const last = seen.at(-1)!;
  assert.equal(last.method, "turn/completed");
  const end = last.params as TurnCompleted;
  assert.deepEqual(end.outcome, { status: "completed", summary: "Made it", steps: 2 });
  assert.equal(stoppedSummary(end.outcome), undefined);
  assert.match(spendSummary(end.spend!), /^spent 30 tokens · \d+\.\d s$/, "two calls of 10 in and 5 out");
  assert.deepEqual(asked, ["Execute in main: echo from-the-extension > made.txt"]);
  assert.equal(readFileSync(path.join(dir, "work", "made.txt"), "utf8"), "from-the-extension\n");

  await assert.rejects(c.call("turn/start", { session_id: "nope", text: "x" }), (e: unknown) => {
    assert.ok(e instanceof DaemonError);
    assert.equal(e.code, 1001);
    return true;
  });
});

test("a terminal attaches as a pseudoterminal would, and a reconnecting client catches up", async (t) => {
  const { socket, agent, push } = await setUp(t);
  await push([{ answer: "Hi.\n```completion\nhello\n```" }]);
  const c = await DaemonClient.connect(socket);
  const { session_id } = await c.call("session/start", { agent: agent() });
  const completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "greet" });
  const first = await completed;
  const lastSeq = Math.max(...first.filter((n) => n.method === "event").map((n) => (n.params as { seq: number }).seq));

  const { terminals } = await c.call("terminal/list", { session_id });
  assert.equal(terminals[0].name, "main");
  const term = await attachTerminal(terminals[0].attach!);
  t.after(() => term.close());
  assert.ok(term.pid > 0);
  let output = "";
  const echoed = new Promise<void>((resolve) =>
    term.onData((d) => {
      output += d.toString("utf8");
      if (output.includes("pseudo-42")) resolve();
    }),
  );
  term.write("echo pseudo-$((6*7))\r");
  await echoed;
  c.close();

  const again = await DaemonClient.connect(socket);
  t.after(() => again.close());
  const replay = until(again, (n) => n.method === "turn/completed");
  const sub = await again.call("session/subscribe", { session_id, after_seq: 0 });
  assert.ok(sub.last_seq >= lastSeq);
  const replayed = await replay;
  assert.equal(replayed.filter((n) => n.method === "event").length, lastSeq, "the whole session, replayed");
});

test("the extension's version comes from its package.json", () => {
  const manifest = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version: string };
  assert.equal(VERSION, manifest.version);
});

test("after the daemon restarts, session/read shows the history and session/resume by id alone opens the session again", async (t) => {
  const { socket, agent, push, startDaemon, stopDaemon } = await setUp(t);
  await push([{ answer: "Hi.\n```completion\nfirst\n```" }]);
  const c = await DaemonClient.connect(socket);
  const { session_id } = await c.call("session/start", { agent: agent() });
  const completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "the first task" });
  await completed;
  c.close();
  await stopDaemon();

  await startDaemon();
  const again = await DaemonClient.connect(socket);
  t.after(() => again.close());
  const read = await again.call("session/read", { session_id });
  assert.ok(read.messages.some((m) => m.content.includes("the first task")));
  await assert.rejects(again.call("turn/start", { session_id, text: "x" }), (e: unknown) => {
    assert.ok(e instanceof DaemonError);
    assert.equal(e.code, 1001, "reading opened nothing");
    return true;
  });

  // The agent and work directory are the ones the first daemon recorded with the session.
  const resumed = await again.call("session/resume", { session_id });
  assert.deepEqual(resumed.messages, read.messages);
  await push([{ answer: "Again.\n```completion\nsecond\n```" }]);
  const next = until(again, (n) => n.method === "turn/completed");
  await again.call("turn/start", { session_id, text: "the second task" });
  const last = (await next).at(-1)!;
  assert.deepEqual((last.params as { outcome: unknown }).outcome, { status: "completed", summary: "second", steps: 1 });
});

test("session/checkpoints lists the state before each step; session/rewind previews, rewinds, says so in an event, and is undone", async (t) => {
  const { dir, socket, agent, push } = await setUp(t);
  await push([
    { answer: '```codepilot\nwrite_file("a.txt")\n```\n\n```text filename=a.txt\nA\n```' },
    { answer: "```completion\ndone\n```" },
  ]);
  const c = await DaemonClient.connect(socket);
  t.after(() => c.close());
  const { session_id } = await c.call("session/start", { agent: agent("    checkpoints: step") });
  const completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "write a.txt" });
  await completed;
  const file = path.join(dir, "work", "a.txt");
  assert.equal(readFileSync(file, "utf8"), "A\n");

  const { checkpoints } = await c.call("session/checkpoints", { session_id });
  assert.deepEqual(
    checkpoints.map((cp) => [cp.id, cp.kind, cp.turn, cp.step ?? null, cp.messages, cp.files]),
    [
      ["1", "turn", 1, null, 0, 0],
      ["1.2", "step", 1, 2, 3, 1],
    ],
  );
  assert.deepEqual(checkpoints.map(checkpointLabel), ["before turn 1", "before step 2 of turn 1"]);
  assert.match(checkpointDetail(checkpoints[1]), /^3 messages · 1 file · \S/);

  // A preview changes nothing.
  const preview = await c.call("session/rewind", { session_id, checkpoint: "1", dry_run: true });
  assert.deepEqual(preview, { checkpoint: "1", scope: "both", files_restored: 0, files_deleted: 1, files_left: [], messages: 0, saved_as: "" });
  assert.equal(rewindChanges(preview), "restores 0 files, deletes 1 file; the conversation goes back to 0 messages");
  assert.ok(existsSync(file));
  assert.equal((await c.call("session/checkpoints", { session_id })).checkpoints.length, 2);

  const announced = until(c, (n) => n.method === "event" && n.params.event.type === "rewound");
  const done = await c.call("session/rewind", { session_id, checkpoint: "1" });
  assert.deepEqual(done, { checkpoint: "1", scope: "both", files_restored: 0, files_deleted: 1, files_left: [], messages: 0, saved_as: "rewind-1" });
  const rewound = (await announced).at(-1)!.params as EventEnvelope;
  assert.deepEqual(rewound.event, { type: "rewound", ...done });
  assert.equal(rewound.turn_id, null, "between turns");
  assert.equal(
    rewoundSummary(done),
    "rewound to checkpoint 1: 0 files restored, 1 deleted, conversation back to 0 messages · undo: rewind to rewind-1",
  );
  assert.ok(!existsSync(file), "the file the turn wrote is gone");
  assert.deepEqual((await c.call("session/read", { session_id })).messages, []);
  const after = (await c.call("session/checkpoints", { session_id })).checkpoints;
  assert.deepEqual(after.map((cp) => cp.id), ["1", "1.2", "rewind-1"]);
  assert.equal(checkpointLabel(after[2]), "rewind-1 (undo a rewind)");
  assert.equal(after[2].messages, 4, "the conversation it replaced");

  // The undo, files only: the file is back, the conversation stays rewound.
  const undo = { session_id, checkpoint: "rewind-1", scope: "files" as const };
  const undoPreview = await c.call("session/rewind", { ...undo, dry_run: true });
  assert.equal(rewindChanges(undoPreview), "restores 1 file, deletes 0 files");
  const undone = await c.call("session/rewind", undo);
  assert.deepEqual(undone, { checkpoint: "rewind-1", scope: "files", files_restored: 1, files_deleted: 0, files_left: [], messages: 0, saved_as: "rewind-2" });
  assert.equal(rewoundSummary(undone), "rewound to checkpoint rewind-1: 1 file restored, 0 deleted · undo: rewind to rewind-2");
  assert.equal(readFileSync(file, "utf8"), "A\n");
  assert.deepEqual((await c.call("session/read", { session_id })).messages, []);

  await assert.rejects(c.call("session/rewind", { session_id, checkpoint: "9", dry_run: true }), (e: unknown) => {
    assert.ok(e instanceof DaemonError);
    assert.equal(e.code, 1006);
    assert.match(e.message, /no checkpoint "9"/);
    return true;
  });
});

test("session/rewind is refused while a turn runs", async (t) => {
  const { socket, agent, push } = await setUp(t);
  await push([
    { answer: '```codepilot\nexecute("main", "echo hi")\n```' },
    { answer: "```completion\nsaid hi\n```" },
  ]);
  const c = await DaemonClient.connect(socket);
  t.after(() => c.close());
  const { session_id } = await c.call("session/start", {
    agent: agent("  tools:\n    - {name: execute, config: {require_permission: true}}\n"),
  });
  // The turn waits for this answer, so it runs while the handler asks for a rewind.
  let refused: unknown;
  c.onRequest(async () => {
    refused = await c.call("session/rewind", { session_id, checkpoint: "1", dry_run: true }).catch((e: unknown) => e);
    return { decision: "allow" };
  });
  const completed = until(c, (n) => n.method === "turn/completed");
  await c.call("turn/start", { session_id, text: "say hi" });
  await completed;
  assert.ok(refused instanceof DaemonError, String(refused));
  assert.equal(refused.code, 1002);
  const after = await c.call("session/rewind", { session_id, checkpoint: "1", dry_run: true });
  assert.equal(after.checkpoint, "1", "once it is over");
});
