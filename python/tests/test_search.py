"""Code search from Python (SPEC §22): a block written for ``codepilot-ai`` 0.9.41 calls ``semantic_search`` with its
modes and gets structured results, plus ``definition`` / ``references`` / ``repo_map``; the index lives under
``CODEPILOT_HOME`` and no background process is left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from codepilot import EventType, Runtime
from conftest import ScriptedServer, write_agent


def test_the_search_tools_answer_from_the_index(project: Path, server: ScriptedServer) -> None:
    write_agent(project / "agent.yaml")
    src = project / "workspace" / "shop"
    src.mkdir(parents=True)
    (src / "cart.py").write_text(
        "class Cart:\n    def total(self):\n        return apply_discount(sum(self.prices))\n\n\n"
        "def apply_discount(amount):\n    return amount * 0.9\n"
    )
    server.push(
        "```codepilot\n"
        'hits = semantic_search("cart total price", top_k=1)\n'
        'print(hits[0]["symbol"], hits[0]["file"])\n'
        'print(definition("apply_discount")[0]["line"])\n'
        'print(len(references("apply_discount")))\n'
        'semantic_search("apply_discount", mode="trace_callers")\n'
        "repo_map(max_tokens=128)\n"
        "```",
        "```completion\nfound\n```",
    )
    rt = Runtime("agent.yaml")
    labels: List[Dict[str, Any]] = []
    rt.hooks.register(EventType.TOOL_CALL, lambda tool, label=None, **_: labels.append({"tool": tool, "label": label}))
    assert rt.run("where is the total?") == "found"
    seen = str(server.requests()[1]["body"]["messages"][-1])
    assert "Cart.total shop/cart.py" in seen
    assert "=== Semantic Search (trace_callers) ===" in seen
    assert "Cart.total → apply_discount  shop/cart.py:3" in seen
    assert "[repo_map] 1 of 1 files" in seen
    assert labels[0] == {"tool": "semantic_search", "label": "Searching the code for cart total price"}
    assert any((project / "home" / "index").iterdir()), "the index is stored under CODEPILOT_HOME"
    rt.close()
