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

from . import errors, hooks
from ._native import __version__
from .errors import *  # noqa: F403 - the exception classes, listed in errors.__all__
from .hooks import *  # noqa: F403 - EventType, HookSystem and the decorators, listed in hooks.__all__
from .runtime import AsyncRuntime, Outcome, Runtime

__all__ = ["__version__", "Runtime", "AsyncRuntime", "Outcome"]
__all__ += hooks.__all__
__all__ += errors.__all__
