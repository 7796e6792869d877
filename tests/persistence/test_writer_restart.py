"""A persistence writer thread that dies is restarted with backoff, counted and logged once per death."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from aimdb import AimDbBuilder, SingleLatest
from aimdb.persistence import SqliteBackend


@dataclasses.dataclass
class Temp:
    celsius: float


class InjectedFault(RuntimeError):
    """The failure the test injects into the writer thread."""


class FlakyBackend(SqliteBackend):
    """A real SQLite backend whose writer thread dies on its first commits and reopens.

    ``fail_flushes`` commits raise :class:`InjectedFault` (not an ``sqlite3.Error``: the
    writer loop itself dies), then ``fail_reopens`` restarts fail to open the file.
    """

    def __init__(self, path: Path, *, fail_flushes: int, fail_reopens: int) -> None:
        super().__init__(path, commit_interval=0.01)
        self.fail_flushes = fail_flushes
        self.fail_reopens = fail_reopens
        self.opens = 0

    def _flush(self, conn: sqlite3.Connection, rows: list[tuple[str, int, bytes]]) -> None:
        if rows and self.fail_flushes > 0:
            self.fail_flushes -= 1
            raise InjectedFault("injected writer fault")
        super()._flush(conn, rows)

    def _open_writer(self) -> sqlite3.Connection:
        self.opens += 1
        if self.opens > 1 and self.fail_reopens > 0:
            self.fail_reopens -= 1
            raise InjectedFault("injected reopen fault")
        return super()._open_writer()


async def _until(rt: Any, cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await rt.sleep(0.01)


async def test_a_dead_writer_is_restarted_counted_logged_and_writes_again(
    rt: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FlakyBackend(tmp_path / "hub.db", fail_flushes=2, fail_reopens=1)
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(backend)
    db = b.build()
    caplog.set_level(logging.ERROR, logger="aimdb")
    async with db:
        p = db.producer(Temp, "t")
        p.produce(Temp(1.0))  # its commit kills the writer: lost
        await _until(rt, lambda: backend.statistics().writer_restarts >= 1)
        p.produce(Temp(2.0))  # kills the restarted writer again (or waits for the restart)
        # the reopen after the second death fails once, then the writer runs again
        await _until(rt, lambda: backend.fail_flushes == 0 and backend.fail_reopens == 0)
        await _until(rt, lambda: backend.statistics().writer_alive)
        p.produce(Temp(3.0))
        p.produce(Temp(4.0))
        await _until(rt, lambda: backend.statistics().written >= 2)
        values = [s.value.celsius for s in await db.history("t")]
        st = backend.statistics()
    assert values == [3.0, 4.0]
    assert st.writer_restarts == 3  # two deaths, one failed reopen retried
    assert st.lost == 2 and st.pending == 0
    assert st.last_error is not None and "InjectedFault" in st.last_error
    deaths = [r for r in caplog.records if "writer of" in r.getMessage()]
    assert len(deaths) == 3, [r.getMessage() for r in deaths]
    assert all(r.exc_info is not None and r.exc_info[0] is InjectedFault for r in deaths)
    assert sum("could not be reopened" in r.getMessage() for r in deaths) == 1
    # the file holds exactly what history showed: nothing half-written from the dead writers
    conn = sqlite3.connect(tmp_path / "hub.db")
    try:
        assert conn.execute("SELECT count(*) FROM aimdb_values").fetchone()[0] == 2
    finally:
        conn.close()


async def test_stop_during_a_restart_backoff_writes_the_queued_rows(rt: Any, tmp_path: Path) -> None:
    backend = FlakyBackend(tmp_path / "hub.db", fail_flushes=1, fail_reopens=0)
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(backend)
    db = b.build()
    async with db:
        p = db.producer(Temp, "t")
        p.produce(Temp(1.0))
        await _until(rt, lambda: backend.statistics().writer_restarts >= 1)
        p.produce(Temp(2.0))
    st = backend.statistics()
    assert st.lost == 1 and st.pending == 0 and st.written == 1 and not st.writer_alive
    conn = sqlite3.connect(tmp_path / "hub.db")
    try:
        rows = conn.execute("SELECT count(*) FROM aimdb_values").fetchone()[0]
    finally:
        conn.close()
    assert rows == 1


async def test_writer_alive_is_false_while_a_dead_writer_waits_to_restart(rt: Any, tmp_path: Path) -> None:
    backend = FlakyBackend(tmp_path / "hub.db", fail_flushes=1, fail_reopens=3)
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(backend)
    db = b.build()
    async with db:
        assert backend.statistics().writer_alive
        db.producer(Temp, "t").produce(Temp(1.0))  # kills the writer; three reopens then fail
        await _until(rt, lambda: backend.statistics().writer_restarts >= 1)
        st = backend.statistics()
        if backend.fail_reopens > 0:  # no reopen succeeded before the snapshot: it was dead
            assert not st.writer_alive, st
        await _until(rt, lambda: backend.statistics().writer_alive)
        assert backend.fail_reopens == 0 and backend.statistics().writer_restarts == 4
        db.producer(Temp, "t").produce(Temp(2.0))
        await _until(rt, lambda: backend.statistics().written == 1)
