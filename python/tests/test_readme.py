"""README examples against the scripted model server: the project README's, read from README.md and
python/README.md as they are now, and the seed README's (the original ``codepilot-ai``'s, which SPEC §14 asks to run
verbatim; that README is not part of this repository, so its examples are quoted here)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any, Dict, List

from conftest import DONE, REPO, ScriptedServer

READ = 'I will inspect the failing test first.\n\n```codepilot\nread_file("tests/test_api.py")\n```'


def fenced(path: Path, language: str) -> List[str]:
    """The fenced ```` ```language ```` blocks of a Markdown file, in order."""
    blocks: List[str] = []
    current: Any = None
    for line in path.read_text().splitlines():
        if current is None:
            if line.strip() == f"```{language}":
                current = []
        elif line.strip() == "```":
            blocks.append("\n".join(current) + "\n")
            current = None
        else:
            current.append(line)
    assert current is None, f"{path}: a ```{language} block is not closed"
    return blocks


class Tracker:
    """The issue tracker the README's custom-tool example assumes the application has."""

    def title(self, key: str) -> str:
        return f"{key}: login fails on empty password"


def test_the_project_readme_python_example(project: Path, server: ScriptedServer, capsys: Any) -> None:
    examples = fenced(REPO / "README.md", "python") + fenced(REPO / "python" / "README.md", "python")
    assert len(examples) == 1, "the READMEs have a new Python example: run it in this file too"
    (agent_file,) = fenced(REPO / "README.md", "yaml")
    (project / "agent.yaml").write_text(agent_file)
    server.push(
        'Looking the ticket up.\n```codepilot\nprint(ticket("ENG-7"))\n```',
        "Fixed it.\n```completion\nAll tests pass.\n```",
    )

    namespace: Dict[str, Any] = {"__name__": "readme_example", "tracker": Tracker()}
    exec(compile(examples[0], "README.md", "exec"), namespace)
    namespace["runtime"].close()

    assert namespace["summary"] == "All tests pass."
    assert capsys.readouterr().out == "Looking the ticket up.\nFixed it.\n", "the prose streamed, no control blocks"
    system = server.system()
    assert "ticket(key: str) -> str" in system and "The title of issue `key` in our tracker." in system
    assert "ENG-7: login fails on empty password" in server.observation(1), "the model read the tool's result"
    assert server.requests()[0]["body"]["stream"] is True


def test_quick_start(project: Path, server: ScriptedServer, capsys: Any) -> None:
    (project / "workspace" / "tests").mkdir(parents=True)
    (project / "workspace" / "tests" / "test_api.py").write_text("def test_ok():\n    assert 1 == 2\n")
    server.push(READ, DONE)

    # --- README: Run the agent ---
    from codepilot import Runtime, on_stream, on_finish

    runtime = Runtime("agent.yaml", stream=True)

    @on_stream(runtime)
    def stream(text: str, **_):
        print(text, end="", flush=True)

    @on_finish(runtime)
    def finish(summary: str, **_):
        print(f"\nDone: {summary}\n")

    summary = runtime.run("Inspect the project and fix the failing tests.")
    print(summary)
    # --- end ---

    out = capsys.readouterr().out
    assert summary == "All tests pass."
    assert "I will inspect the failing test first." in out
    assert "```codepilot" not in out, "control blocks are not streamed to the UI"
    assert "\nDone: All tests pass.\n" in out
    assert out.rstrip().endswith("All tests pass.")
    assert "assert 1 == 2" in server.observation(1), "the model read the file"
    assert server.requests()[0]["body"]["stream"] is True
    runtime.close()


def test_async_runtime_with_an_async_sqlalchemy_engine(project: Path, server: ScriptedServer) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    server.push(DONE)
    async_engine = create_async_engine("sqlite+aiosqlite:///./app.db")

    async def main() -> Any:
        # --- README: Async applications should use AsyncRuntime ---
        from codepilot import AsyncRuntime

        runtime = AsyncRuntime("agent.yaml", session="db", db=async_engine, stream=True)
        summary = await runtime.run("Refactor the repository layer to use async SQLAlchemy.")
        # --- end ---
        await runtime.aclose()
        await async_engine.dispose()
        return summary, runtime.session_id

    summary, session_id = asyncio.run(main())
    assert summary == "All tests pass."
    assert session_id == "codepilot", "the default session id is the agent's name, as in the original"
    rows = sqlite3.connect(project / "app.db").execute("SELECT count(*) FROM messages").fetchone()
    assert rows[0] >= 2, "the session was stored in the engine's database"


def test_the_three_session_lines(project: Path, server: ScriptedServer) -> None:
    from codepilot import Runtime

    server.push(DONE, DONE, DONE)
    # --- README: Persistence Model ---
    runtimes = [
        Runtime("agent.yaml"),                                      # memory
        Runtime("agent.yaml", session="file", session_id="demo"),   # JSON file
        Runtime("agent.yaml", session="db", db_url="sqlite:///./codepilot.db"),
    ]
    # --- end ---
    for rt in runtimes:
        assert rt.run("Say done.") == "All tests pass."
        rt.close()
    stored = json.loads((project / "home" / "sessions" / "demo.json").read_text())
    assert "Say done." in json.dumps(stored)
    assert (project / "codepilot.db").exists(), "sqlite:///./ is relative to the current directory"


def test_async_engine_the_application_owns(project: Path, server: ScriptedServer) -> None:
    server.push(DONE)
    DATABASE_URL = "sqlite+aiosqlite:///./owned.db"

    async def main() -> Any:
        # --- README: pass the engine your application owns ---
        from sqlalchemy.ext.asyncio import create_async_engine
        from codepilot import AsyncRuntime

        engine = create_async_engine(
            DATABASE_URL,
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,
        )

        runtime = AsyncRuntime("agent.yaml", session="db", db=engine)
        # --- end ---
        try:
            return await runtime.run("Check the pool.")
        finally:
            await runtime.aclose()
            await engine.dispose()

    assert asyncio.run(main()) == "All tests pass."
    assert (project / "owned.db").exists()


def test_the_hooks_register_examples(project: Path, server: ScriptedServer) -> None:
    (project / "workspace" / "tests").mkdir(parents=True)
    (project / "workspace" / "tests" / "test_api.py").write_text("x = 1\n")
    server.push(READ, DONE)
    sent: List[Dict[str, Any]] = []
    send_to_ui = sent.append

    from codepilot import Runtime

    runtime = Runtime("agent.yaml", stream=True)

    # --- README: Observability and Product Integration ---
    from codepilot import EventType

    runtime.hooks.register(
        EventType.STREAM,
        lambda text, **_: send_to_ui({"type": "stream", "text": text}),
    )

    runtime.hooks.register(
        EventType.TOOL_CALL,
        lambda tool, args, label="", **_: send_to_ui({
            "type": "tool_call",
            "tool": tool,
            "label": label,
            "args": args,
        }),
    )

    runtime.hooks.register(
        EventType.TOOL_RESULT,
        lambda tool, result, **_: send_to_ui({
            "type": "tool_result",
            "tool": tool,
            "result": result,
        }),
    )
    # --- end ---

    runtime.run("Inspect the project.")
    runtime.close()
    kinds = [e["type"] for e in sent]
    assert kinds.index("tool_call") < kinds.index("tool_result")
    call = next(e for e in sent if e["type"] == "tool_call")
    assert call["tool"] == "read_file"
    assert call["args"]["path"] == "tests/test_api.py"
    assert call["label"], "tool calls carry a UI label"
    result = next(e for e in sent if e["type"] == "tool_result")
    assert "x = 1" in result["result"]
    streamed = "".join(e["text"] for e in sent if e["type"] == "stream")
    assert "I will inspect the failing test first." in streamed
    assert "Finished." in streamed
