"""Sub-agents from Python (SPEC §20): code written for ``codepilot-ai`` 0.9.41 — ``spawn_subagent`` /
``await_subagent`` in the control block, the ``SUBAGENT_*`` hooks — runs unchanged, and a ``subagent_message`` hook
that returns a string answers the worker (the original documented it and never wired it up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from codepilot import EventType, Runtime, on_subagent_finish, on_subagent_spawn
from conftest import ScriptedServer, write_agent


def test_spawn_await_and_the_hooks(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    server.push(
        '```codepilot\na = spawn_subagent("count the files", context="in src/")\nprint(await_subagent(a))\n```',
        '```codepilot\nprint(ask_main_agent("which folder?"))\n```',
        "```completion\nthere are 3\n```",
        "```completion\ndone\n```",
    )
    rt = Runtime("agent.yaml")
    spawned: List[Dict[str, Any]] = []
    finished: List[Dict[str, Any]] = []
    on_subagent_spawn(rt)(lambda agent_id, task_summary, **_: spawned.append({"id": agent_id, "task": task_summary}))
    on_subagent_finish(rt)(lambda **kw: finished.append(kw))
    rt.hooks.register(EventType.SUBAGENT_MESSAGE, lambda agent_id, message, **_: "src/, as I said")
    tool_calls: List[str] = []
    rt.hooks.register(EventType.TOOL_CALL, lambda tool, **_: tool_calls.append(tool))
    assert rt.run("delegate the count") == "done"
    assert spawned == [{"id": 1, "task": "count the files"}]
    assert finished[0]["summary"] == "there are 3" and finished[0]["error"] is None
    assert finished[0]["elapsed_seconds"] >= 0 and finished[0]["files_written"] == []
    assert tool_calls == ["spawn_subagent", "await_subagent"], "a worker's own events are not the main agent's"
    worker_second = str(server.requests()[2]["body"]["messages"][-1])
    assert "[ask_main_agent] A: src/, as I said" in worker_second
    parent_last = str(server.requests()[3]["body"]["messages"][-1])
    assert "Sub-agent #1 completed in" in parent_last and "Summary: there are 3" in parent_last
    rt.close()
