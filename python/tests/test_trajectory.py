"""Trajectories from Python (SPEC §23): ``export_trajectory`` writes the session as JSON lines with the agent file,
the starting workspace and every message, the model's answers as it gave them."""

from __future__ import annotations

import json
from pathlib import Path

from codepilot import Runtime
from conftest import ScriptedServer, write_agent


def test_export_trajectory_writes_the_session_as_json_lines(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    (project / "workspace").mkdir(exist_ok=True)
    (project / "workspace" / "notes.txt").write_text("first\n")
    server.push(
        '```codepilot\nwrite_file("out.txt")\n```\n```text filename=out.txt\nhello\n```',
        "```completion\nwrote it\n```",
    )
    rt = Runtime("agent.yaml")
    assert rt.run("write out.txt") == "wrote it"
    stats = rt.export_trajectory(project / "t.jsonl")
    rt.close()
    lines = [json.loads(l) for l in (project / "t.jsonl").read_text().splitlines()]
    assert [l["type"] for l in lines[:2]] == ["header", "workspace"] and lines[-1]["type"] == "end"
    assert "name: Test Agent" in lines[0]["agent_yaml"]
    assert [f["path"] for f in lines[1]["files"]] == ["notes.txt"]
    answer = next(l for l in lines if l.get("role") == "assistant")
    assert "hello" not in answer["content"] and "hello" in answer["raw"]
    assert stats["messages"] == 4 and stats["files"] == 1
