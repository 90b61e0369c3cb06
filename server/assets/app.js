// The CodePilot web UI: a JSON-RPC client of the daemon over /rpc, and xterm.js terminals over
// /sessions/{id}/terminals/{name}. No framework; everything the page shows comes from the protocol (SPEC §13).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("codepilot-token") || "";
if (params.has("token")) {
  // Out of the address bar (and history), but the hash stays: `#session=ID` is what a deep link opens.
  sessionStorage.setItem("codepilot-token", token);
  history.replaceState(null, "", location.pathname + location.hash);
}
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
const $ = (id) => document.getElementById(id);

let socket;
let nextId = 1;
const waiting = new Map();
let current = null; // the session shown
let sessions = []; // the last session/list
const terminals = new Map();

function setStatus(text) { $("status").textContent = text; }

function call(method, params) {
  const id = nextId++;
  socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
}

function respond(id, result) {
  socket.send(JSON.stringify({ jsonrpc: "2.0", id, result }));
}

function entry(kind, text) {
  const div = document.createElement("div");
  div.className = "entry " + kind;
  div.textContent = text;
  $("timeline").appendChild(div);
  $("timeline").scrollTop = $("timeline").scrollHeight;
  return div;
}

function button(label, kind, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = kind;
  b.textContent = label;
  b.onclick = onclick;
  return b;
}

const count = (n, what) => n + " " + what + (n === 1 ? "" : "s");

let streaming = null;
let step = 0; // the step of the turn the events are of
/** Worker boxes by agent id: a worker's entries nest in the box opened where its parent spawned it (SPEC §20). */
const workers = new Map();

/** Shows a worker's event inside its box; returns whether the event was a worker's. */
function onWorkerEvent(envelope) {
  const id = envelope.agent_id;
  if (id == null) return false;
  const box = workers.get(id);
  if (!box) return true;
  const e = envelope.event;
  let text = null;
  if (e.type === "tool_call") text = "⚙ " + e.label;
  else if (e.type === "tool_result" && !e.ok) text = "✖ " + e.result.split("\n")[0];
  else if (e.type === "runtime_error") text = "! " + e.message.split("\n")[0];
  if (text) {
    const line = document.createElement("div");
    line.className = "worker-line";
    line.textContent = text;
    box.appendChild(line);
    $("timeline").scrollTop = $("timeline").scrollHeight;
  }
  return true;
}

/** The box a spawned worker's activity goes into, under the step that spawned it. */
function workerBox(e) {
  const div = entry("worker", `⇢ sub-agent #${e.agent_id} (${e.model}): ${e.task_summary}`);
  div.dataset.agent = String(e.agent_id);
  workers.set(e.agent_id, div);
  return div;
}

function onEvent(envelope) {
  if (!current || envelope.session_id !== current) return;
  if (onWorkerEvent(envelope)) return;
  const e = envelope.event;
  if (e.type === "start") step = 0;
  if (e.type === "step") step = e.step;
  let div = null;
  if (e.type === "stream" && e.kind === "text") {
    if (!streaming) div = streaming = entry("text", "");
    streaming.textContent += e.text;
  } else {
    streaming = null;
    div = show(e);
  }
  // A turn's entries carry its number and step: a rewind of the conversation marks those it took back.
  const turn = /^turn-(\d+)$/.exec(envelope.turn_id || "");
  if (div && turn) Object.assign(div.dataset, { turn: turn[1], step });
  if (e.type === "rewound") markRewoundAway(e);
}

/** The entry an event is shown as, if it is shown. */
function show(e) {
  switch (e.type) {
    case "start": return turnEntry(e);
    case "tool_call": return entry("tool", "⚙ " + e.label);
    case "tool_result": return entry("result" + (e.ok ? "" : " failed"), e.result);
    case "user_message_injected": return entry("user", "✉ " + e.text);
    case "finish":
      // A limit or an output schema never matched also ends a turn: not a success.
      if (e.reason === "limit_exceeded" || e.reason === "invalid_output") return entry("error", "✖ " + e.summary);
      return entry("finish", "✔ " + e.summary);
    case "max_steps": return entry("error", "step limit reached (" + e.steps + ")");
    case "aborted": return entry("error", "interrupted at step " + e.step);
    case "runtime_error": return entry("error", e.kind + ": " + e.message);
    case "workspace_saved": return entry("result", "workspace saved: " + e.files + " files (" + e.key + ")");
    case "resource_limit": return entry("limit", "⚠ " + (e.terminal ? "terminal " + e.terminal + ": " : "") + e.message);
    case "subagent_spawn": return workerBox(e);
    case "subagent_message": return entry("user", `✉ sub-agent #${e.agent_id} asks: ${e.message}`);
    case "subagent_finish": {
      const box = workers.get(e.agent_id);
      const line = document.createElement("div");
      line.className = "worker-end " + e.status;
      line.textContent = `⇠ ${e.status} in ${e.elapsed_seconds.toFixed(1)} s: ${e.error || e.summary}`;
      (box || $("timeline")).appendChild(line);
      return null;
    }
    case "limit_warning":
      return entry("limit", `⚠ ${e.scope} limit ${e.limit}: ${amount(e.limit, e.spent)} of ${amount(e.limit, e.max)} spent`);
    case "rewound": return rewoundEntry(e);
    default: return null;
  }
}

/** `value` in the unit of limit `limit` (SPEC §21). */
function amount(limit, value) {
  if (limit === "max_cost_usd") return "$" + value.toFixed(4);
  if (limit === "max_wall_s") return value.toFixed(1) + " s";
  return Math.round(value).toLocaleString("en") + " tokens";
}

/** What a turn spent, as `turn/completed` reports it (how it ended is its `finish` event). */
function spendEntry(params) {
  const s = params.spend;
  if (!s) return;
  const cost = s.cost_usd == null ? "" : ` · $${s.cost_usd.toFixed(4)}`;
  const t = s.tokens;
  const tokens = t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens;
  entry("spend", `spent ${tokens.toLocaleString("en")} tokens${s.estimated ? " (estimated)" : ""}${cost} · ${s.wall_s.toFixed(1)} s`);
}

/** A turn's first entry, with "rewind to here": back to the checkpoint taken before the turn began (SPEC §19). */
function turnEntry(e) {
  const div = entry("user", "▶ " + e.task + " ");
  const checkpoint = String(e.task_number);
  div.appendChild(button("↶ rewind to here", "rewind-here", () => rewind(checkpoint, "both", "before turn " + checkpoint)));
  return div;
}

/** What a rewind (or its preview) changes, as the confirmation says it. */
function changes(r) {
  const parts = [];
  if (r.scope !== "conversation") {
    parts.push(`restores ${count(r.files_restored, "file")}, deletes ${count(r.files_deleted, "file")}`);
    if (r.files_left?.length) parts.push(`leaves ${r.files_left.join(", ")} as they are (not recorded now)`);
  }
  if (r.scope !== "files") parts.push(`the conversation goes back to ${count(r.messages, "message")}`);
  return parts.join("; ");
}

function rewoundEntry(e) {
  const parts = [];
  if (e.scope !== "conversation") parts.push(`${count(e.files_restored, "file")} restored, ${e.files_deleted} deleted`);
  if (e.files_left?.length) parts.push(`${e.files_left.join(", ")} left as they are`);
  if (e.scope !== "files") parts.push(`conversation back to ${count(e.messages, "message")}`);
  const text = `↶ rewound to checkpoint ${e.checkpoint}: ${parts.join(", ")} · undo: rewind to ${e.saved_as} `;
  const div = entry("rewound", text);
  div.appendChild(button("undo", "undo", () => rewind(e.saved_as, e.scope, e.saved_as + ", the state before that rewind")));
  return div;
}

/** Rewinds the session shown to `checkpoint` once the person confirms, in the page, what the preview says that
 * changes. The `rewound` event shows the outcome; a refusal (a turn running, an unknown checkpoint) is an error. */
async function rewind(checkpoint, scope, what) {
  const session_id = current;
  let preview;
  try {
    preview = await call("session/rewind", { session_id, checkpoint, scope, dry_run: true });
  } catch (e) {
    entry("error", e.message);
    return;
  }
  if (session_id !== current) return;
  for (const old of document.querySelectorAll(".prompt.rewind")) old.remove();
  const box = document.createElement("div");
  box.className = "prompt rewind";
  box.append(`Rewind to ${what}? This ${changes(preview)}. `);
  const go = async () => {
    box.remove();
    try {
      await call("session/rewind", { session_id, checkpoint, scope });
    } catch (e) {
      entry("error", e.message);
    }
  };
  box.append(button("Rewind", "", go), button("Cancel", "", () => box.remove()));
  $("timeline").appendChild(box);
  $("timeline").scrollTop = $("timeline").scrollHeight;
}

// A rewind's `saved_as` → the turn entries in the conversation it replaced: rewinding to it (the undo) brings
// back exactly those.
let keptBefore = new Map();

/** Marks the turn entries a rewind of the conversation took back (`rewound-away`); an undo (a rewind to a rewind's
 * checkpoint) brings back exactly the ones that rewind took. */
function markRewoundAway(e) {
  const entries = [...$("timeline").querySelectorAll(".entry[data-turn]")];
  keptBefore.set(e.saved_as, new Set(entries.filter((d) => !d.classList.contains("rewound-away"))));
  if (e.scope === "files") return;
  const kept = keptBefore.get(e.checkpoint);
  const at = /^(\d+)(?:\.(\d+))?$/.exec(e.checkpoint); // "N": before turn N; "N.S": before its step S
  const [turn, stepAt] = at ? [Number(at[1]), Number(at[2] || 0)] : [Infinity, 0];
  for (const d of entries) {
    const t = Number(d.dataset.turn);
    if (kept) d.classList.toggle("rewound-away", !kept.has(d));
    else if (t > turn || (t === turn && Number(d.dataset.step) >= stepAt)) d.classList.add("rewound-away");
  }
}

function onPermission(id, p) {
  if (p.session_id !== current) return;
  const box = document.createElement("div");
  box.className = "prompt";
  box.dataset.request = JSON.stringify(id);
  box.append(`Allow ${p.tool}? ${p.description} `);
  for (const [label, decision] of [["Allow", "allow"], ["Deny", "deny"]]) {
    const b = document.createElement("button");
    b.textContent = label;
    b.onclick = () => { respond(id, { decision }); box.remove(); };
    box.appendChild(b);
  }
  $("timeline").appendChild(box);
}

function onAsk(id, p) {
  if (p.session_id !== current) return;
  if (p.schema) return onForm(id, p);
  const answer = prompt(p.question);
  respond(id, { answer });
}

// An MCP server's form (elicitation): one input per field, typed, with its default; the daemon checks the answers.
function onForm(id, p) {
  const box = document.createElement("form");
  box.className = "prompt form";
  box.dataset.request = JSON.stringify(id);
  const title = document.createElement("p");
  title.textContent = p.question;
  box.appendChild(title);
  const props = p.schema.properties || {};
  const required = new Set(p.schema.required || []);
  const read = {};
  for (const [name, field] of Object.entries(props)) {
    const label = document.createElement("label");
    label.textContent = `${field.title || name}${required.has(name) ? " *" : ""} `;
    if (field.description) label.title = field.description;
    const options = choices(field.type === "array" ? field.items || {} : field);
    let input;
    if (options && field.type === "array") {
      input = document.createElement("select");
      input.multiple = true;
      read[name] = () => [...input.selectedOptions].map((o) => o.value);
    } else if (options) {
      input = document.createElement("select");
      // No choice made until the person makes one; a required field cannot be sent without it.
      const none = new Option("", "");
      none.disabled = required.has(name);
      none.selected = field.default === undefined;
      input.appendChild(none);
      input.required = required.has(name);
      read[name] = () => (input.value === "" ? undefined : input.value);
    } else if (field.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = field.default === true;
      read[name] = () => input.checked;
    } else if (field.type === "array") {
      input = document.createElement("input");
      input.placeholder = "separated by commas";
      if (Array.isArray(field.default)) input.value = field.default.join(", ");
      read[name] = () => {
        const items = input.value.split(",").map((v) => v.trim()).filter((v) => v !== "");
        return items.length ? items : undefined;
      };
    } else {
      input = document.createElement("input");
      const numeric = field.type === "number" || field.type === "integer";
      input.type = numeric ? "number" : field.format === "email" ? "email" : "text";
      if (field.type === "number") input.step = "any";
      if (field.default !== undefined) input.value = String(field.default);
      input.required = required.has(name);
      read[name] = () => (input.value === "" ? undefined : numeric ? Number(input.value) : input.value);
    }
    for (const [value, text] of options || []) {
      const o = new Option(text, value);
      o.selected = field.default === value || (Array.isArray(field.default) && field.default.includes(value));
      input.appendChild(o);
    }
    input.name = name;
    label.appendChild(input);
    box.appendChild(label);
  }
  const send = document.createElement("button");
  send.type = "submit";
  send.textContent = "Send";
  const decline = document.createElement("button");
  decline.type = "button";
  decline.textContent = "Decline";
  decline.onclick = () => { respond(id, {}); box.remove(); };
  box.append(send, decline);
  box.onsubmit = (e) => {
    e.preventDefault();
    const content = {};
    for (const [name, get] of Object.entries(read)) {
      const v = get();
      if (v !== undefined) content[name] = v;
    }
    respond(id, { content });
    box.remove();
  };
  $("timeline").appendChild(box);
}

// A field's choices as [value, label]: enum (+ enumNames) or oneOf/anyOf of const + title.
function choices(field) {
  if (Array.isArray(field.enum)) return field.enum.map((v, i) => [String(v), (field.enumNames || [])[i] || String(v)]);
  const list = field.oneOf || field.anyOf;
  if (Array.isArray(list)) return list.filter((o) => o.const !== undefined).map((o) => [String(o.const), o.title || String(o.const)]);
  return null;
}

// An MCP server needs an OAuth login: a link the person opens (the browser returns to the daemon's machine).
function onLogin(id, p) {
  if (p.session_id !== current) return;
  const box = document.createElement("div");
  box.className = "prompt";
  box.dataset.request = JSON.stringify(id);
  box.append(`MCP server ${p.server} needs a login. `);
  const link = document.createElement("a");
  link.href = /^https?:\/\//.test(p.url) ? p.url : "#";
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.textContent = "Log in";
  link.onclick = () => { respond(id, { opened: true }); box.remove(); };
  box.appendChild(link);
  $("timeline").appendChild(box);
}

function onMessage(raw) {
  const m = JSON.parse(raw);
  if (m.id !== undefined && m.method === undefined) {
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (w) m.error ? w.reject(Object.assign(new Error(m.error.message), { code: m.error.code })) : w.resolve(m.result);
    return;
  }
  switch (m.method) {
    case "event": onEvent(m.params); break;
    case "turn/completed":
      if (m.params.session_id === current) { streaming = null; spendEntry(m.params); refreshSessions(); }
      break;
    case "turn/failed": if (m.params.session_id === current) entry("error", m.params.error.message); break;
    case "permission/request": onPermission(m.id, m.params); break;
    case "ask_user/request": onAsk(m.id, m.params); break;
    case "mcp/login": onLogin(m.id, m.params); break;
    case "serverRequest/resolved":
      for (const box of document.querySelectorAll(".prompt")) {
        if (box.dataset.request === JSON.stringify(m.params.request_id)) box.remove();
      }
      break;
    case "subscription/lagged": call("session/subscribe", { session_id: m.params.session_id, after_seq: m.params.last_sent_seq }); break;
    default: break;
  }
}

async function refreshSessions() {
  ({ sessions } = await call("session/list", {}));
  const list = $("sessions");
  list.replaceChildren();
  for (const s of sessions) {
    const li = document.createElement("li");
    li.dataset.session = s.session_id;
    li.className = s.session_id === current ? "active" : "";
    li.innerHTML = "";
    li.append(s.title || s.session_id);
    const small = document.createElement("small");
    small.textContent = s.status + " · " + s.updated_at + (s.runs_on ? " · on " + s.runs_on : "");
    li.appendChild(small);
    li.onclick = () => open(s.session_id);
    list.appendChild(li);
  }
}

/** Opens a stored session in this daemon with the agent the store recorded for it, or — for a session no daemon
 * recorded one for (the CLI's) — with the agent file in the form. */
async function resume(sessionId) {
  try {
    return await call("session/resume", { session_id: sessionId });
  } catch (e) {
    const agentFile = $("agent-file").value;
    if (e.code !== -32602 || !agentFile) throw e;
    return call("session/resume", { session_id: sessionId, agent_file: agentFile });
  }
}

/** Shows a session: one open in this daemon live (its events replayed from the start), a stored one resumed here
 * — or, when it cannot be (no agent recorded and none in the form, driven by another daemon), its conversation
 * read-only. */
async function open(sessionId) {
  current = sessionId;
  $("session-title").textContent = sessionId;
  $("timeline").replaceChildren();
  workers.clear();
  streaming = null;
  keptBefore = new Map();
  history.replaceState(null, "", location.pathname + "#session=" + encodeURIComponent(sessionId));
  await refreshSessions();
  const listed = sessions.find((s) => s.session_id === sessionId);
  if (!listed || listed.status === "stored") {
    try {
      await resume(sessionId);
    } catch (e) {
      await call("session/read", { session_id: sessionId }).then(
        ({ messages }) => { for (const m of messages) entry(m.role === "user" ? "user" : "text", m.content); },
        () => {},
      );
      entry("error", e.message);
      return;
    }
    await refreshSessions();
  }
  await call("session/subscribe", { session_id: sessionId, after_seq: 0 });
  openTerminals(sessionId);
}

async function openTerminals(sessionId) {
  for (const t of terminals.values()) { t.ws.close(); t.term.dispose(); }
  terminals.clear();
  $("terminals").replaceChildren();
  const { terminals: list } = await call("terminal/list", { session_id: sessionId });
  for (const info of list) {
    const title = document.createElement("h3");
    title.textContent = info.name;
    const div = document.createElement("div");
    div.className = "term";
    div.dataset.terminal = info.name;
    $("terminals").append(title, div);
    const term = new Terminal({ convertEol: false, fontSize: 12 });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(div);
    const url = `${wsBase}/sessions/${encodeURIComponent(sessionId)}/terminals/${encodeURIComponent(info.name)}?token=${encodeURIComponent(token)}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (msg) => {
      if (typeof msg.data === "string") return; // greeting, errors
      term.write(new Uint8Array(msg.data));
    };
    ws.onopen = () => {
      fit.fit();
      ws.send(JSON.stringify({ resize: [term.cols, term.rows] }));
    };
    const encoder = new TextEncoder();
    term.onData((data) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data)); });
    terminals.set(info.name, { term, ws });
  }
}

$("start-turn").onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $("task").value.trim();
  if (!current || !text) return;
  $("task").value = "";
  try {
    await call("turn/start", { session_id: current, text });
  } catch (e) {
    if (String(e.message).includes("running a turn")) await call("turn/steer", { session_id: current, text });
    else entry("error", e.message);
  }
};
$("interrupt").onclick = () => current && call("turn/interrupt", { session_id: current });
$("start-session").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const { session_id } = await call("session/start", { agent_file: $("agent-file").value });
    await open(session_id);
  } catch (e) { entry("error", e.message); }
};

function connect() {
  socket = new WebSocket(`${wsBase}/rpc?token=${encodeURIComponent(token)}`);
  socket.onmessage = (msg) => onMessage(msg.data);
  socket.onopen = async () => {
    await call("initialize", { client: { name: "codepilot-web", version: "1" } });
    setStatus("connected");
    await refreshSessions();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("session");
    if (wanted) await open(wanted);
  };
  socket.onclose = () => { setStatus("disconnected; retrying…"); setTimeout(connect, 1000); };
}
connect();
