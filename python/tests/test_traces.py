"""Traces from Python (SPEC §23): a run joins the caller's OpenTelemetry trace — the current span when the
``opentelemetry-api`` package is installed, or an explicit ``traceparent`` — and its spans reach the collector the
agent file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from codepilot import Runtime
from conftest import ScriptedServer, wait_until, write_agent

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def _agent(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml", tools=f"observability:\n  endpoint: {server.url}\n")


def _run_spans(server: ScriptedServer) -> List[Dict[str, Any]]:
    return [s for s in server.spans() if s["name"] == "invoke_agent Test Agent"]


def test_a_run_joins_the_current_opentelemetry_span(project: Path, server: ScriptedServer) -> None:
    _agent(project, server)
    server.push("```completion\ndone\n```")
    rt = Runtime("agent.yaml")
    caller = SpanContext(trace_id=TRACE_ID, span_id=SPAN_ID, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(caller)):
        assert rt.run("hello") == "done"
    rt.flush_traces()
    assert len(_run_spans(server)) == 1, "flushed before it returned"
    rt.close()
    run = _run_spans(server)[0]
    assert run["trace_id"] == f"{TRACE_ID:032x}"
    assert run["parent_span_id"] == f"{SPAN_ID:016x}"
    assert {s["trace_id"] for s in server.spans()} == {run["trace_id"]}


def test_an_explicit_traceparent_wins_and_a_bad_one_is_refused(project: Path, server: ScriptedServer) -> None:
    _agent(project, server)
    server.push("```completion\ndone\n```")
    rt = Runtime("agent.yaml")
    with pytest.raises(ValueError, match="traceparent"):
        rt.run("hello", traceparent="00-nope")
    assert rt.run("hello", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") == "done"
    rt.close()
    wait_until(lambda: len(_run_spans(server)) == 1, "the run span")
    run = _run_spans(server)[0]
    assert run["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert run["parent_span_id"] == "b7ad6b7169203331"
