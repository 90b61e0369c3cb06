#!/usr/bin/env python3
"""Fails when two top-level modules of a crate import each other, directly or through others.

Usage: python3 scripts/module-cycles.py [CRATE_DIR ...]   (default: every workspace crate)

A crate's top-level modules are the files and folders under src/; an edge A -> B is a `crate::B` path in A's code
(comments and `#[cfg(test)] mod tests` blocks ignored, as are `*_tests.rs` files). Each crate's modules must form a
graph without cycles, so that its imports point one way.
"""
import os
import re
import sys

CRATES = ["protocol", "script", "terminal", "llm", "store", "core", "cli", "sandbox", "testkit", "python", "server"]


def graph(crate):
    src = os.path.join(crate, "src")
    edges = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs") or name.endswith("_tests.rs"):
                continue
            path = os.path.join(root, name)
            top = os.path.relpath(path, src)[:-3].split(os.sep)[0]
            if top in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as f:
                code = "\n".join(l for l in f.read().splitlines() if not l.strip().startswith("//"))
            code = re.split(r"#\[cfg\(test\)\]\s*mod tests", code)[0]
            deps = set(re.findall(r"\bcrate::(\w+)", code)) - {top}
            edges.setdefault(top, set()).update(deps)
    return {m: {d for d in deps if d in edges} for m, deps in edges.items()}


def cycle(edges):
    """A cycle as a list of modules, or None."""
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                return path[path.index(d):] + [d]
            if d not in state:
                found = visit(d, path + [d])
                if found:
                    return found
        state[m] = "done"
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    failed = False
    for crate in sys.argv[1:] or CRATES:
        found = cycle(graph(crate))
        if found:
            failed = True
            print(f"{crate}: modules import each other: {' -> '.join(found)}")
    if failed:
        print("move what both need into a module that neither imports, so imports point one way")
        return 1
    print("no module import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
