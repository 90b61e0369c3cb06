"""One measurement in a fresh process, printed as JSON; run by compare.py for each implementation.

    python measure.py import             seconds spent in `import codepilot`
    python measure.py construct          seconds for `Runtime("agent.yaml")` (terminal `main` ready), and RSS after
    python measure.py steps N            a task of N steps against the scripted server: wall and CPU seconds, RSS

The current directory must hold agent.yaml; ANTHROPIC_BASE_URL points at the scripted server, whose turns the
caller queued.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    mode = sys.argv[1]
    started = time.perf_counter()
    import codepilot

    imported = time.perf_counter() - started
    if mode == "import":
        print(json.dumps({"import_s": imported}))
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
