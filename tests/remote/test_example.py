"""examples/remote_access.py runs, ends by itself and shows list/get/set/subscribe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "remote_access.py"


def test_remote_access_example() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "config.setpoint" in out and "writable" in out
    assert "get sensor.temp -> {'celsius':" in out
    assert "set config.setpoint -> {'celsius': 22.5}" in out
    assert "set sensor.temp refused:" in out and "source" in out
    assert "(3 snapshot values first)" in out
    kinds = [line.split()[1] for line in out.splitlines() if line.strip().startswith("#")]
    assert kinds == ["snapshot"] * 3 + ["update"] * 5
    assert out.rstrip().endswith("done")
