"""Every example in examples/ runs and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float = 30) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart() -> None:
    assert run_example("quickstart.py").splitlines() == ["temp: 21.0", "temp: 22.5", "temp: 24.1"]


def test_ring_fast_slow() -> None:
    out = run_example("ring_fast_slow.py")
    assert "fast tap saw 20 readings" in out
    m = re.search(r"slow tap saw (\d+) readings, lost (\d+), last 19", out)
    assert m, out
    assert int(m.group(1)) + int(m.group(2)) == 20  # every reading either seen or counted lost
    assert int(m.group(2)) > 0


def test_single_latest_config() -> None:
    lines = run_example("single_latest_config.py").splitlines()
    assert lines[0] == "worker applies period=1000ms unit=C"
    assert "worker applies period=500ms unit=C" not in lines  # collapsed
    assert lines[-1] == "current: Config(sample_period_ms=100, unit='F')"


def test_mailbox_commands() -> None:
    out = run_example("mailbox_commands.py")
    assert "handled once each: True, dropped 1" in out
    assert "last command handled: 99" in out
    m = re.search(r"w1 handled (\d+), w2 handled (\d+)", out)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0  # both workers competed


def test_quickstart_stops_on_interrupt() -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--forever"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert "temp: 24.1" in out
    assert "KeyboardInterrupt" in err or proc.returncode in (0, -2, 130, 1)
    assert "Task was destroyed" not in err and "never retrieved" not in err


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_run_by_a_test(example: str) -> None:
    tests = [p.read_text() for p in Path(__file__).parent.rglob("test_*.py")]
    assert any(example in text for text in tests), f"{example} is not run by any test"
