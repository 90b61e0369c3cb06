"""Fixtures: the scripted model server (the `codepilot-testkit` binary) and a project directory with agent.yaml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Union

import pytest

import codepilot

REPO = Path(__file__).resolve().parents[2]

# The seed README's Quick Start agent file, verbatim.
README_AGENT = """\
agent:
  name: CodePilot
  role: Autonomous software engineering agent.

  model:
    provider: anthropic
    name: claude-sonnet-4-5
    api_key_env: ANTHROPIC_API_KEY

  runtime:
    work_dir: ./workspace
    max_steps: 20
    unsafe_mode: false

  tools:
    - name: read_file
      enabled: true
    - name: write_file
      enabled: true
    - name: execute
      enabled: true
      config:
        require_permission: true
    - name: read_output
      enabled: true
    - name: send_input
      enabled: true
    - name: terminate_terminal
      enabled: true
    - name: find
      enabled: true
"""

DONE = "Finished.\n```completion\nAll tests pass.\n```"


def pytest_configure(config: Any) -> None:
    installed = Path(codepilot.__file__).resolve()
    if REPO / "python" in installed.parents:
        raise pytest.UsageError(
            f"codepilot was imported from the source tree ({installed}), not the installed wheel; run pytest from "
            "outside python/ after `pip install ./python`"
        )


def testkit_binary() -> str:
    explicit = os.environ.get("CODEPILOT_TESTKIT")
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("debug", "release"):
        candidate = target / profile / "codepilot-testkit"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("codepilot-testkit")
    if found:
        return found
    raise pytest.UsageError(
        "codepilot-testkit not found: build it with `cargo build -p codepilot-testkit` or set CODEPILOT_TESTKIT"
    )


Turn = Union[str, Dict[str, Any]]


class ScriptedServer:
    """A scripted model server process: answers requests with queued turns, records what it received."""

    def __init__(self, oauth_mcp: bool = False) -> None:
        args = [testkit_binary()] + (["--oauth-mcp"] if oauth_mcp else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"codepilot-testkit did not start: {self.url!r}")
        # With oauth_mcp: an MCP server behind a local OAuth authorization server that approves at once.
        self.mcp_url = self.proc.stdout.readline().strip() if oauth_mcp else ""

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def push(self, *turns: Turn) -> None:
        """Queues answers (text) or turn specs (``{"answer": ..., "delay_ms": ...}``)."""
        specs = [{"answer": t} if isinstance(t, str) else t for t in turns]
        self._call("POST", "/_testkit/turns", specs)

    def requests(self) -> List[Dict[str, Any]]:
        return self._call("GET", "/_testkit/requests")

    def remaining(self) -> int:
        return self._call("GET", "/_testkit/state")["remaining"]

    def spans(self) -> List[Dict[str, Any]]:
        """The OpenTelemetry spans exported to the server's ``/v1/traces`` so far."""
        return self._call("GET", "/_testkit/spans")

    def received(self) -> int:
        """How many model requests arrived so far (a delayed turn is being served once its request arrived)."""
        return self._call("GET", "/_testkit/state")["requests"]

    def cancelled(self) -> int:
        """How many delayed turns were abandoned because the client went away before the delay ended."""
        return self._call("GET", "/_testkit/state")["cancelled"]

    def wait_for_requests(self, count: int = 1) -> None:
        """Blocks until ``count`` model requests arrived: the run is then inside that model call."""
        wait_until(lambda: self.received() >= count, f"{count} model request(s) at the scripted server")

    def observation(self, index: int) -> str:
        """The last user message of request ``index`` (what the model read then)."""
        messages = self.requests()[index]["body"]["messages"]
        content = messages[-1]["content"]
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content)
        return content

    def system(self, index: int = 0) -> str:
        system = self.requests()[index]["body"].get("system", "")
        if isinstance(system, list):
            return "".join(part.get("text", "") for part in system)
        return system

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def project(tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the current directory) with the README's agent.yaml, talking to the scripted server."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("CODEPILOT_HOME", str(tmp_path / "home"))
    (tmp_path / "agent.yaml").write_text(README_AGENT)
    return tmp_path


def write_agent(path: Path, tools: str = "", **runtime: Any) -> Path:
    """An agent file with the given `tools:` section (YAML, indented under `agent:`) and runtime keys."""
    settings = {"work_dir": "./workspace", "max_steps": 20, **runtime}
    rt = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in settings.items())
    text = textwrap.dedent(
        """\
        agent:
          name: Test Agent
          model:
            provider: anthropic
            name: claude-sonnet-4-5
          runtime:
        """
    ) + rt + "\n" + textwrap.indent(textwrap.dedent(tools), "  ")
    path.write_text(text)
    return path


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` after ``timeout`` seconds (a deadline for a hung
    test, not a timing assumption: the condition usually holds within milliseconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.01)


def under_ci() -> bool:
    """Whether the tests run under CI: ``CI`` is set to anything but nothing, ``0`` or ``false`` (any case; spaces
    around it ignored). The Rust testkit (``codepilot_testkit::service::under_ci``) applies the same rule."""
    value = os.environ.get("CI", "").strip()
    return value != "" and value != "0" and value.lower() != "false"


def current_test() -> str:
    """The running test's id (``file::name[params]``), from the variable pytest sets while it runs one."""
    return os.environ.get("PYTEST_CURRENT_TEST", "a test").rsplit(" (", 1)[0]


def service_missing(service: str, install: str) -> NoReturn:
    """The running test cannot run because ``service`` is missing; ``install`` says how to provide it.

    As the Rust testkit's ``service::missing``: under CI (:func:`under_ci`) the test fails; elsewhere it is skipped
    with the reason (``scripts/test-python.sh`` lists the skips at the end) and a line ``TEST: needs SERVICE`` is
    appended to the skip log named by ``CODEPILOT_SKIP_LOG``, where ``scripts/test.sh`` counts the skips."""
    test = current_test()
    if under_ci():
        pytest.fail(
            f"{test} needs {service}, which is missing, and under CI (CI is set) tests never skip: {install}",
            pytrace=False,
        )
    log = os.environ.get("CODEPILOT_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{test}: needs {service}\n")
    pytest.skip(f"{test} needs {service}; {install}")


def pg_url() -> str:
    """The test Postgres URL (``CODEPILOT_TEST_PG_URL``); see :func:`service_missing` when it is not set."""
    url = os.environ.get("CODEPILOT_TEST_PG_URL")
    if not url:
        service_missing("Postgres (CODEPILOT_TEST_PG_URL)", "bash .ci/postgres.sh starts one and prints its URL")
    return url
