"""Buffer and runtime conformance suites (MicroPython-safe; no pytest needed).

Each ``check_*`` coroutine runs a list of named checks against a buffer factory or a
runtime backend and raises ``AssertionError`` naming the first check that failed. The
same functions run on asyncio, uvloop, trio and MicroPython, and third-party buffers or
backends can run them too.
"""

from .._compat import TYPE_CHECKING
from .._errors import BufferClosed, BufferEmpty, BufferLagged

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class _V:
    """A small value with identity, so checks can tell values apart."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return "V(" + str(self.n) + ")"


def _eq(actual: "Any", expected: "Any", what: str) -> None:
    if actual != expected:
        raise AssertionError(what + ": expected " + repr(expected) + ", got " + repr(actual))


def _raises(exc_type: "Any", fn: "Callable[[], Any]", what: str) -> "Any":
    try:
        result = fn()
    except exc_type as exc:
        return exc
    raise AssertionError(what + ": expected " + exc_type.__name__ + ", got value " + repr(result))


async def _settle(rt: "Any", rounds: int = 5) -> None:
    for _ in range(rounds):
        await rt.sleep(0)


async def _spawn_recv(rt: "Any", reader: "Any", out: "list[Any]") -> "tuple[Any, Any]":
    group = rt.open_task_group()
    await group.start()

    async def recv_one() -> None:
        try:
            out.append(await reader.recv())
        except Exception as exc:  # cancellation (a BaseException) propagates
            out.append(exc)

    h = group.spawn("conformance.recv", recv_one)
    await _settle(rt)
    return group, h


async def _common_wait_checks(rt: "Any", make: "Callable[[], Any]") -> None:
    # a waiting receive wakes on produce
    buf = make()
    buf._rt = rt
    r = buf.subscribe()
    got: list[Any] = []
    group, h = await _spawn_recv(rt, r, got)
    _eq(got, [], "wait: receive must block while nothing is pending")
    v = _V(1)
    buf.produce(v)
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq(got, [v], "wait: waiting receive returns the produced value")

    # a receive cancelled while waiting loses nothing
    buf = make()
    buf._rt = rt
    r = buf.subscribe()
    got = []
    group, h = await _spawn_recv(rt, r, got)
    h.cancel()
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    v = _V(2)
    buf.produce(v)
    _eq(r.try_recv(), v, "cancel: value produced after a cancelled wait is still delivered")
    _eq(len(buf._waiters), 0, "cancel: a cancelled wait leaves no waiter behind")

    # close: pending values first, then BufferClosed; async for ends
    buf = make()
    buf._rt = rt
    r = buf.subscribe()
    v = _V(3)
    buf.produce(v)
    buf.close()
    _eq(await r.recv(), v, "close: pending value is delivered after close")
    _raises(BufferClosed, r.try_recv, "close: try_recv after drain")
    try:
        await r.recv()
    except BufferClosed:
        pass
    else:
        raise AssertionError("close: recv after drain must raise BufferClosed")
    items = []
    r2 = buf.subscribe()
    async for x in r2:
        items.append(x)
    _raises(BufferClosed, lambda: buf.produce(_V(4)), "close: produce into a closed buffer")

    # close wakes a waiting receive with BufferClosed
    buf = make()
    buf._rt = rt
    r = buf.subscribe()
    got = []
    group, h = await _spawn_recv(rt, r, got)
    buf.close()
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    if not (len(got) == 1 and isinstance(got[0], BufferClosed)):
        raise AssertionError("close: a waiting receive must end with BufferClosed, got " + repr(got))


async def _spawn_wait_changed(rt: "Any", buf: "Any", out: "list[Any]") -> "tuple[Any, Any]":
    group = rt.open_task_group()
    await group.start()

    async def wait_one() -> None:
        await buf.wait_changed()
        out.append("changed")

    h = group.spawn("conformance.wait_changed", wait_one)
    await _settle(rt)
    return group, h


class _Quiet:
    """Silence the ``aimdb`` logger while a check provokes a logged error on purpose."""

    def __enter__(self) -> None:
        from .._compat import get_logger

        self.log: Any = get_logger("aimdb")
        self.level = self.log.level
        self.log.setLevel(100)

    def __exit__(self, *exc: object) -> None:
        self.log.setLevel(self.level)


async def _common_change_checks(rt: "Any", make: "Callable[[], Any]") -> None:
    # a listener is called once per produce, after the value is stored, until removed
    buf = make()
    seen: list[Any] = []
    lst = buf.add_listener(lambda: seen.append(buf.latest()))
    _eq(lst.active, True, "listener: active after add_listener")
    _eq(buf.statistics().readers, 0, "listener: a listener is not a reader")
    a, b, c = _V(1), _V(2), _V(3)
    buf.produce(a)
    buf.produce(b)
    _eq(seen, [a, b], "listener: called once per produce, with the value already stored")
    buf.remove_listener(lst)
    _eq(lst.active, False, "listener: inactive after remove_listener")
    buf.produce(c)
    _eq(seen, [a, b], "listener: not called after remove_listener")
    buf.remove_listener(lst)  # idempotent
    _eq(len(buf._waiters), 0, "listener: a removed listener leaves nothing behind")
    foreign = make().add_listener(lambda: None)
    _raises(ValueError, lambda: buf.remove_listener(foreign), "listener: removing another buffer's listener")

    # a failing listener is logged, never reaches the producer, and stops no other wake-up
    buf = make()
    buf._rt = rt
    r = buf.subscribe()
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("listener failure provoked by the conformance suite")

    buf.add_listener(boom)
    buf.add_listener(lambda: calls.append(2))
    got: list[Any] = []
    group, h = await _spawn_recv(rt, r, got)
    v = _V(4)
    with _Quiet():
        buf.produce(v)
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq(got, [v], "listener: a failing listener does not stop waking readers")
    _eq(sorted(calls), [1, 2], "listener: a failing listener does not stop other listeners")
    with _Quiet():
        buf.produce(_V(5))
    _eq(sorted(calls), [1, 1, 2, 2], "listener: a failing listener stays registered")

    # a listener may remove itself from inside its call
    buf = make()
    once: list[int] = []

    def self_removing() -> None:
        once.append(1)
        buf.remove_listener(me)

    me = buf.add_listener(self_removing)
    buf.produce(_V(6))
    buf.produce(_V(7))
    _eq(once, [1], "listener: removed from inside its own call")

    # close: one last call, then inactive; a closed buffer takes no listener
    buf = make()
    closes: list[bool] = []
    lst = buf.add_listener(lambda: closes.append(buf.closed))
    buf.close()
    _eq(closes, [True], "listener: called once at close, seeing the buffer closed")
    _eq(lst.active, False, "listener: inactive after the close call")
    buf.remove_listener(lst)  # still fine
    _raises(BufferClosed, lambda: buf.add_listener(lambda: None), "listener: add_listener on a closed buffer")

    # wait_changed: woken by produce, consumes nothing
    buf = make()
    buf._rt = rt
    r = buf.subscribe()
    changed: list[Any] = []
    group, h = await _spawn_wait_changed(rt, buf, changed)
    _eq(changed, [], "wait_changed: blocks until a change")
    v = _V(8)
    buf.produce(v)
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq(changed, ["changed"], "wait_changed: produce ends the wait")
    _eq(buf.latest(), v, "wait_changed: nothing consumed (latest)")
    _eq(r.try_recv(), v, "wait_changed: nothing consumed (reader)")

    # wait_changed: cancellation leaves nothing behind; close ends it; closed returns at once
    buf = make()
    buf._rt = rt
    changed = []
    group, h = await _spawn_wait_changed(rt, buf, changed)
    h.cancel()
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq((changed, len(buf._waiters)), ([], 0), "wait_changed: a cancelled wait leaves no waiter behind")
    group, h = await _spawn_wait_changed(rt, buf, changed)
    buf.close()
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq(changed, ["changed"], "wait_changed: close ends the wait")
    ok = await rt.wait_for(buf.wait_changed, 1.0)
    _eq(ok, True, "wait_changed: returns at once on a closed buffer")


async def _common_watch_checks(rt: "Any", make: "Callable[[], Any]") -> None:
    # a watcher sees changes after it was created, newest value only, consuming nothing
    buf = make()
    buf._rt = rt
    a, b, c = _V(1), _V(2), _V(3)
    buf.produce(a)
    r = buf.subscribe()
    w = buf.watch()
    _eq(buf.statistics().readers, 1, "watch: a watcher is not a reader")
    _eq(w.pending(), 0, "watch: no change since the watcher was created")
    _raises(BufferEmpty, w.try_recv, "watch: nothing before a change")
    buf.produce(b)
    buf.produce(c)
    _eq(w.pending(), 1, "watch: a change is pending")
    _eq(w.try_recv(), c, "watch: the newest value; older changes collapse")
    _eq((w.skipped, w.delivered, w.lagged), (1, 1, 0), "watch: skipped counts the collapsed value")
    _raises(BufferEmpty, w.try_recv, "watch: each change once")
    got = r.try_recv_batch()
    _eq(got[-1], c, "watch: nothing taken from the readers")
    s = buf.statistics()
    _eq((s.produced, s.delivered), (3, len(got)), "watch: a watcher counts no delivery")
    w2 = buf.watch()
    w2.close()  # nothing to unsubscribe
    _eq(buf.statistics().readers, 1, "watch: close leaves the reader count alone")

    # a waiting watcher wakes on produce; a cancelled wait leaves nothing behind
    out: list[Any] = []
    group, h = await _spawn_recv(rt, w, out)
    _eq(out, [], "watch: recv waits for a change")
    d = _V(4)
    buf.produce(d)
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq(out, [d], "watch: recv returns the changed value")
    group, h = await _spawn_recv(rt, w, out)
    h.cancel()
    await rt.wait_for(h.join, 2.0)
    await group.aclose()
    _eq(len(buf._waiters), 0, "watch: a cancelled wait leaves no waiter behind")

    # close: a last change is still returned, then BufferClosed
    e = _V(5)
    buf.produce(e)
    buf.close()
    _eq(w.try_recv(), e, "watch: a change before close is still seen")
    _raises(BufferClosed, w.try_recv, "watch: closed and nothing new")
    seen = []
    async for v in buf.watch():  # created after close: nothing, ends at once
        seen.append(v)
    _eq(seen, [], "watch: async for ends on a closed buffer")


async def check_ring_buffer(factory: "Callable[[int], Any]", runtime: "Any" = None) -> int:
    """Run the SpmcRing conformance checks; ``factory(capacity)`` returns a fresh ring buffer.

    Returns the number of checks run. Raises ``AssertionError`` on the first violation.
    """
    rt = runtime or _current()
    checks = 0

    # sees only values produced after subscribing; values kept while nobody reads
    buf = factory(4)
    before = [_V(i) for i in range(3)]
    for v in before:
        buf.produce(v)
    _eq(buf.statistics().occupancy, 3, "ring: values are kept while nobody reads")
    r = buf.subscribe()
    _raises(BufferEmpty, r.try_recv, "ring: new reader sees no earlier values")
    after = [_V(i) for i in range(3, 6)]
    for v in after:
        buf.produce(v)
    _eq([r.try_recv() for _ in range(3)], after, "ring: values in order")
    _raises(BufferEmpty, r.try_recv, "ring: empty after draining")
    _eq(buf.peek(), None, "ring: peek is None")
    checks += 1

    # exact capacity and exact lag, reported once
    for cap in (1, 3, 5, 7):
        buf = factory(cap)
        r = buf.subscribe()
        vals = [_V(i) for i in range(cap + 4)]
        for v in vals:
            buf.produce(v)
        exc = _raises(BufferLagged, r.try_recv, "ring: lag reported")
        _eq(exc.missed, 4, "ring(cap=" + str(cap) + "): exact missed count")
        _eq([r.try_recv() for _ in range(cap)], vals[4:], "ring: continues from oldest held")
        _raises(BufferEmpty, r.try_recv, "ring: lag reported only once")
        _eq(r.lagged, 4, "ring: reader counts lag")
        s = buf.statistics()
        _eq((s.capacity, s.produced, s.delivered, s.dropped), (cap, cap + 4, cap, 4), "ring: statistics")
    checks += 1

    # readers are independent; a slow reader does not affect a fast one
    buf = factory(3)
    fast = buf.subscribe()
    slow = buf.subscribe()
    vals = [_V(i) for i in range(5)]
    for v in vals:
        buf.produce(v)
        _eq(fast.try_recv(), v, "ring: fast reader keeps up")
    exc = _raises(BufferLagged, slow.try_recv, "ring: slow reader lags")
    _eq(exc.missed, 2, "ring: slow reader missed count")
    _eq(buf.statistics().readers, 2, "ring: reader count")
    slow.close()
    _eq(buf.statistics().readers, 1, "ring: close unsubscribes")
    checks += 1

    # batch reads: everything pending, in order, across the wrap-around, with limit
    buf = factory(5)
    r = buf.subscribe()
    vals = [_V(i) for i in range(8)]
    for v in vals[:3]:
        buf.produce(v)
    _eq(r.try_recv_batch(), vals[:3], "ring: batch returns all pending")
    for v in vals[3:8]:
        buf.produce(v)
    _eq(r.try_recv_batch(2), vals[3:5], "ring: batch honours limit")
    _eq(r.try_recv_batch(), vals[5:8], "ring: batch across wrap-around")
    _eq(r.try_recv_batch(), [], "ring: empty batch")
    for v in vals:
        buf.produce(v)
    _raises(BufferLagged, r.try_recv_batch, "ring: batch reports lag")
    _eq(r.try_recv_batch(), vals[3:], "ring: batch after lag")
    checks += 1

    # async iteration skips lag and counts it
    buf = factory(2)
    buf._rt = rt
    r = buf.subscribe()
    vals = [_V(i) for i in range(5)]
    for v in vals:
        buf.produce(v)
    buf.close()
    seen = []
    async for x in r:
        seen.append(x)
    _eq(seen, vals[3:], "ring: async for skips lag and ends on close")
    _eq(r.lagged, 3, "ring: async for counts skipped lag")
    checks += 1

    # latest(): the value produced last, whatever the readers did, nothing moved
    buf = factory(3)
    _raises(BufferEmpty, buf.latest, "ring: latest before the first produce")
    r = buf.subscribe()
    vals = [_V(i) for i in range(5)]
    buf.produce(vals[0])
    _eq(buf.latest(), vals[0], "ring: latest is the value produced last")
    _eq(buf.latest(), vals[0], "ring: latest twice")
    _eq(r.try_recv(), vals[0], "ring: latest moves no reader")
    _eq(buf.latest(), vals[0], "ring: latest after every reader received it")
    for v in vals[1:]:
        buf.produce(v)
    _eq(buf.latest(), vals[4], "ring: latest across the wrap-around")
    buf.produce(None)
    _eq(buf.latest(), None, "ring: a held None is a value")
    s = buf.statistics()
    _eq((s.produced, s.delivered, s.dropped), (6, 1, 0), "ring: latest counts nothing")
    buf.close()
    _eq(buf.latest(), None, "ring: latest on a closed buffer")
    checks += 1

    # report_lag(): received values counted as lost, exactly like lag
    buf = factory(8)
    r = buf.subscribe()
    for i in range(5):
        buf.produce(_V(i))
    _eq(len(r.try_recv_batch()), 5, "ring: report_lag setup")
    r.report_lag(2)
    _eq((r.lagged, r.delivered), (2, 3), "ring: report_lag moves delivered to lagged")
    s = buf.statistics()
    _eq((s.delivered, s.dropped), (3, 2), "ring: report_lag counted in the statistics")
    r.report_lag(0)
    _raises(ValueError, lambda: r.report_lag(4), "ring: report_lag beyond delivered")
    _raises(ValueError, lambda: r.report_lag(-1), "ring: report_lag negative")
    _raises(BufferEmpty, r.try_recv, "ring: report_lag raises nothing at the reader")
    checks += 1

    # mirror: every value in order, overflow beyond the limit counted as lag
    buf = factory(4)
    m = buf.mirror(limit=3)
    _eq((m.limit, m.on_demand, len(m)), (3, False, 0), "ring mirror: limit, not on demand, empty")
    _raises(BufferEmpty, m.take, "ring mirror: empty")
    nothing = object()
    _eq((m.take(nothing), m.take_newest(nothing)), (nothing, nothing), "ring mirror: default when empty")
    vs = [_V(i) for i in range(8)]
    for v in vs[:2]:
        buf.produce(v)
    _eq(m.fill(), 2, "ring mirror: fill moves what is pending")
    _eq(m.fill(), 0, "ring mirror: nothing twice")
    for v in vs[2:5]:
        buf.produce(v)
    _eq(m.fill(), 3, "ring mirror: fill moves new values")
    _eq(len(m), 3, "ring mirror: holds at most its limit")
    exc = _raises(BufferLagged, m.take, "ring mirror: eviction reported as lag")
    _eq((exc.missed, m.lagged), (2, 2), "ring mirror: exact count of evicted values")
    _eq([m.take() for _ in range(3)], vs[2:5], "ring mirror: then the oldest held values in order")
    s = buf.statistics()
    _eq((s.produced, s.delivered, s.dropped), (5, 3, 2), "ring mirror: evicted values count as dropped")
    for v in vs[5:]:  # the reader itself falls behind the ring of 4: counted the same way
        buf.produce(v)
    for _ in range(3):
        buf.produce(_V(99))
    _eq(m.fill(), 4, "ring mirror: fill after reader lag")
    exc = _raises(BufferLagged, m.take, "ring mirror: reader lag reported")
    _eq((exc.missed, m.lagged), (2 + 1, 2 + 2 + 1), "ring mirror: reader lag and eviction counted")
    _eq(m.take_newest().n, 99, "ring mirror: take_newest")
    _eq(len(m), 0, "ring mirror: take_newest forgets the older values")
    buf.produce(vs[0])
    buf.close()
    _eq(m.exhausted, False, "ring mirror: not exhausted while the reader holds a value")
    m.fill()
    _eq((m.exhausted, m.take()), (True, vs[0]), "ring mirror: values before close")
    _raises(BufferClosed, m.take, "ring mirror: BufferClosed after the held values")
    _raises(BufferClosed, m.take_newest, "ring mirror: BufferClosed (newest)")
    _eq(m.take(nothing), nothing, "ring mirror: default instead of BufferClosed")
    readers = buf.statistics().readers
    m.close()
    _eq(buf.statistics().readers, readers - 1, "ring mirror: close unsubscribes")
    _raises(BufferClosed, buf.mirror, "ring mirror: none on a closed buffer")
    _raises(ValueError, lambda: factory(2).mirror(0), "ring mirror: limit below 1")
    _eq(factory(5).mirror().limit, 5, "ring mirror: the limit defaults to the capacity")
    checks += 1

    await _common_watch_checks(rt, lambda: factory(4))
    checks += 1

    await _common_wait_checks(rt, lambda: factory(4))
    checks += 1
    await _common_change_checks(rt, lambda: factory(4))
    checks += 1
    return checks


async def check_latest_buffer(factory: "Callable[[], Any]", runtime: "Any" = None) -> int:
    """Run the SingleLatest conformance checks; ``factory()`` returns a fresh buffer.

    Returns the number of checks run. Raises ``AssertionError`` on the first violation.
    """
    rt = runtime or _current()
    checks = 0
    buf = factory()
    r0 = buf.subscribe()
    _raises(BufferEmpty, r0.try_recv, "latest: nothing before the first produce")
    _eq(buf.peek(), None, "latest: peek before produce")
    a, b, c = _V(1), _V(2), _V(3)
    buf.produce(a)
    _eq(buf.peek(), a, "latest: peek returns current")
    _eq(buf.peek(), a, "latest: peek does not consume")
    late = buf.subscribe()
    _eq(late.try_recv(), a, "latest: new subscriber gets the current value once")
    _raises(BufferEmpty, late.try_recv, "latest: only once")
    buf.produce(b)
    buf.produce(c)
    _eq(late.try_recv(), c, "latest: intermediate values collapse")
    _eq(r0.try_recv(), c, "latest: every reader sees the newest")
    _raises(BufferEmpty, r0.try_recv, "latest: nothing new")
    for i in range(100):
        buf.produce(_V(i))
    last = late.try_recv()
    _eq(last.n, 99, "latest: never lags")
    _eq(late.try_recv_batch(), [], "latest: empty batch")
    s = buf.statistics()
    _eq((s.capacity, s.occupancy, s.dropped, s.readers), (1, 1, 0, 2), "latest: statistics")
    checks += 1

    # latest(): the current value, consumed by nobody
    buf = factory()
    _raises(BufferEmpty, buf.latest, "latest: latest() before the first produce")
    r = buf.subscribe()
    a, b = _V(1), _V(2)
    buf.produce(a)
    _eq(buf.latest(), a, "latest: latest() is the current value")
    _eq(r.try_recv(), a, "latest: latest() consumes nothing for a reader")
    _eq(buf.subscribe().try_recv(), a, "latest: latest() consumes nothing for a new reader")
    _eq(buf.latest(), a, "latest: latest() after readers received it")
    buf.produce(b)
    _eq(buf.latest(), b, "latest: latest() follows produce")
    buf.produce(None)
    _eq(buf.latest(), None, "latest: a held None is a value")
    _eq(buf.statistics().delivered, 2, "latest: latest() counts no delivery")
    buf.close()
    _eq(buf.latest(), None, "latest: latest() on a closed buffer")
    checks += 1

    # mirror: first the current value, then the newest one (collapsing)
    buf = factory()
    a, b, c = _V(1), _V(2), _V(3)
    buf.produce(a)
    m = buf.mirror()
    _eq((m.limit, m.on_demand), (1, False), "latest mirror: one slot, not on demand")
    _eq(m.fill(), 1, "latest mirror: the current value")
    buf.produce(b)
    _eq(m.fill(), 1, "latest mirror: a newer value")
    _eq(len(m), 1, "latest mirror: one held")
    buf.produce(c)
    m.fill()
    _eq(m.take(), c, "latest mirror: the newest")
    _raises(BufferEmpty, m.take, "latest mirror: taken")
    _eq(m.lagged, 0, "latest mirror: never lags")
    buf.close()
    _raises(BufferClosed, m.take, "latest mirror: closed")
    checks += 1

    await _common_watch_checks(rt, factory)
    checks += 1

    await _common_wait_checks(rt, factory)
    checks += 1
    await _common_change_checks(rt, factory)
    checks += 1
    return checks


async def check_mailbox(factory: "Callable[[], Any]", runtime: "Any" = None) -> int:
    """Run the Mailbox conformance checks; ``factory()`` returns a fresh buffer.

    Returns the number of checks run. Raises ``AssertionError`` on the first violation.
    """
    rt = runtime or _current()
    checks = 0
    buf = factory()
    a, b, c = _V(1), _V(2), _V(3)
    buf.produce(a)
    r1 = buf.subscribe()
    r2 = buf.subscribe()
    _eq(buf.peek(), a, "mailbox: peek")
    _eq(buf.peek(), a, "mailbox: peek does not consume")
    _eq(r1.try_recv(), a, "mailbox: pending value is seen by a later subscriber")
    _raises(BufferEmpty, r2.try_recv, "mailbox: each value goes to exactly one reader")
    _eq(buf.peek(), None, "mailbox: slot empty after take")
    buf.produce(b)
    buf.produce(c)
    _eq(buf.statistics().dropped, 1, "mailbox: overwrite counted as drop")
    _eq(r2.try_recv(), c, "mailbox: newest wins")
    _raises(BufferEmpty, r1.try_recv, "mailbox: taken")
    s = buf.statistics()
    _eq((s.produced, s.delivered, s.dropped, s.occupancy, s.readers), (3, 2, 1, 0, 2), "mailbox: statistics")
    checks += 1

    # two waiting readers, one value: exactly one gets it
    buf = factory()
    buf._rt = rt
    ra, rb = buf.subscribe(), buf.subscribe()
    got_a: list[Any] = []
    got_b: list[Any] = []
    ga, ha = await _spawn_recv(rt, ra, got_a)
    gb, hb = await _spawn_recv(rt, rb, got_b)
    v = _V(9)
    buf.produce(v)
    await _settle(rt, 10)
    _eq(len(got_a) + len(got_b), 1, "mailbox: one value, one receiver")
    _eq((got_a + got_b)[0], v, "mailbox: the value")
    w = _V(10)
    buf.produce(w)
    await rt.wait_for(ha.join, 2.0)
    await rt.wait_for(hb.join, 2.0)
    await gb.aclose()  # groups close in reverse order of opening (trio nurseries nest)
    await ga.aclose()
    _eq(sorted(x.n for x in got_a + got_b), [9, 10], "mailbox: second value to the other reader")
    checks += 1

    # latest(): the pending value, left pending
    buf = factory()
    _raises(BufferEmpty, buf.latest, "mailbox: latest() before the first produce")
    r = buf.subscribe()
    a, b = _V(1), _V(2)
    buf.produce(a)
    _eq(buf.latest(), a, "mailbox: latest() is the pending value")
    _eq(buf.latest(), a, "mailbox: latest() does not take it")
    _eq(r.try_recv(), a, "mailbox: value still pending after latest()")
    _raises(BufferEmpty, buf.latest, "mailbox: latest() after the value was taken")
    buf.produce(b)
    buf.produce(None)
    _eq(buf.latest(), None, "mailbox: a pending None is a value")
    s = buf.statistics()
    _eq((s.produced, s.delivered, s.dropped, s.occupancy), (3, 1, 1, 1), "mailbox: latest() counts nothing")
    buf.close()
    _eq(buf.latest(), None, "mailbox: latest() on a closed buffer")
    checks += 1

    # mirror: takes the shared slot's value only on demand
    buf = factory()
    m1, m2 = buf.mirror(), buf.mirror()
    _eq(m1.on_demand, True, "mailbox mirror: on demand")
    a, b = _V(1), _V(2)
    buf.produce(a)
    _eq(m1.fill(), 0, "mailbox mirror: no demand, nothing taken")
    _eq(buf.latest(), a, "mailbox mirror: the value stays pending")
    _eq(m2.fill(1), 1, "mailbox mirror: demand takes it")
    _eq(m1.fill(1), 0, "mailbox mirror: taken by the other mirror")
    _eq(m2.fill(2), 0, "mailbox mirror: nothing pending")
    buf.produce(b)
    _eq(m2.fill(1), 0, "mailbox mirror: demand already met by the held value")
    _eq(m1.fill(1), 1, "mailbox mirror: competing mirrors share values")
    _eq((m2.take(), m1.take()), (a, b), "mailbox mirror: values")
    s = buf.statistics()
    _eq((s.produced, s.delivered, s.dropped), (2, 2, 0), "mailbox mirror: statistics")
    c, d = _V(3), _V(4)
    buf.produce(c)
    _eq(m1.fill(2), 1, "mailbox mirror: two waiting, first value")
    buf.produce(d)
    _eq(m1.fill(2), 1, "mailbox mirror: two waiting, second value")
    _eq((len(m1), m1.take(), m1.take()), (2, c, d), "mailbox mirror: a held value is never replaced")
    buf.produce(a)
    buf.close()
    _eq(m1.exhausted, False, "mailbox mirror: a pending value after close")
    m1.fill(1)
    _eq((m1.take(), m1.exhausted), (a, True), "mailbox mirror: pending value taken after close")
    _raises(BufferClosed, m1.take, "mailbox mirror: closed")
    checks += 1

    await _common_watch_checks(rt, factory)
    checks += 1

    await _common_wait_checks(rt, factory)
    checks += 1
    await _common_change_checks(rt, factory)
    checks += 1
    return checks


async def check_runtime_backend(backend: "Any") -> int:
    """Check a runtime backend against the runtime contract; returns the number of checks."""
    checks = 0
    for attr in (
        "name",
        "cancelled_exc",
        "monotonic_ns",
        "wall_ns",
        "sleep",
        "new_waiter",
        "open_task_group",
        "wait_for",
        "logger",
    ):
        if not hasattr(backend, attr):
            raise AssertionError("runtime: missing " + attr)
    a = backend.monotonic_ns()
    await backend.sleep(0)
    await backend.sleep(0.01)
    b = backend.monotonic_ns()
    if not b > a:
        raise AssertionError("runtime: monotonic clock must advance across a sleep")
    # An event loop may wake a timer up to one clock tick early (libuv keeps time in whole
    # milliseconds, cached per loop iteration), so the bound leaves room for that and still
    # catches a sleep that does not wait at all.
    if b - a < 5_000_000:
        raise AssertionError("runtime: sleep(0.01) returned after " + str(b - a) + " ns")
    checks += 1
    wall = backend.wall_ns()
    if wall is not None and not wall > 1_600_000_000 * 1_000_000_000:
        raise AssertionError("runtime: wall clock is not sane: " + repr(wall))
    checks += 1
    w = backend.new_waiter()
    w.wake()
    w.wake()
    await backend.wait_for(w.wait, 1.0)  # woken before waiting: returns at once
    checks += 1
    group = backend.open_task_group()
    await group.start()
    flag: list[int] = []

    async def job(n: int) -> None:
        flag.append(n)

    async def forever() -> None:
        while True:
            await backend.sleep(10)

    h1 = group.spawn("conformance.job", job, 7)
    h2 = group.spawn("conformance.forever", forever)
    await backend.wait_for(h1.join, 2.0)
    _eq(flag, [7], "runtime: spawned task ran")
    h2.cancel()
    ok = await backend.wait_for(h2.join, 2.0)
    _eq(ok, True, "runtime: cancelled task ends")
    timed_out = await backend.wait_for(lambda: backend.sleep(5), 0.01)
    _eq(timed_out, False, "runtime: wait_for times out")
    await group.aclose()
    checks += 1
    log = backend.logger()
    log.debug("aimdb runtime conformance: logging works")
    checks += 1
    return checks


def _current() -> "Any":
    from .._backends import current_backend

    return current_backend()


async def run_buffer_conformance(runtime: "Any" = None) -> int:
    """Run all three buffer suites against aimdb's own buffers; returns the number of checks."""
    from .._core._buffers import LatestBuffer, MailboxBuffer, RingBuffer

    n = await check_ring_buffer(lambda cap: RingBuffer("conformance.ring", cap), runtime)
    n += await check_latest_buffer(lambda: LatestBuffer("conformance.latest"), runtime)
    n += await check_mailbox(lambda: MailboxBuffer("conformance.mailbox"), runtime)
    return n
