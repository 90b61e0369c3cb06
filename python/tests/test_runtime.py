"""Runtime and AsyncRuntime: tools, handlers, hooks, abort, sessions and errors, against the scripted server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import codepilot
from codepilot import AsyncRuntime, EventType, Runtime
from conftest import DONE, ScriptedServer, pg_url, service_missing, wait_until, write_agent

EXECUTE = '```codepilot\nexecute("main", "echo hello > made.txt")\n```'
GATED = """\
tools:
  - name: execute
    config:
      require_permission: true
"""


def block(code: str) -> str:
    return f"Working.\n```codepilot\n{code}\n```"


# -- custom tools ----------------------------------------------------------------------------------------------------


def test_sync_tools_run_on_the_calling_thread_and_their_results_reach_the_block(
    project: Path, server: ScriptedServer
) -> None:
    server.push(block('print(lookup("ann", 2))\nprint(lookup(key="bob"))'), DONE)
    threads: List[str] = []
    rt = Runtime("agent.yaml")

    @rt.tool
    def lookup(key: str, count: int = 1) -> List[str]:
        """Looks `key` up. Returns `count` copies."""
        threads.append(threading.current_thread().name)
        return [key.upper()] * count

    def run() -> Optional[str]:
        return rt.run("look up")

    worker = threading.Thread(target=lambda: threads.append(str(run())), name="caller")
    worker.start()
    worker.join(30)
    rt.close()
    assert threads == ["caller", "caller", "All tests pass."]
    system = server.system()
    assert "lookup(key: str, count: int = 1) -> List[str]" in system
    assert "Looks `key` up. Returns `count` copies." in system
    obs = server.observation(1)
    assert "['ANN', 'ANN']" in obs and "['BOB']" in obs


def test_a_python_exception_becomes_an_execution_error(project: Path, server: ScriptedServer) -> None:
    server.push(block('print(divide(1, 0))'), block('try:\n    divide(1, 0)\nexcept Exception as e:\n    print("caught", e)'), DONE)
    rt = Runtime("agent.yaml")

    def divide(a: int, b: int, /) -> float:
        """Divides (positional-only parameters are passed by position)."""
        return a / b

    rt.register_tool("divide", divide)
    rt.run("divide")
    rt.close()
    first = server.observation(1)
    assert "EXECUTION ERROR" in first and "ZeroDivisionError: division by zero" in first
    assert "caught ZeroDivisionError: division by zero" in server.observation(2)


def test_registering_twice_needs_replace(project: Path, server: ScriptedServer) -> None:
    server.push(block('print(name())'), DONE)
    rt = Runtime("agent.yaml")
    rt.register_tool("name", lambda: "first")
    with pytest.raises(ValueError, match="already registered"):
        rt.register_tool("name", lambda: "second")
    with pytest.raises(codepilot.ToolRegistrationError, match="not usable"):
        rt.register_tool("print", lambda: "x")
    with pytest.raises(TypeError, match=r"\*\*kwargs"):
        rt.register_tool("loose", lambda **kwargs: 1)
    with pytest.raises(codepilot.ToolRegistrationError, match="default of parameter `when`"):
        rt.register_tool("when", lambda when=object(): 1)
    rt.register_tool("name", lambda: "second", replace=True)
    rt.run("name")
    rt.close()
    assert "second" in server.observation(1)


def test_async_tools_and_handlers_run_on_the_event_loop(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml", GATED)
    server.push(block('print(fetch("a"), ask_user("Which branch?"))\n' + EXECUTE.split("\n")[1]), DONE)

    async def main() -> Any:
        loop_thread = threading.current_thread()
        seen: List[str] = []
        rt = AsyncRuntime("agent.yaml")

        @rt.tool
        async def fetch(key: str) -> str:
            """Fetches `key`."""
            await asyncio.sleep(0.01)
            seen.append("tool" if threading.current_thread() is loop_thread else "tool: other thread")
            return f"value of {key}"

        async def answer(question: str, **_: Any) -> str:
            await asyncio.sleep(0.01)
            seen.append("ask")
            return "main, please"

        async def allow(tool: str, description: str, **_: Any) -> bool:
            seen.append(f"permission {tool}: {description}")
            return True

        rt.hooks.register(EventType.ASK_USER, answer)
        codepilot.on_permission_request(rt)(allow)
        rt.hooks.register(EventType.STEP, lambda step, **_: seen.append(f"step {step}") if threading.current_thread() is loop_thread else None)
        summary = await rt.run("fetch")
        await rt.aclose()
        return summary, seen

    summary, seen = asyncio.run(main())
    assert summary == "All tests pass."
    assert seen[:4] == ["step 1", "tool", "ask", "permission execute: Execute in main: echo hello > made.txt"]
    assert (project / "workspace" / "made.txt").read_text() == "hello\n"
    obs = server.observation(1)
    assert "value of a main, please" in obs


def test_a_block_over_its_memory_cap_fails_and_the_host_lives_on(project: Path, server: ScriptedServer) -> None:
    hog = 'kept = []\nfor i in range(30):\n    kept.append("x" * 100000000)'
    server.push(block(hog), DONE)
    rt = Runtime("agent.yaml")
    assert rt.run("hog") == "All tests pass."
    rt.close()
    obs = server.observation(1)
    assert "raised MemoryError" in obs and "> 268435456 bytes" in obs, obs


# -- permission and ask_user -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("decision", [True, False, None])
def test_a_permission_handler_allows_or_denies(project: Path, server: ScriptedServer, decision: Optional[bool]) -> None:
    write_agent(project / "agent.yaml", GATED)
    server.push(EXECUTE, DONE)
    rt = Runtime("agent.yaml")
    asked: List[Dict[str, Any]] = []
    if decision is not None:

        @codepilot.on_permission_request(rt)
        def decide(tool: str, description: str, **kw: Any) -> bool:
            asked.append({"tool": tool, "description": description, **kw})
            return decision

    rt.run("make the file")
    rt.close()
    made = project / "workspace" / "made.txt"
    obs = server.observation(1)
    if decision:
        assert made.read_text() == "hello\n"
    else:
        assert not made.exists()
        assert "Permission denied" in obs
    if decision is None:
        assert "no permission handler" in obs
        assert asked == []
    else:
        assert asked[0]["tool"] == "execute"
        assert asked[0]["args"]["command"] == "echo hello > made.txt"


def test_ask_user_without_a_handler_never_reads_stdin(project: Path, server: ScriptedServer, monkeypatch: Any) -> None:
    monkeypatch.setattr("sys.stdin", None)
    server.push(block('try:\n    ask_user("Which?")\nexcept RuntimeError as e:\n    print("caught", e)'), DONE)
    rt = Runtime("agent.yaml")
    answers: List[str] = []
    rt.run("ask")
    codepilot.on_ask_user(rt)(lambda question, **_: answers.append(question) or "blue")
    server.push(block('print(ask_user("Colour?"))'), DONE)
    rt.run("ask again")
    rt.close()
    assert "caught nobody can answer" in server.observation(1)
    assert answers == ["Colour?"]
    assert "[ask_user] A: blue" in server.observation(3)


# -- hooks -----------------------------------------------------------------------------------------------------------


def test_a_hook_that_raises_is_logged_and_the_run_goes_on(
    project: Path, server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.push(DONE)
    rt = Runtime("agent.yaml")

    def broken(**_: Any) -> None:
        raise KeyError("boom")

    finished: List[str] = []
    rt.hooks.register(EventType.STEP, broken)
    rt.hooks.register(EventType.FINISH, lambda summary, **_: finished.append(summary))
    with caplog.at_level(logging.ERROR, logger="codepilot"):
        assert rt.run("go") == "All tests pass."
    rt.close()
    assert finished == ["All tests pass."]
    assert any("step hook" in r.getMessage() and "KeyError" in (r.exc_text or "") for r in caplog.records)


def test_hooks_register_as_a_decorator_and_clear(project: Path, server: ScriptedServer) -> None:
    server.push(DONE)
    rt = Runtime("agent.yaml")
    got: List[str] = []

    @rt.hooks.register(EventType.START)
    def started(task: str, **_: Any) -> None:
        got.append(task)

    rt.hooks.register("finish", lambda **_: got.append("finish"))
    rt.hooks.clear(EventType.FINISH)
    with pytest.raises(ValueError, match="unknown event"):
        rt.hooks.register("nope", print)
    rt.run("the task")
    rt.close()
    assert got == ["the task"]


def test_handlers_written_for_the_original_get_only_the_arguments_they_name(project: Path, server: ScriptedServer) -> None:
    server.push(block('try:\n    read_file("nope.txt")\nexcept OSError:\n    pass'), DONE)
    rt = Runtime("agent.yaml")
    got: List[Any] = []

    @codepilot.on_finish(rt)
    def finish(summary):  # type: ignore[no-untyped-def]
        got.append(summary)

    @codepilot.on_tool_call(rt)
    def called(tool, args, label=""):  # type: ignore[no-untyped-def]
        got.append(tool)

    rt.hooks.register(EventType.STEP, lambda step, max_steps: got.append(step))
    rt.hooks.register(EventType.FINISH, lambda **kw: got.append(sorted(kw)))
    rt.run("go")
    rt.close()
    assert got == [1, "read_file", 2, "All tests pass.", ["reason", "summary"]]


def test_a_command_over_a_resource_limit_reaches_the_resource_limit_hook(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml", resources={"max_open_files": 16})
    opener = "python3 -c \\\"fs = [open('/dev/null') for _ in range(64)]\\\""
    server.push(block(f'execute("main", "{opener}")\nexecute("main", "echo usable")'), DONE)
    rt = Runtime("agent.yaml")
    got: List[Dict[str, Any]] = []
    rt.hooks.register(EventType.RESOURCE_LIMIT, lambda **kw: got.append(kw))
    rt.run("open too many files")
    rt.close()
    assert [(g["kind"], g["limit"], g["terminal"]) for g in got] == [("open_files", 16, "main")]
    assert "open files limit 16 reached" in got[0]["message"]
    seen = server.observation(1)
    assert "Too many open files" in seen and "[open files limit 16 reached" in seen, seen
    assert "\nusable\n" in seen, seen


def test_agents_md_reaches_the_system_prompt_and_edits_apply_next_turn(project: Path, server: ScriptedServer) -> None:
    (project / "workspace").mkdir(exist_ok=True)
    (project / "workspace" / "AGENTS.md").write_text("Answer in French.\n")
    server.push(DONE, DONE)
    rt = Runtime("agent.yaml")
    assert "# PROJECT INSTRUCTIONS" in rt.system_prompt() and "Answer in French." in rt.system_prompt()
    rt.run("first")
    (project / "workspace" / "AGENTS.md").write_text("Answer in German.\n")
    rt.run("second")
    rt.close()
    assert "Answer in French." in server.system(0)
    assert "Answer in German." in server.system(1) and "French" not in server.system(1)


def test_send_message_reaches_the_model_and_the_hooks(project: Path, server: ScriptedServer) -> None:
    server.push(DONE)
    rt = Runtime("agent.yaml")
    queued: List[str] = []
    injected: List[str] = []
    codepilot.on_user_message_queued(rt)(lambda message, **_: queued.append(message))
    codepilot.on_user_message_injected(rt)(lambda message, **_: injected.append(message))
    rt.send_message("use tabs")
    assert queued == ["use tabs"], "queued while idle: delivered by send_message itself"
    rt.run("format")
    rt.close()
    assert injected == ["use tabs"]
    assert "use tabs" in str(server.requests()[0]["body"]["messages"])


# -- abort, the event loop -------------------------------------------------------------------------------------------


def test_abort_from_another_task_stops_a_run_promptly(project: Path, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 60_000})

    async def main() -> Any:
        rt = AsyncRuntime("agent.yaml")
        aborted: List[int] = []
        rt.hooks.register(EventType.ABORTED, lambda step, **_: aborted.append(step))

        async def stop() -> None:
            await asyncio.to_thread(server.wait_for_requests, 1)
            rt.abort()

        summary, _ = await asyncio.gather(rt.run("slow"), stop())
        await rt.aclose()
        return summary, rt.last_outcome, aborted

    summary, outcome, aborted = asyncio.run(main())
    assert summary is None
    assert outcome.status == "aborted"
    assert aborted == [1]
    # The answer was held back for a minute: the run ended because its model call was dropped, not waited out.
    wait_until(lambda: server.cancelled() == 1, "the scripted server to see the model call cancelled")


def test_a_second_concurrent_run_is_refused(project: Path, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 60_000}, DONE)

    async def main() -> Any:
        rt = AsyncRuntime("agent.yaml")
        first = asyncio.ensure_future(rt.run("one"))
        await asyncio.to_thread(server.wait_for_requests, 1)
        with pytest.raises(codepilot.SessionBusy, match="already running"):
            await rt.run("two")
        assert not first.done(), "the refused run left the first one alone"
        rt.abort()
        stopped = await first
        again = await rt.run("three")
        await rt.aclose()
        return stopped, again

    assert asyncio.run(main()) == (None, "All tests pass.")


def test_cancelling_the_awaiting_task_aborts_the_run(project: Path, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 60_000}, DONE)

    async def main() -> Any:
        rt = AsyncRuntime("agent.yaml")
        task = asyncio.ensure_future(rt.run("slow"))
        await asyncio.to_thread(server.wait_for_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        summary = await rt.run("again")
        await rt.aclose()
        return summary

    assert asyncio.run(main()) == "All tests pass.", "the next run waits for the cancelled one to stop"
    wait_until(lambda: server.cancelled() == 1, "the scripted server to see the cancelled run's model call dropped")


def test_abort_from_another_thread_stops_a_blocking_run(project: Path, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 60_000})
    rt = Runtime("agent.yaml")

    failed: List[BaseException] = []

    def stop() -> None:
        try:
            server.wait_for_requests(1)
        except BaseException as e:  # this thread cannot fail the test; the assertion below does
            failed.append(e)
        rt.abort()

    stopper = threading.Thread(target=stop)
    stopper.start()
    assert rt.run("slow") is None
    stopper.join()
    assert not failed, failed
    assert rt.last_outcome is not None and rt.last_outcome.status == "aborted"
    rt.close()


def test_the_event_loop_stays_free_while_the_agent_works(project: Path, server: ScriptedServer) -> None:
    server.push(block('print("one")'), {"answer": DONE, "delay_ms": 60_000})

    async def main() -> Any:
        rt = AsyncRuntime("agent.yaml")
        run = asyncio.ensure_future(rt.run("slow"))
        # This coroutine resumes on the loop once the second model call reached the scripted server, which holds
        # its answer for a minute. It resumes while the run is still waiting only if the run leaves the loop free.
        await asyncio.to_thread(server.wait_for_requests, 2)
        resumed_during_the_run = not run.done()
        rt.abort()
        summary = await run
        await rt.aclose()
        return resumed_during_the_run, summary

    resumed_during_the_run, summary = asyncio.run(main())
    assert resumed_during_the_run, "the loop was held until the model answered"
    assert summary is None, "the run was aborted from the loop while it waited for the model"
    assert "one" in server.observation(1), "the first step ran its block"


# -- sessions --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_session_resumes_from_the_database(project: Path, server: ScriptedServer, backend: str) -> None:
    if backend == "sqlite":
        url = "sqlite:///./sessions.db"
        session_id = "resume-me"
    else:
        url = pg_url()
        session_id = f"py-resume-{time.time_ns()}"
    server.push(DONE, DONE)
    first = Runtime("agent.yaml", session="db", db_url=url, session_id=session_id)
    first.run("Remember the number 4242.")
    first.close()

    second = Runtime("agent.yaml", session="db", db_url=url, session_id=session_id)
    assert any("4242" in m["content"] for m in second.messages)
    second.run("What was the number?")
    second.close()
    history = str(server.requests()[1]["body"]["messages"])
    assert "4242" in history, "the resumed session's history was sent to the model"


def test_a_second_runtime_on_a_held_session_is_refused(project: Path, server: ScriptedServer) -> None:
    first = Runtime("agent.yaml", session="file", session_id="shared")
    with pytest.raises(codepilot.SessionBusy, match="shared"):
        Runtime("agent.yaml", session="file", session_id="shared")
    first.close()
    Runtime("agent.yaml", session="file", session_id="shared").close()


def test_reset_starts_a_new_session(project: Path, server: ScriptedServer) -> None:
    server.push(DONE)
    rt = Runtime("agent.yaml", session="file", session_id="before")
    resets: List[str] = []
    rt.hooks.register(EventType.SESSION_RESET, lambda session_id, **_: resets.append(session_id))
    rt.run("one")
    new_id = rt.reset()
    assert new_id != "before" and rt.session_id == new_id
    assert resets == [new_id]
    assert rt.messages == []
    rt.close()


# -- errors ----------------------------------------------------------------------------------------------------------


def test_a_bad_agent_file_names_the_key_and_line(project: Path) -> None:
    (project / "bad.yaml").write_text("agent:\n  name: x\n  model:\n    provider: anthropic\n    name: m\n  runtime:\n    max_step: 3\n")
    with pytest.raises(codepilot.ConfigError) as err:
        Runtime("bad.yaml")
    message = str(err.value)
    assert "max_step" in message and "bad.yaml:7" in message, message
    assert isinstance(err.value, ValueError)


def test_usage_errors_are_config_errors(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(codepilot.ConfigError, match="not found"):
        Runtime("missing.yaml")
    with pytest.raises(codepilot.ConfigError, match='"memory", "file" or "db"'):
        Runtime("agent.yaml", session="redis")
    with pytest.raises(codepilot.ConfigError, match="db_url"):
        Runtime("agent.yaml", session="db", db_url="mysql://x/y")
    with pytest.raises(codepilot.ConfigError, match="session id"):
        Runtime("agent.yaml", session="file", session_id="../escape")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(codepilot.ConfigError, match="ANTHROPIC_API_KEY"):
        Runtime("agent.yaml")


def test_a_failing_provider_raises_provider_error(project: Path, server: ScriptedServer) -> None:
    server.push({"status": 401})
    rt = Runtime("agent.yaml")
    with pytest.raises(codepilot.CodePilotError, match="401"):
        rt.run("go")
    rt.close()


def test_a_closed_runtime_says_so(project: Path, server: ScriptedServer) -> None:
    with Runtime("agent.yaml") as rt:
        pass
    with pytest.raises(codepilot.RuntimeClosed, match="closed"):
        rt.run("go")


def test_mcp_servers_come_from_the_agent_file(project: Path, server: ScriptedServer) -> None:
    """MCP servers are configuration: the package starts them like the CLI does (SPEC §18)."""
    import os

    python = os.environ.get("CODEPILOT_TEST_MCP_PYTHON")
    if not python:
        service_missing(
            "the MCP Python SDK (CODEPILOT_TEST_MCP_PYTHON)",
            "bash scripts/mcp-fixtures.sh installs it and prints the python to set it to",
        )
    script = Path(__file__).resolve().parents[2] / "cli/tests/fixtures/mcp/server.py"
    write_agent(
        project / "agent.yaml",
        f"""\
        mcp_servers:
          - name: calc
            command: {python}
            args: ["{script}", stdio]
        """,
    )
    server.push(block('print("sum", calc__add(a=40, b=2)["result"])'), DONE)
    rt = Runtime("agent.yaml")
    try:
        assert rt.run("add") == "All tests pass."
    finally:
        rt.close()
    assert "calc__add(a: int, b: int) -> dict" in server.system()
    assert "sum 42" in server.observation(1)


def test_an_mcp_server_that_needs_a_login_shows_its_url_to_on_mcp_auth(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server behind OAuth: the run goes on without it, ``on_mcp_auth`` gets the URL, and once the browser came
    back (here urllib following the redirects) its tools come with the next step (SPEC §18). The first step takes
    two seconds so the login ends during the run."""
    import socket
    import urllib.request

    protected = ScriptedServer(oauth_mcp=True)
    try:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", protected.url)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        write_agent(
            project / "agent.yaml",
            f"""\
            mcp_servers:
              - name: remote
                url: {protected.mcp_url}
                oauth:
                  redirect_port: {port}
            """,
        )
        rt = Runtime("agent.yaml")
        shown: List[Dict[str, str]] = []
        browsed: List[str] = []

        @codepilot.on_mcp_auth(rt)
        def login(url: str, server: str, **_: Any) -> None:
            shown.append({"url": url, "server": server})
            browsed.append(urllib.request.urlopen(url, timeout=30).read().decode())

        protected.push(
            block('print("FIRST")\nexecute("main", "sleep 2")'),
            block('print("WHO", remote__whoami())'),
            DONE,
        )
        try:
            assert rt.run("who am i") == "All tests pass."
        finally:
            rt.close()
        assert [s["server"] for s in shown] == ["remote"]
        assert "code_challenge=" in shown[0]["url"]
        assert "you can close this tab" in browsed[0]
        assert "WHO authorized" in protected.observation(2), protected.observation(2)
        assert list((project / "home" / "mcp-auth").iterdir())
    finally:
        protected.close()
