"""CodePilot: an embeddable runtime for autonomous software-engineering agents.

The API of ``codepilot-ai`` on a Rust engine::

    from codepilot import Runtime, on_stream, on_finish

    runtime = Runtime("agent.yaml")

    @on_stream(runtime)
    def stream(text: str, **_):
        print(text, end="", flush=True)

    summary = runtime.run("Inspect the project and fix the failing tests.")

See :class:`Runtime`, :class:`AsyncRuntime`, :mod:`codepilot.hooks` and :mod:`codepilot.errors`.
"""

from ._native import __version__
from .errors import (
    CodePilotError,
    ConfigError,
    ContextOverflowError,
    ProviderError,
    RuntimeClosed,
    SessionBusy,
    SessionError,
    SessionLost,
    TerminalError,
    ToolRegistrationError,
)
from .hooks import (
    EventType,
    HookSystem,
    on_ask_user,
    on_context_drop,
    on_context_maintenance_start,
    on_finish,
    on_permission_request,
    on_runtime_error,
    on_stream,
    on_thinking_stream,
    on_tool_call,
    on_tool_result,
    on_user_message_injected,
    on_user_message_queued,
)
from .runtime import AsyncRuntime, Outcome, Runtime

__all__ = [
    "__version__",
    "Runtime",
    "AsyncRuntime",
    "Outcome",
    "EventType",
    "HookSystem",
    "on_stream",
    "on_thinking_stream",
    "on_tool_call",
    "on_tool_result",
    "on_ask_user",
    "on_permission_request",
    "on_finish",
    "on_runtime_error",
    "on_user_message_queued",
    "on_user_message_injected",
    "on_context_maintenance_start",
    "on_context_drop",
    "CodePilotError",
    "ConfigError",
    "ToolRegistrationError",
    "ProviderError",
    "SessionError",
    "SessionBusy",
    "SessionLost",
    "RuntimeClosed",
    "TerminalError",
    "ContextOverflowError",
]
