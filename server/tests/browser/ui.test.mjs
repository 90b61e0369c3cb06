// The web UI of `codepilot serve`, end to end in headless Chromium: a scripted run streams into the page, Allow lets
// a gated command run, and keys typed into the xterm reach the shell (and the agent hears of them).
//
// Needs CODEPILOT_BIN (the codepilot binary), CODEPILOT_TESTKIT (the scripted model server) and Debian's chromium
// (CHROMIUM, default /usr/bin/chromium). Leaves a screenshot in ARTIFACTS_DIR (default ./artifacts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync } from "node:fs";
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

test("a run streams into the page, Allow runs the gated command, typed keys reach the shell", async (t) => {
  assert.ok(bin && testkit, "set CODEPILOT_BIN and CODEPILOT_TESTKIT");
  assert.ok(existsSync(browserPath), `no browser at ${browserPath} (apt-get install chromium)`);
  const dir = mkdtempSync(join(tmpdir(), "cp-ui-"));
  mkdirSync(join(dir, "work"));

  const model = await startAndWait(testkit, [], {}, "stdout", /^(http:\/\/\S+)$/);
  t.after(() => model.child.kill());
  const modelUrl = model.match[1];
  writeFileSync(
    join(dir, "agent.yaml"),
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
      "  tools:",
      "    - {name: execute, config: {require_permission: true}}",
      "",
    ].join("\n"),
  );
  await post(`${modelUrl}/_testkit/turns`, [
    { answer: 'Creating the file now.\n```codepilot\nexecute("main", "echo allowed > gated.txt")\n```' },
    { answer: "The file is there.\n```completion\nCreated gated.txt\n```" },
  ]);

  const daemon = await startAndWait(
    bin,
    ["serve", "--listen", "ws://127.0.0.1:0"],
    { cwd: dir, env: { ...process.env, CODEPILOT_HOME: join(dir, "home") } },
    "stderr",
    /web UI: (http:\/\/\S+)/,
  );
  t.after(() => daemon.child.kill());

  const browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(daemon.match[1]);
  await page.waitForSelector("#status:text('connected')");
  assert.ok(!page.url().includes("token="), "the token is removed from the address bar");

  await page.fill("#agent-file", join(dir, "agent.yaml"));
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
