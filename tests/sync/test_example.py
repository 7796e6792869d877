"""examples/sync_api.py runs by itself, ends in time and reports what its threads did."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sync_api_example_runs() -> None:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "sync_api.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sensor: set 20 readings" in out
    m = re.search(r"controller: read 20 readings, sent (\d+) commands", out)
    assert m and int(m.group(1)) >= 2
    m2 = re.search(r"actuator: executed (\d+) commands: ([a-z ]+)", out)
    assert m2 and 1 <= int(m2.group(1)) <= int(m.group(1))
    assert set(m2.group(2).split()) <= {"heat", "cool"}
    assert out.rstrip().endswith("done: database stopped, all threads finished")
    assert proc.stderr == ""
