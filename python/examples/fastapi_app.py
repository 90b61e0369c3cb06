"""A FastAPI service that runs an agent and streams its events to the browser over Server-Sent Events.

    AGENT_FILE=agent.yaml uvicorn fastapi_app:app

    POST /runs {"task": "..."}      starts a task (409 while one runs)  -> {"run_id": 1}
    GET  /runs/{run_id}/events      the run's events as SSE, from its start; ends with a `done` event
    POST /runs/{run_id}/messages    {"text": "..."} tells the running agent something
    POST /runs/{run_id}/abort       stops it
    GET  /health                    answers at once, also while the agent works

One AsyncRuntime serves the app. Its hooks run on the event loop, so they put events straight into asyncio
queues; `await runtime.run(...)` never blocks the loop, so the service keeps answering while the agent works.
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Optional

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from codepilot import AsyncRuntime, EventType

FORWARDED = [
    EventType.START,
    EventType.STEP,
    EventType.STREAM,
    EventType.TOOL_CALL,
    EventType.TOOL_RESULT,
    EventType.RUNTIME_ERROR,
    EventType.FINISH,
    EventType.MAX_STEPS,
    EventType.ABORTED,
    EventType.USER_MESSAGE_INJECTED,
]


class Run:
    """One task: its events so far, and the queues of the browsers following it."""

    def __init__(self, run_id: int, task: str) -> None:
        self.run_id = run_id
        self.task = task
        self.events: List[Dict[str, Any]] = []
        self.followers: List["asyncio.Queue[Optional[Dict[str, Any]]]"] = []
        self.finished = False

    def publish(self, event: Optional[Dict[str, Any]]) -> None:
        if event is None:
            self.finished = True
        else:
            self.events.append(event)
        for queue in self.followers:
            queue.put_nowait(event)


class Service:
    def __init__(self, runtime: AsyncRuntime) -> None:
        self.runtime = runtime
        self.runs: Dict[int, Run] = {}
        self.current: Optional[Run] = None
        for event in FORWARDED:
            runtime.hooks.register(event, self._hook(event))

    def _hook(self, event: EventType) -> Any:
        def forward(**fields: Any) -> None:
            if self.current is not None:
                self.current.publish({"type": event.value, **fields})

        return forward

    def start(self, task: str) -> Run:
        if self.current is not None:
            raise HTTPException(409, f"run {self.current.run_id} is still going; abort it or wait")
        run = Run(len(self.runs) + 1, task)
        self.runs[run.run_id] = run
        self.current = run
        asyncio.ensure_future(self._drive(run))
        return run

    async def _drive(self, run: Run) -> None:
        try:
            summary = await self.runtime.run(run.task)
            outcome = self.runtime.last_outcome
            done = {"type": "done", "status": outcome.status if outcome else "unknown", "summary": summary}
        except Exception as e:  # reported to the browser, not lost in a background task
            done = {"type": "done", "status": "error", "error": f"{type(e).__name__}: {e}"}
        run.publish(done)
        self.current = None
        run.publish(None)


class TaskIn(BaseModel):
    task: str


class MessageIn(BaseModel):
    text: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = AsyncRuntime(os.environ.get("AGENT_FILE", "agent.yaml"), stream=True)
    app.state.service = Service(runtime)
    try:
        yield
    finally:
        await runtime.aclose()


app = FastAPI(title="CodePilot runs", lifespan=lifespan)


def service() -> Service:
    return app.state.service


def get_run(run_id: int) -> Run:
    run = service().runs.get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return run


@app.post("/runs")
async def start_run(body: TaskIn) -> Dict[str, int]:
    return {"run_id": service().start(body.task).run_id}


@app.get("/runs/{run_id}/events")
async def run_events(run_id: int) -> StreamingResponse:
    run = get_run(run_id)
    queue: "asyncio.Queue[Optional[Dict[str, Any]]]" = asyncio.Queue()
    backlog = list(run.events)
    if run.finished:
        queue.put_nowait(None)
    else:
        run.followers.append(queue)

    async def stream() -> AsyncIterator[str]:
        try:
            for event in backlog:
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
        finally:
            if queue in run.followers:
                run.followers.remove(queue)

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.post("/runs/{run_id}/messages")
async def message(run_id: int, body: MessageIn) -> Dict[str, bool]:
    get_run(run_id)
    service().runtime.send_message(body.text)
    return {"queued": True}


@app.post("/runs/{run_id}/abort")
async def abort(run_id: int) -> Dict[str, bool]:
    get_run(run_id)
    service().runtime.abort()
    return {"aborting": True}


@app.get("/health")
async def health() -> Dict[str, Any]:
    current = service().current
    return {"ok": True, "running": None if current is None else current.run_id}
