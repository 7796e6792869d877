"""Persistence: values stored off the hot path in a real SQLite file, history, restore, faults."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aimdb import (
    AimDb,
    AimDbBuilder,
    InvalidConfiguration,
    Mailbox,
    NotPersisted,
    PersistenceError,
    RecordNotFound,
    SingleLatest,
    SpmcRing,
)
from aimdb.persistence import SqliteBackend, Stored
from aimdb.persistence._sqlite import parse_duration


@dataclasses.dataclass
class Temp:
    celsius: float


@dataclasses.dataclass
class Reading:
    n: int


def _rows(path: Path, key: str | None = None) -> list[tuple[str, int, bytes]]:
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT key, ts, payload FROM aimdb_values"
        if key is not None:
            return conn.execute(sql + " WHERE key = ? ORDER BY id", (key,)).fetchall()
        return conn.execute(sql + " ORDER BY id").fetchall()
    finally:
        conn.close()


async def _until(rt: Any, cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await rt.sleep(0.01)


def _ring_db(path: Path, n: int, rt: Any, *, capacity: int = 1024, **kw: Any) -> AimDb:
    async def src(ctx: Any, p: Any) -> None:
        for i in range(n):
            p.produce(Reading(i))
            if i % 50 == 49:
                await ctx.time.sleep(0)

    b = AimDbBuilder(runtime=rt)
    b.configure(Reading, "r", lambda r: r.buffer(SpmcRing(capacity=capacity)).source(src).persist())
    b.with_persistence(SqliteBackend(path, **kw))
    return b.build()


# ---------------------------------------------------------------- storing and history


async def test_every_ring_value_is_stored_and_history_orders_and_limits(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    db = _ring_db(path, 500, rt)
    async with db:
        await _until(rt, lambda: db.persistence_statistics().as_dict()["written"] == 500)  # type: ignore[union-attr]
        oldest = await db.history("r")
        assert [s.value.n for s in oldest] == list(range(500))
        assert all(isinstance(s, Stored) for s in oldest)
        newest = await db.history("r", limit=3, newest_first=True)
        assert [s.value.n for s in newest] == [499, 498, 497]
        ts = [s.ts for s in oldest]
        assert ts == sorted(ts) and abs(ts[0] - time.time()) < 60
        assert await db.history("r", since=ts[-1] + 1) == []
        assert len(await db.history("r", until=ts[0] - 0.001)) == 0
        assert len(await db.history("r", since=timedelta(minutes=5), limit=10)) == 10
        assert len(await db.history("r", since=datetime.now() - timedelta(minutes=5), limit=7)) == 7
        assert await db.history("r", until=datetime.now() - timedelta(minutes=5)) == []
        stats = db.record_statistics("r")["persistence"]
        assert stats["stored"] == 500 and stats["dropped"] == 0
        assert any(t.name == "aimdb.persist" and t.kind == "service" for t in db.tasks())
    assert [r[0] for r in _rows(path)] == ["r"] * 500


async def test_shutdown_writes_the_last_batch_and_joins_the_writer(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    # commits would come only after 60 s: everything in the file was written by the stop
    db = _ring_db(path, 300, rt, commit_interval=60.0, commit_every=1_000_000)
    async with db:
        await _until(rt, lambda: db.record_statistics("r")["persistence"]["stored"] == 300)
        assert _rows(path) == []
    assert len(_rows(path, "r")) == 300
    stats = db.persistence_statistics().as_dict()  # type: ignore[union-attr]
    assert stats["writer_alive"] is False and stats["pending"] == 0 and stats["lost"] == 0
    assert not [t for t in threading.enumerate() if t.name == "aimdb-persist-writer"]


async def test_a_store_behind_makes_the_ring_reader_lag_counted(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    # a writer that holds rows for 60 s and takes at most 10 pending: the persisting reader
    # must stop reading, the ring overwrites, the loss is counted, memory stays bounded
    db = _ring_db(path, 2000, rt, capacity=16, commit_interval=60.0, commit_every=1_000_000, max_pending=10)
    async with db:
        await _until(rt, lambda: db.buffer("r").statistics().produced == 2000)  # type: ignore[union-attr]
        await rt.sleep(0.05)
    ps = db.record_statistics("r")["persistence"]
    buf = db.record_statistics("r")["buffer"]
    assert ps["dropped"] > 0 and buf["dropped"] == ps["dropped"]
    assert ps["stored"] + ps["dropped"] == 2000
    assert len(_rows(path, "r")) == ps["stored"]


async def test_a_mailbox_keeps_its_values_for_its_consumer(rt: Any, tmp_path: Path) -> None:
    got: list[int] = []

    async def worker(ctx: Any, c: Any) -> None:
        async for v in c.subscribe():
            got.append(v.n)

    b = AimDbBuilder(runtime=rt)
    b.configure(Reading, "cmd", lambda r: r.buffer(Mailbox()).tap(worker).persist())
    b.with_persistence(SqliteBackend(tmp_path / "hub.db"))
    async with b.build() as db:
        p = db.producer(Reading, "cmd")
        for i in range(5):
            p.produce(Reading(i))
            await _until(rt, lambda i=i: got[-1:] == [i])
        await _until(rt, lambda: db.persistence_statistics().as_dict()["written"] == 5)  # type: ignore[union-attr]
        assert [s.value.n for s in await db.history("cmd")] == [0, 1, 2, 3, 4]
    assert got == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- restore


def _restore_builder(path: Path, rt: Any, **persist: Any) -> AimDbBuilder:
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "latest", lambda r: r.buffer(SingleLatest()).persist(**persist))
    b.configure(Temp, "ring", lambda r: r.buffer(SpmcRing(capacity=8)).persist(**persist))
    b.configure(Temp, "cmd", lambda r: r.buffer(Mailbox()).persist(**persist))
    b.with_persistence(SqliteBackend(path))
    return b


async def test_restore_is_on_for_single_latest_and_off_for_ring_and_mailbox(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    async with _restore_builder(path, rt).build() as db:
        for key in ("latest", "ring", "cmd"):
            db.producer(Temp, key).produce(Temp(1.0))
            db.producer(Temp, key).produce(Temp(2.5))
    async with _restore_builder(path, rt).build() as db:
        assert db.buffer("latest").peek() == Temp(2.5)  # type: ignore[union-attr]
        assert db.buffer("ring").statistics().produced == 0  # type: ignore[union-attr]
        assert db.buffer("cmd").statistics().produced == 0  # type: ignore[union-attr]
        assert db.record_statistics("latest")["persistence"]["restored"] == 1
    # the restored value is not stored a second time
    assert len(_rows(path, "latest")) == 2
    async with _restore_builder(path, rt, restore=True).build() as db:
        assert db.buffer("ring").latest() == Temp(2.5)  # type: ignore[union-attr]
        assert db.buffer("cmd").latest() == Temp(2.5)  # type: ignore[union-attr]
    async with _restore_builder(path, rt, restore=False).build() as db:
        assert db.buffer("latest").peek() is None  # type: ignore[union-attr]


async def test_restored_value_is_there_before_sources_run(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(SqliteBackend(path))
    async with b.build() as db:
        db.producer(Temp, "t").produce(Temp(7.0))
    first: list[Any] = []

    async def check(ctx: Any, c: Any) -> None:
        first.append(await c.subscribe().recv())

    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist().tap(check))
    b.with_persistence(SqliteBackend(path))
    async with b.build():
        await _until(rt, lambda: first)
    assert first == [Temp(7.0)]


# ---------------------------------------------------------------- bad input and faults


async def test_history_of_a_record_that_is_not_persisted_is_a_typed_error(rt: Any, tmp_path: Path) -> None:
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "kept", lambda r: r.buffer(SingleLatest()).persist())
    b.configure(Temp, "plain", lambda r: r.buffer(SingleLatest()))
    b.with_persistence(SqliteBackend(tmp_path / "hub.db"))
    db = b.build()
    async with db:
        with pytest.raises(NotPersisted) as e:
            await db.history("plain")
        assert e.value.key == "plain" and isinstance(e.value, LookupError)
        with pytest.raises(RecordNotFound):
            await db.history("kpet")
        with pytest.raises(ValueError):
            await db.history("kept", limit=0)
        with pytest.raises(ValueError):
            await db.history("kept", since="yesterday")
    with pytest.raises(RuntimeError):
        await db.history("kept")
    b2 = AimDbBuilder(runtime=rt)
    b2.configure(Temp, "plain", lambda r: r.buffer(SingleLatest()))
    async with b2.build() as db2:
        with pytest.raises(NotPersisted):
            await db2.history("plain")


def test_build_reports_unusable_files_and_settings_naming_the_path(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database at all, just text" * 10)
    cases = [
        (tmp_path / "missing" / "hub.db", "does not exist"),
        (corrupt, "not an SQLite database"),
        (tmp_path, "is a directory"),
    ]
    for path, words in cases:
        b = AimDbBuilder()
        b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
        b.with_persistence(SqliteBackend(path))
        with pytest.raises(InvalidConfiguration) as e:
            b.build()
        assert words in str(e.value) and str(path) in str(e.value)
    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist(restore=1))  # type: ignore[arg-type]
    b.configure(Temp, "u", lambda r: r.persist())
    b.with_persistence(SqliteBackend(tmp_path / "ok.db", retention="7 days", commit_interval=0))
    kinds = sorted(p.kind + ":" + p.key for p in b.problems())
    assert kinds == [
        "bad_argument:t",
        "bad_persistence:",
        "bad_persistence:",
        "missing_buffer:u",
    ]
    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    assert [p.kind for p in b.problems()] == ["bad_persistence"]
    b.with_persistence(object())  # type: ignore[arg-type]
    assert [p.kind for p in b.problems()] == ["bad_persistence", "bad_persistence"]
    assert "lacks max_pending, problems, start, store" in str(b.problems()[0])


@pytest.mark.skipif(getattr(os, "geteuid", lambda: 0)() == 0, reason="root may write any file")
def test_build_reports_a_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).close()
    path.write_bytes(b"")
    path.chmod(0o444)
    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(SqliteBackend(path))
    with pytest.raises(InvalidConfiguration, match="not readable and writable"):
        b.build()


async def test_a_file_corrupt_past_its_header_fails_start_naming_the_path(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(SqliteBackend(path))
    db = b.build()
    with pytest.raises(PersistenceError) as e:
        await db.start()
    assert str(path) in str(e.value) and e.value.path == str(path)
    assert db.state == "stopped"


class _SmallDisk(SqliteBackend):
    """A real SQLite file whose writer connection may grow to only a few pages (a full disk)."""

    def _open_writer(self) -> sqlite3.Connection:
        conn = super()._open_writer()
        conn.execute("PRAGMA max_page_count = 6")
        return conn


async def test_write_failures_are_counted_logged_once_and_writes_resume(
    rt: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _SmallDisk(tmp_path / "hub.db", commit_interval=0.01)
    tapped: list[int] = []

    async def tap(ctx: Any, c: Any) -> None:
        async for v in c.subscribe():
            tapped.append(v.n)

    b = AimDbBuilder(runtime=rt)
    b.configure(Reading, "r", lambda r: r.buffer(SpmcRing(capacity=4096)).persist())
    b.configure(Reading, "other", lambda r: r.buffer(SpmcRing(capacity=64)).tap(tap))
    b.with_persistence(store)
    with caplog.at_level(logging.WARNING, logger="aimdb"):
        async with b.build() as db:
            p = db.producer(Reading, "r")
            big = 0
            for i in range(40):
                for j in range(100):
                    p.produce(Reading(i * 100 + j))
                big += 100
                await rt.sleep(0.02)
                if store.statistics().write_failures >= 3:
                    break
            await _until(rt, lambda: store.statistics().write_failures >= 3)
            db.producer(Reading, "other").produce(Reading(1))
            await _until(rt, lambda: tapped == [1])  # every other record keeps running
            failing = [r for r in caplog.records if "failed" in r.getMessage() and "hub.db" in r.getMessage()]
            assert len(failing) == 1
            await store.call_writer(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
            before = store.statistics().written
            p.produce(Reading(-1))
            await _until(rt, lambda: store.statistics().written > before)
            assert any("succeed again" in r.getMessage() for r in caplog.records)
    stats = store.statistics()
    assert stats.lost > 0 and stats.last_error is not None and "full" in stats.last_error
    assert stats.written + stats.lost == big + 1


@dataclasses.dataclass
class TempV2:
    kelvin: float


async def test_rows_that_no_longer_decode_are_skipped_counted_and_logged_once(
    rt: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.db"
    b = AimDbBuilder(runtime=rt)
    b.configure(Temp, "t", lambda r: r.buffer(SingleLatest()).persist())
    b.with_persistence(SqliteBackend(path))
    async with b.build() as db:
        db.producer(Temp, "t").produce(Temp(1.0))
        await rt.sleep(0.01)
        db.producer(Temp, "t").produce(Temp(2.0))
    b = AimDbBuilder(runtime=rt)
    b.configure(TempV2, "t", lambda r: r.buffer(SingleLatest()).persist())  # the type changed
    b.with_persistence(SqliteBackend(path))
    with caplog.at_level(logging.WARNING, logger="aimdb"):
        async with b.build() as db:
            assert db.buffer("t").peek() is None  # type: ignore[union-attr]
            db.producer(TempV2, "t").produce(TempV2(300.0))
            await _until(rt, lambda: db.persistence_statistics().as_dict()["written"] == 1)  # type: ignore[union-attr]
            rows = await db.history("t")
            assert [s.value for s in rows] == [TempV2(300.0)]
            assert len(await db.history("t")) == 1
            assert db.record_statistics("t")["persistence"]["decode_skipped"] == 1 + 2 + 2
    logged = [r for r in caplog.records if "no longer decode" in r.getMessage()]
    assert len(logged) == 1


async def test_retention_by_rows_and_by_age(rt: Any, tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    b = AimDbBuilder(runtime=rt)
    b.configure(Reading, "a", lambda r: r.buffer(SpmcRing(capacity=64)).persist())
    b.configure(Reading, "b", lambda r: r.buffer(SpmcRing(capacity=64)).persist())
    store = SqliteBackend(path, max_rows=10, retention=0.5)
    b.with_persistence(store)
    async with b.build() as db:
        for i in range(30):
            db.producer(Reading, "a").produce(Reading(i))
            db.producer(Reading, "b").produce(Reading(i))
        await _until(rt, lambda: store.statistics().written == 60)
        assert await store.cleanup() == 40
        assert [s.value.n for s in await db.history("a")] == list(range(20, 30))
        await rt.sleep(0.6)
        db.producer(Reading, "a").produce(Reading(99))
        await _until(rt, lambda: store.statistics().written == 61)
        assert await store.cleanup() == 20
        assert [s.value.n for s in await db.history("a")] == [99]
        assert await db.history("b") == []
    assert store.statistics().deleted == 60


def test_durations() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("90m") == 5400
    assert parse_duration(timedelta(hours=2)) == 7200
    assert parse_duration(1.5) == 1.5
    assert parse_duration(None) is None
    for bad in ("7 days", "-1s", 0, "d", True):
        with pytest.raises(ValueError):
            parse_duration(bad)  # type: ignore[arg-type]


class _RefusesOnce(SqliteBackend):
    """A real store whose ``store`` raises once, as a broken backend would."""

    refused = 0

    def store(self, rows: list[tuple[str, int, bytes]]) -> None:
        if not self.refused:
            self.refused = len(rows)
            raise RuntimeError("store refused")
        super().store(rows)


async def test_a_failing_store_call_restarts_the_persister_and_counts_the_batch(
    rt: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _RefusesOnce(tmp_path / "hub.db", commit_interval=0.01)
    b = AimDbBuilder(runtime=rt, restart_backoff=(0.01, 0.05))
    b.configure(Reading, "r", lambda r: r.buffer(SpmcRing(capacity=256)).persist())
    b.with_persistence(store)
    with caplog.at_level(logging.ERROR, logger="aimdb"):
        async with b.build() as db:
            p = db.producer(Reading, "r")
            for i in range(10):
                p.produce(Reading(i))
            await _until(rt, lambda: store.refused > 0)
            for i in range(10, 20):
                p.produce(Reading(i))
            await _until(rt, lambda: store.statistics().written == 20 - store.refused)
            (task,) = [t for t in db.tasks() if t.name == "aimdb.persist"]
            assert task.failures == 1 and task.restarts == 1 and task.state == "running"
            ps = db.record_statistics("r")["persistence"]
            assert ps["dropped"] == store.refused and ps["stored"] == 20 - store.refused
    assert any("store refused" in r.getMessage() for r in caplog.records)


async def test_a_value_the_codec_cannot_encode_is_counted_and_logged_once(
    rt: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteBackend(tmp_path / "hub.db", commit_interval=0.01)
    b = AimDbBuilder(runtime=rt, type_checks=False)
    b.configure(Temp, "t", lambda r: r.buffer(SpmcRing(capacity=64)).persist())
    b.with_persistence(store)
    with caplog.at_level(logging.WARNING, logger="aimdb"):
        async with b.build() as db:
            p = db.producer(Temp, "t")
            p.produce(Temp(object()))  # type: ignore[arg-type]
            p.produce(Temp(object()))  # type: ignore[arg-type]
            p.produce(Temp(3.0))
            await _until(rt, lambda: store.statistics().written == 1)
            assert [s.value for s in await db.history("t")] == [Temp(3.0)]
            ps = db.record_statistics("t")["persistence"]
            assert ps["encode_errors"] == 2 and ps["stored"] == 1
    assert len([r for r in caplog.records if "not stored" in r.getMessage()]) == 1
