"""``SqliteBackend``: persisted values in one SQLite file, written by one dedicated thread."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from .._core._stats import Statistics
from .._errors import PersistenceError

_log = logging.getLogger("aimdb")

R = TypeVar("R")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS aimdb_values ("
    "id INTEGER PRIMARY KEY, key TEXT NOT NULL, ts INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS aimdb_values_key_ts ON aimdb_values (key, ts)",
)
_INSERT = "INSERT INTO aimdb_values (key, ts, payload) VALUES (?, ?, ?)"
_HEADER = b"SQLite format 3\x00"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_STOP = object()

RESTART_BACKOFF = (0.05, 5.0)
"""First and largest delay (seconds) before a writer that died is restarted; doubles in between."""


def parse_duration(value: str | float | timedelta | None) -> float | None:
    """Seconds of a retention or interval setting: ``"7d"``, ``"90m"``, ``"30s"``, a timedelta or seconds.

    Raises:
        ValueError: not a positive duration.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
        if m is None:
            raise ValueError("duration must look like 30s, 10m, 12h, 7d or 2w, got " + repr(value))
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("duration must be a string like '7d', a timedelta or seconds, got " + repr(value))
    if seconds <= 0:
        raise ValueError("duration must be positive, got " + repr(value))
    return seconds


class SqliteStatistics(Statistics):
    """A snapshot of a :class:`SqliteBackend`'s counters (``db.persistence_statistics()``).

    Attributes:
        path: the database file.
        written: rows committed.
        commits: transactions committed.
        pending: rows handed to the store and not yet written (or given up).
        write_failures: transactions that failed (disk full, I/O error ...); their rows
            are lost and counted in ``lost``.
        lost: rows lost to failed writes or to a writer that did not finish at stop.
        deleted: rows deleted by retention.
        last_error: ``repr`` of the most recent write failure or writer death, or ``None``.
        writer_alive: whether the writer runs (False before start, after stop and while a
            writer that died waits out its restart backoff).
        writer_restarts: times the writer died (an unexpected exception) and was
            restarted.
    """

    __slots__ = (
        "commits",
        "deleted",
        "last_error",
        "lost",
        "path",
        "pending",
        "write_failures",
        "writer_alive",
        "writer_restarts",
        "written",
    )

    path: str
    written: int
    commits: int
    pending: int
    write_failures: int
    lost: int
    deleted: int
    last_error: str | None
    writer_alive: bool
    writer_restarts: int

    def __init__(self, b: SqliteBackend) -> None:
        t = b._thread
        self._init(
            {
                "path": b.path,
                "written": b._written,
                "commits": b._commits,
                "pending": b.pending(),
                "write_failures": b._write_failures,
                "lost": b._lost,
                "deleted": b._deleted,
                "last_error": b._last_error,
                "writer_alive": t is not None and t.is_alive() and b._writer_running,
                "writer_restarts": b._writer_restarts,
            }
        )


class SqliteBackend:
    """Persisted values in one SQLite file (standard library ``sqlite3``, WAL mode).

    One table holds every persisted record: ``(id, key, ts, payload)`` with an index on
    ``(key, ts)``. A dedicated writer thread owns the only writing connection: it takes
    the rows the database hands over, inserts them with ``executemany`` and commits at
    least every ``commit_interval`` seconds or every ``commit_every`` rows, whichever
    comes first, and applies retention every ``cleanup_interval`` seconds. Queries run
    on a separate read connection in a helper thread, so neither blocks the event loop.

    A failed write (disk full, I/O error) rolls its transaction back: its rows are
    counted as ``lost``, the failure is counted and logged once (and once more when
    writes succeed again), and the writer goes on with the next rows.

    A writer that dies of any other exception is restarted on a fresh connection after
    a backoff of 0.05 s, doubling up to 5 s while restarts keep failing (reset by the
    first commit after a restart); each death is logged once with its cause and counted
    in ``writer_restarts``, and the rows it held are counted as ``lost``. Rows handed
    over meanwhile wait in the queue and are written after the restart.

    Args:
        path: the database file (created when missing; its directory must exist).
        retention: keep rows for this long: ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``,
            ``"2w"``, a ``timedelta`` or seconds; ``None`` (default) keeps them forever.
        max_rows: keep at most this many newest rows per record key (``None``: no cap).
        commit_interval: most seconds between a row's arrival and its commit (default 0.1).
        commit_every: commit once this many rows are waiting (default 5000).
        max_pending: rows handed over and not yet written above which the database
            waits (rings then lag and count it), bounding memory (default 100000).
        cleanup_interval: seconds between retention runs (default 60).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: str | float | timedelta | None = None,
        max_rows: int | None = None,
        commit_interval: float = 0.1,
        commit_every: int = 5000,
        max_pending: int = 100_000,
        cleanup_interval: float = 60.0,
    ) -> None:
        self.path = os.fspath(path)
        self._problems: list[str] = []
        try:
            self.retention = parse_duration(retention)
        except ValueError as exc:
            self._problems.append("retention: " + str(exc))
            self.retention = None
        if max_rows is not None and (type(max_rows) is not int or max_rows < 1):
            self._problems.append("max_rows must be a positive int or None, got " + repr(max_rows))
        self.max_rows = max_rows
        for name, v in (("commit_interval", commit_interval), ("cleanup_interval", cleanup_interval)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                self._problems.append(name + " must be a positive number of seconds, got " + repr(v))
        for name, n in (("commit_every", commit_every), ("max_pending", max_pending)):
            if type(n) is not int or n < 1:
                self._problems.append(name + " must be a positive int, got " + repr(n))
        self.commit_interval = float(commit_interval)
        self.commit_every = commit_every
        self.max_pending = max_pending
        self.cleanup_interval = float(cleanup_interval)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._query_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._rt: Any = None
        self._enqueued = 0  # written by the event loop's thread only
        self._done = 0  # written by the writer thread only
        self._written = 0
        self._commits = 0
        self._write_failures = 0
        self._lost = 0
        self._deleted = 0
        self._last_error: str | None = None
        self._failing = False
        self._held: list[tuple[str, int, bytes]] = []  # rows the writer took, not yet committed
        self._writer_running = False
        self._writer_restarts = 0
        self._stopping = threading.Event()  # close() was called: cut a restart backoff short

    # ------------------------------------------------------------ checks and opening

    def problems(self) -> list[str]:
        """Bad settings, and a file that cannot be written or is not an SQLite database.

        Each message names the path; ``build()`` reports them as configuration problems.
        """
        out = list(self._problems)
        path = self.path
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            out.append(repr(path) + " is a directory, not a database file")
        elif os.path.exists(path):
            if not os.access(path, os.R_OK | os.W_OK):
                out.append("database file " + repr(path) + " is not readable and writable")
            else:
                with open(path, "rb") as f:
                    head = f.read(16)
                if head and head != _HEADER:
                    out.append("database file " + repr(path) + " is not an SQLite database (corrupt?)")
        elif not os.path.isdir(folder):
            out.append("directory of database file " + repr(path) + " does not exist")
        elif not os.access(folder, os.W_OK):
            out.append("directory of database file " + repr(path) + " is not writable")
        return out

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """Open and prepare the writing connection (WAL, schema)."""
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError("cannot switch to WAL mode (journal_mode " + str(mode) + ")")
            conn.execute("PRAGMA synchronous = NORMAL")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.execute("SELECT count(*) FROM (SELECT 1 FROM aimdb_values LIMIT 1)").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    async def start(self, runtime: Any) -> None:
        """Open the file (WAL, schema), then start the writer thread.

        Raises:
            PersistenceError: the file cannot be opened, created or written, is not an
                SQLite database, the store was started already, or the runtime is not
                asyncio or trio (the message names the path).
        """
        if self._thread is not None:
            raise PersistenceError("already started", self.path)
        if getattr(runtime, "name", None) not in ("asyncio", "trio"):
            raise PersistenceError("needs the asyncio or trio runtime", self.path)
        for p in self._problems:
            raise PersistenceError(p, self.path)
        try:
            writer = self._open_writer()
        except sqlite3.Error as exc:
            raise PersistenceError(type(exc).__name__ + ": " + str(exc), self.path) from exc
        try:
            self._reader = self._connect()
        except sqlite3.Error as exc:
            writer.close()
            raise PersistenceError(type(exc).__name__ + ": " + str(exc), self.path) from exc
        self._rt = runtime
        self._query_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aimdb-persist-query")
        self._thread = threading.Thread(
            target=self._writer_main, args=(writer,), name="aimdb-persist-writer", daemon=True
        )
        self._writer_running = True  # from now on, not from whenever the thread gets going
        self._thread.start()

    # ------------------------------------------------------------ the event loop's side

    def store(self, rows: list[tuple[str, int, bytes]]) -> None:
        """Queue ``rows`` ``(key, ts_ns, payload)`` for the writer thread; never blocks.

        Raises:
            PersistenceError: the store is not started.
        """
        if self._thread is None:
            raise PersistenceError("not started", self.path)
        self._enqueued += len(rows)
        self._queue.put(rows)

    def pending(self) -> int:
        """Rows queued by :meth:`store` and not yet written or given up."""
        return self._enqueued - self._done

    async def _await(self, fut: concurrent.futures.Future[R]) -> R:
        if self._rt.name == "trio":
            import trio

            return await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True)
        import asyncio

        return await asyncio.wrap_future(fut)

    def _read(self, fn: Callable[[sqlite3.Connection], R]) -> concurrent.futures.Future[R]:
        pool, conn = self._query_pool, self._reader
        if pool is None or conn is None:
            raise PersistenceError("not started", self.path)
        return pool.submit(fn, conn)

    async def query(
        self, key: str, since_ns: int | None, until_ns: int | None, limit: int, newest_first: bool
    ) -> list[tuple[int, bytes]]:
        """Rows ``(ts_ns, payload)`` of ``key`` with ``since_ns <= ts < until_ns``, by time.

        Raises:
            PersistenceError: the store is not started or the query failed.
        """
        sql = "SELECT ts, payload FROM aimdb_values WHERE key = ?"
        args: list[Any] = [key]
        if since_ns is not None:
            sql += " AND ts >= ?"
            args.append(since_ns)
        if until_ns is not None:
            sql += " AND ts < ?"
            args.append(until_ns)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?" if newest_first else " ORDER BY ts, id LIMIT ?"
        args.append(limit)

        def run(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            return conn.execute(sql, args).fetchall()

        try:
            return await self._await(self._read(run))
        except sqlite3.Error as exc:
            raise PersistenceError("query failed: " + repr(exc), self.path) from exc

    async def latest(self, keys: list[str]) -> dict[str, tuple[int, bytes]]:
        """The newest row ``(ts_ns, payload)`` of each key in ``keys`` that has one.

        Raises:
            PersistenceError: the store is not started or the query failed.
        """
        sql = "SELECT ts, payload FROM aimdb_values WHERE key = ? ORDER BY ts DESC, id DESC LIMIT 1"

        def run(conn: sqlite3.Connection) -> dict[str, tuple[int, bytes]]:
            out: dict[str, tuple[int, bytes]] = {}
            for k in keys:
                row = conn.execute(sql, (k,)).fetchone()
                if row is not None:
                    out[k] = (row[0], row[1])
            return out

        try:
            return await self._await(self._read(run))
        except sqlite3.Error as exc:
            raise PersistenceError("restore query failed: " + repr(exc), self.path) from exc

    async def call_writer(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """Run ``fn(connection)`` on the writer thread after the rows queued before it are committed.

        For maintenance on the writing connection; ``fn`` must not keep it.

        Raises:
            PersistenceError: the store is not started.
        """
        if self._thread is None or not self._thread.is_alive():
            raise PersistenceError("not started", self.path)
        fut: concurrent.futures.Future[R] = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return await self._await(fut)

    async def cleanup(self) -> int:
        """Apply ``retention`` and ``max_rows`` now (on the writer thread); returns rows deleted.

        Raises:
            PersistenceError: the store is not started.
        """
        return await self.call_writer(self._cleanup)

    async def close(self, timeout: float) -> None:
        """Commit what is queued, stop the writer thread and close the connections.

        Waits at most ``timeout`` seconds (at least 50 ms) for the writer; when it does not
        finish in time the rows it still holds are counted as ``lost`` and logged.
        """
        t = self._thread
        if t is None:
            return
        self._queue.put(_STOP)
        self._stopping.set()
        rt = self._rt
        deadline = time.monotonic() + max(timeout, 0.05)
        while t.is_alive() and time.monotonic() < deadline:
            await rt.sleep(0.002)
        if t.is_alive():
            n = self.pending()
            _log.error(
                "persistence: writer of %r did not finish within %.2fs; up to %d rows may be lost",
                self.path,
                timeout,
                n,
            )
        pool, self._query_pool = self._query_pool, None
        reader, self._reader = self._reader, None
        if pool is not None and reader is not None:
            pool.submit(reader.close)  # after any query still queued
            pool.shutdown(wait=False)

    def statistics(self) -> SqliteStatistics:
        """Return a snapshot of the store's counters."""
        return SqliteStatistics(self)

    # ------------------------------------------------------------ the writer thread

    def _writer_main(self, conn: sqlite3.Connection) -> None:
        """The writer thread: run the writer loop, restart it with backoff when it dies."""
        delay = RESTART_BACKOFF[0]
        current: sqlite3.Connection | None = conn
        while True:
            if current is not None:
                commits = self._commits
                self._writer_running = True
                try:
                    self._writer_loop(current)
                    return  # stopped
                except Exception as exc:  # counted, logged once with its cause, restarted below
                    self._writer_died(exc, "died")
                finally:
                    self._writer_running = False
                    current.close()
                if self._stopping.is_set():  # died while stopping: what is queued is lost (counted)
                    self._give_up()
                    return
                if self._commits > commits:  # it had worked since the last restart
                    delay = RESTART_BACKOFF[0]
            if self._stopping.wait(delay):  # stopping: one last run takes the queue to _STOP
                delay = 0.0
            else:
                delay = min(delay * 2, RESTART_BACKOFF[1])
            self._writer_restarts += 1
            try:
                current = self._open_writer()
            except Exception as exc:
                current = None
                self._writer_died(exc, "could not be reopened")
                if self._stopping.is_set():
                    self._give_up()
                    return

    def _writer_died(self, exc: Exception, what: str) -> None:
        """Count the rows the writer held as lost and log the failure once, with its cause."""
        held, self._held = self._held, []
        n = len(held)
        self._lost += n
        self._done += n
        self._last_error = repr(exc)
        _log.error(
            "persistence: writer of %r %s (%d rows lost); restarting",
            self.path,
            what,
            n,
            exc_info=exc,
        )

    def _give_up(self) -> None:
        """At stop with no usable connection: count every queued row as lost."""
        n = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                n += len(item)
            elif isinstance(item, tuple) and item[1].set_running_or_notify_cancel():
                item[1].set_exception(PersistenceError("writer stopped", self.path))
        self._lost += n
        self._done += n
        if n:
            _log.error("persistence: %d rows queued for %r lost at stop (no writer)", n, self.path)

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        q = self._queue
        rows = self._held = []
        deadline = time.monotonic() + self.commit_interval
        next_cleanup = time.monotonic() + self.cleanup_interval
        cleans = self.retention is not None or self.max_rows is not None
        while True:
            now = time.monotonic()
            timeout = max(0.0, deadline - now) if rows else max(0.0, next_cleanup - now) if cleans else None
            try:
                item = q.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush(conn, rows)
                return
            if isinstance(item, list):
                if not rows:
                    deadline = time.monotonic() + self.commit_interval
                rows.extend(item)
            elif isinstance(item, tuple):
                fn, fut = item
                self._flush(conn, rows)
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(conn))
                    except Exception as exc:
                        fut.set_exception(exc)
            if rows and (len(rows) >= self.commit_every or time.monotonic() >= deadline):
                self._flush(conn, rows)
            if cleans and time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + self.cleanup_interval
                try:
                    self._cleanup(conn)
                except sqlite3.Error as exc:
                    _log.warning("persistence: retention cleanup of %r failed: %r", self.path, exc)

    def _flush(self, conn: sqlite3.Connection, rows: list[tuple[str, int, bytes]]) -> None:
        """Commit ``rows`` (the writer's held list) in one transaction and empty the list.

        A failed transaction counts its rows as lost; an exception other than
        ``sqlite3.Error`` propagates with the rows still held (the writer died).
        """
        if not rows:
            return
        n = len(rows)
        try:
            conn.execute("BEGIN")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._write_failures += 1
            self._lost += n
            self._last_error = repr(exc)
            if not self._failing:
                self._failing = True
                _log.error(
                    "persistence: writing to %r failed, %d rows lost (further failures are counted, "
                    "not logged, until writes succeed again): %r",
                    self.path,
                    n,
                    exc,
                )
        else:
            self._written += n
            self._commits += 1
            if self._failing:
                self._failing = False
                _log.warning("persistence: writes to %r succeed again", self.path)
        # written or given up (any other exception leaves them held: the writer's death counts them)
        self._done += n
        del rows[:]

    def _cleanup(self, conn: sqlite3.Connection) -> int:
        deleted = 0
        conn.execute("BEGIN")
        try:
            if self.retention is not None:
                cutoff = time.time_ns() - int(self.retention * 1e9)
                keys = [r[0] for r in conn.execute("SELECT DISTINCT key FROM aimdb_values").fetchall()]
                for k in keys:
                    deleted += conn.execute(
                        "DELETE FROM aimdb_values WHERE key = ? AND ts < ?", (k, cutoff)
                    ).rowcount
            if self.max_rows is not None:
                keys = [r[0] for r in conn.execute("SELECT DISTINCT key FROM aimdb_values").fetchall()]
                for k in keys:
                    deleted += conn.execute(
                        "DELETE FROM aimdb_values WHERE key = ? AND id NOT IN "
                        "(SELECT id FROM aimdb_values WHERE key = ? ORDER BY ts DESC, id DESC LIMIT ?)",
                        (k, k, self.max_rows),
                    ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._deleted += deleted
        return deleted

    def __repr__(self) -> str:
        return "SqliteBackend(" + repr(self.path) + ")"
