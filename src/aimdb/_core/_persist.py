"""Persistence plumbing of the core: feeds, the store task, restore and history (MicroPython-safe).

A feed takes the values of one persisted record; the persister task hands them to the
store; restore and history decode stored rows into the record's type.

The store itself (``aimdb.persistence.SqliteBackend``) is CPython-only and reached through
the ``aimdb.abc.PersistenceBackend`` contract; nothing here imports it.
"""

from .._compat import TYPE_CHECKING, Generic, TypeVar, get_logger, wall_ns
from .._errors import BufferClosed, BufferEmpty, BufferLagged, DeserializeError, SerializeError
from ._stats import Statistics

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..abc import PersistenceBackend
    from ._buffers import Buffer, BufferListener, RingReader
    from ._tasks import SupervisedTask

T = TypeVar("T")

_log: "Any" = get_logger("aimdb")

#: most values a single-slot record keeps waiting for the store; older ones are dropped
PENDING_LIMIT = 10_000


class Stored(Generic[T]):
    """One stored value of a record, as ``db.history()`` returns it.

    Attributes:
        value: the value, decoded into the record's type.
        ts: wall-clock time it was stored, in seconds since the Unix epoch (float): the
            time of ``produce`` for single-latest and mailbox records, the time the
            persisting reader took it (normally within a millisecond) for rings.
        ts_ns: the same time as the exact integer nanoseconds the store keeps (``ts``
            is ``ts_ns / 1e9``); use it to page through history without losing rows.
    """

    __slots__ = ("ts", "ts_ns", "value")

    def __init__(self, value: T, ts: float, ts_ns: "int | None" = None) -> None:
        self.value = value
        self.ts = ts
        self.ts_ns = int(ts * 1e9) if ts_ns is None else ts_ns

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stored) and other.value == self.value and other.ts_ns == self.ts_ns

    def __repr__(self) -> str:
        return "Stored(" + repr(self.value) + ", ts=" + repr(self.ts) + ")"


class PersistSpec:
    """What ``reg.persist()`` declared for one record."""

    __slots__ = ("codec", "restore")

    def __init__(self, restore: "bool | None", codec: str) -> None:
        self.restore = restore  # None: the default for the buffer kind
        self.codec = codec


class PersistStatistics(Statistics):
    """Counters of one persisted record (``db.record_statistics(key)["persistence"]``).

    Attributes:
        key: record key.
        stored: values handed to the store.
        dropped: values lost before the store saw them: ring lag of the persisting
            reader (also counted in the buffer's ``dropped``), for single-slot records
            values beyond the pending limit while the store was behind, and the values of
            a batch the store refused (``store`` raised; the task restarts).
        encode_errors: values the codec could not encode (not stored).
        decode_skipped: stored rows that no longer decode into the record's type,
            skipped by ``history()`` or the restore.
        restored: 1 when the value was restored at start, else 0.
    """

    __slots__ = ("decode_skipped", "dropped", "encode_errors", "key", "restored", "stored")

    if TYPE_CHECKING:
        decode_skipped: int
        dropped: int
        encode_errors: int
        key: str
        restored: int
        stored: int

    def __init__(self, feed: "Feed") -> None:
        self._init(
            {
                "key": feed.key,
                "stored": feed.stored,
                "dropped": feed.dropped,
                "encode_errors": feed.encode_errors,
                "decode_skipped": feed.decode_skipped,
                "restored": feed.restored,
            }
        )


class Feed:
    """Takes the values of one persisted record for the store, off the produce path.

    A ring record is read by its own ring reader (lag is counted like any reader's;
    ``produce`` pays nothing while the persister is busy, as with any reader); a
    single-latest or mailbox record is seen by a buffer listener that copies each value
    as it is produced (a reader would miss overwritten values, or take a mailbox's value
    from its consumer).
    """

    def __init__(
        self,
        key: str,
        spec: PersistSpec,
        encode: "Callable[[Any], bytes]",
        decode: "Callable[[bytes], Any]",
    ) -> None:
        self.key = key
        self.spec = spec
        self.encode = encode
        self.decode = decode
        self.stored = 0
        self.dropped = 0
        self.encode_errors = 0
        self.decode_skipped = 0
        self.restored = 0
        self.dirty = False
        self._buf: Buffer[Any] | None = None
        self._reader: RingReader[Any] | None = None
        self._listener: BufferListener | None = None
        self._pending: list[tuple[int, Any]] = []
        self._owner: Persister | None = None
        self._encode_logged = False
        self._decode_logged = False

    def restore_wanted(self, buffer_kind: str) -> bool:
        """Whether the newest stored value is put back at start (default: single-latest only)."""
        r = self.spec.restore
        return buffer_kind == "single_latest" if r is None else r

    def attach(self, buf: "Buffer[Any]", owner: "Persister") -> None:
        """Subscribe to ``buf`` (at start, before any source runs)."""
        self._buf = buf
        self._owner = owner
        if buf.kind == "spmc_ring":
            self._reader = buf.subscribe()  # type: ignore[assignment]
        else:
            self._listener = buf.add_listener(self._changed)

    @property
    def ring_buffer(self) -> "Buffer[Any] | None":
        """The buffer a ring feed reads (``None`` for single-slot feeds)."""
        return self._buf if self._reader is not None else None

    def waiting(self) -> bool:
        """Whether a ring feed's reader has values (or lag) to take."""
        r = self._reader
        return r is not None and r.pending() > 0

    def _changed(self) -> None:
        buf = self._buf
        assert buf is not None
        if not buf.closed:
            pending = self._pending
            if len(pending) >= PENDING_LIMIT:
                del pending[0]
                self.dropped += 1
            try:
                pending.append((wall_ns() or 0, buf.latest()))
            except BufferEmpty:  # pragma: no cover - a listener runs after the value is stored
                return
        if not self.dirty:
            self.dirty = True
            owner = self._owner
            if owner is not None:
                owner.mark(self)

    def take(self, rows: "list[tuple[str, int, bytes]]", limit: int) -> None:
        """Move at most ``limit`` waiting values, encoded, to ``rows``."""
        self.dirty = False
        key = self.key
        reader = self._reader
        if reader is not None:
            now = wall_ns() or 0
            values: list[Any] = []
            while True:
                try:
                    values = reader.try_recv_batch(limit)
                except BufferLagged as lag:
                    self.dropped += lag.missed
                    continue
                except BufferClosed:
                    values = []
                break
            if len(values) == limit and reader.pending():
                self.dirty = True  # more is waiting: the persister comes back to it
            items = [(now, v) for v in values]
        else:
            items = self._pending[:limit]
            del self._pending[:limit]
            if self._pending:
                self.dirty = True
        enc = self.encode
        before = len(rows)
        for ts, v in items:
            try:
                rows.append((key, ts, enc(v)))
            except SerializeError as exc:
                self.encode_errors += 1
                if not self._encode_logged:
                    self._encode_logged = True
                    _log.warning("persistence: value of %r not stored (logged once): %s", key, exc)
        self.stored += len(rows) - before

    def decode_rows(self, rows: "list[tuple[int, bytes]]") -> "list[Stored[Any]]":
        """Decode stored rows into :class:`Stored`; rows that no longer decode are skipped and counted."""
        out: list[Stored[Any]] = []
        dec = self.decode
        for ts, payload in rows:
            try:
                out.append(Stored(dec(payload), ts / 1e9, ts))
            except DeserializeError as exc:
                self.decode_skipped += 1
                if not self._decode_logged:
                    self._decode_logged = True
                    _log.warning(
                        "persistence: stored rows of %r no longer decode and are skipped (logged once): %s",
                        self.key,
                        exc,
                    )
        return out

    def statistics(self) -> PersistStatistics:
        """Return a snapshot of this record's persistence counters."""
        return PersistStatistics(self)


class Persister:
    """The database's persistence: its feeds and the task that hands their values to the store.

    :meth:`run` is the body of the supervised service task ``aimdb.persist``; it waits for
    dirty feeds, takes their values and calls ``backend.store``. While the store is
    behind (``pending() >= max_pending``) it waits, so memory stays bounded and a ring
    reader lags (counted) instead.
    """

    def __init__(self, backend: "PersistenceBackend", feeds: "dict[str, Feed]") -> None:
        self.backend = backend
        self.feeds = feeds
        self.rt: Any = None
        self.rings: list[Feed] = []  # ring feeds: polled, no listener on the produce path
        self.task: SupervisedTask | None = None  # the service task running :meth:`run`
        self.started = False
        self.closing = False
        self._dirty: list[Feed] = []
        self._waiter: Any = None

    def mark(self, feed: Feed) -> None:
        """Note that ``feed`` has values waiting and wake the task."""
        self._dirty.append(feed)
        w = self._waiter
        if w is not None:
            self._waiter = None
            w.wake()

    def finish(self) -> None:
        """Let :meth:`run` return once everything waiting was handed to the store."""
        self.closing = True
        w = self._waiter
        if w is not None:
            self._waiter = None
            w.wake()

    async def run(self) -> None:
        """Hand waiting values to the store until :meth:`finish` was called and nothing waits."""
        rt = self.rt
        backend = self.backend
        limit = max(1, backend.max_pending)
        self.rings = [f for f in self.feeds.values() if f.ring_buffer is not None]
        while True:
            for f in self.rings:
                if not f.dirty and f.waiting():
                    f.dirty = True
                    self._dirty.append(f)
            if not self._dirty:
                if self.closing:
                    return
                await self._wait()
                continue
            while backend.pending() >= limit and not self.closing:
                await rt.sleep(0.005)
            room = max(1, limit - backend.pending())
            feeds = self._dirty
            self._dirty = []
            rows: list[tuple[str, int, bytes]] = []
            for f in feeds:
                if len(rows) >= room:
                    if not f.dirty:
                        f.dirty = True
                    self._dirty.append(f)
                    continue
                f.take(rows, room - len(rows))
                if f.dirty:
                    self._dirty.append(f)
            if rows:
                try:
                    backend.store(rows)
                except Exception:
                    for key, _, _ in rows:  # the values of this batch are lost: count them
                        f = self.feeds[key]
                        f.stored -= 1
                        f.dropped += 1
                    raise
            await rt.sleep(0)  # let producers run between batches

    async def _wait(self) -> None:
        """Wait for a single-slot feed's mark, a produce on a ring feed's buffer or ``finish``."""
        w = self._waiter = self.rt.new_waiter()
        bufs = [f.ring_buffer for f in self.rings]
        for b in bufs:
            b._waiters.append(w)  # type: ignore[union-attr]
        try:
            await w.wait()
        finally:
            self._waiter = None
            for b in bufs:
                try:
                    b._waiters.remove(w)  # type: ignore[union-attr]
                except ValueError:
                    pass
