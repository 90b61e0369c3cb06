"""One measurement in a fresh process, printed as JSON; run by compare.py for each implementation.

    python measure.py import             seconds spent in `import codepilot`
    python measure.py construct          seconds for `Runtime("agent.yaml")` (terminal `main` declared), and RSS after
    python measure.py steps N            a task of N steps against the scripted server: wall and CPU seconds, RSS
    python measure.py loop               an AsyncRuntime run waiting for a slow model answer: the longest gap between
                                         the ticks of another task on the loop over one second, then how long
                                         abort() takes to end the run

The current directory must hold agent.yaml; ANTHROPIC_BASE_URL points at the scripted server, whose turns the
caller queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import resource
import sys
import time
from typing import Any, Dict


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def loop_figures(codepilot: Any) -> Dict[str, float]:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        runtime = codepilot.AsyncRuntime("agent.yaml")
        run = asyncio.ensure_future(runtime.run("Wait for the slow answer."))
        ticks = [time.perf_counter()]
        while ticks[-1] - ticks[0] < 1.0:
            await asyncio.sleep(0.001)
            ticks.append(time.perf_counter())
        started = time.perf_counter()
        runtime.abort()
        await run
        aborted = time.perf_counter() - started
        close = getattr(runtime, "aclose", None)
        if close is not None:
            await close()
    return {
        "loop_stall_s": max(b - a for a, b in zip(ticks, ticks[1:])),
        "abort_s": aborted,
    }


def main() -> None:
    mode = sys.argv[1]
    started = time.perf_counter()
    import codepilot

    imported = time.perf_counter() - started
    if mode == "import":
        print(json.dumps({"import_s": imported}))
        return
    if mode == "loop":
        print(json.dumps(asyncio.run(loop_figures(codepilot))))
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        started = time.perf_counter()
        runtime = codepilot.Runtime("agent.yaml")
        constructed = time.perf_counter() - started
    result = {"construct_s": constructed, "rss_mib": rss_mib()}
    if mode == "steps":
        with contextlib.redirect_stdout(sink):
            cpu = cpu_seconds()
            started = time.perf_counter()
            summary = runtime.run("Read notes.txt until told to stop.")
            result["run_s"] = time.perf_counter() - started
            result["run_cpu_s"] = cpu_seconds() - cpu
        result["summary"] = summary
        result["rss_mib"] = rss_mib()
    close = getattr(runtime, "close", None)
    with contextlib.redirect_stdout(sink):
        if close is not None:
            close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
