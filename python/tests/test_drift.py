"""Drift: what the Python package lists against what the native engine defines, so an event added on one side only
fails here instead of reaching a user as a hook that never fires or an event no hook can take."""

from __future__ import annotations

from typing import Dict, List, Set

from codepilot import EventType, _native

# Python names with no engine event behind them, each with the reason.
PYTHON_ONLY = {
    "security_error": "kept so code written against the original still imports; the original never emitted it",
    "mcp_auth": "an MCP server's login URL, which the runtime hands to the bridge (McpAuthHooks in python/src/bridge.rs), "
    "not an event",
}


def drift(engine: List[str], hooks: Dict[str, List[str]], python: Set[str]) -> List[str]:
    """Everything that does not line up between the engine's event types, the native module's event -> hooks table
    and the Python ``EventType`` values; empty when they agree."""
    problems = []
    for event in sorted(set(engine) - set(hooks)):
        problems.append(f"engine event {event!r} has no entry in EVENT_HOOKS (python/src/events.rs)")
    for event in sorted(set(hooks) - set(engine)):
        problems.append(f"EVENT_HOOKS (python/src/events.rs) names {event!r}, which the engine does not emit")
    delivered = {hook for names in hooks.values() for hook in names}
    for hook in sorted(delivered - python):
        problems.append(f"the native module calls the hook {hook!r}, which EventType (codepilot/hooks.py) lacks")
    for hook in sorted(python - delivered - set(PYTHON_ONLY)):
        problems.append(f"EventType has {hook!r}, which no engine event reaches (python/src/events.rs)")
    return problems


def test_event_type_matches_the_native_events() -> None:
    engine = _native.event_types()
    assert "start" in engine and "workspace_saved" in engine, f"the engine's event types were not read: {engine}"
    hooks = dict(_native.event_hooks())
    python = {e.value for e in EventType}
    assert drift(engine, hooks, python) == []
    assert set(PYTHON_ONLY) <= python, "PYTHON_ONLY lists a name EventType no longer has"


def test_drift_reports_an_event_added_on_one_side() -> None:
    engine = _native.event_types()
    hooks = dict(_native.event_hooks())
    python = {e.value for e in EventType}
    assert drift(engine + ["compacted"], hooks, python) == [
        "engine event 'compacted' has no entry in EVENT_HOOKS (python/src/events.rs)"
    ]
    assert drift(engine + ["compacted"], {**hooks, "compacted": ["compacted"]}, python) == [
        "the native module calls the hook 'compacted', which EventType (codepilot/hooks.py) lacks"
    ]
    assert drift(engine, hooks, python | {"compacted"}) == [
        "EventType has 'compacted', which no engine event reaches (python/src/events.rs)"
    ]
