"""Stages, start order, shutdown and error policies — on every runtime."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, StageFailed
from aimdb.testing import MemoryConnector


@dataclass
class Temp:
    celsius: float


@dataclass
class Hum:
    percent: float


@dataclass
class Dew:
    celsius: float


def _alive_tasks(rt: Any, db: Any) -> list[str]:
    if rt.name == "asyncio":
        import asyncio

        return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("aimdb"))
    return []


async def test_taps_subscribed_before_source_no_value_missed(rt: Any) -> None:
    seen: dict[str, list[float]] = {"a": [], "b": []}

    async def source(ctx: Any, producer: Any) -> None:
        # produce immediately, before yielding even once
        for i in range(5):
            producer.produce(Temp(float(i)))

    def tap(name: str) -> Any:
        async def fn(ctx: Any, consumer: Any) -> None:
            async for t in consumer.subscribe():
                seen[name].append(t.celsius)

        return fn

    b = AimDbBuilder()
    b.configure(
        Temp,
        "t",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=16))
            .source(source)
            .tap(tap("a"), name="a")
            .tap(tap("b"), name="b")
        ),
    )
    async with b.build() as db:
        for _ in range(20):
            await rt.sleep(0)
    assert seen == {"a": [0.0, 1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 2.0, 3.0, 4.0]}
    assert db.state == "stopped"


async def test_transform_join_and_stats(rt: Any) -> None:
    dews: list[float] = []

    async def temps(ctx: Any, producer: Any) -> None:
        for c in (20.0, 21.0):
            producer.produce(Temp(c))
            await ctx.time.sleep(0.01)

    async def hums(ctx: Any, producer: Any) -> None:
        producer.produce(Hum(50.0))

    def dew(t: Temp, h: Hum) -> Dew:
        return Dew(round(t.celsius - (100 - h.percent) / 5, 2))

    async def show(ctx: Any, consumer: Any) -> None:
        async for d in consumer.subscribe():
            dews.append(d.celsius)

    b = AimDbBuilder()
    b.configure(Temp, "s.t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(temps))
    b.configure(Hum, "s.h", lambda r: r.buffer(BufferCfg.SingleLatest()).source(hums))
    b.configure(
        Temp,
        "s.f",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).transform(
            Temp, "s.t", lambda t: Temp(t.celsius * 9 / 5 + 32) if t.celsius > 20 else None
        ),
    )
    b.configure(
        Dew,
        "s.dew",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).join([(Temp, "s.t"), (Hum, "s.h")], dew).tap(show),
    )
    async with b.build() as db:
        for _ in range(50):
            await rt.sleep(0.005)
            if len(dews) >= 2:
                break
        fahrenheit = db.consumer(Temp, "s.f")
        stats = db.stage_statistics("s.f")[0]
    assert dews == [10.0, 11.0]
    assert stats.kind == "transform" and stats.calls == 2 and stats.values == 1
    buf = db.buffer("s.f")
    assert buf is not None and buf.statistics().produced == 1
    assert fahrenheit.peek() is None  # ring: peek is None


async def test_stateful_transform_and_join_stream(rt: Any) -> None:
    out: list[int] = []

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(4):
            producer.produce(i)

    def running_sum(state: dict[str, int], v: int) -> int:
        state["sum"] += v
        return state["sum"]

    async def merged(ctx: Any, inputs: Any, producer: Any) -> None:
        async for idx, value in inputs:
            producer.produce(idx * 1000 + value)

    async def tap(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            out.append(v)

    b = AimDbBuilder()
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).source(src))
    b.configure(
        int,
        "sum",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).stateful_transform(
            int, "n", {"sum": 0}, running_sum
        ),
    )
    b.configure(
        int,
        "m",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=16)).join_stream([(int, "n"), (int, "sum")], merged).tap(tap)
        ),
    )
    async with b.build():
        for _ in range(40):
            await rt.sleep(0.002)
            if len(out) >= 8:
                break
    assert sorted(v for v in out if v < 1000) == [0, 1, 2, 3]
    assert sorted(v - 1000 for v in out if v >= 1000) == [0, 1, 3, 6]


async def test_stop_from_stage_and_no_task_left(rt: Any) -> None:
    async def src(ctx: Any, producer: Any) -> None:
        producer.produce(Temp(1.0))
        await ctx.time.sleep(0.01)
        ctx.db.stop()
        while True:
            await ctx.time.sleep(10)

    async def tap_sleeper(ctx: Any, consumer: Any) -> None:
        while True:  # ignores its reader: must be cancelled within the bound
            await ctx.time.sleep(10)

    b = AimDbBuilder(shutdown_timeout=0.5)
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SingleLatest()).source(src).tap(tap_sleeper))
    db = b.build()
    t0 = rt.monotonic_ns()
    await db.run()
    elapsed = (rt.monotonic_ns() - t0) / 1e9
    assert db.state == "stopped"
    assert elapsed < 3.0
    assert _alive_tasks(rt, db) == []
    for rec in db.records():
        for s in db.stage_statistics(rec.key):
            assert not s.running


async def test_on_error_log_other_stages_keep_running(rt: Any, caplog: pytest.LogCaptureFixture) -> None:
    good: list[float] = []

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(3):
            producer.produce(Temp(float(i)))
            await ctx.time.sleep(0.005)

    async def bad(ctx: Any, consumer: Any) -> None:
        raise RuntimeError("boom")

    async def ok(ctx: Any, consumer: Any) -> None:
        async for t in consumer.subscribe():
            good.append(t.celsius)

    b = AimDbBuilder()
    b.configure(
        Temp,
        "t",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=8)).source(src).tap(bad, name="bad").tap(ok, name="ok")
        ),
    )
    with caplog.at_level(logging.ERROR, logger="aimdb"):
        async with b.build() as db:
            for _ in range(40):
                await rt.sleep(0.005)
                if len(good) == 3:
                    break
            st = {s.name: s for s in db.stage_statistics("t")}
    assert good == [0.0, 1.0, 2.0]
    assert st["tap:bad"].errors == 1 and "boom" in (st["tap:bad"].last_error or "")
    assert st["tap:ok"].errors == 0
    rec = [r for r in caplog.records if "boom" in r.getMessage()]
    assert rec and getattr(rec[0], "record_key", None) == "t" and getattr(rec[0], "stage", None) == "tap:bad"
    assert rec[0].exc_info is not None


async def test_on_error_restart_keeps_reader(rt: Any) -> None:
    got: list[int] = []
    attempts = [0]

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(6):
            producer.produce(i)
            await ctx.time.sleep(0.002)

    async def flaky(ctx: Any, consumer: Any) -> None:
        attempts[0] += 1
        async for v in consumer.subscribe():
            got.append(v)
            if v in (1, 3):
                raise ValueError("flaky " + str(v))

    b = AimDbBuilder(restart_backoff=(0.001, 0.01))
    b.configure(
        int,
        "n",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).source(src).tap(flaky, on_error="restart"),
    )
    async with b.build() as db:
        for _ in range(100):
            await rt.sleep(0.005)
            if len(got) == 6:
                break
        st = db.stage_statistics("n")[1]
    assert got == [0, 1, 2, 3, 4, 5]  # nothing lost across restarts
    assert st.restarts == 2 and st.errors == 2 and attempts[0] == 3


async def test_a_stage_restarts_past_a_thousand_times(rt: Any, caplog: Any) -> None:
    # the restart delay doubled without bound: 2**1024 no longer fits a float, and the
    # database's own error handling raised OverflowError at restart 1,025
    failures = 1_030
    calls = [0]

    async def flaky(ctx: Any, consumer: Any) -> None:
        calls[0] += 1
        if calls[0] <= failures:
            raise ValueError("flaky")

    caplog.set_level(logging.CRITICAL, logger="aimdb")  # 1,030 tracebacks are not the point
    b = AimDbBuilder(restart_backoff=(0.0, 0.0))
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SingleLatest()).tap(flaky, on_error="restart"))
    async with b.build() as db:
        for _ in range(2_000):
            await rt.sleep(0.001)
            if calls[0] > failures:
                break
        st = db.stage_statistics("n")[0]
    assert calls[0] == failures + 1
    assert st.restarts == failures and st.errors == failures


async def test_on_error_stop_reraises(rt: Any) -> None:
    async def src(ctx: Any, producer: Any) -> None:
        await ctx.time.sleep(0.01)
        raise KeyError("sensor gone")

    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SingleLatest()).source(src, on_error="stop"))
    db = b.build()
    with pytest.raises(StageFailed) as info:
        await db.run()
    assert info.value.key == "t" and info.value.stage == "source"
    assert isinstance(info.value.cause, KeyError)
    assert db.state == "stopped"


async def test_shutdown_drains_pending_values_to_taps(rt: Any) -> None:
    got: list[int] = []

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(10):
            producer.produce(i)
        ctx.db.stop()

    async def slow(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            await ctx.time.sleep(0.001)
            got.append(v)

    b = AimDbBuilder()
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).source(src).tap(slow))
    await b.run()
    assert got == list(range(10))


async def test_ticker_is_drift_free(rt: Any) -> None:
    ticks: list[tuple[int, int]] = []
    missed: list[int] = []

    async def src(ctx: Any, producer: Any) -> None:
        start = ctx.time.now_ns()  # before the ticker: its ticks are due from its creation on
        t = ctx.time.ticker(0.01)
        async for n in t:
            ticks.append((n, ctx.time.now_ns() - start))
            if n >= 5:  # on a loaded machine ticks may be skipped: tick 5 itself may never come
                missed.append(t.missed)
                ctx.db.stop()
                return

    b = AimDbBuilder()
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SingleLatest()).source(src))
    await b.run()
    # every tick number is accounted for: fired or counted as missed
    assert ticks[-1][0] == len(ticks) + missed[0]
    assert [n for n, _ in ticks] == sorted({n for n, _ in ticks})
    # tick n is due n periods after the start, independent of per-tick overhead, never early
    for n, at in ticks:
        assert at >= n * 10_000_000, (n, at)


async def test_memory_connector_links(rt: Any) -> None:
    conn = MemoryConnector()
    received: list[float] = []

    async def src(ctx: Any, producer: Any) -> None:
        producer.produce(Temp(21.5))

    async def tap(ctx: Any, consumer: Any) -> None:
        async for t in consumer.subscribe():
            received.append(t.celsius)

    b = AimDbBuilder().with_connector(conn)
    b.configure(
        Temp,
        "out",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4)).source(src).link_to("memory://sensors/t").finish(),
    )
    b.configure(
        Temp,
        "in",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4)).link_from("memory://cmd/t").finish().tap(tap),
    )
    async with b.build() as db:
        for _ in range(20):
            await rt.sleep(0.002)
            if conn.published:
                break
        assert conn.published == {"sensors/t": [b'{"celsius":21.5}']}
        assert conn.inject("cmd/t", b"not json") == 0
        assert conn.inject("cmd/t", b'{"celsius": "hot"}') == 0
        assert conn.inject("cmd/t", b'{"celsius": 19}') == 1
        for _ in range(20):
            await rt.sleep(0.002)
            if received:
                break
        stats = {s.url: s for s in db.link_statistics()}
    assert received == [19.0]
    assert stats["memory://cmd/t"].failed == 2 and stats["memory://cmd/t"].received == 1
    assert stats["memory://sensors/t"].sent == 1


async def test_join_stream_skips_lag_and_counts_it(rt: Any) -> None:
    seen: list[tuple[int, int]] = []
    lagged: list[int] = []

    async def burst(ctx: Any, producer: Any) -> None:
        for i in range(5):  # before the join runs: 3 of 5 fall out of a 2-slot ring
            producer.produce(i)

    async def handler(ctx: Any, inputs: Any, producer: Any) -> None:
        async for idx, value in inputs:
            seen.append((idx, value))
            lagged.append(inputs.readers[0].lagged)

    b = AimDbBuilder()
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=2)).source(burst))
    b.configure(int, "j", lambda r: r.buffer(BufferCfg.SingleLatest()).join_stream([(int, "n")], handler))
    async with b.build():
        for _ in range(20):
            await rt.sleep(0.002)
            if len(seen) == 2:
                break
    assert seen == [(0, 3), (0, 4)]
    assert lagged[-1] == 3


async def test_memory_connector_inject_works_right_after_start(rt: Any) -> None:
    conn = MemoryConnector()
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "in", lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("memory://cmd/t").finish())
    async with b.build() as db:
        assert conn.inject("memory://cmd/t".split("://")[1], b'{"celsius": 3.5}') == 1
        assert db.consumer(Temp, "in").peek() == Temp(3.5)
