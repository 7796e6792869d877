"""Ctrl-C on a user's program: the README quickstart must end without a traceback.

What prints the traceback today is ``asyncio.run`` itself, not aimdb: on the first SIGINT
its runner cancels the main task; ``AimDb.run()`` shuts down in ``finally`` and lets the
``CancelledError`` through (as it must); the runner then raises ``KeyboardInterrupt`` from
inside its ``except CancelledError`` block, and the interpreter prints both chained
tracebacks. So ``AimDb.run()`` turns the first SIGINT into ``stop()`` while it runs on
asyncio's main thread.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quickstart() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def interrupt_after(code: str, marker: str) -> tuple[int, str, str]:
    """Run ``code``, send SIGINT once ``marker`` is printed, return (exit code, stdout, stderr)."""
    p = subprocess.Popen(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ln = p.stdout.readline()
        if not ln:
            break
        seen.append(ln)
        if marker in ln:
            break
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    return p.returncode, "".join(seen) + out, err


def test_quickstart_ctrl_c_without_traceback() -> None:
    code, out, err = interrupt_after(quickstart(), "temp: 24.1")
    assert "temp: 24.1" in out
    assert "Traceback" not in err, err
    assert code in (0, 130), (code, err)
