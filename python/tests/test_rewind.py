"""Checkpoints and rewind from Python (SPEC §19): list them, preview, rewind files and conversation, undo, and the
errors a host meets."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from codepilot import AsyncRuntime, CheckpointError, EventType, Runtime, SessionBusy
from conftest import DONE, ScriptedServer, write_agent

WRITE_A = 'Writing.\n```codepilot\nwrite_file("a.txt")\n```\n\n```text filename=a.txt\nalpha\n```'


def test_rewind_files_and_conversation_then_undo(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    server.push(WRITE_A, DONE, DONE, DONE)
    rt = Runtime("agent.yaml")
    seen: List[Dict[str, Any]] = []
    rt.hooks.register(EventType.REWOUND, lambda **kw: seen.append(kw))
    rt.run("write a")
    rt.run("second")
    work = Path(rt.work_dir)
    assert (work / "a.txt").read_text() == "alpha\n"
    assert [c["id"] for c in rt.checkpoints()] == ["1", "2"]
    assert [c["messages"] for c in rt.checkpoints()] == [0, 4]

    preview = rt.rewind(turn=1, dry_run=True)
    assert (preview["files_deleted"], preview["messages"], preview["saved_as"]) == (1, 0, "")
    assert (work / "a.txt").exists() and not seen, "a preview changes nothing"

    done = rt.rewind(turn=2, scope="conversation")
    assert (done["messages"], done["files_deleted"]) == (4, 0)
    assert len(rt.messages) == 4 and (work / "a.txt").exists()
    rt.run("third")
    body = server.requests()[-1]["body"]["messages"]
    assert "second" not in str(body) and "[Task 3]" in str(body[-1]), body

    done = rt.rewind(turn=1)
    assert (done["files_deleted"], done["messages"]) == (1, 0)
    assert not (work / "a.txt").exists() and rt.messages == []
    assert [s["checkpoint"] for s in seen] == ["2", "1"]
    assert seen[-1]["saved_as"] == done["saved_as"] == "rewind-2"

    undone = rt.rewind(checkpoint="rewind-2")
    assert (work / "a.txt").read_text() == "alpha\n"
    assert undone["messages"] == len(rt.messages) == 6
    ids = [c["id"] for c in rt.checkpoints()]
    assert ids == ["1", "2", "rewind-1", "3", "rewind-2", "rewind-3"], ids
    rt.close()


def test_rewind_errors_name_what_to_do(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    server.push(DONE, {"answer": DONE, "delay_ms": 3000})
    rt = Runtime("agent.yaml")
    rt.run("first")
    with pytest.raises(ValueError, match="turn="):
        rt.rewind()
    with pytest.raises(ValueError, match="not both"):
        rt.rewind(turn=1, checkpoint="1")
    with pytest.raises(ValueError, match="unknown rewind scope"):
        rt.rewind(turn=1, scope="everything")
    with pytest.raises(CheckpointError, match='no checkpoint "9"; it has 1'):
        rt.rewind(turn=9)
    runner = threading.Thread(target=rt.run, args=("slow",))
    runner.start()
    server.wait_for_requests(2)
    with pytest.raises(SessionBusy):
        rt.rewind(turn=1)
    runner.join()
    rt.close()


def test_checkpoints_off_is_a_clear_error(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml", checkpoints="off")
    server.push(DONE)
    rt = Runtime("agent.yaml")
    rt.run("first")
    with pytest.raises(CheckpointError, match="runtime.checkpoints: off"):
        rt.checkpoints()
    rt.close()


def test_async_twins(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    server.push(WRITE_A, DONE)

    async def main() -> None:
        async with AsyncRuntime("agent.yaml") as rt:
            await rt.run("write a")
            assert [c["id"] for c in await rt.acheckpoints()] == ["1"]
            done = await rt.arewind(turn=1, scope="files")
            assert (done["scope"], done["files_deleted"]) == ("files", 1)
            assert not (Path(rt.work_dir) / "a.txt").exists()
            assert len(rt.messages) == 4, "files only: the conversation stays"

    asyncio.run(main())
