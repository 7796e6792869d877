"""``async for`` over a ring reader: each value is counted as delivered exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from aimdb import RingBuffer


@pytest.mark.parametrize("stop_after", [1, 3, 7, 10])
async def test_break_leaves_delivered_exact(rt: Any, stop_after: int) -> None:
    buf: RingBuffer[int] = RingBuffer("t.iter", 16)
    buf._rt = rt
    r = buf.subscribe()
    for i in range(10):
        buf.produce(i)
    got: list[int] = []
    async for v in r:
        got.append(v)
        if len(got) == stop_after:
            break
    assert got == list(range(stop_after))
    assert buf.statistics().delivered == stop_after == r.delivered
    assert r.pending() == 10 - stop_after
    # the rest is still there, and counted once more only when taken
    rest = r.try_recv_batch()
    assert rest == list(range(stop_after, 10))
    assert buf.statistics().delivered == 10 == r.delivered


async def test_two_loops_over_one_reader_count_each_value_once(rt: Any) -> None:
    buf: RingBuffer[int] = RingBuffer("t.iter2", 8)
    buf._rt = rt
    r = buf.subscribe()
    for i in range(6):
        buf.produce(i)
    got: list[int] = []
    for stop in (2, 5):
        async for v in r:
            got.append(v)
            if len(got) == stop:
                break
    buf.close()
    async for v in r:
        got.append(v)
    assert got == list(range(6))
    stats = buf.statistics()
    assert (stats.produced, stats.delivered, stats.dropped) == (6, 6, 0)


async def _settle(rt: Any) -> None:
    for _ in range(5):  # lets an abandoned async generator be closed (asyncio finalizer)
        await rt.sleep(0)


async def test_break_then_other_read_paths_stay_exact(rt: Any) -> None:
    buf: RingBuffer[int] = RingBuffer("t.iter3", 16)
    buf._rt = rt
    r = buf.subscribe()
    for i in range(10):
        buf.produce(i)
    async for v in r:
        if v == 2:
            break
    assert buf.statistics().delivered == 3
    await _settle(rt)
    assert buf.statistics().delivered == 3  # closing the left iteration changes nothing
    assert r.try_recv() == 3
    assert buf.statistics().delivered == 4
    assert await r.recv_batch(2) == [4, 5]
    assert buf.statistics().delivered == 6
    async for v in r:
        if v == 7:
            break
    assert buf.statistics().delivered == 8
    buf.reset_statistics()
    assert buf.statistics().delivered == 0
    async for v in r:
        if v == 8:
            break
    assert buf.statistics().delivered == 1
    r.report_lag(1)
    s = buf.statistics()
    assert (s.delivered, s.dropped, r.delivered, r.lagged) == (0, 1, 8, 1)
    r.close()
    assert buf.statistics().delivered == 0
    assert r.pending() == 1  # 9 is still there for the (closed) reader


async def test_readers_iterating_concurrently_count_exactly(rt: Any) -> None:
    buf: RingBuffer[int] = RingBuffer("t.iter4", 64)
    buf._rt = rt
    readers = [buf.subscribe() for _ in range(3)]
    stops = [5, 20, None]
    got: list[list[int]] = [[], [], []]

    async def consume(k: int) -> None:
        async for v in readers[k]:
            got[k].append(v)
            if len(got[k]) == stops[k]:
                break

    group = rt.open_task_group()
    await group.start()
    handles = [group.spawn(f"t.iter4.{k}", consume, k) for k in range(3)]
    for i in range(30):
        buf.produce(i)
        if i % 7 == 0:
            await _settle(rt)
    await _settle(rt)
    buf.close()
    for h in handles:
        await rt.wait_for(h.join, 5.0)
    await group.aclose()
    assert [len(g) for g in got] == [5, 20, 30]
    s = buf.statistics()
    assert (s.produced, s.delivered, s.dropped) == (30, 55, 0)
    assert sum(r.delivered for r in readers) == 55
