"""A runaway command through each implementation, and what resource limits cost per step (issue: resource limits).

    python limits.py --cli BINARY [--original PYTHON] [--testkit PATH] [--runs 5]

Against the scripted model server (`codepilot-testkit`, Anthropic wire format), one task of two steps: 2,000
background `sleep 30`s in one command, then a 600 MiB allocation. For `codepilot run` with `resources:
{max_processes: 64, max_memory_mb: 256}` and, with --original, for `codepilot-ai` (the original, which has no
limits): wall time of the run, the most `sleep`s alive at once (a /proc scan every 20 ms), the `sleep`s still
alive after the run, and whether the allocation succeeded. Leftovers are killed after each run. Then the cost of
the limits per step through `codepilot run`: a task of `execute("main", "true")` steps, 10 and 50 steps, with the
default limits and with `resources: off` (median of --runs, per-step slope). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import Server, tiktoken_cache  # noqa: E402

STORM = 'Starting them.\n\n```codepilot\nexecute("main", "for i in $(seq 2000); do sleep 30 & done; echo looped", timeout=120)\n```'
ALLOC = (
    "Allocating.\n\n```codepilot\n"
    "execute(\"main\", \"python3 -c \\\"x = b'x' * (600 << 20); print('allocated', len(x))\\\"\", timeout=120)\n```"
)
TRUE = 'Again.\n\n```codepilot\nexecute("main", "true")\n```'
# The original only finishes on a completion block that follows a control block in the same answer.
DONE = 'Stopping.\n\n```codepilot\nprint("done")\n```\n\n```completion\nDone.\n```'


def agent(resources: str) -> str:
    return (
        "agent:\n  name: Bench\n  role: Benchmark agent.\n  model:\n    provider: anthropic\n"
        "    name: claude-sonnet-4-5\n    api_key_env: ANTHROPIC_API_KEY\n    max_tokens: 1024\n"
        "  runtime:\n    work_dir: ./workspace\n    max_steps: 500\n    unsafe_mode: false\n"
        + (f"    resources: {resources}\n" if resources else "")
        + "  tools:\n    - name: read_file\n      enabled: true\n    - name: execute\n      enabled: true\n"
    )


def sleeps() -> List[int]:
    """Pids of live `sleep 30` processes."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read() == b"sleep\x0030\x00":
                    found.append(int(entry))
        except OSError:
            pass
    return found


def kill_sleeps() -> None:
    for pid in sleeps():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def storm(server: Server, command: List[str], cwd: Path, env: Dict[str, str]) -> Dict[str, Any]:
    kill_sleeps()
    server.clear()
    server.push([{"answer": STORM}, {"answer": ALLOC}, {"answer": DONE}])
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(sleeps()))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    done.set()
    watcher.join()
    left = len(sleeps())
    kill_sleeps()
    requests = json.loads(urllib_get(server.url + "/_testkit/requests"))
    last = json.dumps(requests[-1]["body"]) if requests else ""
    return {
        "ok": run.returncode == 0,
        "wall_s": wall,
        "peak": peak,
        "left": left,
        "allocated": "allocated 629145600" in last,
        "named": "process limit 64" in json.dumps(requests[min(1, len(requests) - 1)]["body"]) if requests else False,
        "stderr": run.stderr[-500:],
    }


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def cli_run(server: Server, binary: str, n: int, cwd: Path, env: Dict[str, str]) -> float:
    server.clear()
    server.push([{"answer": TRUE}] * (n - 1) + [{"answer": DONE}])
    started = time.perf_counter()
    run = subprocess.run(
        [binary, "run", "--session", "memory", "Run true until told to stop."],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    if run.returncode != 0:
        raise RuntimeError(f"codepilot run failed ({run.returncode}): {run.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", required=True, help="the codepilot binary")
    parser.add_argument("--original", help="the python of a venv with codepilot-ai installed")
    parser.add_argument("--testkit", default=os.environ.get("CODEPILOT_TESTKIT", "codepilot-testkit"))
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    server = Server(opts.testkit)

    def project(tmp: str, resources: str) -> "tuple[Path, Dict[str, str]]":
        cwd = Path(tmp)
        (cwd / "agent.yaml").write_text(agent(resources))
        (cwd / "workspace").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": "bench",
            "CODEPILOT_HOME": str(cwd / "home"),
            "HOME": str(cwd),
            "TIKTOKEN_CACHE_DIR": str(tiktoken_cache(cwd / "tiktoken")),
        }
        return cwd, env

    storms: Dict[str, Dict[str, Any]] = {}
    steps: Dict[str, Dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cwd, env = project(tmp, "{max_processes: 64, max_memory_mb: 256}")
            storms["codepilot run (limits 64 processes, 256 MiB)"] = storm(
                server, [opts.cli, "run", "--session", "memory", "Run away."], cwd, env
            )
        if opts.original:
            with tempfile.TemporaryDirectory() as tmp:
                cwd, env = project(tmp, "")
                driver = "import codepilot; rt = codepilot.Runtime('agent.yaml'); rt.run('Run away.')"
                storms["codepilot-ai 0.9.2 (no limits)"] = storm(server, [opts.original, "-c", driver], cwd, env)
        # Let the machine settle after the storms (thousands of processes to reap, 600 MiB to give back).
        kill_sleeps()
        time.sleep(3)
        for name, resources in [("default limits", ""), ("resources: off", "off")]:
            with tempfile.TemporaryDirectory() as tmp:
                cwd, env = project(tmp, resources)
                slopes, starts = [], []
                for _ in range(opts.runs):
                    short, long = cli_run(server, opts.cli, 10, cwd, env), cli_run(server, opts.cli, 50, cwd, env)
                    slopes.append((long - short) / 40)
                    starts.append(short)
                steps[name] = {
                    "step_ms": statistics.median(slopes) * 1000,
                    "run10_ms": statistics.median(starts) * 1000,
                }
            print(f"{name}: {steps[name]}", file=sys.stderr)
    finally:
        kill_sleeps()
        server.close()

    print("| run | wall | `sleep`s alive at most | `sleep`s left after the run | 600 MiB allocated |")
    print("|---|---|---|---|---|")
    for name, s in storms.items():
        if not s["ok"]:
            print(f"{name}: the run failed: {s['stderr']}", file=sys.stderr)
        print(f"| {name} | {s['wall_s']:.2f} s | {s['peak']} | {s['left']} | {'yes' if s['allocated'] else 'no'} |")
    print()
    print("| `codepilot run`, `execute(\"main\", \"true\")` steps | per step (slope 10→50) | 10-step run |")
    print("|---|---|---|")
    for name, s in steps.items():
        print(f"| {name} | {s['step_ms']:.2f} ms | {s['run10_ms']:.0f} ms |")


if __name__ == "__main__":
    main()
