# Runs under real MicroPython (see run.mjs): aimdb's conformance suites, an end-to-end
# database test and a small produce->receive benchmark. Prints "SUITE OK" at the end.
# Usage: node src/aimdb/_micropython/run.mjs --modules DIR --path src tools/micropython/aimdb_suite.py
# (DIR: what `aimdb micropython install` printed)
import asyncio
import time

import aimdb
from aimdb import AimDbBuilder, BufferCfg, BufferLagged
from aimdb._backends import get_backend
from aimdb.links import SerialLink
from aimdb.testing import check_runtime_backend, run_buffer_conformance


class Temperature:
    def __init__(self, celsius):
        self.celsius = celsius


class Humidity:
    def __init__(self, percent):
        self.percent = percent


class Dew:
    def __init__(self, celsius):
        self.celsius = celsius


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def end_to_end():
    seen = {"a": [], "b": [], "f": [], "dew": [], "cfg": [], "cmd": []}

    async def temps(ctx, producer):
        for c in (20.0, 21.0, 22.0):
            producer.produce(Temperature(c))
            await ctx.time.sleep(0.005)

    async def hums(ctx, producer):
        producer.produce(Humidity(50.0))

    def tap(name):
        async def fn(ctx, consumer):
            async for v in consumer.subscribe():
                seen[name].append(v.celsius)

        return fn

    async def cfg_tap(ctx, consumer):
        async for v in consumer.subscribe():
            seen["cfg"].append(v)

    async def cmd_tap(ctx, consumer):
        async for v in consumer.subscribe():
            seen["cmd"].append(v)

    b = AimDbBuilder()
    b.configure(
        Temperature,
        "t",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(temps).tap(tap("a"), name="a").tap(tap("b"), name="b"),
    )
    b.configure(Humidity, "h", lambda r: r.buffer(BufferCfg.SingleLatest()).source(hums))
    b.configure(
        Temperature,
        "f",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8))
        .transform(Temperature, "t", lambda t: Temperature(t.celsius * 9 / 5 + 32))
        .tap(tap("f")),
    )
    b.configure(
        Dew,
        "dew",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8))
        .join([(Temperature, "t"), (Humidity, "h")], lambda t, h: Dew(t.celsius - (100 - h.percent) / 5))
        .tap(tap("dew")),
    )
    b.configure(int, "cfg", lambda r: r.buffer(BufferCfg.SingleLatest()).tap(cfg_tap))
    b.configure(str, "cmd", lambda r: r.buffer(BufferCfg.Mailbox()).tap(cmd_tap))
    db = b.build()
    async with db:
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(seen["dew"]) >= 3:
                break
        p = db.producer(int, "cfg")
        p.produce(1)
        p.produce(2)
        db.producer(str, "cmd").produce("go")
        await asyncio.sleep(0.02)
        # lag on a ring reader
        ring = db.consumer(Temperature, "t").subscribe()
        tp = db.producer(Temperature, "t")
        for i in range(12):
            tp.produce(Temperature(float(i)))
        try:
            ring.try_recv()
            raise AssertionError("expected lag")
        except BufferLagged as lag:
            check(lag.missed == 4, "lag count " + str(lag.missed))
    check(seen["a"][:3] == [20.0, 21.0, 22.0], "tap a " + repr(seen["a"]))
    check(seen["b"][:3] == [20.0, 21.0, 22.0], "tap b " + repr(seen["b"]))
    check(seen["f"][:3] == [68.0, 69.8, 71.6], "transform " + repr(seen["f"]))
    check(seen["dew"][:3] == [10.0, 11.0, 12.0], "join " + repr(seen["dew"]))
    check(seen["cfg"] == [2], "single latest collapses " + repr(seen["cfg"]))
    check(seen["cmd"] == ["go"], "mailbox " + repr(seen["cmd"]))
    check(db.state == "stopped", "stopped")
    print("end-to-end ok")


async def serial_link():
    import json

    frames = []
    link = SerialLink(frames.append, name="mpy", hello_every=0)

    async def src(ctx, producer):
        for i in range(5):
            producer.produce(Temperature(float(i)))

    b = AimDbBuilder().with_connector(link)
    b.configure(
        Temperature, "t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(src).link_to("aimdb://hub.t")
    )
    async with b.build():
        for _ in range(100):
            if len(frames) >= 6:
                break
            await asyncio.sleep(0.005)
    objs = [json.loads(f) for f in frames]
    check(objs[0]["method"] == "hello" and objs[0]["params"]["client"] == "mpy", "hello " + repr(objs[0]))
    vals = [o["params"]["value"]["celsius"] for o in objs[1:]]
    check(vals == [0.0, 1.0, 2.0, 3.0, 4.0], "serial link values " + repr(vals))
    check(all("id" not in o and o["params"]["key"] == "hub.t" for o in objs[1:]), "notifications")
    print("serial link ok")


async def bench(readers, n):
    b = AimDbBuilder(type_checks=False)
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=256)))
    db = b.build()
    got = [0]
    async with db:
        rs = [db.consumer(int, "n").subscribe() for _ in range(readers)]
        prod = db.producer(int, "n")

        async def drain(r):
            async for _ in r:
                got[0] += 1

        tasks = [asyncio.create_task(drain(r)) for r in rs]
        t0 = time.ticks_us()
        for i in range(n):
            prod.produce(i)
            if i % 128 == 127:
                await asyncio.sleep(0)
        while got[0] < n * readers:
            await asyncio.sleep(0)
        dt = time.ticks_diff(time.ticks_us(), t0)
        for t in tasks:
            t.cancel()
    print(
        "bench readers=%d values=%d: %.2f us per value, %.2f us per delivery"
        % (readers, n, dt / n, dt / (n * readers))
    )


async def main():
    print("aimdb", aimdb.__version__, "on MicroPython")
    print("buffer conformance checks:", await run_buffer_conformance())
    print("runtime conformance checks:", await check_runtime_backend(get_backend("micropython")))
    await end_to_end()
    await serial_link()
    for readers in (1, 4):
        await bench(readers, 5000)
    print("SUITE OK")


await asyncio.create_task(main())
