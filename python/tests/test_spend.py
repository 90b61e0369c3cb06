"""Limits and structured results from Python (SPEC §21): ``run(task, limits=…, output_schema=…)``, the outcome's
usage and cost, the ``limit_warning`` hook, and a pydantic model class for the result."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict, List

import pydantic
import pytest

from codepilot import AsyncRuntime, EventType, Runtime
from conftest import ScriptedServer, write_agent

LOOP = "Working.\n```codepilot\nprint('again')\n```"


def costly(answer: str) -> Dict[str, Any]:
    return {"answer": answer, "input_tokens": 30_000, "output_tokens": 100}


class Count(pydantic.BaseModel):
    files: int
    summary: str


def test_a_run_stops_at_its_limit_with_the_spend_reported(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    server.push(*[costly(LOOP) for _ in range(10)])
    rt = Runtime("agent.yaml")
    warnings: List[Dict[str, Any]] = []
    usage: List[Dict[str, Any]] = []
    rt.hooks.register(EventType.LIMIT_WARNING, lambda **kw: warnings.append(kw))
    rt.hooks.register(EventType.USAGE, lambda **kw: usage.append(kw))
    # claude-sonnet-4-5 at the built-in $3 / $15: each call costs $0.0915.
    assert rt.run("loop", limits={"max_total_tokens": 64_000}) is None
    outcome = rt.last_outcome
    assert outcome is not None and outcome.status == "limit_exceeded"
    status, text, steps = outcome
    assert (status, text, steps) == ("limit_exceeded", None, 2), "it still unpacks as the three fields it had"
    assert outcome.details is not None and outcome.details["limit"] == "max_total_tokens"
    assert outcome.usage is not None and outcome.usage["tokens"]["input_tokens"] == 60_000
    assert outcome.usage["cost_usd"] == pytest.approx(0.183)
    assert [w["limit"] for w in warnings] == ["max_total_tokens"]
    assert usage[0]["cost_usd"] == pytest.approx(0.0915) and usage[0]["estimated"] is False
    assert rt.usage["input_tokens"] == 60_000, "the session's totals keep the original's shape"
    with pytest.raises(ValueError, match="max_tokens"):
        rt.run("x", limits={"max_tokens": 5})
    rt.close()


def test_a_pydantic_model_gets_an_instance_back(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    server.push(
        "```completion\nthree files\n```",
        '```completion\n{"files": 3, "summary": "ok"}\n```',
        '```completion\n{"files": 1, "summary": "dict"}\n```',
    )
    rt = Runtime("agent.yaml")
    result = rt.run("count", output_schema=Count)
    assert result == Count(files=3, summary="ok")
    assert rt.last_outcome is not None and rt.last_outcome.structured == result and rt.last_outcome.steps == 2
    refusal = str(server.requests()[1]["body"]["messages"][-1])
    assert "COMPLETION NOT ACCEPTED" in refusal and "not JSON" in refusal
    schema = {"type": "object", "properties": {"files": {"type": "integer"}}, "required": ["files"]}
    assert rt.run("count", output_schema=schema) == {"files": 1, "summary": "dict"}
    with pytest.raises(TypeError, match="pydantic model class"):
        rt.run("count", output_schema="not a schema")
    rt.close()


def test_async_runs_take_the_same_arguments(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml", output_retries=1)
    server.push('```completion\n{"files": "x"}\n```', '```completion\n{"files": "y"}\n```')

    async def main() -> None:
        rt = AsyncRuntime("agent.yaml")
        assert await rt.run("count", output_schema=Count, limits={"max_wall_s": 60}) is None
        outcome = rt.last_outcome
        assert outcome is not None and outcome.status == "invalid_output"
        assert outcome.details is not None and outcome.details["last"] == '{"files": "y"}'
        await rt.aclose()

    asyncio.run(main())
