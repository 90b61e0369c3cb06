// The web UI of `codepilot serve`, end to end in headless Chromium: a scripted run streams into the page, Allow lets
// a gated command run, and keys typed into the xterm reach the shell (and the agent hears of them); a deep link
// (`?token=T#session=ID`) opens its session, also after a restart (the daemon resumes it with the agent the store
// recorded), and a session with no recorded agent (the CLI's) is read, then resumed with an agent file; "rewind to
// here" on a turn previews, confirms in the page, rewinds the work dir and the conversation, and undoes; an MCP
// server's OAuth login is a link that the browser follows back to the daemon, and a server's question is a form.
//
// Needs CODEPILOT_BIN (the codepilot binary), CODEPILOT_TESTKIT (the scripted model server) and Debian's chromium
// (CHROMIUM, default /usr/bin/chromium). Leaves a screenshot in ARTIFACTS_DIR (default ./artifacts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const bin = process.env.CODEPILOT_BIN;
const testkit = process.env.CODEPILOT_TESTKIT;
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const artifacts = resolve(process.env.ARTIFACTS_DIR || "artifacts");

/** Spawns `cmd`, resolving with the child and the first match of `pattern` in its `stream`. */
function startAndWait(cmd, args, options, stream, pattern) {
  const child = spawn(cmd, args, { ...options, stdio: ["pipe", "pipe", "pipe"] });
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child[stream] });
    const seen = [];
    const timer = setTimeout(() => reject(new Error(`${cmd}: no ${pattern} in 20 s:\n${seen.join("\n")}`)), 20000);
    lines.on("line", (line) => {
      seen.push(line);
      const m = line.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ child, match: m });
      }
    });
    child.on("exit", (code) => reject(new Error(`${cmd} exited (${code}):\n${seen.join("\n")}`)));
  });
}

async function post(url, body) {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
}

/** The scripted model server; its base URL. */
async function startModel(t) {
  const model = await startAndWait(testkit, [], {}, "stdout", /^(http:\/\/\S+)$/);
  t.after(() => model.child.kill());
  return model.match[1];
}

/** `codepilot serve` on a free port with its home (and sessions) in `dir/home`; the web UI's address, with the token,
 * and a function that stops the daemon (SIGTERM: its sessions are closed and their leases released). */
async function startDaemon(t, dir) {
  const daemon = await startAndWait(
    bin,
    ["serve", "--listen", "ws://127.0.0.1:0"],
    { cwd: dir, env: { ...process.env, CODEPILOT_HOME: join(dir, "home") } },
    "stderr",
    /web UI: (http:\/\/\S+)/,
  );
  t.after(() => daemon.child.kill());
  const stop = () =>
    new Promise((resolvePromise) => {
      daemon.child.once("exit", resolvePromise);
      daemon.child.kill("SIGTERM");
    });
  return { url: daemon.match[1], stop };
}

/** `codepilot run` of `task` in session `sessionId` of the home in `dir`, as a person at the CLI would. */
function runTask(dir, agentFile, sessionId, task) {
  const run = spawn(bin, ["run", "-c", agentFile, "--session-id", sessionId, "--yes", task], {
    cwd: dir,
    env: { ...process.env, CODEPILOT_HOME: join(dir, "home") },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  run.stderr.on("data", (d) => { stderr += d; });
  return new Promise((resolvePromise, reject) =>
    run.on("exit", (code) => (code === 0 ? resolvePromise() : reject(new Error(`codepilot run exited (${code}):\n${stderr}`)))),
  );
}

/** Headless Chromium; a new page that collects the page's errors. */
async function launch(t) {
  assert.ok(existsSync(browserPath), `no browser at ${browserPath} (apt-get install chromium)`);
  const browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  t.after(() => browser.close());
  const errors = [];
  const newPage = async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    page.on("pageerror", (e) => errors.push(String(e)));
    return page;
  };
  return { newPage, errors };
}

/** An agent file for the scripted model at `modelUrl`, working in `dir/work`, with `extra` lines. */
function writeAgent(dir, modelUrl, extra = []) {
  const path = join(dir, "agent.yaml");
  writeFileSync(
    path,
    [
      "agent:",
      "  name: Browser",
      "  model:",
      "    provider: openai-compatible",
      "    name: test-model",
      `    base_url: ${modelUrl}/v1`,
      "  runtime:",
      "    work_dir: work",
      "    max_steps: 6",
      ...extra,
      "",
    ].join("\n"),
  );
  return path;
}

test("a command over a resource limit, a spend limit's warning and each turn's spend are shown in the timeline", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));
  const modelUrl = await startModel(t);
  const agentFile = writeAgent(dir, modelUrl, [
    "    resources: {max_open_files: 16}",
    "    limits: {max_total_tokens: 200000}",
  ]);
  await post(`${modelUrl}/_testkit/turns`, [
    {
      answer: '```codepilot\nexecute("main", "python3 -c \\"fs = [open(\'/dev/null\') for _ in range(64)]\\"")\n```',
      input_tokens: 170000,
      output_tokens: 10,
    },
    { answer: "```completion\nToo many files\n```", input_tokens: 10, output_tokens: 5 },
  ]);
  const daemon = await startDaemon(t, dir);
  const { newPage, errors } = await launch(t);
  const page = await newPage();
  await page.goto(daemon.url);
  await page.waitForSelector("#status:text('connected')");
  await page.fill("#agent-file", agentFile);
  await page.click("#start-session button");
  await page.waitForSelector("#terminals .term .xterm");
  await page.fill("#task", "Open many files");
  await page.click("#send");
  await page.waitForSelector(".entry.finish");
  const limits = await page.locator(".entry.limit").allInnerTexts();
  assert.ok(
    limits.some((l) => /terminal main: \[open files limit 16 reached \(runtime\.resources\.max_open_files\)/.test(l)),
    limits.join("\n"),
  );
  assert.ok(limits.includes("⚠ run limit max_total_tokens: 170,010 tokens of 200,000 tokens spent"), limits.join("\n"));
  await page.waitForSelector(".entry.spend");
  assert.match(await page.locator(".entry.spend").innerText(), /^spent 170,025 tokens · \d+\.\d s$/);
  assert.deepEqual(errors, []);
});

test("a worker's activity is nested under the step that spawned it", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));
  const modelUrl = await startModel(t);
  const agentFile = writeAgent(dir, modelUrl);
  await post(`${modelUrl}/_testkit/turns`, [
    { answer: '```codepilot\na = spawn_subagent("list the files")\nprint(await_subagent(a))\n```' },
    { answer: '```codepilot\nprint(find("*", scope="files"))\n```' },
    { answer: "```completion\nno files\n```" },
    { answer: "```completion\nDelegated\n```" },
  ]);
  const daemon = await startDaemon(t, dir);
  const { newPage, errors } = await launch(t);
  const page = await newPage();
  await page.goto(daemon.url);
  await page.waitForSelector("#status:text('connected')");
  await page.fill("#agent-file", agentFile);
  await page.click("#start-session button");
  await page.waitForSelector("#terminals .term .xterm");
  await page.fill("#task", "Delegate");
  await page.click("#send");
  await page.waitForSelector(".entry.finish");
  const box = page.locator(".entry.worker[data-agent='1']");
  assert.match(await box.innerText(), /^⇢ sub-agent #1 \(test-model\): list the files/);
  assert.match(await box.locator(".worker-line").first().innerText(), /^⚙ /);
  assert.match(await box.locator(".worker-end").innerText(), /^⇠ completed in \d+\.\d s: no files$/);
  // The worker's own completion is not the turn's.
  assert.deepEqual(await page.locator(".entry.finish").allInnerTexts(), ["✔ Delegated"]);
  assert.deepEqual(errors, []);
});

test("a run streams into the page, Allow runs the gated command, typed keys reach the shell", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));

  const modelUrl = await startModel(t);
  const agentFile = writeAgent(dir, modelUrl, ["  tools:", "    - {name: execute, config: {require_permission: true}}"]);
  await post(`${modelUrl}/_testkit/turns`, [
    { answer: 'Creating the file now.\n```codepilot\nexecute("main", "echo allowed > gated.txt")\n```' },
    { answer: "The file is there.\n```completion\nCreated gated.txt\n```" },
  ]);

  const daemon = await startDaemon(t, dir);
  const { newPage, errors } = await launch(t);
  const page = await newPage();
  await page.goto(daemon.url);
  await page.waitForSelector("#status:text('connected')");
  assert.ok(!page.url().includes("token="), "the token is removed from the address bar");

  await page.fill("#agent-file", agentFile);
  await page.click("#start-session button");
  await page.waitForSelector("#terminals .term .xterm");
  await page.fill("#task", "Create gated.txt");
  await page.click("#send");

  const prompt = page.locator(".prompt");
  await prompt.waitFor();
  assert.match(await prompt.innerText(), /execute\? Execute in main: echo allowed > gated\.txt/);
  assert.match(await page.locator("#timeline").innerText(), /Creating the file now\./);
  await prompt.getByRole("button", { name: "Allow" }).click();
  await page.waitForSelector(".entry.finish");
  assert.match(await page.locator(".entry.finish").innerText(), /Created gated\.txt/);
  assert.equal(readFileSync(join(dir, "work", "gated.txt"), "utf8"), "allowed\n");

  // A person types into the agent's terminal in the page.
  await page.click("#terminals .term");
  await page.keyboard.type("echo typed-in-the-browser > typed.txt");
  await page.keyboard.press("Enter");
  for (let i = 0; i < 100 && !existsSync(join(dir, "work", "typed.txt")); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(readFileSync(join(dir, "work", "typed.txt"), "utf8"), "typed-in-the-browser\n");
  await page.waitForFunction(() => document.querySelector("#terminals .xterm-rows").innerText.includes("typed-in-the-browser"));

  // The agent hears of it on its next turn.
  await post(`${modelUrl}/_testkit/turns`, [{ answer: "Noted.\n```completion\nSeen it\n```" }]);
  await page.fill("#task", "What happened?");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".entry.finish").length === 2);
  const requests = await (await fetch(`${modelUrl}/_testkit/requests`)).json();
  const last = JSON.stringify(requests.at(-1).body);
  assert.match(last, /A person typed this command in terminal 'main'/);
  assert.match(last, /echo typed-in-the-browser > typed\.txt/);

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "web-ui.png") });
  assert.deepEqual(errors, []);
});

test("a deep link opens its session, after a restart too; a session with no recorded agent is read, then resumed with an agent file", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));
  const modelUrl = await startModel(t);
  const agentFile = writeAgent(dir, modelUrl);
  await post(`${modelUrl}/_testkit/turns`, [{ answer: "Looked.\n```completion\nAll quiet\n```" }]);
  let daemon = await startDaemon(t, dir);
  const { newPage, errors } = await launch(t);

  // A session with one finished turn, started in one page.
  const first = await newPage();
  await first.goto(daemon.url);
  await first.waitForSelector("#status:text('connected')");
  await first.fill("#agent-file", agentFile);
  await first.click("#start-session button");
  await first.waitForSelector("#terminals .term .xterm");
  await first.fill("#task", "Look around");
  await first.click("#send");
  await first.waitForSelector(".entry.finish");
  const session = await first.locator("#session-title").innerText();
  assert.match(session, /\S/);
  await first.close();

  // What a notification or the extension opens: the address with the token and the session.
  const linked = await newPage();
  await linked.goto(`${daemon.url}#session=${encodeURIComponent(session)}`);
  await linked.waitForFunction((id) => document.querySelector("#session-title").textContent === id, session);
  await linked.waitForSelector(".entry.finish");
  assert.match(await linked.locator(".entry.finish").innerText(), /All quiet/);
  assert.equal(await linked.locator("#sessions li.active").count(), 1, "selected in the list");
  const address = new URL(linked.url());
  assert.equal(address.search, "", "the token is removed from the address bar");
  assert.equal(address.hash, `#session=${encodeURIComponent(session)}`, "the deep link stays");
  await linked.close();

  // The daemon restarts; meanwhile `codepilot run` adds a session of its own to the same store. The CLI records its
  // agent file; the test takes it out again, making the session one that records none (as a version before the CLI
  // recorded its agent stored it).
  await daemon.stop();
  await post(`${modelUrl}/_testkit/turns`, [{ answer: "Checked.\n```completion\nFrom the CLI\n```" }]);
  await runTask(dir, agentFile, "made-by-the-cli", "Check from the CLI");
  execFileSync("sqlite3", [join(dir, "home", "sessions.db"), "UPDATE sessions SET agent_source = '' WHERE id = 'made-by-the-cli'"]);
  daemon = await startDaemon(t, dir);

  // The same link opens the session in this daemon by its id alone (with the agent the first daemon recorded):
  // its events, its terminals, and it runs the next task.
  await post(`${modelUrl}/_testkit/turns`, [{ answer: "Back.\n```completion\nResumed here\n```" }]);
  const resumed = await newPage();
  await resumed.goto(`${daemon.url}#session=${encodeURIComponent(session)}`);
  await resumed.waitForSelector("#terminals .term .xterm");
  assert.match(await resumed.locator("#timeline").innerText(), /Look around/);
  assert.equal(await resumed.locator("#agent-file").inputValue(), "", "no agent file given");
  await resumed.fill("#task", "Carry on");
  await resumed.click("#send");
  await resumed.waitForFunction(() => document.querySelector("#timeline").innerText.includes("Resumed here"));
  await resumed.close();

  // The CLI's session: shown read-only, saying what is missing, until the form names an agent file.
  const stored = await newPage();
  await stored.goto(`${daemon.url}#session=made-by-the-cli`);
  await stored.waitForSelector(".entry.error");
  assert.match(await stored.locator(".entry.error").innerText(), /agent_file/);
  assert.match(await stored.locator("#timeline").innerText(), /Check from the CLI/);
  assert.equal(await stored.locator("#terminals .term").count(), 0, "not opened");
  await stored.fill("#agent-file", agentFile);
  await stored.click('#sessions li[data-session="made-by-the-cli"]');
  await stored.waitForSelector("#terminals .term .xterm");
  assert.deepEqual(errors, []);
});

test("rewind to here previews and confirms in the page, takes the turn back, and is undone", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));
  const modelUrl = await startModel(t);
  const agentFile = writeAgent(dir, modelUrl, ["  tools:", "    - {name: execute, config: {require_permission: true}}"]);
  await post(`${modelUrl}/_testkit/turns`, [
    { answer: '```codepilot\nwrite_file("a.txt")\n```\n\n```text filename=a.txt\nA\n```' },
    { answer: "```completion\ndone\n```" },
  ]);
  const daemon = await startDaemon(t, dir);
  const { newPage, errors } = await launch(t);
  const page = await newPage();
  await page.goto(daemon.url);
  await page.waitForSelector("#status:text('connected')");
  await page.fill("#agent-file", agentFile);
  await page.click("#start-session button");
  await page.waitForSelector("#terminals .term .xterm");
  await page.fill("#task", "Write a.txt");
  await page.click("#send");
  await page.waitForSelector(".entry.finish");
  const file = join(dir, "work", "a.txt");
  assert.equal(readFileSync(file, "utf8"), "A\n");
  const session = await page.locator("#session-title").innerText();

  // The preview changes nothing; the page asks first, with what the rewind would change.
  const turn = page.locator('.entry.user[data-turn="1"]');
  await turn.getByRole("button", { name: "rewind to here" }).click();
  const confirm = page.locator(".prompt.rewind");
  await confirm.waitFor();
  assert.match(
    await confirm.innerText(),
    /Rewind to before turn 1\? This restores 0 files, deletes 1 file; the conversation goes back to 0 messages\./,
  );
  assert.ok(existsSync(file), "a preview changes nothing");
  await confirm.getByRole("button", { name: "Rewind" }).click();
  const rewound = page.locator(".entry.rewound");
  await rewound.waitFor();
  assert.match(
    await rewound.innerText(),
    /↶ rewound to checkpoint 1: 0 files restored, 1 deleted, conversation back to 0 messages · undo: rewind to rewind-1/,
  );
  assert.ok(!existsSync(file), "the file the turn wrote is gone");
  assert.equal(await confirm.count(), 0);
  await page.waitForSelector('.entry.finish[data-turn="1"].rewound-away');
  assert.equal(await page.locator('.entry[data-turn="1"]:not(.rewound-away)').count(), 0, "the whole turn is taken back");
  assert.equal(await turn.getByRole("button", { name: "rewind to here" }).isVisible(), false);
  await page.close();

  // Another page replays the session's events to the same picture, and its undo brings the file and the turn back.
  const again = await newPage();
  await again.goto(`${daemon.url}#session=${encodeURIComponent(session)}`);
  await again.waitForSelector(".entry.rewound");
  assert.equal(await again.locator('.entry[data-turn="1"]:not(.rewound-away)').count(), 0);
  await again.locator(".entry.rewound").getByRole("button", { name: "undo" }).click();
  const undo = again.locator(".prompt.rewind");
  await undo.waitFor();
  assert.match(await undo.innerText(), /Rewind to rewind-1, .*restores 1 file, deletes 0 files; the conversation goes back to 4 messages/);
  await undo.getByRole("button", { name: "Cancel" }).click();
  assert.equal(await undo.count(), 0);
  assert.ok(!existsSync(file), "cancelled");
  await again.locator(".entry.rewound").getByRole("button", { name: "undo" }).click();
  await again.locator(".prompt.rewind").getByRole("button", { name: "Rewind" }).click();
  await again.waitForFunction(() => document.querySelectorAll(".entry.rewound").length === 2);
  assert.match(await again.locator(".entry.rewound").nth(1).innerText(), /rewound to checkpoint rewind-1: 1 file restored, 0 deleted/);
  assert.equal(readFileSync(file, "utf8"), "A\n");
  assert.equal(await again.locator(".entry.rewound-away").count(), 0, "the turn is back in the conversation");

  // While a turn runs (here: waiting for a permission), a rewind is refused, and the page says so.
  await post(`${modelUrl}/_testkit/turns`, [
    { answer: '```codepilot\nexecute("main", "echo two > b.txt")\n```' },
    { answer: "```completion\nsecond\n```" },
  ]);
  await again.fill("#task", "Write b.txt");
  await again.click("#send");
  const permission = again.locator(".prompt:not(.rewind)");
  await permission.waitFor();
  await again.locator('.entry.user[data-turn="2"]').getByRole("button", { name: "rewind to here" }).click();
  await again.waitForSelector(".entry.error");
  assert.match(await again.locator(".entry.error").innerText(), /already running/);
  assert.equal(await again.locator(".prompt.rewind").count(), 0);
  await permission.getByRole("button", { name: "Allow" }).click();
  await again.waitForFunction(() => document.querySelectorAll(".entry.finish").length === 2);
  assert.deepEqual(errors, []);
});

test("an MCP server's login is a link in the page, and its question is a form", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  const python = process.env.CODEPILOT_TEST_MCP_PYTHON;
  if (!python) {
    assert.ok(!process.env.CI, "CI needs CODEPILOT_TEST_MCP_PYTHON (bash scripts/mcp-fixtures.sh)");
    t.skip("needs CODEPILOT_TEST_MCP_PYTHON (bash scripts/mcp-fixtures.sh)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));
  // The scripted model and, on the second line, an MCP server behind a local OAuth server that approves at once.
  const served = spawn(testkit, ["--oauth-mcp"], { stdio: ["pipe", "pipe", "inherit"] });
  t.after(() => served.kill());
  const [modelUrl, mcpUrl] = await new Promise((resolvePromise) => {
    const got = [];
    createInterface({ input: served.stdout }).on("line", (line) => {
      got.push(line.trim());
      if (got.length === 2) resolvePromise(got);
    });
  });
  const port = await new Promise((resolvePromise) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address();
      probe.close(() => resolvePromise(free));
    });
  });
  const script = resolve(new URL(".", import.meta.url).pathname, "../../../cli/tests/fixtures/mcp/server.py");
  const agentFile = writeAgent(dir, modelUrl, [
    "  mcp_servers:",
    "    - name: remote",
    `      url: ${mcpUrl}`,
    `      oauth: {redirect_port: ${port}}`,
    "    - name: calc",
    `      command: ${python}`,
    `      args: [${JSON.stringify(script)}, stdio]`,
  ]);
  await post(`${modelUrl}/_testkit/turns`, [
    { answer: 'Booking.\n```codepilot\nprint("WHO", remote__whoami())\nprint("RESULT", calc__book())\n```' },
    { answer: "Done.\n```completion\nBooked\n```" },
  ]);

  const daemon = await startDaemon(t, dir);
  const { newPage, errors } = await launch(t);
  const page = await newPage();
  await page.goto(daemon.url);
  await page.waitForSelector("#status:text('connected')");
  await page.fill("#agent-file", agentFile);
  await page.click("#start-session button");

  // The login: a link; the browser goes to the authorization server and comes back to the daemon.
  const login = page.locator(".prompt", { hasText: "MCP server remote needs a login" });
  await login.waitFor();
  const [tab] = await Promise.all([page.waitForEvent("popup"), login.getByRole("link", { name: "Log in" }).click()]);
  await tab.waitForFunction(() => document.body.innerText.includes("you can close this tab"));
  await login.waitFor({ state: "detached" });
  // The daemon connects on its own with the new token; give it a moment before the task.
  await new Promise((r) => setTimeout(r, 1000));

  await page.fill("#task", "Book a room");
  await page.click("#send");
  const form = page.locator("form.prompt");
  await form.waitFor();
  assert.match(await form.innerText(), /MCP server `calc` asks: Book a room/);
  assert.equal(await form.locator("input[name=nights]").inputValue(), "1", "the default is filled in");
  await form.locator("input[name=guest]").fill("Ada");
  await form.getByRole("button", { name: "Send" }).click();
  await page.waitForSelector(".entry.finish");
  const requests = await (await fetch(`${modelUrl}/_testkit/requests`)).json();
  const seen = JSON.stringify(requests.at(-1).body);
  assert.match(seen, /WHO authorized/);
  assert.match(seen, /booked 1 night\(s\) for Ada/);
  assert.deepEqual(errors, []);
});
