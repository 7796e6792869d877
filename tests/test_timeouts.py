"""The suite's per-test timeout (tests/_timeout.py) ends hung tests that pytest-timeout alone does not.

Each case runs pytest in a child process on a small test file with a 2 s timeout: a test
spinning inside an event-loop task and a test blocked on a thread must fail on their own
while the next test still runs and the run ends; a test that swallows every timeout must
end the run (instead of stalling it).  The outer bound (``LIMIT``) is only there so that a
regression fails this test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 120  # seconds for one child run (it takes about 10)

HUNG = '''
import asyncio
import threading

from aimdb import AimDbBuilder, BufferCfg


def test_spinning_task():
    async def spin(ctx, producer):
        while True:  # never yields: the event loop stops turning
            pass

    async def main():
        b = AimDbBuilder()
        b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4)).source(spin))
        async with b.build():
            await asyncio.sleep(3600)

    asyncio.run(main())


def test_blocked_thread():
    asyncio.run(asyncio.to_thread(threading.Event().wait))


def test_after():
    pass
'''

UNFAILABLE = '''
def test_swallows_every_timeout():
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass


def test_after():
    pass
'''


def _run(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_case.py").write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests._timeout",
         "-o", "timeout=2", "-o", "timeout_repeat=1", "-o", "timeout_grace=8", "test_case.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT)


def test_a_spinning_task_and_a_blocked_thread_fail_their_test_and_the_run_goes_on(tmp_path: Path) -> None:
    run = _run(tmp_path, HUNG)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "2 failed, 1 passed" in out, out
    assert "FAILED test_case.py::test_spinning_task" in out, out
    assert "FAILED test_case.py::test_blocked_thread" in out, out
    assert "exiting without waiting for them" in out, out  # the blocked thread


def test_a_test_that_swallows_every_timeout_ends_the_run(tmp_path: Path) -> None:
    run = _run(tmp_path, UNFAILABLE)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "swallows_every_timeout: still running 8s after its timeout of 2.0s; ending the run" in out, out
    assert "test_after" not in out.replace("def test_after", ""), out
