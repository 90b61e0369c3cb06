"""The Python API's costs, for this package and for the original `codepilot-ai`, measured the same way.

    python compare.py --impl NAME=PYTHON [--impl NAME=PYTHON ...] [--cli NAME=BINARY] [--testkit PATH] [--runs 7]

Each PYTHON is the interpreter of a venv with one implementation installed (`pip install ./python` for this one,
`pip install codepilot-ai==0.9.2` for the original). Every figure comes from fresh processes (median of --runs):
`import codepilot`; `Runtime("agent.yaml")` with terminal `main` declared; per-step cost of a task whose every step
reads a file, from the difference between a 10-step and a 110-step task against the scripted model server
(`codepilot-testkit`, Anthropic wire format, streamed), in wall time and in CPU time of the whole process; RSS;
with `AsyncRuntime` waiting for a 5-second model answer, the longest stall of the event loop and how long `abort()`
takes to end the run (figures the tests only check as conditions). Prints a Markdown table. `--cli` adds the same task through `codepilot run --session memory` (CPU and peak RSS of
the child process), the engine without Python.

The original loads tiktoken's `cl100k_base` at import, which tiktoken downloads; with no internet here, its cache is
filled from the identical files the `tiktoken-rs` crate ships (same SHA-256, checked by tiktoken).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent

AGENT = """\
agent:
  name: Bench
  role: Benchmark agent.
  model:
    provider: anthropic
    name: claude-sonnet-4-5
    api_key_env: ANTHROPIC_API_KEY
    max_tokens: 1024
  runtime:
    work_dir: ./workspace
    max_steps: 500
    unsafe_mode: false
  tools:
    - name: read_file
      enabled: true
    - name: execute
      enabled: true
"""

STEP = 'Reading the notes again.\n\n```codepilot\nread_file("notes.txt")\n```'
# The original only finishes on a completion block that follows a control block in the same answer.
DONE = 'Stopping.\n\n```codepilot\nprint("done")\n```\n\n```completion\nRead them all.\n```'


TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def tiktoken_cache(into: Path) -> Path:
    """A TIKTOKEN_CACHE_DIR holding the encodings, copied from the tiktoken-rs crate in the cargo registry."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(glob.glob(str(cargo_home / "registry" / "src" / "*" / "tiktoken-rs-*" / "assets")))
    if not found:
        raise RuntimeError("tiktoken-rs is not in the cargo registry; run `cargo fetch` in the repository first")
    into.mkdir(parents=True, exist_ok=True)
    for name in ("cl100k_base", "o200k_base", "p50k_base", "r50k_base"):
        source = Path(found[-1]) / f"{name}.tiktoken"
        key = hashlib.sha1(TIKTOKEN_URL.format(name).encode()).hexdigest()
        (into / key).write_bytes(source.read_bytes())
    return into


class Server:
    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def push(self, turns: List[Dict[str, Any]]) -> None:
        req = urllib.request.Request(self.url + "/_testkit/turns", data=json.dumps(turns).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def clear(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/_testkit/turns", method="DELETE"), timeout=10).read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def measure(python: str, args: List[str], cwd: Path, env: Dict[str, str]) -> Dict[str, Any]:
    done = subprocess.run(
        [python, str(HERE / "measure.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} measure.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


CHUNK_BYTES = 7


def script(n: int) -> List[Dict[str, Any]]:
    """A task of `n` steps: `n - 1` reads, then the completion; streamed in CHUNK_BYTES-byte writes."""
    return [{"answer": STEP, "chunk_bytes": CHUNK_BYTES}] * (n - 1) + [{"answer": DONE, "chunk_bytes": CHUNK_BYTES}]


def steps(server: Server, python: str, n: int, cwd: Path, env: Dict[str, str]) -> Dict[str, Any]:
    server.clear()
    server.push(script(n))
    result = measure(python, ["steps", str(n)], cwd, env)
    if result.get("summary") != "Read them all.":
        raise RuntimeError(f"the {n}-step task did not complete: {result}")
    return result


def loop(server: Server, python: str, cwd: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """The event loop around a run whose model answer takes 5 s, and abort() (measure.py loop)."""
    server.clear()
    server.push([{"answer": DONE, "delay_ms": 5000}])
    return measure(python, ["loop"], cwd, env)


def cli_steps(server: Server, binary: str, n: int, cwd: Path, env: Dict[str, str]) -> Dict[str, float]:
    import resource

    server.clear()
    server.push(script(n))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [binary, "run", "--session", "memory", "Read notes.txt until told to stop."],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or "Read them all." not in done.stdout:
        raise RuntimeError(f"codepilot run failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"run_s": wall, "run_cpu_s": cpu, "rss_mib": after.ru_maxrss / 1024}


def main() -> None:
    global CHUNK_BYTES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", action="append", required=True, help="NAME=PYTHON")
    parser.add_argument("--cli", action="append", default=[], help="NAME=BINARY of the codepilot CLI")
    parser.add_argument("--testkit", default=os.environ.get("CODEPILOT_TESTKIT", "codepilot-testkit"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=110)
    parser.add_argument(
        "--chunk-bytes",
        type=int,
        default=CHUNK_BYTES,
        help="bytes per write of the streamed answers (default 7, the scripted server's: every SSE event split up)",
    )
    opts = parser.parse_args()
    CHUNK_BYTES = opts.chunk_bytes

    server = Server(opts.testkit)
    rows: Dict[str, Dict[str, float]] = {}

    def project(tmp: str) -> "tuple[Path, Dict[str, str]]":
        cwd = Path(tmp)
        (cwd / "agent.yaml").write_text(AGENT)
        (cwd / "workspace").mkdir()
        (cwd / "workspace" / "notes.txt").write_text("".join(f"line {i}\n" for i in range(40)))
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": "bench",
            "CODEPILOT_HOME": str(cwd / "home"),
            "HOME": str(cwd),
            "TIKTOKEN_CACHE_DIR": str(tiktoken_cache(cwd / "tiktoken")),
        }
        return cwd, env

    def per_step(run: Callable[[int], Dict[str, Any]]) -> Dict[str, float]:
        """Per-step wall and CPU from the short and long tasks (medians), and the long task's RSS."""
        wall, cpu, rss = [], [], []
        n = opts.long - opts.short
        for _ in range(max(3, opts.runs // 2)):
            short, long = run(opts.short), run(opts.long)
            wall.append((long["run_s"] - short["run_s"]) / n)
            cpu.append((long["run_cpu_s"] - short["run_cpu_s"]) / n)
            rss.append(long["rss_mib"])
        return {
            "step_wall_ms": statistics.median(wall) * 1000,
            "step_cpu_ms": statistics.median(cpu) * 1000,
            "rss_mib": statistics.median(rss),
        }

    nan = float("nan")
    try:
        for spec in opts.cli:
            name, binary = spec.split("=", 1)
            with tempfile.TemporaryDirectory() as tmp:
                cwd, env = project(tmp)
                stepped = per_step(lambda n: cli_steps(server, binary, n, cwd, env))
                rows[name] = {
                    "import_ms": nan, "construct_ms": nan, "idle_rss_mib": nan, "loop_stall_ms": nan, "abort_ms": nan,
                    **stepped,
                }
                print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr)
        for spec in opts.impl:
            name, python = spec.split("=", 1)
            with tempfile.TemporaryDirectory() as tmp:
                cwd, env = project(tmp)
                imports = [measure(python, ["import"], cwd, env)["import_s"] for _ in range(opts.runs)]
                builds = [measure(python, ["construct"], cwd, env) for _ in range(opts.runs)]
                stepped = per_step(lambda n: steps(server, python, n, cwd, env))
                loops = [loop(server, python, cwd, env) for _ in range(max(3, opts.runs // 2))]
                rows[name] = {
                    "import_ms": statistics.median(imports) * 1000,
                    "construct_ms": statistics.median(b["construct_s"] for b in builds) * 1000,
                    "idle_rss_mib": statistics.median(b["rss_mib"] for b in builds),
                    "loop_stall_ms": statistics.median(r["loop_stall_s"] for r in loops) * 1000,
                    "abort_ms": statistics.median(r["abort_s"] for r in loops) * 1000,
                    **stepped,
                }
                print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr)
    finally:
        server.close()

    names = list(rows)
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key, label in [
        ("import_ms", "`import codepilot` (ms)"),
        ("construct_ms", '`Runtime("agent.yaml")`, `main` ready (ms)'),
        ("step_wall_ms", "per step, wall (ms)"),
        ("step_cpu_ms", "per step, CPU of the process (ms)"),
        ("idle_rss_mib", "RSS after construction (MiB)"),
        ("rss_mib", f"RSS after a {opts.long}-step task (MiB; CLI: peak)"),
        ("loop_stall_ms", "`AsyncRuntime`: longest event-loop stall while the model answers (ms)"),
        ("abort_ms", "`abort()` during a model call until `run` returns (ms)"),
    ]:
        cells = ("—" if rows[n][key] != rows[n][key] else f"{rows[n][key]:.2f}" for n in names)
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
