"""The demo hub stores its values in a real SQLite file: history through the CLI while it
runs, restore after a restart, ``--no-persist`` and a bad ``--db`` (real processes)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .test_demo import STATIONS, Demo, _cli

pytestmark = pytest.mark.slow


def _newest_dewpoints(db: Path) -> dict[str, float]:
    conn = sqlite3.connect(db)
    try:
        out = {}
        for name in STATIONS:
            row = conn.execute(
                "SELECT payload FROM aimdb_values WHERE key = ? ORDER BY ts DESC, id DESC LIMIT 1",
                (f"hub.{name}.dewpoint",),
            ).fetchone()
            assert row is not None, name
            out[name] = json.loads(row[0])["celsius"]
        return out
    finally:
        conn.close()


def test_history_while_running_and_restore_after_a_restart(tmp_path: Path) -> None:
    first = Demo(tmp_path, "--duration", "6")
    try:
        db = first.runtime_dir / "aimdb-demo.db"
        first.wait_line(lambda s: s.startswith("aimdb demo: storing values in " + str(db) + " (0 stations"))
        first.wait_line(lambda s: s.startswith("[") and " alpine " in s and " dew=" in s and "dew=—" not in s)
        got = _cli(first, "record", "history", "hub.alpine.dewpoint", "--since", "1m", "-o", "json")
        assert got.returncode == 0, got.stderr
        page = json.loads(got.stdout)
        assert page["count"] >= 1 and all(isinstance(r["ts"], int) for r in page["rows"]), page
        assert all(isinstance(r["value"]["celsius"], float) for r in page["rows"]), page
        table = _cli(first, "record", "history", "station.coast.temperature", "-n", "3", "--newest-first")
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split() == ["TIME", "VALUE"] and "celsius" in table.stdout
        summary = first.finish()
    finally:
        first.close()
    p = summary["persistence"]
    assert p["enabled"] and p["path"] == str(db) and p["restored"] == 0, p
    assert p["rows_written"] > 0 and p["write_failures"] == 0 and p["rows_lost"] == 0, p
    assert p["writer_restarts"] == 0, p
    # every station's last dew point reached the file at stop
    stored = _newest_dewpoints(db)
    assert stored == {n: summary["stations"][n]["last_dewpoint"] for n in STATIONS}, (stored, summary)

    second = Demo(tmp_path, "--duration", "2")
    try:
        # the restore happens before any station is started: the values are there at once
        i, _ = second.wait_line(lambda s: s.startswith("aimdb demo: storing values in "))
        assert "(3 stations restored)" in second.lines[i], second.lines[i]
        j, _ = second.wait_line(lambda s: s.startswith("aimdb demo: station alpine ("))
        assert i < j
        again = second.finish()
    finally:
        second.close()
    assert again["persistence"]["restored"] == 3, again["persistence"]


def test_no_persist_stores_nothing_and_a_bad_db_is_one_line(tmp_path: Path) -> None:
    d = Demo(tmp_path, "--duration", "1.5", "--no-persist")
    try:
        summary = d.finish()
    finally:
        d.close()
    assert summary["persistence"] == {"enabled": False}
    assert not (d.runtime_dir / "aimdb-demo.db").exists()
    assert not any("storing values" in ln for ln in d.lines)

    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not SQLite, and it is long enough\n")
    p = subprocess.run(
        [sys.executable, "-m", "aimdb._demo", "--headless", "--duration", "1", "--db", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AIMDB_RUNTIME_DIR": str(tmp_path / "rt2")},
    )
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot persist" in lines[0] and "--no-persist" in lines[0], p.stderr
    assert bad.read_bytes().startswith(b"this is not SQLite")  # left alone


@pytest.mark.parametrize(("width", "status"), [(80, "last"), (160, "restored")])
def test_restored_rows_fit_the_live_table(width: int, status: str) -> None:
    import io

    from rich.console import Console

    from aimdb._demo._hub import StationView, _render
    from aimdb._demo._procs import StationSpec

    views = {}
    for name, runtime in (("alpine", "asyncio"), ("coast", "trio"), ("valley", "micropython")):
        v = StationView(StationSpec(name, runtime, "pipe"))
        v.restored = True
        v.last = {"temperature": -12.34, "humidity": 100.0}
        v.dewpoint = -13.55
        views[name] = v
    buf = io.StringIO()
    Console(file=buf, width=width).print(_render(views, 123.4, "Ctrl-C stops", width))
    text = buf.getvalue()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= width, text
    rows = [ln for ln in text.splitlines() if ln.strip(" │").startswith(STATIONS)]
    assert len(rows) == 3 and all(ln.rstrip(" ┃│").endswith(status) for ln in rows), text
