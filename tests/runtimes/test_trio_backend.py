"""The trio backend: runtime contract details and a whole database end to end under trio.run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

trio = pytest.importorskip("trio")
trio_testing = pytest.importorskip("trio.testing")

from aimdb import AimDbBuilder, BufferCfg, BufferLagged  # noqa: E402
from aimdb._backends import current_backend, get_backend  # noqa: E402

TRIO = get_backend("trio")


@dataclass
class Temp:
    celsius: float


@dataclass
class Hum:
    percent: float


@dataclass
class Dew:
    celsius: float


@dataclass
class Command:
    name: str


def _all_task_names() -> list[str]:
    """Names of every task alive in the current trio run (walks the task tree)."""
    names: list[str] = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        names.append(task.name)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


def _aimdb_tasks() -> list[str]:
    return sorted(n for n in _all_task_names() if n.startswith("aimdb"))


# ---------------------------------------------------------------- contract details


def test_detected_inside_trio_run() -> None:
    async def main() -> str:
        return str(current_backend().name)

    assert trio.run(main) == "trio"
    assert TRIO.cancelled_exc is trio.Cancelled
    assert isinstance(TRIO.wall_ns(), int)


def test_waiter_wake_before_wait_twice_and_in_two_lists() -> None:
    async def main() -> None:
        w = TRIO.new_waiter()
        w.wake()
        w.wake()  # idempotent
        await w.wait()  # returns at once
        # one waiter registered in two "lists": woken by the first, the second wake is a no-op
        w2 = TRIO.new_waiter()
        lists: list[list[Any]] = [[w2], [w2]]
        done: list[bool] = []

        async def waiter() -> None:
            await w2.wait()
            done.append(True)

        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.sleep(0)
            for lst in lists:
                for x in lst:
                    x.wake()
        assert done == [True]

    trio.run(main)


def test_cancelled_wait_then_wake_is_harmless() -> None:
    async def main() -> None:
        w = TRIO.new_waiter()
        with trio.move_on_after(0.01) as cs:
            await w.wait()
        assert cs.cancelled_caught
        w.wake()  # the task is gone: must not reschedule anything
        await trio.sleep(0.01)

    trio.run(main)


def test_wait_for_and_sleep() -> None:
    async def main() -> None:
        assert await TRIO.wait_for(lambda: trio.sleep(0), 1.0) is True
        assert await TRIO.wait_for(trio.sleep_forever, 0.01) is False
        assert await TRIO.wait_for(lambda: trio.sleep(0.05), -1) is False  # negative = no time
        await TRIO.sleep(0)
        await TRIO.sleep(-1)  # clamped to zero
        t0 = TRIO.monotonic_ns()
        await TRIO.sleep(0.01)
        assert TRIO.monotonic_ns() - t0 >= 9_000_000

    trio.run(main)


def test_task_group_cancel_one_join_and_close_out_of_order(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        ga = TRIO.open_task_group()
        gb = TRIO.open_task_group()
        await ga.start()
        await gb.start()
        got: list[str] = []

        async def forever(tag: str) -> None:
            try:
                await trio.sleep_forever()
            finally:
                got.append("cancelled " + tag)

        async def boom() -> None:
            raise RuntimeError("boom")

        h1 = ga.spawn("aimdb.t1", forever, "1")
        h2 = ga.spawn("aimdb.t2", forever, "2")
        h3 = gb.spawn("aimdb.t3", forever, "3")
        hb = gb.spawn("aimdb.boom", boom)
        await trio.sleep(0.01)
        assert [t for t in _aimdb_tasks() if t != "aimdb.task_group"] == ["aimdb.t1", "aimdb.t2", "aimdb.t3"]
        assert hb.done()  # raised, logged, siblings untouched
        h1.cancel()
        await h1.join()
        assert h1.done() and not h2.done() and not h3.done()
        assert got == ["cancelled 1"]
        await ga.aclose()  # closed before gb although opened first
        assert h2.done() and not h3.done()
        await gb.aclose()
        await gb.aclose()  # idempotent
        assert sorted(got) == ["cancelled 1", "cancelled 2", "cancelled 3"]
        assert _aimdb_tasks() == []
        with pytest.raises(RuntimeError):
            ga.spawn("late", forever, "x")

    with caplog.at_level(logging.ERROR, logger="aimdb"):
        trio.run(main)
    assert any("aimdb.boom" in r.getMessage() for r in caplog.records)


def test_cancel_before_task_ran() -> None:
    async def main() -> None:
        g = TRIO.open_task_group()
        await g.start()
        ran: list[int] = []

        async def job() -> None:
            ran.append(1)

        h = g.spawn("aimdb.job", job)
        h.cancel()
        await h.join()
        await g.aclose()
        assert h.done()

    trio.run(main)


def test_aclose_is_shielded_from_outer_cancel() -> None:
    async def main() -> None:
        g = TRIO.open_task_group()
        await g.start()
        h = g.spawn("aimdb.f", trio.sleep_forever)
        with trio.CancelScope() as cs:
            cs.cancel()
            await g.aclose()  # must still wait for the task
        assert h.done()
        assert _aimdb_tasks() == []

    trio.run(main)


# ---------------------------------------------------------------- a database under trio


def _weather_builder(seen: dict[str, list[Any]], produced: int) -> AimDbBuilder:
    async def temps(ctx: Any, producer: Any) -> None:
        for i in range(produced):
            producer.produce(Temp(float(i)))
            if i % 8 == 7:
                await ctx.time.sleep(0)

    async def hums(ctx: Any, producer: Any) -> None:
        producer.produce(Hum(50.0))
        await ctx.time.sleep(0.001)
        producer.produce(Hum(60.0))

    def tap(name: str) -> Any:
        async def fn(ctx: Any, consumer: Any) -> None:
            async for v in consumer.subscribe():
                seen[name].append(v)

        return fn

    async def slow(ctx: Any, consumer: Any) -> None:
        reader = consumer.subscribe()
        await ctx.time.sleep(0.05)  # fall far behind the ring of 4
        while True:
            try:
                seen["slow"].append(await reader.recv())
            except BufferLagged as exc:
                seen["slow_lag"].append(exc.missed)

    async def commands(ctx: Any, consumer: Any) -> None:
        async for c in consumer.subscribe():
            seen["cmd"].append(c.name)

    b = AimDbBuilder(shutdown_timeout=1.0)
    b.configure(
        Temp,
        "w.temp",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=256))
            .source(temps)
            .tap(tap("a"), name="a")
            .tap(tap("b"), name="b")
        ),
    )
    b.configure(Hum, "w.hum", lambda r: r.buffer(BufferCfg.SingleLatest()).source(hums).tap(tap("hum")))
    b.configure(
        Temp,
        "w.fahrenheit",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=256))
            .transform(Temp, "w.temp", lambda t: Temp(t.celsius * 9 / 5 + 32) if t.celsius < 3 else None)
            .tap(tap("f"))
        ),
    )
    b.configure(
        Dew,
        "w.dew",
        lambda r: (
            r.buffer(BufferCfg.SingleLatest())
            .join([(Temp, "w.temp"), (Hum, "w.hum")], lambda t, h: Dew(t.celsius - (100 - h.percent) / 5))
            .tap(tap("dew"))
        ),
    )
    b.configure(Temp, "w.lossy", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4)).tap(slow))
    b.configure(Command, "w.cmd", lambda r: r.buffer(BufferCfg.Mailbox()).tap(commands))
    return b


def test_database_end_to_end_under_trio() -> None:
    n = 100
    seen: dict[str, list[Any]] = {k: [] for k in ("a", "b", "f", "hum", "dew", "slow", "slow_lag", "cmd")}

    async def main() -> None:
        db = _weather_builder(seen, n).build()
        async with db:
            assert db.runtime is TRIO
            assert "aimdb[w.temp].source" in _aimdb_tasks()
            lossy = db.producer(Temp, "w.lossy")
            for i in range(10):  # ring of 4, slow reader: it misses exactly 6
                lossy.produce(Temp(float(i)))
            cmd = db.producer(Command, "w.cmd")
            cmd.produce(Command("open"))
            await trio.sleep(0.01)
            cmd.produce(Command("close"))
            with trio.fail_after(5):
                while len(seen["a"]) < n or len(seen["b"]) < n or len(seen["slow"]) < 4:
                    await trio.sleep(0.005)
            latest = db.consumer(Hum, "w.hum").peek()
            assert latest == Hum(60.0)
        assert db.state == "stopped"
        assert _aimdb_tasks() == []

    trio.run(main)
    values = [Temp(float(i)) for i in range(n)]
    assert seen["a"] == values and seen["b"] == values
    assert seen["f"] == [Temp(32.0), Temp(33.8), Temp(35.6)]
    assert seen["hum"][-1] == Hum(60.0)
    assert seen["dew"] and seen["dew"][-1] == Dew(float(n - 1) - 8.0)
    assert seen["slow_lag"] == [6]
    assert seen["slow"] == [Temp(float(i)) for i in range(6, 10)]
    assert seen["cmd"] == ["open", "close"]


def test_run_cancelled_from_outside_stops_cleanly() -> None:
    async def forever(ctx: Any, producer: Any) -> None:
        i = 0
        while True:
            producer.produce(i)
            i += 1
            await ctx.time.sleep(0.001)

    async def reader(ctx: Any, consumer: Any) -> None:
        async for _ in consumer.subscribe():
            pass

    async def main() -> None:
        b = AimDbBuilder(shutdown_timeout=0.5)
        b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(forever).tap(reader))
        db = b.build()
        with trio.move_on_after(0.05):
            await db.run()
        assert db.state == "stopped"
        assert _aimdb_tasks() == []

    trio.run(main)


def test_stop_from_stage_and_ticker_on_mock_clock() -> None:
    ticks: list[int] = []

    async def src(ctx: Any, producer: Any) -> None:
        async for n in ctx.time.ticker(1.0):  # one tick per virtual second
            producer.produce(n)
            if n == 5:
                ctx.db.stop()

    async def tap(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            ticks.append(v)

    async def main() -> float:
        b = AimDbBuilder()
        b.configure(int, "tick", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(src).tap(tap))
        t0 = trio.current_time()
        await b.build().run()
        return float(trio.current_time() - t0)

    elapsed = trio.run(main, clock=trio_testing.MockClock(autojump_threshold=0))
    assert ticks == [1, 2, 3, 4, 5]
    assert 5.0 <= elapsed < 6.0  # virtual time: the backend clock follows trio's clock


def test_explicit_runtime_name() -> None:
    async def main() -> str:
        b = AimDbBuilder(runtime="trio")
        b.configure(int, "x", lambda r: r.buffer(BufferCfg.SingleLatest()))
        async with b.build() as db:
            return str(db.runtime.name)

    assert trio.run(main) == "trio"
