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
    # uvicorn serves on this socket: the port stays ours from the bind on.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(load_app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)
    sock.close()


def parse_sse(text: str) -> List[Dict[str, Any]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        data = [line[len("data: "):] for line in chunk.splitlines() if line.startswith("data: ")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


def test_a_run_streams_its_events(app_url: str, server: ScriptedServer) -> None:
    server.push(READ, DONE)

    async def main() -> str:
        async with httpx.AsyncClient(base_url=app_url, timeout=30) as client:
            run_id = (await client.post("/runs", json={"task": "Read the notes."})).json()["run_id"]
            async with client.stream("GET", f"/runs/{run_id}/events") as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                return "".join([chunk async for chunk in resp.aiter_text()])

    events = parse_sse(asyncio.run(main()))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert "stream" in kinds and "finish" in kinds
    call = next(e for e in events if e["type"] == "tool_call")
    assert call["tool"] == "read_file" and call["args"]["path"] == "notes.txt"
    result = next(e for e in events if e["type"] == "tool_result")
    assert "remember the milk" in result["result"]
    assert events[-1] == {"type": "done", "status": "completed", "summary": "All tests pass."}


def test_the_app_keeps_answering_while_the_agent_works_and_aborts_it(app_url: str, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 60_000})
    with httpx.Client(base_url=app_url, timeout=30) as client:
        run_id = client.post("/runs", json={"task": "slow"}).json()["run_id"]
        # The model call reached the scripted server, which holds its answer for a minute. An app whose event loop
        # the run blocked could answer only after that, with the run over.
        server.wait_for_requests(1)
        health = client.get("/health").json()
        busy = client.post("/runs", json={"task": "another"})
        aborting = client.post(f"/runs/{run_id}/abort").json()
        events = parse_sse(client.get(f"/runs/{run_id}/events").text)
    assert health == {"ok": True, "running": run_id}, "/health answered while the model call was pending"
    assert busy.status_code == 409 and f"run {run_id} is still going" in busy.json()["detail"]
    assert aborting == {"aborting": True}
    assert events[-1] == {"type": "done", "status": "aborted", "summary": None}
