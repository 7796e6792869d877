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
