"""Subscription fan-out: one reader ("feed") per subscribed record, bounded queues per subscription.

For each record with at least one remote subscriber the server keeps *one* reader, so a
``produce()`` costs the producer one extra wake-up at most, whatever the number of
clients; the feed encodes each value once and appends it to every matching
subscription's bounded queue. A full queue drops its oldest update; sequence numbers
keep counting, so the client sees the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from .. import AimDb, Buffer, BufferListener, Reader, RecordInfo
from .._errors import BufferClosed, BufferEmpty, BufferLagged
from . import _protocol as P
from ._records import RemoteFailure
from ._stats import ServerCounters
from ._tasks import TaskOwner

_log = logging.getLogger("aimdb.remote")


class Event:
    """One queued event of a subscription (already encoded)."""

    __slots__ = ("key", "kind", "raw", "seq", "ts")

    def __init__(self, seq: int, kind: bytes, key: bytes, raw: bytes, ts: int) -> None:
        self.seq = seq
        self.kind = kind
        self.key = key
        self.raw = raw
        self.ts = ts


class Subscription:
    """Server side of one ``record.subscribe``: bounded queue plus sequence numbers.

    Args:
        sub_id: the id the client sees (``"s1"`` ...).
        keys: the record keys it receives.
        limit: queue length; when full the oldest update is dropped (counted).
        wake: called whenever an event is queued (wakes the connection's writer).
        counters: the server counters (``events_dropped``).
    """

    __slots__ = (
        "counters",
        "delivered",
        "dropped",
        "feeds",
        "id",
        "id_json",
        "keys",
        "limit",
        "queue",
        "seq",
        "wake",
    )

    def __init__(
        self, sub_id: str, keys: list[str], limit: int, wake: Callable[[], None], counters: ServerCounters
    ) -> None:
        self.counters = counters
        self.id = sub_id
        self.id_json = msgspec.json.encode(sub_id)
        self.keys = keys
        self.limit = limit
        self.wake = wake
        self.queue: deque[Event] = deque()
        self.seq = 0
        self.dropped = 0
        self.delivered = 0
        self.feeds: list[Feed] = []

    def push(self, kind: bytes, key: bytes, raw: bytes, ts: int) -> None:
        """Queue one event; drop the oldest update when the queue is full."""
        self.seq += 1
        q = self.queue
        if len(q) >= self.limit and kind == b"update":
            q.popleft()
            self.dropped += 1
            self.counters.events_dropped += 1
        q.append(Event(self.seq, kind, key, raw, ts))
        self.wake()

    def skip(self, n: int) -> None:
        """Account for ``n`` values lost before they reached this subscription."""
        self.seq += n
        self.dropped += n

    def take(self, n: int) -> bytes:
        """Remove up to ``n`` queued events and return them as wire frames."""
        q = self.queue
        n = min(n, len(q))
        self.delivered += n
        return b"".join(self.frame(q.popleft()) for _ in range(n))

    def frame(self, ev: Event) -> bytes:
        """Encode one event frame."""
        return b"".join(
            (
                b'{"event":"',
                ev.kind,
                b'","sub":',
                self.id_json,
                b',"seq":',
                str(ev.seq).encode(),
                b',"key":',
                ev.key,
                b',"value":',
                ev.raw,
                b',"ts":',
                str(ev.ts).encode(),
                b"}\n",
            )
        )


def latest_value(buf: Buffer[Any] | None) -> tuple[bool, Any]:
    """Return ``(has_value, value)``: the buffer's newest held value, nothing consumed."""
    if buf is None:
        return False, None
    try:
        return True, buf.latest()
    except BufferEmpty:
        return False, None


class Feed:
    """One server-side reader of one record, shared by every subscription to it.

    Args:
        key: the record key.
        buf: its buffer.
        encode: the record's JSON encoder.
        counters: where encode errors and ring lag are counted.
    """

    def __init__(
        self, key: str, buf: Buffer[Any], encode: Callable[[Any], bytes], counters: ServerCounters
    ) -> None:
        self.key = key
        self.key_json = msgspec.json.encode(key)
        self.buf = buf
        self.encode = encode
        self.counters = counters
        self.subs: list[Subscription] = []
        self.kind = buf.kind
        self.reader: Reader[Any] | None = None
        self.listener: BufferListener | None = None
        self.fresh = False  # mailbox: produced into since the last pump
        self.closed = False
        self._warned = False
        if self.kind == "mailbox":
            # Subscribing a reader to a mailbox would steal commands from its consumers:
            # watch the slot instead (non-consuming). The listener runs inside produce,
            # so even a pump that runs before the feed task wakes sees the new value.
            try:
                self.listener = buf.add_listener(self._mark_fresh)
            except BufferClosed:
                self.closed = True
        else:
            self.reader = buf.subscribe()
            if self.kind == "single_latest":
                with contextlib.suppress(BufferEmpty, BufferClosed):
                    self.reader.try_recv()  # the current value is part of the snapshot
        self.task: asyncio.Task[None] | None = None

    def _mark_fresh(self) -> None:
        self.fresh = True

    def start(self, owner: TaskOwner) -> None:
        """Start the feed's task (owned by ``owner``)."""
        self.task = owner.spawn(self._run(), name=f"aimdb.remote.feed[{self.key}]")

    def encode_value(self, value: Any) -> bytes | None:
        """Encode ``value`` once for every subscriber; ``None`` (counted, logged once) when it fails."""
        try:
            return self.encode(value)
        except Exception as exc:
            self.counters.encode_errors += 1
            if not self._warned:
                self._warned = True
                _log.warning("cannot encode %r for remote subscribers: %s", self.key, exc)
            return None

    def _dispatch(self, value: Any, ts: int) -> None:
        raw = self.encode_value(value)
        if raw is None:
            return
        key = self.key_json
        for s in self.subs:
            s.push(b"update", key, raw, ts)

    def pump(self) -> None:
        """Deliver everything pending to the current subscribers (synchronously)."""
        if self.closed:
            return
        ts = time.time_ns()
        if self.kind == "mailbox":
            buf = self.buf
            if self.fresh:
                self.fresh = False
                has, value = latest_value(buf)
                if has:
                    self._dispatch(value, ts)
            if buf.closed:
                self.closed = True
            return
        reader = self.reader
        if reader is None:  # closed
            return
        while True:
            try:
                items = reader.try_recv_batch(256)
            except BufferLagged as exc:
                self.counters.feed_lagged += exc.missed
                for s in self.subs:
                    s.skip(exc.missed)
                continue
            except BufferClosed:
                self.closed = True
                return
            if not items:
                return
            for v in items:
                self._dispatch(v, ts)

    async def _run(self) -> None:
        buf = self.buf
        while not self.closed:
            self.pump()
            if self.closed:
                break
            # Registers its wait before suspending: nothing produced after the pump above
            # is missed, and a produce costs nothing while this task is busy.
            await buf.wait_changed()

    def close(self) -> None:
        """Stop the task and release the reader or listener (idempotent)."""
        if self.task is not None:
            self.task.cancel()
        if self.listener is not None:
            self.buf.remove_listener(self.listener)
            self.listener = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.closed = True


class FanOut:
    """Every feed of one server: created on first subscription, closed with the last.

    Args:
        db: the served database (``buffer(key)`` and ``record(key)`` are used).
        encoder: returns the JSON encoder of a record info.
        counters: the server counters.
        owner: owns the feed tasks.
    """

    def __init__(
        self,
        db: AimDb,
        encoder: Callable[[RecordInfo], Callable[[Any], bytes]],
        counters: ServerCounters,
        owner: TaskOwner,
    ) -> None:
        self._db = db
        self._encoder = encoder
        self._counters = counters
        self._owner = owner
        self.feeds: dict[str, Feed] = {}

    def feed(self, key: str) -> Feed:
        """Return the feed of ``key``, starting it when there is none.

        Raises:
            RemoteFailure: ``not_found`` when the record has no buffer.
        """
        f = self.feeds.get(key)
        if f is None or (f.closed and not f.subs):
            info = self._db.record(key)
            buf = self._db.buffer(key)
            if buf is None:
                raise RemoteFailure(P.NOT_FOUND, f"record {key!r} has no buffer")
            f = self.feeds[key] = Feed(key, buf, self._encoder(info), self._counters)
            f.start(self._owner)
        return f

    def subscribe(self, sub: Subscription, snapshot: bool) -> int:
        """Attach ``sub`` to the feeds of its keys; queue the snapshot first. Returns its length."""
        feeds = [self.feed(k) for k in sub.keys]
        # Bring existing feeds up to date first, so the snapshot is newer than any
        # update this subscription will receive.
        for f in feeds:
            f.pump()
        n_snap = 0
        if snapshot:
            ts = time.time_ns()
            for f in feeds:
                has, value = latest_value(f.buf)
                if has:
                    raw = f.encode_value(value)
                    if raw is not None:
                        sub.push(b"snapshot", f.key_json, raw, ts)
                        n_snap += 1
        for f in feeds:
            f.subs.append(sub)
            sub.feeds.append(f)
        return n_snap

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach ``sub``; a feed left without subscribers is closed."""
        for f in sub.feeds:
            with contextlib.suppress(ValueError):
                f.subs.remove(sub)
            if not f.subs:
                f.close()
                if self.feeds.get(f.key) is f:
                    del self.feeds[f.key]
        sub.feeds.clear()

    def close(self) -> None:
        """Close every feed."""
        for f in list(self.feeds.values()):
            f.close()
        self.feeds.clear()
