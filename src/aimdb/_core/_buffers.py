"""The three buffer kinds and their readers (MicroPython-safe).

All buffers are loop-affine: ``produce`` and every reader method must be called from
the database's event loop (threads go through :mod:`aimdb.sync`). ``produce`` is
synchronous, O(1) in the number of readers when no reader is waiting, and never blocks.

Waking uses per-wait *waiters* from the runtime backend (``new_waiter()``), each with
``wake()`` and ``wait()``. A buffer keeps the list of waiting readers' waiters and swaps
it out on every produce, so a value produced between a reader's check and its wait is
never lost, and a cancelled wait removes its waiter again. A listener
(:meth:`Buffer.add_listener`) is an object in the same list that puts itself back on
every wake, so ``produce`` pays nothing extra while no listener is registered.
"""

from .._backends import current_backend as _current_backend
from .._compat import TYPE_CHECKING, Generic, TypeVar, subscriptable
from .._errors import BufferClosed, BufferEmpty, BufferLagged
from ._stats import Statistics

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


# ---------------------------------------------------------------- configuration


class SpmcRing:
    """Configuration of a single-producer, multi-consumer ring of exactly ``capacity`` values.

    Every reader has its own cursor and sees only values produced after it subscribed.
    Values stay in the ring while nobody reads. A reader more than ``capacity`` values
    behind gets exactly one :class:`~aimdb.BufferLagged` carrying the exact number lost,
    then continues with the oldest value still held. ``peek()`` returns ``None``.
    Capacity is exact (no rounding) and must be an ``int >= 1``; this is checked by
    ``build()``, which names the record.
    """

    __slots__ = ("capacity",)
    kind = "spmc_ring"

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def __repr__(self) -> str:
        return "BufferCfg.SpmcRing(capacity=" + repr(self.capacity) + ")"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpmcRing) and other.capacity == self.capacity

    def __hash__(self) -> int:
        return hash(("spmc_ring", self.capacity))

    def _problem(self) -> "str | None":
        cap = self.capacity
        if type(cap) is not int:
            return "ring capacity must be an int, got " + repr(cap)
        if cap < 1:
            return "ring capacity must be at least 1, got " + str(cap)
        return None

    def _create(self, key: str) -> "RingBuffer[Any]":
        return RingBuffer(key, self.capacity)


class _SingleSlotCfg:
    """Shared behaviour of the single-slot configurations (capacity 1, nothing to check)."""

    __slots__ = ()
    kind = ""
    capacity = 1

    def __repr__(self) -> str:
        return "BufferCfg." + type(self).__name__ + "()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self))

    def __hash__(self) -> int:
        return hash(self.kind)

    def _problem(self) -> "str | None":
        return None


class SingleLatest(_SingleSlotCfg):
    """Configuration of a single slot holding the newest value with a version.

    A new reader first receives the current value once (if there is one); afterwards each
    receive yields the newest value it has not seen, intermediate values collapse. Never
    lags. ``peek()`` returns the current value without consuming it.
    """

    __slots__ = ()
    kind = "single_latest"

    def _create(self, key: str) -> "LatestBuffer[Any]":
        return LatestBuffer(key)


class Mailbox(_SingleSlotCfg):
    """Configuration of a single slot shared by all readers (latest command wins).

    ``produce`` overwrites an unread value (counted as a drop); a receive takes the value,
    so with several readers each value goes to exactly one of them (competing consumers).
    A value pending when a reader subscribes is seen by that reader. ``peek()`` does not
    consume.
    """

    __slots__ = ()
    kind = "mailbox"

    def _create(self, key: str) -> "MailboxBuffer[Any]":
        return MailboxBuffer(key)


class BufferCfg:
    """Namespace of buffer configurations: ``SpmcRing(capacity=N)``, ``SingleLatest()``, ``Mailbox()``."""

    SpmcRing = SpmcRing
    SingleLatest = SingleLatest
    Mailbox = Mailbox


# ---------------------------------------------------------------- statistics


class BufferStatistics(Statistics):
    """A snapshot of one buffer's counters.

    Attributes:
        kind: ``"spmc_ring"``, ``"single_latest"`` or ``"mailbox"``.
        capacity: slots the buffer holds (1 for single-slot kinds).
        produced: values produced since creation (or the last reset).
        delivered: values handed to readers, summed over readers.
        dropped: ring: values evicted before a reader saw them, summed per reader;
            mailbox: values overwritten before anyone took them; single-latest: 0.
        occupancy: values currently held.
        readers: readers currently subscribed.
    """

    __slots__ = ("kind", "capacity", "produced", "delivered", "dropped", "occupancy", "readers")  # noqa: RUF023 - as_dict order

    if TYPE_CHECKING:
        kind: str
        capacity: int
        produced: int
        delivered: int
        dropped: int
        occupancy: int
        readers: int

    def __init__(
        self,
        kind: str,
        capacity: int,
        produced: int,
        delivered: int,
        dropped: int,
        occupancy: int,
        readers: int,
    ) -> None:
        self._init(
            {
                "kind": kind,
                "capacity": capacity,
                "produced": produced,
                "delivered": delivered,
                "dropped": dropped,
                "occupancy": occupancy,
                "readers": readers,
            }
        )


# ---------------------------------------------------------------- buffers


class BufferListener:
    """A change listener registered with :meth:`Buffer.add_listener`.

    Opaque handle: pass it to :meth:`Buffer.remove_listener` to stop the calls.
    :attr:`active` tells whether it is still called.
    """

    __slots__ = ("_active", "_buf", "_callback")

    def __init__(self, buf: "Buffer[Any]", callback: "Callable[[], object]") -> None:
        self._buf = buf
        self._callback = callback
        self._active = True

    @property
    def active(self) -> bool:
        """Whether the callback is still called: ``False`` once removed or after the close call."""
        return self._active

    def wake(self) -> None:
        """Internal: the buffer's wake-up (waiter protocol); re-arm, then call the callback."""
        # Called by Buffer._wake with this listener already taken out of the waiter list.
        if not self._active:
            return
        buf = self._buf
        if buf._closed:
            self._active = False  # the close call is the last one
        else:
            buf._waiters.append(self)  # re-arm for the next produce
        try:
            self._callback()
        except Exception:  # never let a listener break produce() or other wake-ups
            from .._compat import get_logger

            log: Any = get_logger("aimdb")
            log.exception("listener %r of buffer %r failed", self._callback, buf.key)

    def __repr__(self) -> str:
        return (
            "<BufferListener "
            + repr(self._buf.key)
            + " "
            + repr(self._callback)
            + ("" if self._active else " inactive")
            + ">"
        )


class Buffer(Generic[T]):
    """Common base of the three buffers; see the kind-specific classes for semantics."""

    __slots__ = ("_closed", "_delivered", "_dropped", "_produced", "_readers", "_rt", "_waiters", "key")
    kind = ""

    def __init__(self, key: str) -> None:
        self.key = key
        self._waiters: list[Any] = []
        self._closed = False
        self._produced = 0
        self._delivered = 0
        self._dropped = 0
        self._readers = 0
        self._rt: Any = None

    # The runtime is bound by the database at start; a buffer used before that (or
    # outside a database) finds the running backend on its first wait.
    def _new_waiter(self) -> "Any":
        rt = self._rt
        if rt is None:
            rt = self._rt = _current_backend()
        return rt.new_waiter()

    def _wake(self) -> None:
        ws = self._waiters
        if ws:
            self._waiters = []
            for w in ws:
                w.wake()

    async def _wait(self) -> None:
        w = self._new_waiter()
        self._waiters.append(w)
        try:
            await w.wait()
        except BaseException:
            try:
                self._waiters.remove(w)
            except ValueError:
                pass
            raise

    @property
    def closed(self) -> bool:
        """Whether the buffer was closed (its database stopped)."""
        return self._closed

    def close(self) -> None:
        """Close the buffer: readers drain what is pending, then get ``BufferClosed``."""
        self._closed = True
        self._wake()

    def produce(self, value: T) -> None:  # pragma: no cover - overridden
        """Store ``value`` and wake waiting readers."""
        raise NotImplementedError

    def subscribe(self) -> "Reader[T]":  # pragma: no cover - overridden
        """Return a new reader."""
        raise NotImplementedError

    def peek(self) -> "T | None":
        """Return the current value without consuming it (``None`` for rings or when empty)."""
        return None

    def latest(self) -> T:  # pragma: no cover - overridden
        """Return the newest value the buffer still holds, without consuming anything.

        * ring: the value produced last (whether or not any reader has received it);
        * single-latest: the current value;
        * mailbox: the pending value nobody has taken yet (it stays pending).

        Unlike :meth:`peek` this works for rings too, and a held ``None`` value is told
        apart from no value. It moves no reader, counts no delivery and works on a closed
        buffer too (closing keeps the values held).

        Raises:
            BufferEmpty: nothing is held: nothing produced yet, or (mailbox) the value was
                taken.
        """
        raise NotImplementedError

    def add_listener(self, callback: "Callable[[], object]") -> BufferListener:
        """Call ``callback()`` after every future ``produce`` and once when the buffer closes.

        The call is synchronous, on the database's event loop, inside ``produce`` (after
        the value is stored) or ``close``; the callback must be quick and must not block.
        It gets no arguments: read the buffer (e.g. :meth:`latest`, or a reader's
        ``try_recv``) to see what changed. Several listeners are called in no specified
        order. An exception from the callback is logged on the ``aimdb`` logger and
        swallowed, so it never reaches the producer or stops other wake-ups; the listener
        stays registered. The close call is the last one. A callback should not produce
        into the same buffer (it would be called again from inside itself).

        ``produce`` costs nothing extra while no listener is registered.

        Args:
            callback: called with no arguments; its return value is ignored.

        Returns:
            a handle for :meth:`remove_listener`.

        Raises:
            BufferClosed: the buffer is already closed (nothing would ever call it).
        """
        if self._closed:
            raise BufferClosed(self.key)
        listener = BufferListener(self, callback)
        self._waiters.append(listener)
        return listener

    def remove_listener(self, listener: BufferListener) -> None:
        """Stop calling ``listener``'s callback, from now on (also from inside a callback).

        Idempotent: removing a listener that was already removed, or whose close call
        happened, does nothing.

        Raises:
            ValueError: ``listener`` was registered with another buffer.
        """
        if listener._buf is not self:
            raise ValueError(
                "listener belongs to buffer " + repr(listener._buf.key) + ", not " + repr(self.key)
            )
        listener._active = False
        try:
            self._waiters.remove(listener)
        except ValueError:
            pass

    async def wait_changed(self) -> None:
        """Wait until the buffer changes: the next ``produce`` or ``close``.

        The wait is registered before the coroutine first suspends, so in
        ``check(); await buffer.wait_changed()`` a value produced after the check always
        ends the wait. Nothing is consumed and no reader is needed; several tasks may wait
        at once and one produce wakes them all. A cancelled wait leaves nothing behind.
        On a closed buffer it returns at once, every time: a loop around it should stop
        when :attr:`closed` is true.
        """
        if self._closed:
            return
        await self._wait()

    def watch(self) -> "BufferWatcher[T]":
        """Return a watcher: the newest value each time the buffer changes, nothing consumed.

        For outer consumers that must not take values from the record's readers (a
        mailbox's commands, a remote ``record.get``): see :class:`BufferWatcher`. The
        watcher sees changes made after it was created; :meth:`latest` gives the value
        held now. It registers nothing, so it needs no closing.
        """
        return BufferWatcher(self)

    def mirror(self, limit: "int | None" = None) -> "BufferMirror[T]":
        """Subscribe a reader and return a bounded mirror of it; see :class:`BufferMirror`.

        Args:
            limit: values the mirror holds at most (ring only; default: the ring's
                capacity). A single-latest mirror holds at most one value, a mailbox
                mirror at most the ``demand`` passed to ``fill``.

        Raises:
            BufferClosed: the buffer is already closed.
            ValueError: ``limit`` is not an int >= 1.
        """
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError("limit must be an int >= 1, got " + repr(limit))
        if self._closed:
            raise BufferClosed(self.key)
        return BufferMirror(self.subscribe(), limit)

    def _occupancy(self) -> int:  # pragma: no cover - overridden
        return 0

    def _sequence(self) -> int:  # pragma: no cover - overridden
        # How many values were ever produced (never reset): what a watcher compares.
        return 0

    def _capacity(self) -> int:
        return 1

    def statistics(self) -> BufferStatistics:
        """Return a snapshot of this buffer's counters."""
        return BufferStatistics(
            self.kind,
            self._capacity(),
            self._produced,
            self._delivered_now(),
            self._dropped_now(),
            self._occupancy(),
            self._readers,
        )

    def reset_statistics(self) -> None:
        """Zero produced, delivered and dropped counters."""
        self._produced = 0
        self._delivered = self._delivered - self._delivered_now()
        self._dropped = self._dropped - self._dropped_now()

    def _delivered_now(self) -> int:
        return self._delivered

    def _dropped_now(self) -> int:
        return self._dropped

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            "<"
            + type(self).__name__
            + " "
            + repr(self.key)
            + " "
            + str(s.occupancy)
            + "/"
            + str(s.capacity)
            + " readers="
            + str(s.readers)
            + (" closed" if self._closed else "")
            + ">"
        )


if TYPE_CHECKING:
    _Buffer = Buffer
else:
    _Buffer = subscriptable(Buffer)  # MicroPython cannot subscript classes


class RingBuffer(_Buffer[T]):
    """Single-producer, multi-consumer ring; semantics as in :class:`SpmcRing`."""

    __slots__ = ("_cap", "_head", "_owing", "_ring", "_tracked")
    kind = "spmc_ring"

    def __init__(self, key: str, capacity: int) -> None:
        Buffer.__init__(self, key)
        self._cap = capacity
        self._ring: list[Any] = [None] * capacity
        self._head = 0  # sequence number of the next value
        # Readers inside an ``async for`` slice (CPython): ``_delivered`` counts each slice
        # when it is taken, so the values of a slice not yet handed out are subtracted here.
        self._owing: list[RingReader[Any]] = []
        # Long-lived readers of the database (taps, derivations, links): the values they
        # have lost without knowing yet count in ``dropped`` at once (see _dropped_now).
        self._tracked: list[RingReader[Any]] = []

    def _track(self, reader: "RingReader[Any]") -> None:
        self._tracked.append(reader)

    def _dropped_now(self) -> int:
        d = self._dropped
        for r in self._tracked:
            if not r._closed:
                d += r.unseen_lag
        return d

    def _delivered_now(self) -> int:
        d = self._delivered
        for r in self._owing:
            d -= r._owe_end - r._cursor
        return d

    def produce(self, value: T) -> None:
        """Append ``value``, overwriting the oldest one when full; never blocks."""
        if self._closed:
            raise BufferClosed(self.key)
        h = self._head
        self._ring[h % self._cap] = value
        self._head = h + 1
        self._produced += 1
        if self._waiters:
            self._wake()

    def subscribe(self) -> "RingReader[T]":
        """Return a reader that sees values produced from now on."""
        self._readers += 1
        return RingReader(self)

    def latest(self) -> T:
        """Return the value produced last, without moving any reader.

        Raises:
            BufferEmpty: nothing was produced yet.
        """
        h = self._head
        if h:
            return self._ring[(h - 1) % self._cap]  # type: ignore[no-any-return]
        raise BufferEmpty(self.key)

    def _occupancy(self) -> int:
        return min(self._head, self._cap)

    def _sequence(self) -> int:
        return self._head

    def _capacity(self) -> int:
        return self._cap


class LatestBuffer(_Buffer[T]):
    """One slot with a version; semantics as in :class:`SingleLatest`."""

    __slots__ = ("_value", "_version")
    kind = "single_latest"

    def __init__(self, key: str) -> None:
        Buffer.__init__(self, key)
        self._value: Any = None
        self._version = 0

    def produce(self, value: T) -> None:
        """Replace the current value; never blocks."""
        if self._closed:
            raise BufferClosed(self.key)
        self._value = value
        self._version += 1
        self._produced += 1
        if self._waiters:
            self._wake()

    def subscribe(self) -> "LatestReader[T]":
        """Return a reader that first receives the current value (if any)."""
        self._readers += 1
        return LatestReader(self)

    def peek(self) -> "T | None":
        """Return the current value, or ``None`` before the first produce."""
        return self._value  # type: ignore[no-any-return]

    def latest(self) -> T:
        """Return the current value without consuming it.

        Raises:
            BufferEmpty: nothing was produced yet.
        """
        if self._version:
            return self._value  # type: ignore[no-any-return]
        raise BufferEmpty(self.key)

    def _occupancy(self) -> int:
        return 1 if self._version else 0

    def _sequence(self) -> int:
        return self._version


class MailboxBuffer(_Buffer[T]):
    """One slot shared by all readers; semantics as in :class:`Mailbox`."""

    __slots__ = ("_full", "_value", "_version")
    kind = "mailbox"

    def __init__(self, key: str) -> None:
        Buffer.__init__(self, key)
        self._value: Any = None
        self._full = False
        self._version = 0

    def produce(self, value: T) -> None:
        """Put ``value`` in the slot, overwriting (and counting) an unread one."""
        if self._closed:
            raise BufferClosed(self.key)
        if self._full:
            self._dropped += 1
        self._value = value
        self._full = True
        self._version += 1
        self._produced += 1
        if self._waiters:
            self._wake()

    def subscribe(self) -> "MailboxReader[T]":
        """Return a reader competing with the others for each value."""
        self._readers += 1
        return MailboxReader(self)

    def peek(self) -> "T | None":
        """Return the pending value without taking it, or ``None``."""
        return self._value if self._full else None

    def latest(self) -> T:
        """Return the pending value without taking it (it stays pending for the readers).

        Raises:
            BufferEmpty: no value is pending (nothing produced yet, or it was taken).
        """
        if self._full:
            return self._value  # type: ignore[no-any-return]
        raise BufferEmpty(self.key)

    def _take(self) -> "Any":
        v = self._value
        self._value = None
        self._full = False
        self._delivered += 1
        return v

    def _occupancy(self) -> int:
        return 1 if self._full else 0

    def _sequence(self) -> int:
        return self._version


# ---------------------------------------------------------------- readers


class Reader(Generic[T_co]):
    """A subscription to one buffer; obtained from ``consumer.subscribe()``.

    ``await recv()`` returns the next value for this reader, ``try_recv()`` returns it or
    raises :class:`~aimdb.BufferEmpty`, ``recv_batch()``/``try_recv_batch()`` return every
    pending value at once, and ``async for value in reader`` yields values, skipping over
    lag (counted in :attr:`lagged`) and ending cleanly when the database stops. After the
    buffer closed, receives raise :class:`~aimdb.BufferClosed` once nothing is pending.
    A reader cancelled while waiting loses nothing.
    """

    __slots__ = ("_buf", "_closed", "_lagged", "_taken")

    def __init__(self, buf: "Buffer[Any]") -> None:
        self._buf = buf
        self._lagged = 0
        self._closed = False
        self._taken = 0  # single-slot kinds count their own deliveries

    @property
    def delivered(self) -> int:
        """Values this reader has received so far."""
        return self._taken

    @property
    def key(self) -> str:
        """The record key this reader belongs to."""
        return self._buf.key

    @property
    def lagged(self) -> int:
        """Values this reader lost to ring overflow (reported or skipped), in total."""
        return self._lagged

    def pending(self) -> int:  # pragma: no cover - overridden
        """Number of values a receive would return without waiting (lag excluded)."""
        raise NotImplementedError

    def try_recv(self) -> T_co:  # pragma: no cover - overridden
        """Return the next value now; raise ``BufferEmpty``, ``BufferLagged`` or ``BufferClosed``."""
        raise NotImplementedError

    def try_recv_batch(self, limit: "int | None" = None) -> "list[T_co]":
        """Return every pending value (at most ``limit``) now, possibly an empty list.

        Raises ``BufferLagged`` (once) like ``try_recv``, and ``BufferClosed`` when the
        buffer is closed and nothing is pending. This implementation serves the
        single-slot kinds, which hold at most one value for a reader (``[value]`` or
        ``[]``); ring readers override it.
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        try:
            return [self.try_recv()]
        except BufferEmpty:
            return []

    def peek(self) -> "T_co | None":
        """Return the buffer's current value without consuming (``None`` for rings)."""
        return self._buf.peek()

    async def recv(self) -> T_co:
        """Wait for and return the next value.

        Raises:
            BufferLagged: once, when a ring reader fell more than capacity behind.
            BufferClosed: when the database stopped and nothing is pending.
        """
        buf = self._buf
        while True:
            try:
                return self.try_recv()
            except BufferEmpty:
                pass
            await buf._wait()

    async def recv_batch(self, limit: "int | None" = None) -> "list[T_co]":
        """Wait until at least one value is pending, then return all of them (at most ``limit``).

        Raises:
            BufferLagged: once, when a ring reader fell more than capacity behind.
            BufferClosed: when the database stopped and nothing is pending.
        """
        buf = self._buf
        while True:
            items = self.try_recv_batch(limit)
            if items:
                return items
            await buf._wait()

    def __aiter__(self) -> "Reader[T_co]":
        return self

    async def __anext__(self) -> T_co:
        buf = self._buf
        while True:
            try:
                return self.try_recv()
            except BufferEmpty:
                pass
            except BufferLagged as exc:
                _log_lag(exc)
                continue
            except BufferClosed:
                raise StopAsyncIteration from None
            await buf._wait()

    def close(self) -> None:
        """Unsubscribe; the buffer no longer counts this reader. Idempotent."""
        if not self._closed:
            self._closed = True
            self._buf._readers -= 1

    def __enter__(self) -> "Reader[T_co]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            "<"
            + type(self).__name__
            + " "
            + repr(self._buf.key)
            + " pending="
            + str(self.pending())
            + " lagged="
            + str(self._lagged)
            + ">"
        )


if TYPE_CHECKING:
    _Reader = Reader
else:
    _Reader = subscriptable(Reader)


def _log_lag(exc: BufferLagged) -> None:
    from .._compat import get_logger

    log: Any = get_logger("aimdb")
    log.debug("reader of %r skipped %d lagged values", exc.key, exc.missed)


class RingReader(_Reader[T_co]):
    """Reader of a :class:`RingBuffer`: own cursor, exact lag reporting."""

    __slots__ = ("_cursor", "_owe_end", "_owner", "_start")

    def __init__(self, buf: "RingBuffer[Any]") -> None:
        Reader.__init__(self, buf)
        self._cursor = self._start = buf._head
        # Set while an ``async for`` slice is being handed out (see _ring_iter.py): the
        # iteration that owns it, and the sequence number the slice ends at.
        self._owner: Any = None
        self._owe_end = 0

    def _settle(self) -> None:
        # Leave the slice of an ``async for`` that was left early: values it counted but
        # never handed out are not delivered (they stay pending for this reader).
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        b._delivered -= self._owe_end - self._cursor
        self._owner = None
        self._owe_end = 0
        b._owing.remove(self)

    @property
    def delivered(self) -> int:
        """Values this reader has received so far."""
        return self._cursor - self._start - self._lagged

    def pending(self) -> int:
        """Number of values held for this reader (at most the capacity)."""
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        return min(b._head - self._cursor, b._cap)

    @property
    def unseen_lag(self) -> int:
        """Values already overwritten that this reader has not received and not yet been told about.

        They are lost for it: its next receive raises ``BufferLagged`` for them (and counts
        them in :attr:`lagged`). Until then they are counted here, so statistics show a
        reader that stopped reading as lagging at once.
        """
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        return max(0, b._head - self._cursor - b._cap)

    def report_unseen_lag(self) -> int:
        """Count :attr:`unseen_lag` as this reader's lag now (no ``BufferLagged`` follows for it).

        Moves the cursor to the oldest value still held, adds the values overwritten before
        this reader received them to :attr:`lagged` and to the buffer's ``dropped``; returns
        how many. For code that gives up a reader (a link's pump that ends) and accounts for
        its loss itself.
        """
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        n = self.unseen_lag
        if n:
            if self._owner is not None:
                self._settle()
            self._lag(b, b._head)
        return n

    def report_lag(self, n: int) -> None:
        """Count ``n`` values this reader already received as lost to lag after all.

        For code that forwards a reader's values into a bounded queue of its own and
        evicts the oldest ones when that queue overflows (as :class:`aimdb.sync.SyncConsumer`
        does): the evicted values then count exactly like ring lag. ``n`` is added to
        :attr:`lagged` and to the buffer's ``dropped`` statistic and taken off
        ``delivered`` (the buffer's and this reader's). Only the counters change: the
        cursor stays, and no ``BufferLagged`` is raised for these values (telling the
        user is up to the caller).

        Raises:
            ValueError: ``n`` is not an int between 0 and :attr:`delivered`.
        """
        if type(n) is not int or n < 0 or n > self.delivered:
            raise ValueError("n must be an int from 0 to " + str(self.delivered) + ", got " + repr(n))
        if self._owner is not None:
            self._settle()
        b = self._buf
        self._lagged += n
        b._dropped += n
        b._delivered -= n

    def close(self) -> None:
        """Unsubscribe; the buffer no longer counts this reader. Idempotent."""
        if self._owner is not None:
            self._settle()
        Reader.close(self)

    def _lag(self, b: "RingBuffer[Any]", h: int) -> BufferLagged:
        oldest = h - b._cap
        missed = oldest - self._cursor
        self._cursor = oldest
        self._lagged += missed
        b._dropped += missed
        return BufferLagged(missed, b.key)

    def try_recv(self) -> T_co:
        """Return the next value now; raise ``BufferEmpty``, ``BufferLagged`` or ``BufferClosed``."""
        if self._owner is not None:
            self._settle()
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        c = self._cursor
        h = b._head
        if c < h:
            cap = b._cap
            if h - c <= cap:
                self._cursor = c + 1
                b._delivered += 1
                return b._ring[c % cap]  # type: ignore[no-any-return]
            raise self._lag(b, h)
        if b._closed:
            raise BufferClosed(b.key)
        raise BufferEmpty(b.key)

    def try_recv_batch(self, limit: "int | None" = None) -> "list[T_co]":
        """Return every pending value (at most ``limit``) in order; ``[]`` when none."""
        if self._owner is not None:
            self._settle()
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        c = self._cursor
        h = b._head
        n = h - c
        if n <= 0:
            if b._closed:
                raise BufferClosed(b.key)
            return []
        cap = b._cap
        if n > cap:
            raise self._lag(b, h)
        if limit is not None and n > limit:
            if limit < 1:
                raise ValueError("limit must be at least 1")
            n = limit
        start = c % cap
        end = start + n
        ring = b._ring
        out = ring[start:end] if end <= cap else ring[start:] + ring[: end - cap]
        self._cursor = c + n
        b._delivered += n
        return out

    def __aiter__(self) -> "Any":
        # On asyncio an async generator over slices is ~1.5x faster than a coroutine per
        # value. trio warns about abandoned async generators, so it keeps ``__anext__``.
        if _ring_iter is not None:
            rt = self._buf._rt
            if rt is None:
                rt = self._buf._rt = _current_backend()
            if rt.name == "asyncio":
                return _ring_iter(self)
        return self

    async def __anext__(self) -> T_co:
        # Fast path inlined: a pending value is returned without a suspension.
        if self._owner is not None:
            self._settle()
        b: RingBuffer[Any] = self._buf  # type: ignore[assignment]
        while True:
            c = self._cursor
            h = b._head
            if c < h:
                cap = b._cap
                if h - c <= cap:
                    self._cursor = c + 1
                    b._delivered += 1
                    return b._ring[c % cap]  # type: ignore[no-any-return]
                _log_lag(self._lag(b, h))
                continue
            if b._closed:
                raise StopAsyncIteration
            await b._wait()


class LatestReader(_Reader[T_co]):
    """Reader of a :class:`LatestBuffer`: newest unseen value, never lags."""

    __slots__ = ("_seen",)

    def __init__(self, buf: "LatestBuffer[Any]") -> None:
        Reader.__init__(self, buf)
        self._seen = 0

    def pending(self) -> int:
        """1 when a value this reader has not seen is held, else 0."""
        b: LatestBuffer[Any] = self._buf  # type: ignore[assignment]
        return 1 if b._version != self._seen else 0

    def try_recv(self) -> T_co:
        """Return the newest unseen value now; raise ``BufferEmpty`` or ``BufferClosed``."""
        b: LatestBuffer[Any] = self._buf  # type: ignore[assignment]
        v = b._version
        if v != self._seen:
            self._seen = v
            self._taken += 1
            b._delivered += 1
            return b._value  # type: ignore[no-any-return]
        if b._closed:
            raise BufferClosed(b.key)
        raise BufferEmpty(b.key)


class MailboxReader(_Reader[T_co]):
    """Reader of a :class:`MailboxBuffer`: takes the shared slot's value."""

    __slots__ = ()

    def pending(self) -> int:
        """1 when the shared slot holds a value, else 0."""
        b: MailboxBuffer[Any] = self._buf  # type: ignore[assignment]
        return 1 if b._full else 0

    def try_recv(self) -> T_co:
        """Take the pending value now; raise ``BufferEmpty`` or ``BufferClosed``."""
        b: MailboxBuffer[Any] = self._buf  # type: ignore[assignment]
        if b._full:
            self._taken += 1
            return b._take()  # type: ignore[no-any-return]
        if b._closed:
            raise BufferClosed(b.key)
        raise BufferEmpty(b.key)


# ---------------------------------------------------------------- outer consumers


class BufferWatcher(_Reader[T_co]):
    """A non-consuming view of one buffer; obtained from :meth:`Buffer.watch`.

    Each receive returns the buffer's newest value if it changed since this watcher last
    returned one: values produced in between collapse (counted in :attr:`skipped`), and
    nothing is taken from the buffer's readers, so a mailbox's commands still reach its
    consumers. The buffer counts no delivery and no reader for a watcher.

    ``try_recv()`` returns such a value or raises :class:`~aimdb.BufferEmpty` (no change,
    or the only change was a mailbox value a reader took before the watcher looked) and,
    once the buffer is closed and nothing new is left, :class:`~aimdb.BufferClosed`.
    ``await recv()`` waits for a change; ``async for`` yields values until the buffer
    closes. A watcher never lags and registers nothing with the buffer: it compares a
    change counter, so creating and dropping watchers costs ``produce`` nothing. Like
    every reader it is loop-affine.
    """

    __slots__ = ("_seen", "_skipped")

    def __init__(self, buf: "Buffer[Any]") -> None:
        Reader.__init__(self, buf)  # not counted in the buffer's readers
        self._seen = buf._sequence()
        self._skipped = 0

    @property
    def skipped(self) -> int:
        """Values produced since this watcher was created that it never returned."""
        return self._skipped

    def pending(self) -> int:
        """1 when the buffer changed since this watcher last looked, else 0."""
        return 1 if self._buf._sequence() != self._seen else 0

    def try_recv(self) -> T_co:
        """Return the newest value if the buffer changed since the last one returned.

        Raises:
            BufferEmpty: no change, or the changed value is no longer held (a mailbox
                reader took it); the change is marked seen either way.
            BufferClosed: the buffer is closed and did not change since the last look.
        """
        b = self._buf
        seq = b._sequence()
        seen = self._seen
        if seq != seen:
            self._seen = seq
            try:
                v = b.latest()
            except BufferEmpty:
                self._skipped += seq - seen
                raise
            self._skipped += seq - seen - 1
            self._taken += 1
            return v  # type: ignore[no-any-return]
        if b._closed:
            raise BufferClosed(b.key)
        raise BufferEmpty(b.key)

    def peek(self) -> "T_co | None":
        """Return the buffer's current value like :meth:`Buffer.peek`; nothing is marked seen."""
        return self._buf.peek()

    def close(self) -> None:
        """Do nothing: a watcher holds no subscription (kept so it works as a reader)."""


_NO_DEFAULT: "Any" = object()


class BufferMirror(Generic[T_co]):
    """A bounded copy of one reader's values, to hand them to another thread or task.

    Obtained from :meth:`Buffer.mirror`, which subscribes the reader. :meth:`fill` runs on
    the database's event loop (typically from a buffer listener) and moves what the
    reader may receive into the mirror; :meth:`take`, :meth:`take_newest` and
    :meth:`__len__` may run anywhere. The mirror itself does no locking: a caller using it
    from several threads serialises every call with its own lock (as
    :mod:`aimdb.sync` does).

    What ``fill`` moves follows the buffer kind, so callers need no kind-specific rules:

    * ring: every value, in order. When more than ``limit`` values are held, the oldest
      are evicted and count exactly like ring lag: in :attr:`lagged`, in the reader's
      ``lagged`` and in the buffer's ``dropped`` statistic (and no longer in
      ``delivered``). Lag of the reader itself is counted the same way. The next
      :meth:`take` raises :class:`~aimdb.BufferLagged` once with the exact number lost.
    * single-latest: the newest value not yet seen replaces the held one (intermediate
      values collapse); first the current value, if there is one.
    * mailbox: a value is taken from the shared slot only while fewer values are held
      than ``demand`` (the number of callers waiting for one), so competing consumers
      stay fair and nobody's command is taken on speculation.

    Once the buffer is closed and everything the reader could still receive is in the
    mirror, :attr:`exhausted` is true and :meth:`take` raises
    :class:`~aimdb.BufferClosed` after the held values.
    """

    __slots__ = ("_buf", "_head", "_items", "_lagged", "_limit", "_missed", "_reader", "_ring")

    def __init__(self, reader: "Reader[Any]", limit: "int | None" = None) -> None:
        buf = reader._buf
        self._reader = reader
        self._buf = buf
        self._ring = buf.kind == "spmc_ring"
        self._limit = (limit or buf._capacity()) if self._ring else 1
        self._items: list[Any] = []
        self._head = 0  # index of the oldest held value in _items
        self._missed = 0  # lost values not yet reported by take()
        self._lagged = 0

    @property
    def key(self) -> str:
        """The record key of the mirrored buffer."""
        return self._buf.key

    @property
    def limit(self) -> int:
        """Values ``fill`` keeps: at most this many (ring), one (single-latest), ``demand`` (mailbox)."""
        return self._limit

    @property
    def lagged(self) -> int:
        """Values lost because the mirror or its reader fell behind a ring, in total."""
        return self._lagged

    @property
    def on_demand(self) -> bool:
        """Whether :meth:`fill` takes values only for ``demand`` (a mailbox's shared slot).

        A caller that wants a value from such a mirror must call ``fill`` with a demand
        on the loop (a listener call only fills what waiting callers asked for).
        """
        return self._buf.kind == "mailbox"

    @property
    def exhausted(self) -> bool:
        """Whether the buffer is closed and its reader has nothing left for :meth:`fill`."""
        return self._buf._closed and self._reader.pending() == 0

    def __len__(self) -> int:
        """Values held and not yet taken."""
        return len(self._items) - self._head

    def fill(self, demand: int = 0) -> int:
        """Move what the reader may receive into the mirror; on the event loop only.

        Args:
            demand: mailbox only: take the slot's value only while fewer values are
                held than this (the callers waiting for a value). Ignored otherwise.

        Returns:
            the number of values added.
        """
        reader = self._reader
        if not self._ring:
            return self._fill_slot(demand)
        try:
            got = reader.try_recv_batch()
        except BufferLagged as exc:  # the reader now stands at the oldest held value
            self._missed += exc.missed
            self._lagged += exc.missed
            got = reader.try_recv_batch()
        except BufferClosed:
            return 0
        n = len(got)
        if not n:
            return 0
        items = self._items
        h = self._head
        if h == len(items):  # everything held was taken: start afresh
            items = self._items = got
            h = self._head = 0
        else:
            items.extend(got)
        over = len(items) - h - self._limit
        if over > 0:
            h = self._head = h + over
            self._missed += over
            self._lagged += over
            reader.report_lag(over)  # type: ignore[attr-defined]
        if h >= 64 and h * 2 >= len(items):
            self._items = items[h:]
            self._head = 0
        return n

    def _fill_slot(self, demand: int) -> int:
        mailbox = self._buf.kind == "mailbox"
        held = len(self._items) - self._head
        if mailbox and held >= demand:
            return 0
        try:
            v = self._reader.try_recv()
        except (BufferEmpty, BufferClosed):
            return 0
        if held and not mailbox:  # single-latest: the newest replaces the held value
            self._items = [v]
            self._head = 0
        else:
            self._items.append(v)
        return 1

    def take(self, default: "Any" = _NO_DEFAULT) -> T_co:
        """Return the oldest held value and forget it.

        Args:
            default: returned instead of raising ``BufferEmpty``/``BufferClosed`` when
                nothing is held (check :attr:`exhausted` to tell the two apart); saves
                the exception on a hot path.

        Raises:
            BufferLagged: once, before the values after a loss (``missed`` is exact).
            BufferEmpty: nothing is held (the buffer may still get values) and no
                ``default`` was given.
            BufferClosed: nothing is held, :attr:`exhausted` is true and no ``default``
                was given.
        """
        items = self._items
        h = self._head
        if h < len(items) and not self._missed:  # the hot path
            v = items[h]
            items[h] = None  # no reference kept; fill() drops the consumed prefix
            self._head = h + 1
            return v  # type: ignore[no-any-return]
        m = self._missed
        if m:
            self._missed = 0
            raise BufferLagged(m, self._buf.key)
        if default is not _NO_DEFAULT:
            return default  # type: ignore[no-any-return]
        if self.exhausted:
            raise BufferClosed(self._buf.key)
        raise BufferEmpty(self._buf.key)

    def take_newest(self, default: "Any" = _NO_DEFAULT) -> T_co:
        """Return the newest held value and forget every held one; lag is not raised.

        Older held values are skipped (they count as delivered: they reached the mirror).
        A loss not yet reported by :meth:`take` is forgotten (it stays in :attr:`lagged`).

        Args:
            default: returned instead of raising when nothing is held, as for :meth:`take`.

        Raises:
            BufferEmpty: nothing is held and no ``default`` was given.
            BufferClosed: nothing is held, :attr:`exhausted` is true and no ``default``
                was given.
        """
        items = self._items
        if self._head < len(items):
            v = items[-1]
            self._items = []
            self._head = 0
            self._missed = 0
            return v  # type: ignore[no-any-return]
        if default is not _NO_DEFAULT:
            return default  # type: ignore[no-any-return]
        if self.exhausted:
            raise BufferClosed(self._buf.key)
        raise BufferEmpty(self._buf.key)

    def close(self) -> None:
        """Unsubscribe the reader and drop the held values (on the event loop). Idempotent."""
        self._reader.close()
        self._items = []
        self._head = 0

    def __repr__(self) -> str:
        return (
            "<BufferMirror "
            + repr(self._buf.key)
            + " held="
            + str(len(self))
            + "/"
            + str(self._limit)
            + " lagged="
            + str(self._lagged)
            + ">"
        )


try:  # CPython: async-generator iteration over slices (MicroPython has no async generators)
    from ._ring_iter import ring_iter as _ring_iter
except (ImportError, SyntaxError):  # pragma: no cover - MicroPython
    _ring_iter = None  # type: ignore[assignment]
