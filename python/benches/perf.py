"""The runtime's budgets (SPEC §12) through the Python package, measured as `cli/benches/perf.rs` measures the CLI:
fresh processes against the scripted model server, CPU time and peak RSS of the process from `wait4`, per-step
figures as slopes between a short and a long task (every step reads a file) so interpreter start cancels.

    python perf.py --python VENV/bin/python --testkit PATH/codepilot-testkit [--runs 5]

Prints Markdown rows (`scripts/bench.sh` puts them beside the CLI's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import List, Tuple

DRIVER = textwrap.dedent(
    """\
    import sys
    import codepilot
    rt = codepilot.Runtime(sys.argv[1], session=sys.argv[2])
    rt.run("read a.txt again and again")
    rt.close()
    """
)


class Testkit:
    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def push(self, turns: List[dict]) -> None:
        body = json.dumps(turns).encode()
        request = urllib.request.Request(self.url + "/_testkit/turns", data=body, method="POST")
        urllib.request.urlopen(request, timeout=10).read()

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "/_testkit/state", timeout=10) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=5)


def run(
    python: str, kit: Testkit, work: Path, steps: int, stream: int, session: str
) -> Tuple[float, float, float, float]:
    """One task of `steps` steps in a fresh interpreter: (wall s, overhead s, CPU s, peak RSS MiB); the overhead is
    the wall clock less the scripted server's time serving the run's requests."""
    turn = lambda text: {"answer": text, **({"chunk_bytes": stream} if stream else {})}  # noqa: E731
    turns = [turn(f'Step {i}: reading it again.\n```codepilot\nread_file("a.txt")\n```') for i in range(1, steps)]
    turns.append(turn("Done.\n```completion\ndone\n```"))
    kit.push(turns)
    agent = work / "agent.yaml"
    agent.write_text(
        textwrap.dedent(
            f"""\
            agent:
              name: Bench
              model:
                provider: openai-compatible
                name: bench-model
                base_url: {kit.url}/v1
                stream: {"true" if stream else "false"}
                context_window: 200000
              runtime:
                work_dir: work
                max_steps: {steps + 1}
            """
        )
    )
    env = dict(os.environ, CODEPILOT_HOME=str(work / "home"))
    env.pop("CODEPILOT_DB_URL", None)
    busy_before = kit.state()["busy_ms"]
    started = time.perf_counter()
    child = subprocess.Popen(
        [python, "-c", DRIVER, str(agent), session],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"the driver failed ({status}): {child.stderr.read().decode() if child.stderr else ''}")
    child.returncode = 0
    state = kit.state()
    assert state["remaining"] == 0, "every turn was used"
    overhead = wall - (state["busy_ms"] - busy_before) / 1e3
    return wall, overhead, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def median(python: str, kit: Testkit, work: Path, runs: int, steps: int, stream: int, session: str):
    samples = [run(python, kit, work, steps, stream, session) for _ in range(runs)]
    return tuple(statistics.median(s[i] for s in samples) for i in range(4))


def slope(python: str, kit: Testkit, work: Path, runs: int, stream: int, session: str) -> Tuple[float, float]:
    a = median(python, kit, work, runs, 20, stream, session)
    b = median(python, kit, work, runs, 200, stream, session)
    return (b[1] - a[1]) / 180 * 1e3, (b[2] - a[2]) / 180 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", required=True)
    parser.add_argument("--testkit", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    kit = Testkit(args.testkit)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "work").mkdir()
            (work / "work" / "a.txt").write_text("0123456789 abcdefghij klmnopqrstuvwxyz ABCDEFGHIJ\n" * 12)
            py, runs = args.python, args.runs
            start = median(py, kit, work, runs * 3, 1, 0, "memory")
            forty = median(py, kit, work, runs, 40, 0, "memory")
            whole = slope(py, kit, work, runs, 0, "memory")
            stream = slope(py, kit, work, runs, 24, "memory")
            fine = slope(py, kit, work, runs, 4, "memory")
            db = slope(py, kit, work, runs, 0, "db")
            mid = median(py, kit, work, runs, 200, 0, "memory")
            long = median(py, kit, work, runs, 1000, 0, "memory")
            late = (long[2] - mid[2]) / 800 * 1e3
            print(f"Python package ({py}), median of {runs} runs:")
            print()
            print("| figure | measured |")
            print("|---|---|")
            print(
                "| spawn → exit, completion-only run (interpreter, import, construct, run, close) | "
                f"{start[0] * 1e3:.1f} ms |"
            )
            print(f"| peak RSS, 40-step run | {forty[3]:.1f} MiB |")
            print(
                f"| overhead per step (wall − server time), nonstream / stream (24 B) / stream (4 B), slope 20→200 | "
                f"{whole[0]:.3f} / {stream[0]:.3f} / {fine[0]:.3f} ms |"
            )
            print(
                f"| process CPU per step, nonstream / stream (24 B) / stream (4 B), slope 20→200 | "
                f"{whole[1]:.3f} / {stream[1]:.3f} / {fine[1]:.3f} ms |"
            )
            print(f"| SQLite session, extra CPU per step | +{db[1] - whole[1]:.3f} ms |")
            print(f"| CPU per step 200→1,000 vs 20→200 | ×{late / whole[1]:.2f} ({late:.3f} vs {whole[1]:.3f} ms) |")
    finally:
        kit.close()


if __name__ == "__main__":
    main()
