"""examples/fastapi_app.py served by uvicorn, driven with httpx over real HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import pytest
import uvicorn

from conftest import DONE, REPO, ScriptedServer

READ = 'Reading.\n```codepilot\nread_file("notes.txt")\n```'


def load_app() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_app", REPO / "python" / "examples" / "fastapi_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.fixture
def app_url(project: Path) -> Iterator[str]:
    (project / "workspace").mkdir()
    (project / "workspace" / "notes.txt").write_text("remember the milk\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(load_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)


def parse_sse(text: str) -> List[Dict[str, Any]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        data = [line[len("data: "):] for line in chunk.splitlines() if line.startswith("data: ")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


def test_a_run_streams_its_events_while_the_app_keeps_answering(app_url: str, server: ScriptedServer) -> None:
    server.push({"answer": READ, "delay_ms": 300}, {"answer": DONE, "delay_ms": 300})

    async def main() -> Any:
        async with httpx.AsyncClient(base_url=app_url, timeout=30) as client:
            run_id = (await client.post("/runs", json={"task": "Read the notes."})).json()["run_id"]
            busy = await client.post("/runs", json={"task": "another"})
            health: List[float] = []
            chunks: List[str] = []

            async def follow() -> None:
                async with client.stream("GET", f"/runs/{run_id}/events") as resp:
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    async for chunk in resp.aiter_text():
                        chunks.append(chunk)

            async def poll() -> None:
                while True:
                    started = time.monotonic()
                    body = (await client.get("/health")).json()
                    health.append(time.monotonic() - started)
                    if body["running"] is None:
                        return
                    await asyncio.sleep(0.05)

            await asyncio.gather(follow(), poll())
            return busy.status_code, health, "".join(chunks)

    busy, health, body = asyncio.run(main())
    assert busy == 409
    events = parse_sse(body)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert "stream" in kinds and "finish" in kinds
    call = next(e for e in events if e["type"] == "tool_call")
    assert call["tool"] == "read_file" and call["args"]["path"] == "notes.txt"
    result = next(e for e in events if e["type"] == "tool_result")
    assert "remember the milk" in result["result"]
    assert events[-1] == {"type": "done", "status": "completed", "summary": "All tests pass."}
    assert len(health) >= 5, "the app answered /health many times during the 0.6 s run"
    assert max(health) < 0.25, f"a /health request waited {max(health):.3f} s: the loop was blocked"


def test_abort_over_http(app_url: str, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 10_000})
    with httpx.Client(base_url=app_url, timeout=30) as client:
        run_id = client.post("/runs", json={"task": "slow"}).json()["run_id"]
        time.sleep(0.2)
        assert client.post(f"/runs/{run_id}/abort").json() == {"aborting": True}
        events = parse_sse(client.get(f"/runs/{run_id}/events").text)
    assert events[-1]["type"] == "done" and events[-1]["status"] == "aborted"
