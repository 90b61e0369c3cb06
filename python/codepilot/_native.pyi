"""The native half of ``codepilot``: the Rust engine and the bridge that lets Python drive a run.

Use the public classes in :mod:`codepilot` instead; this module's API follows them and may change.
"""

import os
from typing import Any, Awaitable, Dict, List, Optional, Tuple, Union

from typing import final

__all__ = ["NativeRuntime", "Reply", "RunHandle", "__version__", "event_hooks", "event_types"]

__version__: str

_Item = Tuple[Any, ...]
"""One thing a run hands its driver: ``("event", name, kwargs)``, ``("tool", name, args, reply)``,
``("permission", kwargs, reply)``, ``("ask_user", kwargs, reply)``, ``("done", status, text, steps)``,
``("error", exception)`` or ``("skip",)``."""

@final
class Reply:
    """The way back for one tool call, permission request or question; later answers are ignored."""

    def send(self, value: Any) -> None:
        """Answers with ``value`` (JSON values as they are; other objects as their ``str()``)."""
    def fail(self, exc: str, message: str) -> None:
        """Answers that the tool raised ``exc`` (a class name) with ``message``."""

@final
class RunHandle:
    """One run as its driver reads it."""

    def wait(self) -> List[_Item]:
        """The next batch, blocking without the GIL (Ctrl-C raises ``KeyboardInterrupt``); empty if the run is gone."""
    def next(self) -> Awaitable[List[_Item]]:
        """The next batch, awaitable on the running event loop."""
    def cancel(self) -> None:
        """Stops driving the run: aborts it and leaves its requests unanswered."""

@final
class NativeRuntime:
    """One engine runtime."""

    def __new__(
        cls,
        agent_file: Union[str, os.PathLike[str]],
        session: str = "memory",
        session_id: Optional[str] = None,
        session_dir: Optional[Union[str, os.PathLike[str]]] = None,
        db_url: Optional[str] = None,
        stream: Optional[bool] = None,
    ) -> "NativeRuntime": ...
    def start(
        self,
        task: str,
        limits: Optional[str] = None,
        output_schema: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> RunHandle:
        """Starts a run of ``task``; ``limits`` and ``output_schema`` are JSON texts."""
    def send_message(self, text: str) -> None:
        """Queues a message for the model."""
    def abort(self) -> None:
        """Aborts the running task, if any."""
    def reset(self) -> str:
        """Starts a new session (blocking); returns its id."""
    def reset_async(self) -> Awaitable[str]:
        """Starts a new session; awaitable."""
    def flush_traces(self) -> None: ...
    def export_trajectory(self, path: str) -> Dict[str, Any]:
        """Writes the session as a trajectory (JSON lines) to `path`."""
    def checkpoints(self) -> List[Dict[str, Any]]:
        """The session's checkpoints, oldest first (blocking)."""
    def checkpoints_async(self) -> Awaitable[List[Dict[str, Any]]]:
        """The session's checkpoints; awaitable."""
    def rewind(self, checkpoint: str, scope: str, dry_run: bool) -> Dict[str, Any]:
        """Rewinds to a checkpoint, or previews it (blocking)."""
    def rewind_async(self, checkpoint: str, scope: str, dry_run: bool) -> Awaitable[Dict[str, Any]]:
        """Rewinds to a checkpoint, or previews it; awaitable."""
    def register_tool(
        self,
        name: str,
        doc: str,
        params: List[Tuple[str, bool, Any, Optional[str]]],
        returns: Optional[str] = None,
        replace: bool = False,
        require_permission: bool = False,
    ) -> bool:
        """Registers a tool the driver answers; returns whether one was replaced."""
    def set_hooks(self, kind: str, present: bool) -> None:
        """Whether answering hooks exist for ``permission_request`` or ``ask_user``, or ``mcp_auth`` hooks."""
    def take_idle(self) -> List[_Item]:
        """Events emitted while no run was driven."""
    def close(self) -> None:
        """Aborts, kills the terminals, releases the session."""
    @property
    def session_id(self) -> str: ...
    @property
    def work_dir(self) -> str: ...
    def history(self) -> List[Dict[str, str]]:
        """The conversation as of the last checkpoint."""
    def system_prompt(self) -> str: ...
    def reply_subagent(self, agent_id: int, message: str) -> None:
        """Answers a worker's ``ask_main_agent``."""
    def usage(self) -> Dict[str, int]:
        """Token usage of the session."""

def event_types() -> List[str]:
    """The ``type`` tag of every event the engine emits, read from its event enum."""

def event_hooks() -> List[Tuple[str, List[str]]]:
    """The Python hooks each engine event reaches, by the event's ``type`` tag."""
