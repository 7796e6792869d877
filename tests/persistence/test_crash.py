"""SIGKILL while writing: the file is intact and at most the last commit interval is missing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

CHILD = Path(__file__).with_name("_crash_child.py")
COMMIT_INTERVAL = 0.05
#: scheduling slack on a busy machine on top of the commit interval (a liveness bound)
SLACK = 2.0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_stream_leaves_an_intact_file_missing_at_most_the_last_interval(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(COMMIT_INTERVAL)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    progress: list[tuple[int, float]] = []
    try:
        assert proc.stdout is not None
        started = time.monotonic()
        while time.monotonic() - started < 30:
            line = proc.stdout.readline()
            assert line, "child ended early"
            n, t = line.split()
            progress.append((int(n), float(t)))
            if progress[-1][0] >= 20_000 and progress[-1][1] - progress[0][1] > COMMIT_INTERVAL + SLACK + 0.5:
                break
        t_kill = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for line in proc.stdout:  # what it printed before it died
            n, t = line.split()
            progress.append((int(n), float(t)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        sql = "SELECT payload FROM aimdb_values WHERE key = 'r' ORDER BY id"
        payloads = [r[0] for r in conn.execute(sql)]
    finally:
        conn.close()
    values = [msgspec.json.decode(p)["n"] for p in payloads]
    stored = len(values)
    produced = progress[-1][0]
    assert values == list(range(stored)), "rows are a gap-free prefix of what was produced"
    assert stored <= produced
    # everything produced before the last commit interval (plus slack) is in the file
    safe = max((n for n, t in progress if t <= t_kill - COMMIT_INTERVAL - SLACK), default=0)
    assert stored >= safe > 0
    rate = produced / (progress[-1][1] - progress[0][1])
    missing = produced - stored
    ms = missing / rate * 1000
    print(f"produced {produced}, stored {stored}, missing {missing} (~{ms:.0f} ms of values)")
