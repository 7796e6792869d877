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
* A consumer's reader lives on the loop. A buffer listener (``Buffer.add_listener``)
  runs inside ``produce``: it moves new values into the consumer's thread-side queue
  (ring: bounded at the ring capacity, overflow reported as lag exactly like a slow
  reader; single-latest: one slot; mailbox: a value is taken only while a thread is
  waiting for it, so competing consumers stay fair) and wakes a waiting thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from . import Buffer, BufferListener
from ._core._database import AimDb
from ._core._handles import _Handle
from ._core._persist import Stored
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
    "SyncHandle",
    "SyncProducer",
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


# ---------------------------------------------------------------- producer


class SyncProducer(_Handle, Generic[T]):
    """Writes one record from any thread; obtained from :meth:`SyncHandle.producer`.

    Thread-safe: any number of threads may share one producer. Values set by one thread
    reach the buffer in the order that thread set them (and values set through one
    producer in the order ``set`` returned). ``set`` hands the value to the database's
    loop; it is produced there shortly after (use :meth:`flush` to wait for that).
    """

    __slots__ = (
        "_bridge",
        "_capacity",
        "_check",
        "_closed",
        "_done",
        "_inbox",
        "_lock",
        "_scheduled",
        "_space",
        "_submitted",
        "_waiters",
    )

    def __init__(
        self, bridge: _Bridge, key: str, tp: type[Any], buf: Any, check: bool, queue_size: int
    ) -> None:
        if type(queue_size) is not int or queue_size < 1:
            raise ValueError("queue_size must be an int >= 1, got " + repr(queue_size))
        _Handle.__init__(self, key, tp, buf)
        self._bridge = bridge
        self._check = check
        self._capacity = queue_size
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._inbox: deque[Any] = deque()
        self._scheduled = False
        self._closed = False
        self._waiters = 0
        self._submitted = 0
        self._done = 0
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
            RuntimeShutdown: the handle is detached or the database stopped.
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        if self._check and not isinstance(value, self._type):
            raise TypeMismatch(self._key, self._type, type(value))
        with self._lock:
            if self._closed:
                raise RuntimeShutdown("the sync handle is detached or the database stopped")
            if len(self._inbox) >= self._capacity:
                self._wait_for_room(t)
            self._inbox.append(value)
            self._submitted += 1
            if self._scheduled:
                return
            self._scheduled = True
        self._bridge.post(self._drain)

    def try_set(self, value: T) -> None:
        """Like :meth:`set` with ``timeout=0``: never blocks.

        Raises:
            TypeMismatch: wrong type.
            SetTimeout: ``queue_size`` values are already waiting for the loop.
            RuntimeShutdown: the handle is detached or the database stopped.
        """
        self.set(value, 0)

    def _wait_for_room(self, t: float | None) -> None:
        # Called with the lock held.
        _not_on_loop(self._bridge)
        deadline = None if t is None else time.monotonic() + t
        self._waiters += 1
        try:
            while len(self._inbox) >= self._capacity:
                if self._closed:
                    raise RuntimeShutdown("the sync handle is detached or the database stopped")
                if deadline is None:
                    self._space.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SetTimeout(
                            "record "
                            + repr(self._key)
                            + ": the event loop did not accept values within "
                            + repr(t)
                            + " s"
                        )
                    self._space.wait(left)
            if self._closed:
                raise RuntimeShutdown("the sync handle is detached or the database stopped")
        finally:
            self._waiters -= 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every value this producer accepted so far has been produced.

        Raises:
            SetTimeout: not all values were produced within ``timeout``.
            RuntimeShutdown: the handle is detached or the database stopped first.
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        _not_on_loop(self._bridge)
        deadline = None if t is None else time.monotonic() + t
        with self._lock:
            target = self._submitted
            self._waiters += 1
            try:
                while self._done < target:
                    if self._closed:
                        raise RuntimeShutdown("the sync handle is detached or the database stopped")
                    if deadline is None:
                        self._space.wait()
                    else:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise SetTimeout("record " + repr(self._key) + ": flush timed out")
                        self._space.wait(left)
            finally:
                self._waiters -= 1

    def _drain(self) -> None:
        # On the loop: produce everything queued, in order.
        with self._lock:
            items = self._inbox
            self._inbox = deque()
            self._scheduled = False
        produce = self._buf.produce
        try:
            for v in items:
                produce(v)
        except BufferClosed:
            self._shutdown(False)
            return
        with self._lock:
            self._done += len(items)
            if self._waiters:
                self._space.notify_all()

    def _shutdown(self, detached: bool) -> None:
        with self._lock:
            self._closed = True
            self._space.notify_all()


# ---------------------------------------------------------------- consumer


class SyncConsumer(_Handle, Generic[T]):
    """Reads one record from any thread; obtained from :meth:`SyncHandle.consumer`.

    Subscribed when created: every value produced afterwards is delivered according to
    the buffer kind.

    * ring (``SpmcRing(capacity=N)``): every value in order; when this consumer falls
      more than ``N`` values behind, the next ``get``/``try_get`` raises
      :class:`~aimdb.BufferLagged` once with the exact number lost, then delivery
      continues with the oldest value still held.
    * ``SingleLatest``: first the current value (if any), then the newest value not yet
      seen; intermediate values collapse.
    * ``Mailbox``: each value goes to exactly one reader of the record (this consumer
      competes with taps and other consumers); a value is taken only while a thread
      waits in ``get``/``get_latest`` or calls ``try_get``.

    Thread-safe: several threads may share a consumer; each value goes to one of them.
    Iterating (``for v in consumer``) yields values, skips lag and ends when the
    database stops or the handle detaches.
    """

    def __init__(self, bridge: _Bridge, key: str, tp: type[Any], buf: Buffer[Any]) -> None:
        _Handle.__init__(self, key, tp, buf)
        self._bridge = bridge
        self._kind: str = buf.kind
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: deque[Any] = deque()
        self._cap = buf.statistics().capacity
        self._missed = 0
        self._lagged = 0
        self._eof = False  # the database stopped: pending values, then RuntimeShutdown
        self._shut = False  # detached/closed: RuntimeShutdown at once
        self._waiting = 0
        self._demand = 0  # mailbox: threads waiting for a value
        self._active = True
        self._reader: Any = None
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
        return self._lagged

    def pending(self) -> int:
        """Values already delivered to this consumer's thread side and not yet taken."""
        with self._lock:
            return len(self._items)

    # -------------------------------------------------- loop side

    def _subscribe(self) -> None:
        buf = self._buf
        if buf.closed:
            raise RuntimeShutdown("the database stopped")
        self._reader = buf.subscribe()
        self._listener = buf.add_listener(self._pull)
        self._pull()

    def _pull(self) -> None:
        # On the loop: the buffer listener (inside produce/close) or posted by a waiting thread.
        reader = self._reader
        if reader is None or not self._active:
            return
        buf = self._buf
        kind = self._kind
        items: list[Any]
        if kind == "mailbox":
            items = []
            with self._lock:
                if self._demand > len(self._items) and reader.pending():
                    self._items.append(reader.try_recv())
                    self._cond.notify()
                if buf.closed:
                    self._eof = True
                    self._cond.notify_all()
            return
        try:
            items = reader.try_recv_batch()
        except BufferClosed:
            items = []
        except BufferLagged as exc:  # pragma: no cover - we drain on every produce
            with self._lock:
                self._missed += exc.missed
                self._lagged += exc.missed
            items = reader.try_recv_batch()
        with self._lock:
            q = self._items
            if kind == "spmc_ring":
                q.extend(items)
                over = len(q) - self._cap
                if over > 0:
                    for _ in range(over):
                        q.popleft()
                    self._missed += over
                    self._lagged += over
                    reader.report_lag(over)  # counted in the buffer's dropped, like ring lag
            elif items:  # single latest: one slot
                q.clear()
                q.append(items[-1])
            if buf.closed:
                self._eof = True
                self._cond.notify_all()
            elif self._waiting and items:
                self._cond.notify()

    def _take_now(self) -> Any:
        # Mailbox try_get, on the loop.
        r = self._reader
        if r is None or not self._active:
            return _EMPTY
        try:
            return r.try_recv()
        except (BufferEmpty, BufferClosed):
            return _EMPTY

    def _unsubscribe(self) -> None:
        self._active = False
        if self._listener is not None:
            self._buf.remove_listener(self._listener)
        if self._reader is not None:
            self._reader.close()

    # -------------------------------------------------- thread side

    def _next(self) -> Any:
        # With the lock held: a value, _EMPTY, or raise.
        if self._shut:
            raise RuntimeShutdown("the sync handle is detached")
        if self._missed:
            m = self._missed
            self._missed = 0
            raise BufferLagged(m, self._key)
        if self._items:
            return self._items.popleft()
        if self._eof:
            raise RuntimeShutdown("the database stopped")
        return _EMPTY

    def _wait(self, t: float | None, latest: bool) -> Any:
        # With the lock held and nothing pending: wait for a value until the deadline.
        _not_on_loop(self._bridge)
        deadline = None if t is None else time.monotonic() + t
        mailbox = self._kind == "mailbox"
        self._waiting += 1
        if mailbox:
            self._demand += 1
        try:
            if mailbox:
                self._bridge.post(self._pull)  # a value may already be pending
            while True:
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        # A value may have arrived together with the timeout.
                        v = self._newest() if latest else self._next()
                        if v is not _EMPTY:
                            return v
                        raise GetTimeout("record " + repr(self._key) + ": no value within " + repr(t) + " s")
                    self._cond.wait(left)
                v = self._newest() if latest else self._next()
                if v is not _EMPTY:
                    return v
        finally:
            self._waiting -= 1
            if mailbox:
                self._demand -= 1

    def _newest(self) -> Any:
        # With the lock held: the newest pending value (skipping lag), _EMPTY, or raise.
        if self._shut:
            raise RuntimeShutdown("the sync handle is detached")
        q = self._items
        if q:
            v = q[-1]
            q.clear()
            self._missed = 0
            return v
        if self._eof:
            raise RuntimeShutdown("the database stopped")
        return _EMPTY

    def get(self, timeout: float | None = None) -> T:
        """Return the next value, waiting for one if needed.

        Args:
            timeout: ``None`` waits as long as needed; a number ``>= 0`` waits at most
                that many seconds.

        Raises:
            GetTimeout: no value arrived within ``timeout``.
            BufferLagged: ring only, once, when this consumer fell more than the ring's
                capacity behind (``missed`` is exact); the next call continues.
            RuntimeShutdown: the handle is detached, or the database stopped and every
                value delivered before that has been returned.
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        if t == 0:
            try:
                return self.try_get()
            except BufferEmpty:
                raise GetTimeout("record " + repr(self._key) + ": no value pending") from None
        with self._lock:
            v = self._next()
            if v is not _EMPTY:
                return v  # type: ignore[no-any-return]
            return self._wait(t, False)  # type: ignore[no-any-return]

    def try_get(self) -> T:
        """Return a pending value now, without waiting for a producer.

        For a mailbox this asks the loop for the slot's value (a short round trip).

        Raises:
            BufferEmpty: nothing is pending.
            BufferLagged: as for :meth:`get`.
            RuntimeShutdown: as for :meth:`get`.
        """
        with self._lock:
            v = self._next()
            if v is not _EMPTY:
                return v  # type: ignore[no-any-return]
        if self._kind == "mailbox":
            v = self._bridge.call(self._take_now)
            if v is not _EMPTY:
                return v  # type: ignore[no-any-return]
            with self._lock:  # detached or stopped meanwhile?
                v = self._next()
                if v is not _EMPTY:
                    return v  # type: ignore[no-any-return]
        raise BufferEmpty(self._key)

    def get_latest(self, timeout: float | None = None) -> T:
        """Return the newest pending value, discarding older ones; wait if none is pending.

        Lag is skipped (counted in :attr:`lagged`), never raised.

        Raises:
            GetTimeout: no value arrived within ``timeout``.
            RuntimeShutdown: as for :meth:`get`.
            ValueError: ``timeout`` is negative or not a number.
        """
        t = _timeout(timeout)
        with self._lock:
            v = self._newest()
            if v is not _EMPTY:
                return v  # type: ignore[no-any-return]
            if t == 0 and self._kind != "mailbox":
                raise GetTimeout("record " + repr(self._key) + ": no value pending")
            return self._wait(t, True)  # type: ignore[no-any-return]

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
            b, key, p.type, p._buf, p._check, self._queue_size if queue_size is None else queue_size
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
        return SyncConsumer(b, key, c.type, c._buf)

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
        self._failure = db._failure

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
    return SyncProducer(_Bridge(loop), key, p.type, p._buf, p._check, queue_size)
