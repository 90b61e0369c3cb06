"""Process-level behaviour: Ctrl-C, fork, import cost, and the shipped type information."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import DONE, ScriptedServer


def test_ctrl_c_aborts_a_blocking_run(project: Path, server: ScriptedServer) -> None:
    server.push({"answer": DONE, "delay_ms": 60_000})
    script = textwrap.dedent(
        """\
        import sys
        from codepilot import Runtime
        rt = Runtime("agent.yaml")
        print("ready", flush=True)
        try:
            rt.run("slow")
        except KeyboardInterrupt:
            print("interrupted", rt.last_outcome, flush=True)
            rt.close()
            sys.exit(7)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        # The model call reached the server, which holds the answer for a minute: the child is inside Runtime.run.
        server.wait_for_requests(1)
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            raise AssertionError("Ctrl-C did not stop Runtime.run") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 7, out
    assert "interrupted" in out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_gets_a_clear_error(project: Path) -> None:
    script = textwrap.dedent(
        """\
        import os, sys
        from codepilot import Runtime
        rt = Runtime("agent.yaml")
        pid = os.fork()
        if pid == 0:
            try:
                Runtime("agent.yaml", session_id="child")
            except RuntimeError as e:
                print("child:", e, flush=True)
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        rt.close()
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forked" in done.stdout and "spawn" in done.stdout


def test_the_stubs_match_the_module_and_the_package_type_checks() -> None:
    pytest.importorskip("mypy")
    stubtest = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "codepilot._native"], capture_output=True, text=True, timeout=300
    )
    assert stubtest.returncode == 0, stubtest.stdout + stubtest.stderr
    strict = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "-p", "codepilot"], capture_output=True, text=True, timeout=300
    )
    assert strict.returncode == 0, strict.stdout + strict.stderr
