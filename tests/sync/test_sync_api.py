"""aimdb.sync: semantics per buffer kind, many threads, shutdown, bad input."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import aimdb.sync
from aimdb import (
    AimDbBuilder,
    AttachFailed,
    BufferCfg,
    BufferEmpty,
    BufferLagged,
    GetTimeout,
    RecordNotFound,
    RuntimeShutdown,
    SetTimeout,
    StageFailed,
    TypeMismatch,
)

N_PRODUCERS = 8
N_CONSUMERS = 4
PER_PRODUCER = 2000


@dataclass(frozen=True)
class Item:
    producer: int
    seq: int


def _builder(**records: Any) -> AimDbBuilder:
    b = AimDbBuilder(shutdown_timeout=1.0)
    for key, cfg in records.items():
        b.configure(Item, key.replace("_", "."), lambda r, cfg=cfg: r.buffer(cfg))
    return b


@pytest.fixture
def handle() -> Iterator[aimdb.sync.SyncHandle]:
    b = _builder(
        s_ring=BufferCfg.SpmcRing(capacity=N_PRODUCERS * PER_PRODUCER),
        s_small=BufferCfg.SpmcRing(capacity=4),
        s_latest=BufferCfg.SingleLatest(),
        s_mail=BufferCfg.Mailbox(),
    )
    b.configure(int, "s.int", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)))
    h = aimdb.sync.attach(b)
    try:
        yield h
    finally:
        h.detach(timeout=5)


def _run_threads(targets: list[Callable[[], Any]], limit: float = 60.0) -> list[BaseException]:
    """Run each target in its own thread; fail (instead of hanging) when one does not finish."""
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        assert not t.is_alive(), "watchdog: a thread did not finish in time"
    return errors


def _producers(h: aimdb.sync.SyncHandle, key: str, per: int = PER_PRODUCER) -> list[Callable[[], None]]:
    p = h.producer(Item, key)  # one producer shared by all threads: it is thread-safe

    def make(pid: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(per):
                p.set(Item(pid, i))
                if i % 100 == 0:
                    time.sleep(0)
            p.flush(timeout=30)

        return run

    return [make(pid) for pid in range(N_PRODUCERS)]


def _assert_ordered_per_producer(items: list[Item]) -> None:
    last: dict[int, int] = {}
    for it in items:
        assert it.seq > last.get(it.producer, -1), "order per producer broken"
        last[it.producer] = it.seq


# ---------------------------------------------------------------- many threads


def test_ring_8_producers_4_consumers_every_value_everywhere(handle: aimdb.sync.SyncHandle) -> None:
    total = N_PRODUCERS * PER_PRODUCER
    consumers = [handle.consumer(Item, "s.ring") for _ in range(N_CONSUMERS)]
    got: list[list[Item]] = [[] for _ in consumers]

    def make_reader(i: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(total):
                got[i].append(consumers[i].get(timeout=30))

        return run

    errors = _run_threads(_producers(handle, "s.ring") + [make_reader(i) for i in range(N_CONSUMERS)])
    assert errors == []
    expected = {Item(p, s) for p in range(N_PRODUCERS) for s in range(PER_PRODUCER)}
    for items in got:
        assert len(items) == total and set(items) == expected  # every value, exactly once each
        _assert_ordered_per_producer(items)
    for c in consumers:
        with pytest.raises(BufferEmpty):
            c.try_get()
        assert c.lagged == 0


def test_ring_threads_share_one_consumer(handle: aimdb.sync.SyncHandle) -> None:
    total = N_PRODUCERS * PER_PRODUCER
    c = handle.consumer(Item, "s.ring")
    got: list[list[Item]] = [[] for _ in range(N_CONSUMERS)]
    lock = threading.Lock()
    taken = [0]

    def make_reader(i: int) -> Callable[[], None]:
        def run() -> None:
            while True:
                with lock:
                    if taken[0] >= total:
                        return
                    taken[0] += 1
                got[i].append(c.get(timeout=30))

        return run

    errors = _run_threads(_producers(handle, "s.ring") + [make_reader(i) for i in range(N_CONSUMERS)])
    assert errors == []
    allv = [v for items in got for v in items]
    assert len(allv) == total and len(set(allv)) == total  # each value to exactly one thread


def test_mailbox_8_producers_4_consumers_each_value_at_most_once(handle: aimdb.sync.SyncHandle) -> None:
    consumers = [handle.consumer(Item, "s.mail") for _ in range(N_CONSUMERS)]
    got: list[list[Item]] = [[] for _ in consumers]
    stop = threading.Event()

    def make_reader(i: int) -> Callable[[], None]:
        def run() -> None:
            while True:
                try:
                    got[i].append(consumers[i].get(timeout=0.05))
                except GetTimeout:
                    if stop.is_set():
                        return

        return run

    readers = [threading.Thread(target=make_reader(i), daemon=True) for i in range(N_CONSUMERS)]
    for t in readers:
        t.start()
    assert _run_threads(_producers(handle, "s.mail", per=500)) == []
    time.sleep(0.2)  # let readers take what is still pending
    stop.set()
    for t in readers:
        t.join(10)
        assert not t.is_alive()
    stats = handle.call(lambda: handle.database.buffer("s.mail").statistics())  # type: ignore[union-attr]
    allv = [v for items in got for v in items]
    assert len(allv) == len(set(allv))  # never delivered twice
    assert stats.produced == N_PRODUCERS * 500
    # every value either reached exactly one consumer or was overwritten (counted as dropped)
    assert len(allv) + stats.dropped == stats.produced
    assert stats.occupancy == 0
    for items in got:
        _assert_ordered_per_producer(items)


def test_single_latest_8_producers_4_consumers(handle: aimdb.sync.SyncHandle) -> None:
    consumers = [handle.consumer(Item, "s.latest") for _ in range(N_CONSUMERS)]
    got: list[list[Item]] = [[] for _ in consumers]
    done = threading.Event()

    def make_reader(i: int) -> Callable[[], None]:
        def run() -> None:
            while not done.is_set():
                try:
                    got[i].append(consumers[i].get(timeout=0.05))
                except GetTimeout:
                    pass

        return run

    readers = [threading.Thread(target=make_reader(i), daemon=True) for i in range(N_CONSUMERS)]
    for t in readers:
        t.start()
    assert _run_threads(_producers(handle, "s.latest", per=500)) == []
    last = handle.call(lambda: handle.database.buffer("s.latest").peek())  # type: ignore[union-attr]
    time.sleep(0.2)
    done.set()
    for t in readers:
        t.join(10)
        assert not t.is_alive()
    for items in got:
        assert items and items[-1] == last  # everyone ends on the newest value
        _assert_ordered_per_producer(items)  # intermediate values collapse, never go back
        assert all(a != b for a, b in itertools.pairwise(items))  # no value seen twice


# ---------------------------------------------------------------- semantics per kind


def test_ring_lag_reported_once_with_exact_count(handle: aimdb.sync.SyncHandle) -> None:
    c = handle.consumer(Item, "s.small")
    p = handle.producer(Item, "s.small")
    for i in range(10):
        p.set(Item(0, i))
    p.flush(timeout=5)
    with pytest.raises(BufferLagged) as exc:
        c.get(timeout=1)
    assert exc.value.missed == 6
    assert [c.get(timeout=1).seq for _ in range(4)] == [6, 7, 8, 9]
    assert c.lagged == 6
    stats = handle.call(lambda: handle.database.buffer("s.small").statistics())  # type: ignore[union-attr]
    assert (stats.produced, stats.delivered, stats.dropped) == (10, 4, 6)  # counted like ring lag
    for i in range(10, 20):
        p.set(Item(0, i))
    p.flush(timeout=5)
    assert c.get_latest(timeout=1) == Item(0, 19)  # lag skipped, newest returned
    with pytest.raises(GetTimeout):
        c.get(timeout=0.01)


def test_consumer_sees_only_values_after_it_subscribed(handle: aimdb.sync.SyncHandle) -> None:
    p = handle.producer(int, "s.int")
    p.set(1)
    p.flush(timeout=5)
    c = handle.consumer(int, "s.int")
    p.set(2)
    assert c.get(timeout=1) == 2
    with pytest.raises(BufferEmpty):
        c.try_get()


def test_single_latest_first_current_then_newest(handle: aimdb.sync.SyncHandle) -> None:
    p = handle.producer(Item, "s.latest")
    p.set(Item(0, 1))
    p.flush(timeout=5)
    c = handle.consumer(Item, "s.latest")
    assert c.try_get() == Item(0, 1)  # the current value, once
    with pytest.raises(BufferEmpty):
        c.try_get()
    for i in range(2, 6):
        p.set(Item(0, i))
    p.flush(timeout=5)
    assert c.get(timeout=1) == Item(0, 5)


def test_mailbox_pending_value_seen_and_try_get(handle: aimdb.sync.SyncHandle) -> None:
    p = handle.producer(Item, "s.mail")
    p.set(Item(0, 1))
    p.flush(timeout=5)
    c = handle.consumer(Item, "s.mail")  # subscribes after the value was produced: still sees it
    assert c.try_get() == Item(0, 1)
    with pytest.raises(BufferEmpty):
        c.try_get()
    with pytest.raises(GetTimeout):
        c.get(timeout=0)
    p.set(Item(0, 2))
    assert c.get(timeout=1) == Item(0, 2)
    p.set(Item(0, 3))
    p.flush(timeout=5)
    assert c.get_latest(timeout=1) == Item(0, 3)


def test_set_timeout_when_loop_is_stalled() -> None:
    b = _builder(s_ring=BufferCfg.SpmcRing(capacity=8))
    with aimdb.sync.attach(b) as h:
        p = h.producer(Item, "s.ring", queue_size=2)
        stalled = threading.Event()
        h.loop.call_soon_threadsafe(lambda: (stalled.set(), time.sleep(1.5)))
        assert stalled.wait(5)
        p.set(Item(0, 0))
        p.set(Item(0, 1))
        with pytest.raises(SetTimeout):
            p.try_set(Item(0, 2))
        t0 = time.monotonic()
        with pytest.raises(SetTimeout):
            p.set(Item(0, 2), timeout=0.05)
        assert time.monotonic() - t0 < 1.0  # well before the 1.5 s stall ends
        p.set(Item(0, 2), timeout=5)  # the loop drains after the stall
        p.flush(timeout=5)


# ---------------------------------------------------------------- shutdown


def test_blocked_get_wakes_with_runtime_shutdown_on_detach() -> None:
    b = _builder(s_ring=BufferCfg.SpmcRing(capacity=8), s_mail=BufferCfg.Mailbox())
    h = aimdb.sync.attach(b)
    ring = h.consumer(Item, "s.ring")
    mail = h.consumer(Item, "s.mail")
    outcomes: list[str] = []

    def blocked(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except RuntimeShutdown:
                outcomes.append("shutdown")

        return run

    threads = [
        threading.Thread(target=blocked(ring.get), daemon=True),
        threading.Thread(target=blocked(mail.get), daemon=True),
        threading.Thread(target=blocked(lambda: ring.get_latest(timeout=60)), daemon=True),
        threading.Thread(target=blocked(lambda: list(ring)), daemon=True),  # iteration just ends
    ]
    for t in threads:
        t.start()
    time.sleep(0.1)
    h.detach(timeout=5)
    for t in threads:
        t.join(5)  # watchdog: a hang fails here instead of blocking the run
        assert not t.is_alive(), "a blocked call did not wake on detach"
    assert outcomes == ["shutdown"] * 3


def test_everything_after_detach_raises_runtime_shutdown() -> None:
    b = _builder(s_ring=BufferCfg.SpmcRing(capacity=8))
    h = aimdb.sync.attach(b)
    p = h.producer(Item, "s.ring")
    c = h.consumer(Item, "s.ring")
    p.set(Item(0, 0))
    h.detach(timeout=5)
    h.detach(timeout=5)  # idempotent
    assert not h.attached
    for call in (
        lambda: p.set(Item(0, 1)),
        lambda: p.try_set(Item(0, 1)),
        c.get,
        c.try_get,
        lambda: c.get(timeout=1),
        lambda: c.get_latest(timeout=1),
        lambda: h.producer(Item, "s.ring"),
        lambda: h.consumer(Item, "s.ring"),
        lambda: h.call(lambda: None),
    ):
        with pytest.raises(RuntimeShutdown):
            call()


def test_database_stopping_by_itself_drains_then_shutdown_and_detach_reraises() -> None:
    async def src(ctx: Any, producer: Any) -> None:
        for i in range(3):
            producer.produce(Item(0, i))
        await ctx.time.sleep(0.05)
        raise RuntimeError("sensor broke")

    b = AimDbBuilder(shutdown_timeout=1.0)
    b.configure(
        Item, "s.src", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(src, on_error="stop")
    )
    db = b.build()
    h = aimdb.sync.attach(db)
    c = h.consumer(Item, "s.src")  # may subscribe after some values: take what arrives
    seen = list(c)  # ends when the database stops
    assert all(isinstance(v, Item) for v in seen)
    with pytest.raises(RuntimeShutdown):
        c.get(timeout=1)
    with pytest.raises(StageFailed):
        h.detach(timeout=5)
    h.detach(timeout=5)  # raised once
    assert db.state == "stopped"


def test_context_manager_and_no_thread_left() -> None:
    before = {t.name for t in threading.enumerate()}
    with aimdb.sync.attach(_builder(s_ring=BufferCfg.SpmcRing(capacity=8))) as h:
        assert h.attached and h.database.state == "running"
        assert any(t.name == "aimdb-sync" for t in threading.enumerate())
    assert h.database.state == "stopped"
    time.sleep(0.05)
    assert {t.name for t in threading.enumerate()} - before == set()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, "1", True, [1]])
def test_nonsense_timeouts_raise_value_error(handle: aimdb.sync.SyncHandle, bad: Any) -> None:
    c = handle.consumer(Item, "s.ring")
    p = handle.producer(Item, "s.ring")
    for call in (
        lambda: c.get(timeout=bad),
        lambda: c.get_latest(timeout=bad),
        lambda: p.set(Item(0, 0), timeout=bad),
        lambda: p.flush(timeout=bad),
        lambda: handle.call(lambda: None, timeout=bad),
    ):
        with pytest.raises(ValueError):
            call()


def test_wrong_type_raises_in_calling_thread_and_nothing_is_produced(handle: aimdb.sync.SyncHandle) -> None:
    p = handle.producer(int, "s.int")
    c = handle.consumer(int, "s.int")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            p.set("nope")  # type: ignore[arg-type]
        except TypeMismatch as exc:
            errors.append(exc)

    assert _run_threads([run]) == []
    assert len(errors) == 1 and isinstance(errors[0], TypeError)
    p.set(5)
    assert c.get(timeout=1) == 5  # the bad value never reached the buffer


def test_unknown_key_and_wrong_type_fail_fast(handle: aimdb.sync.SyncHandle) -> None:
    with pytest.raises(RecordNotFound):
        handle.consumer(Item, "s.rnig")
    with pytest.raises(TypeMismatch):
        handle.consumer(int, "s.ring")
    with pytest.raises(RecordNotFound):
        handle.producer(Item, "nope")
    with pytest.raises(TypeMismatch):
        handle.producer(str, "s.int")
    with pytest.raises(ValueError):
        handle.producer(int, "s.int", queue_size=0)


def test_attach_failures() -> None:
    with pytest.raises(ValueError):
        aimdb.sync.attach(_builder(), timeout=-1)
    with pytest.raises(ValueError):
        aimdb.sync.attach(_builder(), queue_size=0)
    with pytest.raises(TypeError):
        aimdb.sync.attach(object())
    # a backend that cannot run on the background asyncio loop
    b = AimDbBuilder(runtime="trio")
    b.configure(int, "x", lambda r: r.buffer(BufferCfg.SingleLatest()))
    with pytest.raises(AttachFailed):
        aimdb.sync.attach(b, timeout=5)
    # a database that already runs elsewhere
    db = _builder(s_ring=BufferCfg.SpmcRing(capacity=4)).build()
    with aimdb.sync.attach(db), pytest.raises(AttachFailed):
        aimdb.sync.attach(db)


# ---------------------------------------------------------------- foreign thread into an asyncio db


def test_threadsafe_producer_into_running_asyncio_database() -> None:
    got: list[int] = []

    async def tap(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            got.append(v)

    async def main() -> None:
        b = AimDbBuilder()
        b.configure(int, "f.n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4096)).tap(tap))
        async with b.build() as db:
            p = aimdb.sync.threadsafe_producer(db, int, "f.n")

            def worker(base: int) -> None:
                for i in range(500):
                    p.set(base + i)
                p.flush(timeout=10)

            threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
            for t in threads:
                t.start()
            await asyncio.to_thread(lambda: [t.join(10) for t in threads])
            for _ in range(100):
                if len(got) == 2000:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(TypeMismatch):
                p.set("x")  # type: ignore[arg-type]
        assert sorted(got) == sorted(k * 1000 + i for k in range(4) for i in range(500))
        for k in range(4):
            mine = [v for v in got if v // 1000 == k]
            assert mine == sorted(mine)
        with pytest.raises(RuntimeError):
            p.flush(timeout=1)  # blocking on the database's own loop would deadlock

        def after_stop() -> None:
            with pytest.raises(RuntimeShutdown):
                for _ in range(3):  # the first set is queued before the drain notices
                    p.set(1)
                    p.flush(timeout=5)

        await asyncio.to_thread(after_stop)

    asyncio.run(main())
    with pytest.raises(RuntimeError):
        aimdb.sync.threadsafe_producer(AimDbBuilder().build(), int, "x")
