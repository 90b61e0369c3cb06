"""Hooks: the events a run emits, and the functions that follow and steer it.

Handlers receive keyword arguments named as in ``codepilot-ai`` (``text``, ``tool``, ``args``, ``label``,
``result``, ``summary``, …). This runtime sends a few more (``call_id``, ``reason``, …); a handler that takes
``**kwargs`` gets them all, one that names its parameters gets only those, so handlers written for the original
keep working. Write new ones with ``**_``::

    runtime.hooks.register(EventType.STREAM, lambda text, **_: print(text, end=""))

Handlers of :attr:`EventType.PERMISSION_REQUEST` and :attr:`EventType.ASK_USER` answer: the last one that returns
something other than ``None`` decides (``bool`` for a permission, ``str`` for an answer). They may be ``async``.
With none registered, gated tool calls are refused and ``ask_user`` gets no answer; the library never reads stdin.

A handler that raises is logged (logger ``codepilot``) and the run goes on.
"""

from __future__ import annotations

import enum
import threading
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, TypeVar, Union

__all__ = [
    "EventType",
    "HookSystem",
    "on_stream",
    "on_thinking_stream",
    "on_tool_call",
    "on_tool_result",
    "on_ask_user",
    "on_mcp_auth",
    "on_permission_request",
    "on_finish",
    "on_runtime_error",
    "on_user_message_queued",
    "on_user_message_injected",
    "on_context_maintenance_start",
    "on_context_drop",
    "on_subagent_spawn",
    "on_subagent_message",
    "on_subagent_finish",
]


def log_exception(message: str, *args: Any) -> None:
    """Logs the exception being handled on the ``codepilot`` logger (``logging`` is imported only when needed, so
    ``import codepilot`` stays fast)."""
    import logging

    logging.getLogger("codepilot").exception(message, *args)

F = TypeVar("F", bound=Callable[..., Any])


class EventType(str, enum.Enum):
    """What a hook is registered for. Values are the original's event names."""

    START = "start"
    """``task``, ``session_id``, ``task_number``: a task begins."""
    STEP = "step"
    """``step``, ``max_steps``: each step begins."""
    STREAM = "stream"
    """``text``: model text as it streams (only the prose, never control or payload blocks)."""
    THINKING_STREAM = "thinking_stream"
    """``thinking``: the model's reasoning, where the provider streams it."""
    TOOL_CALL = "tool_call"
    """``tool``, ``args``, ``label``, ``call_id``: before a tool runs."""
    TOOL_RESULT = "tool_result"
    """``tool``, ``result``, ``ok``, ``call_id``: after a tool ran."""
    ASK_USER = "ask_user"
    """``question``: the agent asks; a handler returns the answer (``str``)."""
    PERMISSION_REQUEST = "permission_request"
    """``tool``, ``description``, ``args``: a gated tool asks; a handler returns ``True`` to allow it."""
    SECURITY_ERROR = "security_error"
    """Kept for code written against the original, which never emitted it either."""
    RUNTIME_ERROR = "runtime_error"
    """``error``, ``kind``: a parse, execution, provider or store problem (the run may go on)."""
    FINISH = "finish"
    """``summary``, ``reason`` (``completed`` or ``replied``): the task ended with an answer."""
    MAX_STEPS = "max_steps"
    """``steps``: the step limit was reached."""
    MCP_AUTH = "mcp_auth"
    """``url``, ``server``: an MCP server needs an OAuth login; show ``url`` to the person (open a browser on this
    machine). The login waits a few minutes for the browser's return on a loopback port (docs/mcp.md); the server's tools come with
    the step after it is approved, and runs never wait for it."""
    ABORTED = "aborted"
    """``step``: the run was aborted."""
    USER_MESSAGE_QUEUED = "user_message_queued"
    """``message``: ``send_message`` queued a message."""
    USER_MESSAGE_INJECTED = "user_message_injected"
    """``message``: a queued message reached the model."""
    SESSION_RESET = "session_reset"
    """``session_id``: ``reset`` started a new session."""
    MODEL_RETRY = "model_retry"
    """``attempt``, ``delay_ms``, ``reason``: a model call failed and is retried."""
    USAGE = "usage"
    """``call``, ``total`` (token counts by kind: the call's and the session's), ``cost_usd``, ``total_cost_usd``
    (``None`` when the model's prices are unknown), ``estimated``, ``run`` (the run so far): after each model
    call."""
    CONTEXT_MAINTENANCE_START = "context_maintenance_start"
    """``stress_pct``, ``history_tokens``, ``safe_budget``, ``candidates``: the agent is asked to archive."""
    CONTEXT_DROP = "context_drop"
    """``before_pct``, ``after_pct``, ``tokens_saved``, ``tasks_archived``, ``kind``: context was reduced."""
    WORKSPACE_SAVED = "workspace_saved"
    """``key``, ``files``, ``content_bytes``, ``size``, ``elapsed_ms``: the work_dir was stored as a snapshot."""
    RESOURCE_LIMIT = "resource_limit"
    """``kind`` (``processes``, ``memory``, ``disk``, ``open_files``), ``limit``, ``terminal``, ``message``: a
    command or a write ran into one of the session's resource limits (``runtime.resources``)."""
    REWOUND = "rewound"
    """``checkpoint``, ``scope``, ``files_restored``, ``files_deleted``, ``files_left``, ``messages``, ``saved_as``: ``rewind`` put
    the work_dir, the conversation or both back to a checkpoint; ``saved_as`` undoes it."""
    SUBAGENT_SPAWN = "subagent_spawn"
    """``agent_id``, ``task_summary``, ``model``, ``tools``: the block started a worker (``spawn_subagent``)."""
    SUBAGENT_MESSAGE = "subagent_message"
    """``agent_id``, ``message``: a worker asked the main agent (``ask_main_agent``). A handler that returns a string
    answers it (as ``reply_subagent`` would); otherwise the main agent sees ``[Sub-Agent #N →] message`` at its next
    step."""
    SUBAGENT_FINISH = "subagent_finish"
    """``agent_id``, ``status``, ``summary``, ``files_written``, ``elapsed_seconds``, ``error``: a worker ended."""
    LIMIT_WARNING = "limit_warning"
    """``limit`` (``max_total_tokens``, ``max_cost_usd``, ``max_wall_s``), ``scope`` (``run``, ``session``), ``max``,
    ``spent``: 80 % of a limit is spent; at 100 % the run ends with ``last_outcome.status == "limit_exceeded"``."""


Handler = Callable[..., Any]
EventLike = Union[EventType, str]
# A handler and the keyword arguments it accepts (None: any, it takes **kwargs or its signature is unknown).
_Entry = Tuple[Handler, Optional[FrozenSet[str]]]


def _accepted(handler: Handler) -> Optional[FrozenSet[str]]:
    import inspect

    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _event(event: EventLike) -> EventType:
    try:
        return EventType(event)
    except ValueError:
        names = ", ".join(e.name for e in EventType)
        raise ValueError(f"unknown event {event!r}; use an EventType: {names}") from None


class HookSystem:
    """The handlers of one runtime, by event. Thread-safe; handlers run in registration order."""

    def __init__(self, on_change: Optional[Callable[[EventType, bool], None]] = None) -> None:
        self._handlers: Dict[EventType, List[_Entry]] = {}
        self._lock = threading.Lock()
        self._on_change = on_change

    def register(self, event: EventLike, handler: Optional[Handler] = None) -> Any:
        """Adds ``handler`` for ``event``. Without ``handler``, returns a decorator that adds the function."""
        kind = _event(event)
        if handler is None:

            def decorate(fn: F) -> F:
                self.register(kind, fn)
                return fn

            return decorate
        if not callable(handler):
            raise TypeError(f"a hook must be callable, not {type(handler).__name__}")
        entry = (handler, _accepted(handler))
        with self._lock:
            self._handlers.setdefault(kind, []).append(entry)
        self._changed(kind)
        return handler

    def unregister(self, event: EventLike, handler: Handler) -> None:
        """Removes one handler of ``event`` (nothing happens when it is not registered)."""
        kind = _event(event)
        with self._lock:
            entries = self._handlers.get(kind, [])
            for entry in entries:
                if entry[0] == handler:
                    entries.remove(entry)
                    break
        self._changed(kind)

    def clear(self, event: Optional[EventLike] = None) -> None:
        """Removes the handlers of ``event``, or of every event."""
        kinds = list(EventType) if event is None else [_event(event)]
        with self._lock:
            for kind in kinds:
                self._handlers.pop(kind, None)
        for kind in kinds:
            self._changed(kind)

    def handlers(self, event: EventLike) -> List[Handler]:
        """The handlers of ``event``, in the order they run."""
        with self._lock:
            return [handler for handler, _ in self._handlers.get(_event(event), ())]

    def emit(self, event: EventLike, **kwargs: Any) -> Any:
        """Calls every handler of ``event`` with ``kwargs`` (each with those it accepts); returns the last result that
        is not ``None``. A handler that raises is logged and skipped. Results of ``async`` handlers are returned
        unawaited."""
        kind = _event(event)
        with self._lock:
            entries = list(self._handlers.get(kind, ()))
        result = None
        for handler, accepts in entries:
            value = _call(handler, kind, kwargs if accepts is None else {k: v for k, v in kwargs.items() if k in accepts})
            if value is not None:
                result = value
        return result

    def _changed(self, kind: EventType) -> None:
        if self._on_change is not None:
            self._on_change(kind, bool(self._handlers.get(kind)))


def _call(handler: Handler, event: EventType, kwargs: Dict[str, Any]) -> Any:
    try:
        return handler(**kwargs)
    except Exception:
        log_exception("the %s hook %r raised; the run goes on", event.value, handler)
        return None


def _decorator(event: EventType, doc: str, replace: bool) -> Callable[[Any], Callable[[F], F]]:
    """``@decorator(runtime)`` registering the function for ``event``: in place of the handlers registered before
    (``replace``) or after them, as the original's decorator of that name did."""

    def decorator(runtime: Any) -> Callable[[F], F]:
        def register(fn: F) -> F:
            if replace:
                runtime.hooks.clear(event)
            runtime.hooks.register(event, fn)
            return fn

        return register

    rule = "Replaces the handlers registered before" if replace else "Adds to the handlers registered before"
    decorator.__doc__ = f"{doc} {rule}."
    return decorator


def _replacing(event: EventType, doc: str) -> Callable[[Any], Callable[[F], F]]:
    return _decorator(event, doc, replace=True)


def _appending(event: EventType, doc: str) -> Callable[[Any], Callable[[F], F]]:
    return _decorator(event, doc, replace=False)


on_stream = _replacing(EventType.STREAM, "``@on_stream(runtime)``: ``fn(text, **_)`` gets streamed model text.")
on_thinking_stream = _replacing(
    EventType.THINKING_STREAM, "``@on_thinking_stream(runtime)``: ``fn(thinking, **_)`` gets streamed reasoning."
)
on_tool_call = _replacing(
    EventType.TOOL_CALL, "``@on_tool_call(runtime)``: ``fn(tool, args, label='', **_)`` before each tool call."
)
on_tool_result = _replacing(
    EventType.TOOL_RESULT, "``@on_tool_result(runtime)``: ``fn(tool, result, **_)`` after each tool call."
)
on_permission_request = _replacing(
    EventType.PERMISSION_REQUEST,
    "``@on_permission_request(runtime)``: ``fn(tool, description, **_) -> bool`` decides gated calls.",
)
on_finish = _replacing(EventType.FINISH, "``@on_finish(runtime)``: ``fn(summary, **_)`` when a task ends.")
on_runtime_error = _replacing(
    EventType.RUNTIME_ERROR, "``@on_runtime_error(runtime)``: ``fn(error, **_)`` on runtime errors."
)
on_ask_user = _appending(
    EventType.ASK_USER, "``@on_ask_user(runtime)``: ``fn(question, **_) -> str`` answers the agent's questions."
)
on_mcp_auth = _appending(
    EventType.MCP_AUTH,
    "``@on_mcp_auth(runtime)``: ``fn(url, server, **_)`` shows an MCP server's authorization URL (e.g. "
    "``webbrowser.open(url)``).",
)
on_user_message_queued = _appending(
    EventType.USER_MESSAGE_QUEUED, "``@on_user_message_queued(runtime)``: ``fn(message, **_)``."
)
on_user_message_injected = _appending(
    EventType.USER_MESSAGE_INJECTED, "``@on_user_message_injected(runtime)``: ``fn(message, **_)``."
)
on_context_maintenance_start = _appending(
    EventType.CONTEXT_MAINTENANCE_START, "``@on_context_maintenance_start(runtime)``: ``fn(stress_pct, **_)``."
)
on_context_drop = _appending(
    EventType.CONTEXT_DROP, "``@on_context_drop(runtime)``: ``fn(before_pct, after_pct, tokens_saved, **_)``."
)
on_subagent_spawn = _appending(
    EventType.SUBAGENT_SPAWN,
    "``@on_subagent_spawn(runtime)``: ``fn(agent_id, task_summary, **_)`` when the block starts a worker.",
)
on_subagent_message = _appending(
    EventType.SUBAGENT_MESSAGE,
    "``@on_subagent_message(runtime)``: ``fn(agent_id, message, **_) -> str | None`` when a worker asks; a string "
    "is its answer.",
)
on_subagent_finish = _appending(
    EventType.SUBAGENT_FINISH,
    "``@on_subagent_finish(runtime)``: ``fn(agent_id, summary, files_written, elapsed_seconds, error, **_)`` when a "
    "worker ends.",
)
