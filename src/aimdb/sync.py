"""Use a database from plain threads: the sync API (CPython only).

:func:`attach` runs a database on an asyncio event loop in a background daemon thread
and returns a :class:`SyncHandle`. From any number of threads, ``handle.producer(T,
key)`` gives a :class:`SyncProducer` (``set``, ``try_set``, ``flush``) and
``handle.consumer(T, key)`` a :class:`SyncConsumer` (``get``, ``try_get``,
``get_latest``, iteration). ``handle.detach()`` (or leaving ``with``) stops the
database; every blocked call then wakes with :class:`~aimdb.RuntimeShutdown`.

:func:`threadsafe_producer` is the documented way for a foreign thread to write into a
database that already runs on an asyncio loop of your own.

How values cross threads (see ``docs/design/021-sync-api.md``):

* ``set`` checks the type in the calling thread, appends the value to the producer's
  bounded hand-off queue and, only when that queue was empty, schedules one drain on the
  loop with ``loop.call_soon_threadsafe``. The drain produces every queued value in
  order, so values keep their order per producer and a burst costs one loop wake-up.
* After the database stopped or its loop closed, every ``set`` raises
  :class:`~aimdb.RuntimeShutdown` (a blocked one within a fraction of a second). A value
  ``set`` accepted is produced or counted as ``lost`` in
  :meth:`SyncProducer.statistics`; ``accepted == produced + lost + queued`` always.
* A consumer holds a :class:`~aimdb.BufferMirror` of the record's buffer, which carries
  the buffer kind's rules (ring: bounded at the ring capacity, overflow counted as lag
  exactly like a slow reader; single-latest: one slot; mailbox: a value is taken only
  while a thread is waiting for it, so competing consumers stay fair). A buffer listener
  (``Buffer.add_listener``) runs inside ``produce``, fills the mirror and wakes a waiting
  thread; threads take from the mirror under the consumer's lock.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from . import AimDb, Buffer, BufferListener, BufferMirror
from ._core._persist import Stored
from ._core._stats import Statistics
from ._errors import (
    AttachFailed,
    BufferClosed,
    BufferEmpty,
    BufferLagged,
    DetachFailed,
    GetTimeout,
    RuntimeShutdown,
    SetTimeout,
    StageFailed,
    TypeMismatch,
)

__all__ = (
    "DEFAULT_QUEUE_SIZE",
    "AttachFailed",
    "DetachFailed",
    "GetTimeout",
    "RuntimeShutdown",
    "SetTimeout",
    "SyncConsumer",
    "SyncConsumerStatistics",
    "SyncHandle",
    "SyncProducer",
    "SyncProducerStatistics",
    "attach",
    "threadsafe_producer",
)

T = TypeVar("T")

#: Values a :class:`SyncProducer` may have waiting for the loop before ``set`` blocks.
DEFAULT_QUEUE_SIZE = 1024

_EMPTY: Any = object()


def _timeout(timeout: object) -> float | None:
    """Validate a ``timeout=`` argument: ``None`` (no limit) or a number ``>= 0``.

    Raises:
        ValueError: for a negative number, NaN, a bool or anything that is not a number.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError("timeout must be None or a number >= 0, got " + repr(timeout))
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError("timeout must be None or a number >= 0, got " + repr(timeout))
    return None if math.isinf(t) else t


class _Bridge:
    """What a handle's producers and consumers share: the loop and the shutdown state."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.closed = False
        self.endpoints: set[Any] = set()  # SyncProducer / SyncConsumer to wake at shutdown
        self.calls: set[_Call] = set()

    def register(self, endpoint: Any) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeShutdown("the sync handle is detached")
            self.endpoints.add(endpoint)

    def unregister(self, endpoint: Any) -> None:
        with self.lock:
            self.endpoints.discard(endpoint)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop; raise ``RuntimeShutdown`` when it is gone."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed
            raise RuntimeShutdown("the event loop has stopped") from None

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn()`` on the loop and return its result (or raise its exception) here."""
        _not_on_loop(self)
        c = _Call(fn)
        with self.lock:
            if self.closed:
                raise RuntimeShutdown("the sync handle is detached")
            self.calls.add(c)
        try:
            self.post(c.run)
            if not c.done.wait(timeout):
                raise GetTimeout("the event loop did not answer within " + repr(timeout) + " s")
        finally:
            with self.lock:
                self.calls.discard(c)
        if c.error is not None:
            raise c.error
        return c.result

    def close(self, detached: bool) -> None:
        """Mark the bridge closed and wake everything blocked on it."""
        with self.lock:
            self.closed = True
            endpoints = list(self.endpoints)
            calls = list(self.calls)
        for c in calls:
            c.error = RuntimeShutdown("the database stopped")
            c.done.set()
        for e in endpoints:
            e._shutdown(detached)


def _not_on_loop(bridge: _Bridge) -> None:
    """Raise instead of deadlocking when a blocking call runs on the database's own loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return
    if running is bridge.loop:
        raise RuntimeError("blocking aimdb.sync call on the database's own event loop would deadlock")


class _Call:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if self.done.is_set():
            return
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        self.done.set()


# ---------------------------------------------------------------- statistics


class SyncProducerStatistics(Statistics):
    """A snapshot of one :class:`SyncProducer`'s counters.

    ``accepted == produced + lost + queued`` always holds: nothing ``set`` accepted
    disappears without being counted.

    Attributes:
        accepted: values ``set``/``try_set`` accepted (returned without raising).
        produced: accepted values produced into the record's buffer.
        lost: accepted values never produced because the database stopped or its event
            loop closed before the loop took them.
        queued: accepted values still waiting for the loop.
    """

    __slots__ = ("accepted", "produced", "lost", "queued")  # noqa: RUF023 - the order of as_dict()

    accepted: int
    produced: int
    lost: int
    queued: int

    def __init__(self, accepted: int, produced: int, lost: int, queued: int) -> None:
        self._init({"accepted": accepted, "produced": produced, "lost": lost, "queued": queued})


class SyncConsumerStatistics(Statistics):
    """A snapshot of one :class:`SyncConsumer`'s counters.

    Attributes:
        received: values returned to callers (``get``, ``try_get``, ``get_latest``,
            iteration).
        skipped: values ``get_latest`` discarded because a newer one was pending.
        lagged: values lost because the consumer fell more than a ring's capacity
            behind (also counted in the buffer's ``dropped`` statistic).
        pending: values delivered to the consumer's thread side and not yet returned.
    """

    __slots__ = ("received", "skipped", "lagged", "pending")  # noqa: RUF023 - the order of as_dict()

    received: int
    skipped: int
    lagged: int
    pending: int

    def __init__(self, received: int, skipped: int, lagged: int, pending: int) -> None:
        self._init({"received": received, "skipped": skipped, "lagged": lagged, "pending": pending})


class _Endpoint:
    """What producers and consumers share: the record key, its type, the buffer, the bridge."""

    def __init__(self, bridge: _Bridge, key: str, tp: type[Any], buf: Buffer[Any]) -> None:
        self._bridge = bridge
        self._key = key
        self._type = tp
        self._buf = buf

    @property
    def key(self) -> str:
        """The record key."""
        return self._key

    @property
    def type(self) -> type[Any]:
        """The record's declared type."""
        return self._type

    def __repr__(self) -> str:
        return "<" + type(self).__name__ + " " + repr(self._key) + " " + self._type.__name__ + ">"


#: Seconds a blocked ``set``/``flush`` sleeps between checks whether the database
#: stopped or its loop closed (a closed loop can wake nobody).
_POLL = 0.05


# ---------------------------------------------------------------- producer


class SyncProducer(_Endpoint, Generic[T]):
    """Writes one record from any thread; obtained from :meth:`SyncHandle.producer`.

    Thread-safe: any number of threads may share one producer. Values set by one thread
    reach the buffer in the order that thread set them (and values set through one
    producer in the order ``set`` returned). ``set`` hands the value to the database's
    loop; it is produced there shortly after (use :meth:`flush` to wait for that).

    Once the database stopped or its loop closed, every ``set`` raises
    :class:`~aimdb.RuntimeShutdown`. A value ``set`` accepted is produced or, if the
    database stopped first, counted in :meth:`statistics` as ``lost``.
    """

    def __init__(
        self, bridge: _Bridge, key: str, tp: type[Any], buf: Buffer[Any], check: bool, queue_size: int
    ) -> None:
        if type(queue_size) is not int or queue_size < 1:
            raise ValueError("queue_size must be an int >= 1, got " + repr(queue_size))
        _Endpoint.__init__(self, bridge, key, tp, buf)
        self._loop = bridge.loop
        self._check = check
        self._capacity = queue_size
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._inbox: deque[Any] = deque()
        self._scheduled = False
        self._closed = False
        self._waiters = 0
        self._accepted = 0
        self._produced = 0
        self._lost = 0
        bridge.register(self)

    def set(self, value: T, timeout: float | None = None) -> None:
        """Hand ``value`` to the database; it is produced on the loop, in order.

        Returns as soon as the value is queued for the loop. Blocks only while
        ``queue_size`` values from this producer are still waiting for the loop.

        Args:
            value: an instance of the record type.
            timeout: ``None`` waits as long as needed for room in the queue; a number
                ``>= 0`` waits at most that many seconds.

        Raises:
            TypeMismatch: ``value`` is not an instance of the record type (checked in
                the calling thread unless type checks are off for the database).
            SetTimeout: the loop did not take queued values within ``timeout``.
            RuntimeShutdown: the handle is detached, the database stopped or its loop
                closed (also while this call waited for room); ``value`` was not
                accepted.
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        if self._check and not isinstance(value, self._type):
            raise TypeMismatch(self._key, self._type, type(value))
        with self._lock:
            # Inlined _raise_if_closed (the hot path): detached, database stopped, loop closed.
            if self._closed or self._buf.closed or self._loop.is_closed():
                self._raise_if_closed()
            if len(self._inbox) >= self._capacity:
                self._wait_for_room(t)
            self._inbox.append(value)
            self._accepted += 1
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._bridge.post(self._drain)
        except RuntimeShutdown:
            with self._lock:
                # The loop closed: nothing will drain. The inbox was empty when this call
                # scheduled the drain, so its first value is this call's: not accepted
                # after all. Values other threads queued meanwhile are lost. If another
                # thread's _close() already counted this value as lost, take it back there.
                self._accepted -= 1
                if self._inbox:
                    self._inbox.popleft()
                else:
                    self._lost -= 1
                self._close()
            raise

    def try_set(self, value: T) -> None:
        """Like :meth:`set` with ``timeout=0``: never blocks.

        Raises:
            TypeMismatch: wrong type.
            SetTimeout: ``queue_size`` values are already waiting for the loop.
            RuntimeShutdown: the handle is detached, the database stopped or its loop
                closed.
        """
        self.set(value, 0)

    def statistics(self) -> SyncProducerStatistics:
        """Return a snapshot of this producer's counters (callable from any thread)."""
        with self._lock:
            if self._gone():
                self._close()
            return SyncProducerStatistics(self._accepted, self._produced, self._lost, len(self._inbox))

    # Everything below with ``_lock`` held unless said otherwise.

    def _gone(self) -> bool:
        # The buffer closed (the database stopped: no drain can produce any more) or the
        # loop closed (no drain can run any more).
        return self._buf.closed or self._loop.is_closed()

    def _close(self) -> None:
        # No more sets; values still queued when nothing can produce them are lost.
        self._closed = True
        if self._inbox and self._gone():
            self._lost += len(self._inbox)
            self._inbox.clear()
        self._space.notify_all()

    def _raise_if_closed(self) -> None:
        if not self._closed and self._gone():
            self._close()
        if self._closed:
            raise RuntimeShutdown(
                "record " + repr(self._key) + ": the sync handle is detached or the database stopped"
            )

    def _wait_until(self, done: Callable[[], bool], deadline: float | None, what: str) -> None:
        # Wait for ``done()``; raise SetTimeout at the deadline, RuntimeShutdown once closed.
        _not_on_loop(self._bridge)
        self._waiters += 1
        try:
            while not done():
                self._raise_if_closed()
                wait = _POLL
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SetTimeout("record " + repr(self._key) + ": " + what)
                    wait = min(wait, left)
                self._space.wait(wait)
        finally:
            self._waiters -= 1

    def _wait_for_room(self, t: float | None) -> None:
        deadline = None if t is None else time.monotonic() + t
        self._wait_until(
            lambda: len(self._inbox) < self._capacity,
            deadline,
            "the event loop did not accept values within " + repr(t) + " s",
        )
        self._raise_if_closed()  # a detach while waiting

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every value this producer accepted so far has been produced.

        Raises:
            SetTimeout: not all values were produced within ``timeout``.
            RuntimeShutdown: the handle is detached or the database stopped first.
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        with self._lock:
            target = self._accepted
            self._wait_until(lambda: self._produced >= target, deadline, "flush timed out")

    def _drain(self) -> None:
        # On the loop (lock not held): produce everything queued, in order.
        with self._lock:
            items = self._inbox
            self._inbox = deque()
            self._scheduled = False
        produce = self._buf.produce
        rest = iter(items)
        lost = 0
        try:
            for v in rest:
                produce(v)
        except BufferClosed:  # the database stopped under us: this value and the rest
            lost = 1 + sum(1 for _ in rest)
        with self._lock:
            self._produced += len(items) - lost
            if lost:
                self._lost += lost
                self._close()
            elif self._waiters:
                self._space.notify_all()

    def _shutdown(self, detached: bool) -> None:
        # From the bridge (any thread): detached, or the loop thread finished.
        with self._lock:
            self._close()


# ---------------------------------------------------------------- consumer


class SyncConsumer(_Endpoint, Generic[T]):
    """Reads one record from any thread; obtained from :meth:`SyncHandle.consumer`.

    Subscribed when created: every value produced afterwards is delivered according to
    the buffer kind (a :class:`~aimdb.BufferMirror` of the record's buffer).

    * ring (``SpmcRing(capacity=N)``): every value in order; when this consumer falls
      more than ``N`` values behind, the next ``get``/``try_get`` raises
      :class:`~aimdb.BufferLagged` once with the exact number lost, then delivery
      continues with the oldest value still held.
    * ``SingleLatest``: first the current value (if any), then the newest value not yet
      seen; intermediate values collapse.
    * ``Mailbox``: each value goes to exactly one reader of the record (this consumer
      competes with taps and other consumers); a value is taken only while a thread
      waits in ``get``/``get_latest`` or calls ``try_get``/``get_latest(timeout=0)``.

    Thread-safe: several threads may share a consumer; each value goes to one of them.
    Iterating (``for v in consumer``) yields values, skips lag and ends when the
    database stops or the handle detaches.
    """

    def __init__(self, bridge: _Bridge, key: str, tp: type[Any], buf: Buffer[Any]) -> None:
        _Endpoint.__init__(self, bridge, key, tp, buf)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._eof = False  # the loop thread finished: pending values, then RuntimeShutdown
        self._shut = False  # detached/closed: RuntimeShutdown at once
        self._waiting = 0
        self._demand = 0  # threads waiting for a value (what an on-demand mirror may take)
        self._received = 0
        self._skipped = 0
        self._active = True
        # Set on the loop by _subscribe, before __init__ returns (and before any listener
        # call); a consumer whose subscription failed is never handed out.
        self._mirror: BufferMirror[T]
        self._on_demand = False  # the mirror takes values only for waiting threads (mailbox)
        self._listener: BufferListener | None = None
        bridge.register(self)
        try:
            bridge.call(self._subscribe)
        except BaseException:
            bridge.unregister(self)
            raise

    @property
    def lagged(self) -> int:
        """Values this consumer lost because it fell behind a ring (reported or skipped)."""
        with self._lock:
            return self._mirror.lagged

    def pending(self) -> int:
        """Values already delivered to this consumer's thread side and not yet taken."""
        with self._lock:
            return len(self._mirror)

    def statistics(self) -> SyncConsumerStatistics:
        """Return a snapshot of this consumer's counters (callable from any thread)."""
        with self._lock:
            m = self._mirror
            return SyncConsumerStatistics(self._received, self._skipped, m.lagged, len(m))

    # -------------------------------------------------- loop side

    def _subscribe(self) -> None:
        buf = self._buf
        if buf.closed:
            raise RuntimeShutdown("record " + repr(self._key) + ": the database stopped")
        self._mirror = buf.mirror()
        self._on_demand = self._mirror.on_demand
        self._listener = buf.add_listener(self._pull)
        self._pull()

    def _pull(self) -> None:
        # On the loop: the buffer listener (inside produce/close) or posted by a waiting thread.
        if not self._active:
            return
        m = self._mirror
        with self._lock:
            n = m.fill(self._demand)
            if m.exhausted:
                self._cond.notify_all()
            elif n and self._waiting:
                self._cond.notify(n)

    def _fill_one(self) -> None:
        # On the loop, for try_get on an on-demand (mailbox) mirror: take one value now.
        if not self._active:
            return
        m = self._mirror
        with self._lock:
            m.fill(len(m) + 1)

    def _unsubscribe(self) -> None:
        self._active = False
        if self._listener is not None:
            self._buf.remove_listener(self._listener)
        self._mirror.close()

    # -------------------------------------------------- thread side

    def _take(self, newest: bool) -> Any:
        # With the lock held: a value, _EMPTY, or raise (BufferLagged only when not newest).
        if self._shut:
            raise RuntimeShutdown("record " + repr(self._key) + ": the sync handle is detached")
        m = self._mirror
        if newest:
            held = len(m)
            v = m.take_newest(_EMPTY) if held else _EMPTY
            if held:
                self._skipped += held - 1
        else:
            v = m.take(_EMPTY)  # BufferLagged propagates
        if v is _EMPTY:  # a default instead of BufferEmpty: a waiting get() pays no exception
            if self._eof or m.exhausted:
                raise RuntimeShutdown("record " + repr(self._key) + ": the database stopped")
            return _EMPTY
        self._received += 1
        return v

    def _try(self, newest: bool) -> Any:
        # Without waiting for a producer: a value or _EMPTY. An on-demand mirror (mailbox)
        # asks the loop for the slot's value (a short round trip).
        with self._lock:
            v = self._take(newest)
            if v is not _EMPTY or not self._on_demand:
                return v
        self._bridge.call(self._fill_one)
        with self._lock:
            return self._take(newest)

    def _wait(self, t: float | None, newest: bool) -> Any:
        # With the lock held and nothing pending: wait for a value until the deadline.
        _not_on_loop(self._bridge)
        deadline = None if t is None else time.monotonic() + t
        self._waiting += 1
        self._demand += 1
        try:
            if self._on_demand:
                self._bridge.post(self._pull)  # a value may already be pending
            while True:
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        # A value may have arrived together with the timeout.
                        v = self._take(newest)
                        if v is not _EMPTY:
                            return v
                        raise GetTimeout("record " + repr(self._key) + ": no value within " + repr(t) + " s")
                    self._cond.wait(left)
                v = self._take(newest)
                if v is not _EMPTY:
                    return v
        finally:
            self._waiting -= 1
            self._demand -= 1

    def _get(self, timeout: float | None, newest: bool) -> T:
        t = _timeout(timeout)
        if t == 0:
            v = self._try(newest)
            if v is _EMPTY:
                raise GetTimeout("record " + repr(self._key) + ": no value pending")
            return v  # type: ignore[no-any-return]
        with self._lock:
            v = self._take(newest)
            if v is not _EMPTY:
                return v  # type: ignore[no-any-return]
            return self._wait(t, newest)  # type: ignore[no-any-return]

    def get(self, timeout: float | None = None) -> T:
        """Return the next value, waiting for one if needed.

        Args:
            timeout: ``None`` waits as long as needed; a number ``>= 0`` waits at most
                that many seconds (``0``: only a value pending now, as :meth:`try_get`).

        Raises:
            GetTimeout: no value arrived within ``timeout``.
            BufferLagged: ring only, once, when this consumer fell more than the ring's
                capacity behind (``missed`` is exact); the next call continues.
            RuntimeShutdown: the handle is detached, or the database stopped and every
                value delivered before that has been returned.
            ValueError: ``timeout`` is negative or not a number.
        """
        if timeout is None:  # the hot path: a value is held
            with self._lock:
                v = self._take(False)
                if v is not _EMPTY:
                    return v  # type: ignore[no-any-return]
                return self._wait(None, False)  # type: ignore[no-any-return]
        return self._get(timeout, False)

    def try_get(self) -> T:
        """Return a pending value now, without waiting for a producer.

        For a mailbox this asks the loop for the slot's value (a short round trip).

        Raises:
            BufferEmpty: nothing is pending.
            BufferLagged: as for :meth:`get`.
            RuntimeShutdown: as for :meth:`get`.
        """
        v = self._try(False)
        if v is _EMPTY:
            raise BufferEmpty(self._key)
        return v  # type: ignore[no-any-return]

    def get_latest(self, timeout: float | None = None) -> T:
        """Return the newest pending value, discarding older ones; wait if none is pending.

        Lag is skipped (counted in :attr:`lagged`), never raised. Discarded values are
        counted in :meth:`statistics` as ``skipped``. With ``timeout=0`` a mailbox's
        pending value is taken (a short round trip to the loop, as :meth:`try_get`).

        Raises:
            GetTimeout: no value arrived within ``timeout``.
            RuntimeShutdown: as for :meth:`get`.
            ValueError: ``timeout`` is negative or not a number.
        """
        return self._get(timeout, True)

    def __iter__(self) -> Iterator[T]:
        """Yield values as they arrive, skipping lag; stop when the database stops or detaches."""
        while True:
            try:
                yield self.get()
            except BufferLagged:
                continue
            except RuntimeShutdown:
                return

    def close(self) -> None:
        """Unsubscribe; later calls raise ``RuntimeShutdown``. Idempotent."""
        self._shutdown(True)
        self._bridge.unregister(self)
        try:
            self._bridge.post(self._unsubscribe)
        except RuntimeShutdown:
            pass

    def _shutdown(self, detached: bool) -> None:
        with self._lock:
            if detached:
                self._shut = True
            else:
                self._eof = True
            self._cond.notify_all()

    def __enter__(self) -> SyncConsumer[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- handle


class SyncHandle:
    """A database running on an asyncio loop in a background thread; from :func:`attach`.

    Use as a context manager or call :meth:`detach` when done. Producers and consumers
    may be created and used from any thread.
    """

    def __init__(self, db: AimDb, queue_size: int) -> None:
        self._db = db
        self._queue_size = queue_size
        self._thread: threading.Thread | None = None
        self._bridge: _Bridge | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._failure: StageFailed | None = None
        self._detached = False

    @property
    def database(self) -> AimDb:
        """The attached database (its loop-affine methods must run on :attr:`loop`)."""
        return self._db

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The background event loop."""
        assert self._bridge is not None
        return self._bridge.loop

    @property
    def attached(self) -> bool:
        """Whether the database is still running for this handle."""
        b = self._bridge
        return b is not None and not b.closed

    @property
    def failure(self) -> StageFailed | None:
        """The :class:`~aimdb.StageFailed` that stopped the database, if one did."""
        return self._failure

    def _bridge_or_raise(self) -> _Bridge:
        b = self._bridge
        if b is None or b.closed:
            raise RuntimeShutdown("the sync handle is detached or the database stopped")
        return b

    def producer(self, tp: type[T], key: str, *, queue_size: int | None = None) -> SyncProducer[T]:
        """Return a thread-safe producer of record ``key`` holding ``tp``.

        Args:
            tp: the record's type (compared by identity, as ``db.producer``).
            key: the record key.
            queue_size: values that may wait for the loop before ``set`` blocks
                (default: the handle's ``queue_size``).

        Raises:
            RecordNotFound: no such key.
            TypeMismatch: the record holds another type.
            RuntimeShutdown: the handle is detached.
        """
        b = self._bridge_or_raise()
        p = self._db.producer(tp, key)
        return SyncProducer(
            b, key, p.type, p.buffer, p.type_checks, self._queue_size if queue_size is None else queue_size
        )

    def consumer(self, tp: type[T], key: str) -> SyncConsumer[T]:
        """Return a consumer of record ``key``, subscribed before this returns.

        Raises:
            RecordNotFound: no such key.
            TypeMismatch: the record holds another type.
            RuntimeShutdown: the handle is detached or the database stopped.
        """
        b = self._bridge_or_raise()
        c = self._db.consumer(tp, key)
        return SyncConsumer(b, key, c.type, c.buffer)

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``fn()`` on the database's loop and return its result in this thread.

        Useful for loop-affine calls such as ``db.statistics()``.

        Raises:
            GetTimeout: the loop did not run ``fn`` within ``timeout``.
            RuntimeShutdown: the handle is detached.
            Exception: whatever ``fn`` raised.
        """
        return self._bridge_or_raise().call(fn, _timeout(timeout))  # type: ignore[no-any-return]

    def history(
        self,
        key: str,
        *,
        since: Any = None,
        until: Any = None,
        limit: int = 1000,
        newest_first: bool = False,
        timeout: float | None = 10.0,
    ) -> list[Stored[Any]]:
        """Blocking :meth:`aimdb.AimDb.history`: stored values of persisted record ``key``.

        Runs the query on the database's loop and waits here for at most ``timeout``
        seconds (``None``: no limit). Arguments and ordering as ``AimDb.history``.

        Raises:
            RecordNotFound: no such key.
            NotPersisted: the record has no ``persist()``.
            ValueError: bad ``limit``, ``since`` or ``until``.
            PersistenceError: the store failed to answer.
            GetTimeout: no answer within ``timeout`` (the query is cancelled).
            RuntimeShutdown: the handle is detached or the database stopped.
        """
        b = self._bridge_or_raise()
        _not_on_loop(b)
        coro = self._db.history(key, since=since, until=until, limit=limit, newest_first=newest_first)
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, b.loop)
        except RuntimeError:  # loop closed
            coro.close()
            raise RuntimeShutdown("the event loop has stopped") from None
        try:
            return fut.result(_timeout(timeout))
        except TimeoutError:
            fut.cancel()
            raise GetTimeout("no history answer within " + repr(timeout) + " s") from None

    # -------------------------------------------------- lifecycle

    def _start(
        self, timeout: float | None, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
    ) -> None:
        factory = loop_factory or asyncio.new_event_loop
        try:
            loop = factory()
        except Exception as exc:
            raise AttachFailed("could not create the event loop: " + repr(exc)) from exc
        self._bridge = _Bridge(loop)
        th = threading.Thread(target=self._thread_main, args=(loop,), name="aimdb-sync", daemon=True)
        self._thread = th
        th.start()
        if not self._started.wait(timeout):
            self._bridge.close(True)
            try:
                loop.call_soon_threadsafe(self._db.stop)
            except RuntimeError:
                pass
            raise AttachFailed("the database did not start within " + repr(timeout) + " s")
        if self._start_error is not None:
            err = self._start_error
            raise AttachFailed("the database could not start: " + repr(err)) from err

    def _thread_main(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._main())
        except BaseException as exc:  # pragma: no cover - loop machinery failed
            if not self._started.is_set():
                self._start_error = exc
                self._started.set()
        finally:
            assert self._bridge is not None
            self._bridge.close(self._detached)
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _main(self) -> None:
        db = self._db
        try:
            await db.start()
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            await db.aclose()
            return
        self._started.set()
        try:
            await db.wait_stop_requested()
        finally:
            await db.aclose()
        self._failure = db.failure

    def detach(self, timeout: float | None = 10.0) -> None:
        """Stop the database and its loop thread; idempotent.

        Every blocked or later call on this handle's producers and consumers raises
        :class:`~aimdb.RuntimeShutdown`. Values ``set`` before ``detach`` are still
        produced before the database stops.

        Args:
            timeout: seconds to wait for the loop thread to finish (``None``: no limit).

        Raises:
            DetachFailed: the thread did not finish within ``timeout`` (it is a daemon
                thread and keeps shutting down in the background).
            StageFailed: a stage with ``on_error="stop"`` stopped the database (raised
                once, after a clean shutdown).
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        th = self._thread
        b = self._bridge
        if th is None or b is None:
            return
        first = not self._detached
        self._detached = True
        b.close(True)
        try:
            b.loop.call_soon_threadsafe(self._db.stop)
        except RuntimeError:
            pass  # the loop already finished
        if th is not threading.current_thread():
            th.join(t)
            if th.is_alive():
                raise DetachFailed("the event loop thread did not stop within " + repr(t) + " s")
        if first and self._failure is not None:
            raise self._failure

    def __enter__(self) -> SyncHandle:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return "<SyncHandle " + ("attached" if self.attached else "detached") + " " + repr(self._db) + ">"


def attach(
    builder_or_db: Any,
    *,
    timeout: float | None = 5.0,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> SyncHandle:
    """Run a database on an asyncio loop in a background daemon thread.

    Args:
        builder_or_db: an :class:`~aimdb.AimDbBuilder` (built here, in the calling
            thread) or an :class:`~aimdb.AimDb` that was built and never started.
        timeout: seconds to wait until the database has started (``None``: no limit).
        queue_size: default hand-off queue size of the handle's producers.
        loop_factory: creates the event loop (default :func:`asyncio.new_event_loop`;
            ``uvloop.new_event_loop`` works too).

    Returns:
        The handle, attached: stages, taps and links are running.

    Raises:
        InvalidConfiguration: ``build()`` found problems (raised unchanged).
        AttachFailed: the database was already started, or the loop or the database
            could not be started (``__cause__`` holds the reason), or starting took
            longer than ``timeout``.
        ValueError: ``timeout`` or ``queue_size`` is invalid.
    """
    t = _timeout(timeout)
    if type(queue_size) is not int or queue_size < 1:
        raise ValueError("queue_size must be an int >= 1, got " + repr(queue_size))
    if isinstance(builder_or_db, AimDb):
        db = builder_or_db
    elif hasattr(builder_or_db, "build"):
        db = builder_or_db.build()
    else:
        raise TypeError("attach() needs an AimDbBuilder or an AimDb, got " + repr(builder_or_db))
    if db.state != "built":
        raise AttachFailed("the database was already started (state " + db.state + ")")
    handle = SyncHandle(db, queue_size)
    handle._start(t, loop_factory)
    return handle


def threadsafe_producer(
    db: AimDb,
    tp: type[T],
    key: str,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    queue_size: int = DEFAULT_QUEUE_SIZE,
) -> SyncProducer[T]:
    """Return a producer that other threads may use to write into a running asyncio database.

    Use it when *you* run the database on your asyncio loop and a foreign thread (a
    driver callback, a GUI, a blocking library) must produce values. Create it on the
    loop (inside a coroutine or callback), or pass ``loop=``; then hand it to threads::

        async with builder.build() as db:
            p = aimdb.sync.threadsafe_producer(db, Temperature, "temp.indoor")
            threading.Thread(target=sensor_loop, args=(p,), daemon=True).start()
            ...

    ``set``/``try_set``/``flush`` behave as on :class:`SyncProducer`; once the database
    has stopped or the loop is closed they raise :class:`~aimdb.RuntimeShutdown`.

    Raises:
        RecordNotFound: no such key.
        TypeMismatch: the record holds another type.
        RuntimeError: ``loop`` was not given and no asyncio loop runs in this thread.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    p = db.producer(tp, key)
    return SyncProducer(_Bridge(loop), key, p.type, p.buffer, p.type_checks, queue_size)
