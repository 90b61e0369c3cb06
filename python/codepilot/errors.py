"""The exceptions CodePilot raises. Every one is a :class:`CodePilotError`; messages are the CLI's."""

from __future__ import annotations

__all__ = [
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
    "CheckpointError",
]


class CodePilotError(Exception):
    """Base class of everything CodePilot raises."""


class ConfigError(CodePilotError, ValueError):
    """The agent file, an argument or the environment is wrong: a bad ``agent.yaml`` (naming key and line), a missing
    API key, an unknown session kind, a malformed database URL or session id."""


class ToolRegistrationError(CodePilotError, ValueError):
    """A custom tool could not be registered: its name is taken (pass ``replace=True``), not an identifier, or its
    signature cannot be offered to the model."""


class ProviderError(CodePilotError):
    """The model provider failed after retries (network, HTTP status, malformed stream)."""


class SessionError(CodePilotError):
    """The session store failed (database, file system)."""


class SessionBusy(SessionError):
    """The session is in use: a task is already running on this runtime, or another process holds the session."""


class SessionLost(SessionError):
    """Another process took the session over while this one was stalled; this runtime stopped driving it."""


class RuntimeClosed(CodePilotError):
    """The runtime was closed; create a new one (with the same ``session_id``) to continue."""


class TerminalError(CodePilotError):
    """The agent's terminals could not be started."""


class ContextOverflowError(CodePilotError):
    """The current task's opening message and newest step alone do not fit the model's context window."""


class CheckpointError(CodePilotError):
    """A rewind could not be done: an unknown checkpoint (the message lists the ones there are), one on a conversation
    a later rewind replaced, checkpoints off for this agent, or files that could not be written back (a failure
    before any change leaves everything as it was; one after names the checkpoint that undoes what was done)."""
