"""``Runtime`` and ``AsyncRuntime``: the original's API, driving the Rust engine.

A run executes on the engine's threads. Everything Python must see or answer — events for hooks, custom tool calls,
permission requests, questions — comes back in order to the code that called ``run``: the calling thread for
:class:`Runtime`, the event loop for :class:`AsyncRuntime`. So hooks and tools run there and may touch what that
thread owns (asyncio objects, for ``AsyncRuntime``).
"""

from __future__ import annotations

import atexit
import os
import sys
import warnings
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from . import _native
from .hooks import EventType, HookSystem, log_exception

if TYPE_CHECKING:
    import asyncio

# asyncio, inspect and logging are imported where they are used: together they are most of the cost of
# `import codepilot`, and a blocking Runtime needs none of them on its hot path.

__all__ = ["Runtime", "AsyncRuntime", "Outcome"]

F = TypeVar("F", bound=Callable[..., Any])
PathLike = Union[str, "os.PathLike[str]"]

_LIVE: "weakref.WeakSet[_Base]" = weakref.WeakSet()


class _OutcomeFields(NamedTuple):
    status: str
    """``"completed"``, ``"replied"`` (a chat answer), ``"max_steps"``, ``"aborted"``, ``"limit_exceeded"`` (a
    limit on tokens, cost or time) or ``"invalid_output"`` (the result never matched the output schema)."""
    text: Optional[str]
    """The completion summary, or the reply; ``None`` for the others."""
    steps: int
    """Steps the task took."""


class Outcome(_OutcomeFields):
    """How the last task ended: ``status, text, steps`` (it unpacks as those three), plus ``structured``,
    ``usage`` and ``details``."""

    structured: Any
    """With ``output_schema``: the validated result (a dict, or an instance of the pydantic model passed)."""
    usage: Optional[Dict[str, Any]]
    """What the task spent: ``tokens`` (``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
    ``cache_write_tokens``, ``reasoning_tokens``, ``calls``), ``cost_usd`` (``None`` without prices),
    ``estimated``, ``wall_s``."""
    details: Dict[str, Any]
    """The whole outcome as the engine reports it: ``limit``, ``scope``, ``max``, ``spent`` for
    ``limit_exceeded``; ``errors`` and ``last`` for ``invalid_output``."""

    def __new__(
        cls,
        status: str,
        text: Optional[str],
        steps: int,
        structured: Any = None,
        usage: Optional[Dict[str, Any]] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> "Outcome":
        self = super().__new__(cls, status, text, steps)
        self.structured = structured
        self.usage = usage
        self.details = details if details is not None else {"status": status, "steps": steps}
        return self

    @property
    def completed(self) -> bool:
        """Whether the agent completed the task."""
        return self.status == "completed"


def _current_traceparent() -> Optional[str]:
    """The current OpenTelemetry span as a W3C ``traceparent``, when ``opentelemetry-api`` is installed and a span is
    active; ``None`` otherwise."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 0xFF:02x}"


def _limits_json(limits: Optional[Dict[str, Any]]) -> Optional[str]:
    """``limits`` for the engine: a dict of ``max_total_tokens``, ``max_cost_usd``, ``max_wall_s``."""
    if limits is None:
        return None
    if not isinstance(limits, dict):
        raise TypeError(f"limits must be a dict (max_total_tokens, max_cost_usd, max_wall_s), not {type(limits).__name__}")
    import json

    return json.dumps({k: v for k, v in limits.items() if v is not None})


def _schema_json(output_schema: Any) -> Tuple[Optional[str], Any]:
    """``output_schema`` for the engine, and the pydantic model class to build the result with (if one was given)."""
    if output_schema is None:
        return None, None
    import json

    if isinstance(output_schema, dict):
        return json.dumps(output_schema), None
    if isinstance(output_schema, type) and hasattr(output_schema, "model_json_schema"):
        return json.dumps(output_schema.model_json_schema()), output_schema
    raise TypeError(
        f"output_schema must be a JSON Schema dict or a pydantic model class, not {type(output_schema).__name__}"
    )


def _engine_url(db: Any) -> str:
    """The URL of a SQLAlchemy ``Engine``/``AsyncEngine`` (read, not used: CodePilot opens its own connections),
    or ``db`` itself when it is a URL string."""
    if isinstance(db, str):
        return db
    url = getattr(db, "url", None)
    if url is None:
        raise TypeError(
            f"db must be a SQLAlchemy Engine or AsyncEngine, or a database URL string, not {type(db).__name__}"
        )
    render = getattr(url, "render_as_string", None)
    return render(hide_password=False) if render is not None else str(url)


def _isawaitable(value: Any) -> bool:
    return hasattr(value, "__await__")


def _annotation(value: Any) -> Optional[str]:
    import inspect

    if value is inspect.Parameter.empty or value is inspect.Signature.empty:
        return None
    if isinstance(value, str):
        return value
    return inspect.formatannotation(value)


class _ToolFn(NamedTuple):
    func: Callable[..., Any]
    positional: Tuple[str, ...]


def _describe(name: str, func: Callable[..., Any]) -> Tuple[str, List[Tuple[str, bool, Any, Optional[str]]], Optional[str], _ToolFn]:
    """The prompt signature of ``func`` (doc, parameters, return annotation) and how to call it."""
    import inspect

    if not callable(func):
        raise TypeError(f"tool {name!r} must be callable, not {type(func).__name__}")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as e:
        raise TypeError(f"tool {name!r}: cannot read the signature of {func!r}: {e}") from None
    params: List[Tuple[str, bool, Any, Optional[str]]] = []
    positional: List[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(
                f"tool {name!r}: *{p.name} / **{p.name} cannot be offered to the model; name every parameter"
            )
        if p.kind == p.POSITIONAL_ONLY:
            positional.append(p.name)
        has_default = p.default is not p.empty
        params.append((p.name, has_default, p.default if has_default else None, _annotation(p.annotation)))
    doc = inspect.getdoc(func) or ""
    return doc, params, _annotation(sig.return_annotation), _ToolFn(func, tuple(positional))


class _Base:
    """What both runtimes share: construction, tools, hooks, messages, closing."""

    def __init__(
        self,
        agent_file: PathLike,
        session: str = "memory",
        session_id: Optional[str] = None,
        session_dir: Optional[PathLike] = None,
        stream: Optional[bool] = None,
        db_url: Optional[str] = None,
        db: Any = None,
    ) -> None:
        if db is not None:
            db_url = _engine_url(db)
        self._native = _native.NativeRuntime(
            os.fspath(agent_file),
            session,
            session_id,
            None if session_dir is None else os.fspath(session_dir),
            db_url,
            stream,
        )
        self._tools: Dict[str, _ToolFn] = {}
        self._closed = False
        self.hooks = HookSystem(on_change=self._hooks_changed)
        self.last_outcome: Optional[Outcome] = None
        """How the last task ended (``None`` before the first)."""
        _LIVE.add(self)

    # -- tools ---------------------------------------------------------------------------------------------------

    def register_tool(
        self, name: str, func: Callable[..., Any], replace: bool = False, *, require_permission: bool = False
    ) -> None:
        """Offers ``func`` to the agent as ``name``: its parameters, type hints and docstring make the signature the
        model reads. ``func`` may be ``async``; what it returns is handed to the control block (JSON values as they
        are, anything else as its ``str()``), and an exception it raises is raised in the block.

        Raises :class:`~codepilot.errors.ToolRegistrationError` (a ``ValueError``) when ``name`` is taken and
        ``replace`` is false. ``require_permission`` asks the permission hooks before every call."""
        doc, params, returns, tool = _describe(name, func)
        self._native.register_tool(name, doc, params, returns, replace, require_permission)
        self._tools[name] = tool

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(
        self, *, name: Optional[str] = None, replace: bool = False, require_permission: bool = False
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: Optional[F] = None,
        *,
        name: Optional[str] = None,
        replace: bool = False,
        require_permission: bool = False,
    ) -> Any:
        """Decorator form of :meth:`register_tool`: ``@runtime.tool`` or ``@runtime.tool(name="other")``."""

        def decorate(fn: F) -> F:
            self.register_tool(name or fn.__name__, fn, replace, require_permission=require_permission)
            return fn

        return decorate if func is None else decorate(func)

    # -- control -------------------------------------------------------------------------------------------------

    def send_message(self, message: str) -> None:
        """Queues a message for the agent; it reads it as ``[USER MESSAGE]`` at the start of its next step. Safe from
        any thread, while a task runs or between tasks."""
        self._native.send_message(str(message))
        self._deliver_idle()

    def abort(self) -> None:
        """Stops the running task promptly (the model call, the control block, a terminal wait); ``run`` then
        returns ``None`` and :attr:`last_outcome` says ``"aborted"``. Safe from any thread; nothing when idle."""
        self._native.abort()

    @property
    def session_id(self) -> str:
        """The session id; pass it as ``session_id`` to resume the session later."""
        return self._native.session_id

    @property
    def work_dir(self) -> str:
        """The agent's work directory (absolute)."""
        return os.fspath(self._native.work_dir)

    @property
    def messages(self) -> List[Dict[str, str]]:
        """The conversation as of the last finished step: ``[{"role": ..., "content": ...}]``."""
        return self._native.history()

    @property
    def usage(self) -> Dict[str, int]:
        """Token usage of the session so far."""
        return self._native.usage()

    def system_prompt(self) -> str:
        """The system prompt the next task's first model call would send: the rules, the tools, the project's
        ``AGENTS.md`` files and ``runtime.instructions_files`` as they are on disk now, the agent file's
        ``system_prompt``, and the environment. Not while a task runs (that is an error)."""
        return self._native.system_prompt()

    def checkpoints(self) -> List[Dict[str, Any]]:
        """The session's checkpoints, oldest first: one before each task (``runtime.checkpoints: turn``, the
        default), before every step (``step``), and one holding the state each rewind replaced. Each is a dict with
        ``id`` (``"3"``, ``"3.2"``, ``"rewind-1"``), ``kind``, ``turn``, ``step``, ``created_ms``, ``messages``,
        ``files``, ``bytes``, ``stored_bytes`` and ``skipped`` (files left out for size)."""
        return self._native.checkpoints()

    def flush_traces(self) -> None:
        """Sends the OpenTelemetry spans that ended to the collector now, waiting at most 3 seconds; nothing to do
        when traces are off (docs/observability.md). ``close()`` does it; spans also leave on their own every few
        seconds."""
        self._native.flush_traces()

    def export_trajectory(self, path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
        """Writes the session as a trajectory to ``path`` (JSON lines, ``codepilot-trajectory/1``): the agent file,
        the workspace it started from, every message (answers as the model gave them), its events and checkpoints,
        and the work_dir's tree hash now. ``codepilot replay PATH`` re-runs it with the recorded answers. Returns
        ``{"messages", "events", "files", "lines"}``."""
        return self._native.export_trajectory(os.fspath(path))

    def rewind(
        self,
        turn: Optional[int] = None,
        step: Optional[int] = None,
        *,
        checkpoint: Optional[str] = None,
        scope: str = "both",
        dry_run: bool = False,
    ) -> Dict[str, Any]:
        """Puts the work_dir (``scope="files"``), the conversation (``"conversation"``) or both back to the state
        before task ``turn`` began, or before its ``step``; or to ``checkpoint`` by id (``"rewind-1"`` undoes the
        first rewind). Files created since are deleted, changed and deleted ones written back; files ``.gitignore``
        excludes and ``.git`` are never touched. The state it replaces is kept as a checkpoint of its own, named in
        the result's ``saved_as``. With ``dry_run``, nothing changes and the result says what would. Returns
        ``checkpoint``, ``scope``, ``files_restored``, ``files_deleted``, ``files_left``, ``messages`` and ``saved_as``. Raises
        :class:`~codepilot.errors.SessionBusy` while a task runs."""
        result = self._native.rewind(_checkpoint_id(turn, step, checkpoint), scope, dry_run)
        self._deliver_idle()
        return result

    def close(self) -> None:
        """Aborts a running task, kills the agent's terminals and releases the session. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        self._native.close()

    # -- delivery ------------------------------------------------------------------------------------------------

    def _invoke(self, name: str, args: Dict[str, Any]) -> Any:
        """Calls the tool ``name`` with the arguments the block bound (positional-only ones by position)."""
        tool = self._tools.get(name)
        if tool is None:
            raise RuntimeError(f"{name}() has no Python function registered")
        positional = [args.pop(n) for n in tool.positional if n in args]
        return tool.func(*positional, **args)

    def _hooks_changed(self, kind: EventType, present: bool) -> None:
        if kind in (EventType.PERMISSION_REQUEST, EventType.ASK_USER, EventType.MCP_AUTH):
            self._native.set_hooks(kind.value, present)

    def _deliver_idle(self) -> None:
        for item in self._native.take_idle():
            if item[0] == "event":
                _discard_awaitable(self.hooks.emit(item[1], **item[2]))

    def _answer_worker(self, item: Tuple[Any, ...], answer: Any) -> None:
        """A ``subagent_message`` hook that returned a string answered the worker (the original's documented
        behaviour, which it never wired up)."""
        if item[1] == "subagent_message" and isinstance(answer, str):
            try:
                self._native.reply_subagent(item[2]["agent_id"], answer)
            except Exception:
                log_exception("answering sub-agent #%s failed", item[2]["agent_id"])

    def _finish(self, item: Tuple[Any, ...], model: Any = None) -> Any:
        if item[0] == "error":
            raise item[1]
        details = item[4]
        structured = details.get("structured")
        # Recorded before the model class sees the value: should it refuse it, the run's result is not lost.
        self.last_outcome = Outcome(item[1], item[2], item[3], structured, item[5], details)
        if structured is not None and model is not None:
            structured = model.model_validate(structured)
            self.last_outcome = Outcome(item[1], item[2], item[3], structured, item[5], details)
        if item[1] != "completed":
            return None
        return structured if "structured" in details else item[2]


def _running_loop() -> "Optional[asyncio.AbstractEventLoop]":
    """The event loop running in this thread, if any (without importing asyncio when nobody has)."""
    if "asyncio" not in sys.modules:
        return None
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _discard_awaitable(value: Any) -> None:
    """An ``async`` hook called where nothing can await it: scheduled on the running loop, if any."""
    if not _isawaitable(value):
        return
    loop = _running_loop()
    if loop is None:
        close = getattr(value, "close", None)
        if close is not None:
            close()
        import logging

        logging.getLogger("codepilot").warning("an async hook was called outside an event loop and did not run")
        return
    import asyncio

    asyncio.ensure_future(value)


def _permission(value: Any) -> Optional[bool]:
    return None if value is None else bool(value)


def _answer_text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


class Runtime(_Base):
    """The agent runtime, blocking: ``run`` returns when the task ends. Hooks and tools run on the thread that
    called ``run``.

    ``Runtime(agent_file, session="memory"|"file"|"db", session_id=None, session_dir=None, stream=None,
    db_url=None, db=None)``: loads ``agent.yaml`` (a bad one raises :class:`~codepilot.errors.ConfigError` naming
    the key and line), opens the session and declares the agent's terminal ``main`` (its shell starts on first use).

    - ``session="file"`` keeps one JSON file per session in ``session_dir`` (default ``~/.codepilot/sessions``;
      ``CODEPILOT_HOME`` moves ``~/.codepilot``); ``session="db"`` uses ``db_url`` (SQLAlchemy forms such as
      ``sqlite:///./x.db``, ``postgresql+asyncpg://…``; default SQLite in ``~/.codepilot/sessions.db``) or the URL
      of ``db``, a SQLAlchemy engine.
    - ``session_id`` resumes (or names) a session; the default is the agent's name, lower-cased, as in the original.
    - ``stream`` overrides ``model.stream`` of the agent file.
    """

    _loop: "Optional[asyncio.AbstractEventLoop]" = None
    """The loop that runs ``async`` hooks and tools of this blocking runtime, made when first needed."""

    def run(
        self,
        task: str,
        *,
        limits: Optional[Dict[str, Any]] = None,
        output_schema: Any = None,
        traceparent: Optional[str] = None,
    ) -> Any:
        """Runs ``task`` to its end and returns the completion summary; ``None`` for a chat reply, the step limit, an
        abort or a limit (:attr:`last_outcome` tells which). Ctrl-C aborts the task and raises ``KeyboardInterrupt``.

        ``limits`` (``max_total_tokens``, ``max_cost_usd``, ``max_wall_s``) replace the agent file's
        ``runtime.limits`` for this run. ``output_schema`` (a JSON Schema dict or a pydantic model class) makes the
        result structured: the return value is then the validated dict, or an instance of the model.

        The run's trace joins the caller's: ``traceparent`` (a W3C value) when given, else the current OpenTelemetry
        span when the ``opentelemetry-api`` package is installed."""
        if _running_loop() is not None:
            warnings.warn(
                "Runtime.run() blocks the running event loop until the task ends; use AsyncRuntime and "
                "`await runtime.run(task)` in async code",
                RuntimeWarning,
                stacklevel=2,
            )
        schema, model = _schema_json(output_schema)
        handle = self._native.start(str(task), _limits_json(limits), schema, traceparent or _current_traceparent())
        try:
            while True:
                items = handle.wait()
                if not items:
                    raise _native_gone()
                for item in items:
                    kind = item[0]
                    if kind == "event":
                        self._answer_worker(item, self._sync(self.hooks.emit(item[1], **item[2])))
                    elif kind == "tool":
                        self._run_tool(item[1], item[2], item[3])
                    elif kind == "permission":
                        item[2].send(_permission(self._sync(self.hooks.emit(EventType.PERMISSION_REQUEST, **item[1]))))
                    elif kind == "ask_user":
                        item[2].send(_answer_text(self._sync(self.hooks.emit(EventType.ASK_USER, **item[1]))))
                    elif kind in ("done", "error"):
                        return self._finish(item, model)
        except BaseException:
            handle.cancel()
            raise

    def _sync(self, value: Any) -> Any:
        """``value``, awaited on this runtime's private loop if it is awaitable (an ``async`` hook)."""
        if not _isawaitable(value):
            return value
        try:
            return self._private_loop().run_until_complete(value)
        except Exception:
            log_exception("an async hook raised; the run goes on")
            return None

    def _private_loop(self) -> "asyncio.AbstractEventLoop":
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop

    def _run_tool(self, name: str, args: Dict[str, Any], reply: Any) -> None:
        try:
            value = self._invoke(name, args)
            if _isawaitable(value):
                value = self._private_loop().run_until_complete(value)
        except Exception as e:
            reply.fail(type(e).__name__, str(e))
        else:
            reply.send(value)

    def reset(self) -> str:
        """Starts a new, empty session in the same store (the old one stays stored) and returns its id; terminals
        and the work directory are kept. Raises :class:`~codepilot.errors.SessionBusy` while a task runs."""
        session_id = self._native.reset()
        self._deliver_idle()
        return session_id

    def close(self) -> None:
        super().close()
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncRuntime(_Base):
    """The agent runtime for asyncio: ``await run(task)``. The event loop stays free while the agent works (the
    engine runs on its own threads, without the GIL); hooks and tools run on the loop's thread, so they may use
    asyncio objects, and may be ``async``. Cancelling the awaiting task aborts the run.

    Same arguments as :class:`Runtime`; ``db`` may be a SQLAlchemy ``AsyncEngine``.
    """

    async def run(
        self,
        task: str,
        *,
        limits: Optional[Dict[str, Any]] = None,
        output_schema: Any = None,
        traceparent: Optional[str] = None,
    ) -> Any:
        """Runs ``task`` to its end and returns the completion summary; ``None`` for a chat reply, the step limit, an
        abort or a limit (:attr:`last_outcome` tells which). ``limits``, ``output_schema`` and ``traceparent`` as for
        :meth:`Runtime.run`."""
        import asyncio

        schema, model = _schema_json(output_schema)
        handle = self._native.start(str(task), _limits_json(limits), schema, traceparent or _current_traceparent())
        pending: Set["asyncio.Future[Any]"] = set()
        batch: Optional["asyncio.Future[Any]"] = None
        try:
            while True:
                if batch is None:
                    batch = asyncio.ensure_future(handle.next())
                done, _ = await asyncio.wait({batch, *pending}, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if batch not in done:
                    continue
                items = batch.result()
                batch = None
                if not items:
                    raise _native_gone()
                for item in items:
                    kind = item[0]
                    if kind == "event":
                        value = self.hooks.emit(item[1], **item[2])
                        if _isawaitable(value):
                            value = await _logged(value)
                        self._answer_worker(item, value)
                    elif kind == "tool":
                        pending.add(asyncio.ensure_future(self._run_tool(item[1], item[2], item[3])))
                    elif kind == "permission":
                        pending.add(
                            asyncio.ensure_future(
                                self._reply(EventType.PERMISSION_REQUEST, item[1], item[2], _permission)
                            )
                        )
                    elif kind == "ask_user":
                        pending.add(asyncio.ensure_future(self._reply(EventType.ASK_USER, item[1], item[2], _answer_text)))
                    elif kind in ("done", "error"):
                        return self._finish(item, model)
        except BaseException:
            handle.cancel()
            raise
        finally:
            if batch is not None:
                batch.cancel()
            for task_ in pending:
                task_.cancel()

    async def _run_tool(self, name: str, args: Dict[str, Any], reply: Any) -> None:
        try:
            value = self._invoke(name, args)
            if _isawaitable(value):
                value = await value
        except Exception as e:
            reply.fail(type(e).__name__, str(e))
        else:
            reply.send(value)

    async def _reply(self, event: EventType, kwargs: Dict[str, Any], reply: Any, convert: Callable[[Any], Any]) -> None:
        value = self.hooks.emit(event, **kwargs)
        if _isawaitable(value):
            value = await _logged(value)
        reply.send(convert(value))

    def reset(self) -> str:
        """Starts a new, empty session (blocking briefly); see :meth:`areset`."""
        session_id = self._native.reset()
        self._deliver_idle()
        return session_id

    async def areset(self) -> str:
        """Starts a new, empty session in the same store and returns its id; terminals and the work directory are
        kept. Raises :class:`~codepilot.errors.SessionBusy` while a task runs."""
        session_id = await self._native.reset_async()
        self._deliver_idle()
        return session_id

    async def acheckpoints(self) -> List[Dict[str, Any]]:
        """:meth:`checkpoints` without blocking the event loop."""
        return await self._native.checkpoints_async()

    async def arewind(
        self,
        turn: Optional[int] = None,
        step: Optional[int] = None,
        *,
        checkpoint: Optional[str] = None,
        scope: str = "both",
        dry_run: bool = False,
    ) -> Dict[str, Any]:
        """:meth:`rewind` without blocking the event loop."""
        result = await self._native.rewind_async(_checkpoint_id(turn, step, checkpoint), scope, dry_run)
        self._deliver_idle()
        return result

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.close)

    async def __aenter__(self) -> "AsyncRuntime":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> "AsyncRuntime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


async def _logged(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except Exception:
        log_exception("an async hook raised; the run goes on")
        return None


def _checkpoint_id(turn: Optional[int], step: Optional[int], checkpoint: Optional[str]) -> str:
    """The checkpoint id ``rewind`` names by turn (and step) or directly."""
    if checkpoint is not None:
        if turn is not None or step is not None:
            raise ValueError("give either turn (and step) or checkpoint, not both")
        return str(checkpoint)
    if turn is None:
        raise ValueError("rewind needs turn= (the task to go back to before) or checkpoint= (e.g. 'rewind-1')")
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise ValueError(f"turn must be a task number from 1, not {turn!r}")
    if step is None:
        return str(turn)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a step number from 1, not {step!r}")
    return f"{turn}.{step}"


def _native_gone() -> Exception:
    from .errors import CodePilotError

    return CodePilotError("the run ended without an outcome (internal error); the session is as last checkpointed")


@atexit.register
def _close_all() -> None:
    """Closes the runtimes still open at exit, so their terminals and session leases are released."""
    for rt in list(_LIVE):
        try:
            rt.close()
        except Exception:
            log_exception("closing a runtime at exit failed")
