"""Core engine benchmarks: fan-out throughput, produce() cost, latency, memory, allocations.

One command runs every workload on asyncio and on uvloop, side by side with the baselines
(a plain list of callbacks -- the floor -- and one ``asyncio.Queue`` per reader), prints
markdown tables and writes them into ``docs/benchmarks.md`` between markers::

    python bench/core.py            # full run (about 2 minutes)
    python bench/core.py --quick    # smaller sizes, for a smoke test; does not touch the docs
    python bench/core.py --profile  # cProfile of the W1 hot paths instead of the benchmarks
    python bench/core.py --json out.json  # also write the tables as a results file

Writing the docs also writes ``bench/results/core.json``; ``python bench/plots.py`` then
redraws the plots on the page from it.

Workloads (the targets come from the core issue's "Performance" section):

- W1 fan-out: 1 producer, 1/4/16 readers, 200k values of a slotted value (a float and
  an int) created by the producer, which yields (``await asyncio.sleep(0)``) every 256.
  (a) callbacks: the producer calls each reader's callback per value (the floor);
  (b) one ``asyncio.Queue`` per reader (``put_nowait`` / ``await q.get()``);
  (c) aimdb ``Producer.produce`` into ``SpmcRing(capacity=1024)``, readers ``async for``;
  (d) aimdb, readers ``await reader.recv_batch()`` (every pending value at once).
  Every reader does the same work per value (adds the int field to a sum).
- produce(): ns per call with 16 subscribed readers, timed in batches of 1000 calls
  (``perf_counter_ns``); readers idle (subscribed, never reading) and active (draining
  in tasks, so the first call of a batch wakes 16 waiters); type checks on and off.
- W2 latency produce -> receive at 1k and 10k values/s, 4 readers, paced on loop time
  (every value due is produced, then the producer sleeps until the next is due); the
  value carries ``perf_counter_ns()`` at produce; the first 10 % is warm-up.
- W3 memory (tracemalloc): per record with a SingleLatest buffer (10k records) beyond
  the value and key, versus ``asyncio.Queue(maxsize=1)``; per slot of a 100k ring.
- Allocations on the hot path: net bytes left per delivery after a steady-state fan-out
  of pre-created values, and the transient peak.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DOCS,
    RESULTS,
    command_line,
    load_average,
    loop_kinds,
    machine_info,
    percentile,
    run_on,
    table,
    write_between_markers,
    write_results,
)

from aimdb import AimDb, AimDbBuilder, BufferCfg, LatestBuffer, RingBuffer

perf_counter_ns = time.perf_counter_ns
KEY = "bench.value"
YIELD_MASK = 255  # producer yields every 256 values


class Sample:
    """The small slotted value every workload sends: a float and an int."""

    __slots__ = ("n", "x")

    def __init__(self, x: float, n: int) -> None:
        self.x = x
        self.n = n


def make_db(capacity: int = 1024, type_checks: bool = True, runtime: Any = None) -> Any:
    b = AimDbBuilder(type_checks=type_checks, runtime=runtime)
    b.configure(Sample, KEY, lambda reg: reg.buffer(BufferCfg.SpmcRing(capacity=capacity)))
    return b.build()


async def _settle(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# ================================================================ W1 fan-out throughput


async def w1_callbacks(readers: int, n: int) -> tuple[float, int]:
    sums = [0] * readers

    def make_cb(i: int) -> Callable[[Sample], None]:
        acc = 0

        def cb(v: Sample) -> None:
            nonlocal acc
            acc += v.n
            sums[i] = acc

        return cb

    cbs = [make_cb(i) for i in range(readers)]
    sleep = asyncio.sleep
    t0 = perf_counter_ns()
    for i in range(n):
        v = Sample(i * 0.5, i)
        for cb in cbs:
            cb(v)
        if i & YIELD_MASK == YIELD_MASK:
            await sleep(0)
    dt = perf_counter_ns() - t0
    return dt / 1e9, 0


async def w1_queue(readers: int, n: int) -> tuple[float, int]:
    queues: list[asyncio.Queue[Sample]] = [asyncio.Queue() for _ in range(readers)]

    async def reader(q: asyncio.Queue[Sample]) -> int:
        acc = 0
        get = q.get
        for _ in range(n):
            v = await get()
            acc += v.n
        return acc

    tasks = [asyncio.create_task(reader(q)) for q in queues]
    await _settle()
    puts = [q.put_nowait for q in queues]
    sleep = asyncio.sleep
    t0 = perf_counter_ns()
    for i in range(n):
        v = Sample(i * 0.5, i)
        for put in puts:
            put(v)
        if i & YIELD_MASK == YIELD_MASK:
            await sleep(0)
    await asyncio.gather(*tasks)
    dt = perf_counter_ns() - t0
    return dt / 1e9, 0


async def _w1_aimdb(readers: int, n: int, batch: bool) -> tuple[float, int]:
    db = make_db(1024)
    async with db:
        subs = [db.consumer(Sample, KEY).subscribe() for _ in range(readers)]

        async def reader_for(r: Any) -> int:
            acc = 0
            k = 0
            async for v in r:
                acc += v.n
                k += 1
                if k == n:
                    break
            return acc

        async def reader_batch(r: Any) -> int:
            acc = 0
            got = 0
            recv_batch = r.recv_batch
            while got < n:
                items = await recv_batch()
                for v in items:
                    acc += v.n
                got += len(items)
            return acc

        body = reader_batch if batch else reader_for
        tasks = [asyncio.create_task(body(r)) for r in subs]
        await _settle()
        produce = db.producer(Sample, KEY).produce
        sleep = asyncio.sleep
        t0 = perf_counter_ns()
        for i in range(n):
            produce(Sample(i * 0.5, i))
            if i & YIELD_MASK == YIELD_MASK:
                await sleep(0)
        await asyncio.gather(*tasks)
        dt = perf_counter_ns() - t0
        lagged = sum(r.lagged for r in subs)
    return dt / 1e9, lagged


async def w1_aimdb_for(readers: int, n: int) -> tuple[float, int]:
    return await _w1_aimdb(readers, n, batch=False)


async def w1_aimdb_batch(readers: int, n: int) -> tuple[float, int]:
    return await _w1_aimdb(readers, n, batch=True)


W1_VARIANTS: list[tuple[str, Callable[[int, int], Any]]] = [
    ("callbacks (floor)", w1_callbacks),
    ("asyncio.Queue", w1_queue),
    ("aimdb async for", w1_aimdb_for),
    ("aimdb recv_batch", w1_aimdb_batch),
]


def run_w1(
    kind: str, n: int, reader_counts: list[int], repeats: int
) -> dict[tuple[int, str], dict[str, float]]:
    out: dict[tuple[int, str], dict[str, float]] = {}
    for readers in reader_counts:
        times: dict[str, list[float]] = {name: [] for name, _ in W1_VARIANTS}
        lag: dict[str, int] = {name: 0 for name, _ in W1_VARIANTS}
        for _ in range(repeats):  # interleave the variants so drift hits all alike
            for name, fn in W1_VARIANTS:
                gc.collect()
                dt, lagged = run_on(kind, lambda fn=fn: fn(readers, n))
                times[name].append(dt)
                lag[name] += lagged
        for name, _ in W1_VARIANTS:
            dt = min(times[name])  # best of the repeats: least disturbed by other load
            out[(readers, name)] = {"rate": readers * n / dt, "lagged": lag[name], "seconds": dt}
    return out


# ================================================================ produce() cost


async def produce_cost(
    type_checks: bool, active: bool, samples: int, batch: int, direct: bool = False
) -> list[float]:
    db = make_db(1024, type_checks=type_checks)
    async with db:
        subs = [db.consumer(Sample, KEY).subscribe() for _ in range(16)]
        tasks: list[asyncio.Task[None]] = []
        if active:

            async def drain(r: Any) -> None:
                async for _ in r:
                    pass

            tasks = [asyncio.create_task(drain(r)) for r in subs]
            await _settle()
        produce = db.buffer(KEY).produce if direct else db.producer(Sample, KEY).produce
        v = Sample(1.0, 1)
        rng = range(batch)
        out = []
        for s in range(samples):
            t0 = perf_counter_ns()
            for _ in rng:
                produce(v)
            out.append((perf_counter_ns() - t0) / batch)
            if active or s % 64 == 0:
                await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def baseline_cost(what: str, samples: int, batch: int) -> list[float]:
    v = Sample(1.0, 1)
    rng = range(batch)
    out = []
    if what == "queue":
        queues: list[asyncio.Queue[Sample]] = [asyncio.Queue() for _ in range(16)]
        puts = [q.put_nowait for q in queues]
        for _ in range(samples):
            t0 = perf_counter_ns()
            for _ in rng:
                for put in puts:
                    put(v)
            out.append((perf_counter_ns() - t0) / batch)
            for q in queues:  # empty them outside the timed part
                q._queue.clear()  # type: ignore[attr-defined]
    elif what == "callbacks":
        box = [0]

        def cb(x: Sample) -> None:
            box[0] += x.n

        cbs = [cb] * 16
        for _ in range(samples):
            t0 = perf_counter_ns()
            for _ in rng:
                for c in cbs:
                    c(v)
            out.append((perf_counter_ns() - t0) / batch)
    else:  # empty loop: the timing overhead included in every figure
        for _ in range(samples):
            t0 = perf_counter_ns()
            for _ in rng:
                pass
            out.append((perf_counter_ns() - t0) / batch)
    return out


def run_produce_cost(kind: str, samples: int, batch: int) -> list[tuple[str, list[float]]]:
    res = []
    for label, coro in [
        ("aimdb produce, 16 idle readers, type_checks on", lambda: produce_cost(True, False, samples, batch)),
        (
            "aimdb produce, 16 idle readers, type_checks off",
            lambda: produce_cost(False, False, samples, batch),
        ),
        (
            "aimdb produce, 16 active readers, type_checks on",
            lambda: produce_cost(True, True, samples, batch),
        ),
        (
            "aimdb produce, 16 active readers, type_checks off",
            lambda: produce_cost(False, True, samples, batch),
        ),
        (
            "RingBuffer.produce directly, 16 idle readers",
            lambda: produce_cost(True, False, samples, batch, True),
        ),
        ("baseline: 16 x Queue.put_nowait", lambda: baseline_cost("queue", samples, batch)),
        ("baseline: 16 callbacks", lambda: baseline_cost("callbacks", samples, batch)),
        ("timing loop alone (included above)", lambda: baseline_cost("empty", samples, batch)),
    ]:
        gc.collect()
        res.append((label, sorted(run_on(kind, coro))))
    return res


# ================================================================ W2 latency


async def w2_latency(impl: str, rate: int, seconds: float, readers: int = 4) -> list[int]:
    total = int(rate * seconds)
    warm = total // 10
    lats: list[list[int]] = [[] for _ in range(readers)]
    loop = asyncio.get_running_loop()

    async def pace(produce: Callable[[Sample], None]) -> None:
        period = 1.0 / rate
        t0 = loop.time()
        i = 0
        while i < total:
            due = min(total, int((loop.time() - t0) * rate) + 1)
            while i < due:
                produce(Sample(0.0, perf_counter_ns()))
                i += 1
            delay = t0 + i * period - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)

    if impl == "queue":
        queues: list[asyncio.Queue[Sample]] = [asyncio.Queue() for _ in range(readers)]

        async def qreader(q: asyncio.Queue[Sample], lat: list[int]) -> None:
            get = q.get
            for k in range(total):
                v = await get()
                if k >= warm:
                    lat.append(perf_counter_ns() - v.n)

        tasks = [asyncio.create_task(qreader(q, lat)) for q, lat in zip(queues, lats)]
        await _settle()
        puts = [q.put_nowait for q in queues]

        def produce(v: Sample) -> None:
            for put in puts:
                put(v)

        await pace(produce)
        await asyncio.gather(*tasks)
    else:
        db = make_db(1024)
        async with db:
            subs = [db.consumer(Sample, KEY).subscribe() for _ in range(readers)]

            async def areader(r: Any, lat: list[int]) -> None:
                k = 0
                async for v in r:
                    if k >= warm:
                        lat.append(perf_counter_ns() - v.n)
                    k += 1
                    if k == total:
                        break

            tasks = [asyncio.create_task(areader(r, lat)) for r, lat in zip(subs, lats)]
            await _settle()
            await pace(db.producer(Sample, KEY).produce)
            await asyncio.gather(*tasks)
    return sorted(x for lat in lats for x in lat)


def run_w2(kind: str, rates: list[int], seconds: float, rounds: int = 2) -> list[tuple[int, str, list[int]]]:
    """Alternate Queue and aimdb in ``rounds`` slices of ``seconds / rounds`` each, pooled."""
    out = []
    for rate in rates:
        pooled: dict[str, list[int]] = {"queue": [], "aimdb": []}
        for _ in range(rounds):
            for impl in ("queue", "aimdb"):
                gc.collect()
                pooled[impl] += run_on(
                    kind, lambda impl=impl, rate=rate: w2_latency(impl, rate, seconds / rounds)
                )
        for impl in ("queue", "aimdb"):
            out.append((rate, impl, sorted(pooled[impl])))
    return out


# ================================================================ W3 memory


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory_latest(records: int) -> dict[str, float]:
    """Bytes per record beyond the value (and the key string, which the user owns)."""
    keys = ["bench.rec" + str(i) for i in range(records)]
    values = [Sample(float(i), i) for i in range(records)]
    holder: list[Any] = [None] * records
    res: dict[str, float] = {}
    tracemalloc.start()
    try:
        # the buffer object alone, one value produced into each
        m0 = _traced()
        for i in range(records):
            b = LatestBuffer(keys[i])
            b.produce(values[i])
            holder[i] = b
        res["buffer"] = (_traced() - m0) / records
        holder[:] = [None] * records
        # asyncio.Queue(maxsize=1) holding one value each
        m0 = _traced()
        for i in range(records):
            q: asyncio.Queue[Sample] = asyncio.Queue(maxsize=1)
            q.put_nowait(values[i])
            holder[i] = q
        res["queue"] = (_traced() - m0) / records
        holder[:] = [None] * records
        # A whole record in a database (builder dropped), one value produced into each.
        # The database is constructed as build() does, minus build()'s checks: under
        # tracemalloc those take minutes for 10k records (they are timed separately below).
        m0 = _traced()
        builder = AimDbBuilder()
        for i in range(records):
            builder.configure(Sample, keys[i]).buffer(BufferCfg.SingleLatest())
        db = AimDb(
            list(builder._configs.values()),
            {},
            type_checks=True,
            shutdown_timeout=2.0,
            runtime=None,
            restart_backoff=(0.05, 5.0),
            order=list(builder._configs),
        )
        del builder
        for i in range(records):
            db.buffer(keys[i]).produce(values[i])
        res["record"] = (_traced() - m0) / records
        del db
    finally:
        tracemalloc.stop()
    del holder
    # build() time, untraced
    gc.collect()
    builder = AimDbBuilder()
    for i in range(records):
        builder.configure(Sample, keys[i]).buffer(BufferCfg.SingleLatest())
    t0 = time.perf_counter()
    builder.build()
    res["build_s"] = time.perf_counter() - t0
    return res


def memory_ring(capacity: int) -> dict[str, float]:
    v = Sample(1.0, 1)
    tracemalloc.start()
    try:
        m0 = _traced()
        r = RingBuffer("bench.ring", capacity)
        empty = (_traced() - m0) / capacity
        for _ in range(capacity):
            r.produce(v)
        full = (_traced() - m0) / capacity
        del r
    finally:
        tracemalloc.stop()
    return {"empty": empty, "full": full}


# ================================================================ allocations per delivery


class _CountingBackend:
    """Delegates to the asyncio backend, counting waits (each allocates a waiter and a future)."""

    def __init__(self) -> None:
        from aimdb._backends import get_backend

        self._b = get_backend("asyncio")
        self.waits = 0

    def new_waiter(self) -> Any:
        self.waits += 1
        return self._b.new_waiter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._b, name)


async def alloc_fanout(impl: str, readers: int, warm: int, n: int) -> dict[str, float]:
    values = [Sample(i * 0.5, i) for i in range(warm + n)]
    done = [0] * readers
    backend = _CountingBackend()
    sleep = asyncio.sleep

    async def drive(produce: Callable[[Sample], None], lo: int, hi: int) -> None:
        for i in range(lo, hi):
            produce(values[i])
            if i & YIELD_MASK == YIELD_MASK:
                await sleep(0)
        while min(done) < hi:
            await sleep(0)

    def measure_around() -> tuple[int, int]:
        gc.collect()
        tracemalloc.reset_peak()
        return tracemalloc.get_traced_memory()

    tasks: list[asyncio.Task[None]] = []
    db = None
    if impl == "asyncio.Queue":
        queues: list[asyncio.Queue[Sample]] = [asyncio.Queue() for _ in range(readers)]

        async def qreader(i: int, q: asyncio.Queue[Sample]) -> None:
            get = q.get
            while True:
                await get()
                done[i] += 1

        tasks = [asyncio.create_task(qreader(i, q)) for i, q in enumerate(queues)]
        puts = [q.put_nowait for q in queues]

        def produce(v: Sample) -> None:
            for put in puts:
                put(v)

    else:
        db = make_db(1024, runtime=backend)
        await db.start()
        subs = [db.consumer(Sample, KEY).subscribe() for _ in range(readers)]

        async def afor(i: int, r: Any) -> None:
            async for _ in r:
                done[i] += 1

        async def abatch(i: int, r: Any) -> None:
            while True:
                done[i] += len(await r.recv_batch())

        body = abatch if impl == "aimdb recv_batch" else afor
        tasks = [asyncio.create_task(body(i, r)) for i, r in enumerate(subs)]
        produce = db.producer(Sample, KEY).produce
    await _settle()
    await drive(produce, 0, warm)
    waits0 = backend.waits
    before, _ = measure_around()
    await drive(produce, warm, warm + n)
    _, peak = tracemalloc.get_traced_memory()
    after = _traced()
    waits = backend.waits - waits0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if db is not None:
        await db.aclose()
    deliveries = readers * n
    return {
        "net_per_delivery": (after - before) / deliveries,
        "peak": peak - before,
        "waits_per_delivery": waits / deliveries if impl != "asyncio.Queue" else float("nan"),
    }


def run_alloc(kind: str, readers: int, warm: int, n: int) -> list[tuple[str, dict[str, float]]]:
    out = []
    for impl in ("asyncio.Queue", "aimdb async for", "aimdb recv_batch"):
        gc.collect()
        tracemalloc.start()
        try:
            out.append((impl, run_on(kind, lambda impl=impl: alloc_fanout(impl, readers, warm, n))))
        finally:
            tracemalloc.stop()
    return out


# ================================================================ profiling mode


def profile(kind: str, n: int) -> None:
    import cProfile
    import pstats

    for readers, fn in ((16, w1_aimdb_for), (16, w1_aimdb_batch), (1, w1_aimdb_for)):
        print("\n### cProfile: " + fn.__name__ + ", " + str(readers) + " readers, " + kind + "\n")
        pr = cProfile.Profile()
        pr.enable()
        run_on(kind, lambda fn=fn, readers=readers: fn(readers, n))
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(12)


# ================================================================ report


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f}M"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes; do not write the docs")
    ap.add_argument("--profile", action="store_true", help="cProfile the W1 aimdb paths and exit")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    ap.add_argument("--repeats", type=int, default=3, help="W1 repeats per case (the best is reported)")
    ap.add_argument("--json", type=Path, help="also write the tables to this results file")
    args = ap.parse_args()

    quick = args.quick
    n_w1 = 20_000 if quick else 200_000
    repeats = 1 if quick else args.repeats
    samples = 200 if quick else 1000
    w2_seconds = 0.3 if quick else 2.0
    records = 2_000 if quick else 10_000
    ring_cap = 100_000
    kinds = loop_kinds()

    if args.profile:
        for kind in kinds:
            profile(kind, n_w1)
        return

    started = time.perf_counter()
    sections: list[str] = []
    verdicts: list[tuple[str, str, str, bool]] = []  # (target, loop, measured, ok)

    def emit(title: str, body: str) -> None:
        text = "### " + title + "\n\n" + body + "\n"
        print(text, flush=True)
        sections.append(text)

    info = machine_info()
    header = "Command: `" + command_line() + "`\n\n" + table(["machine", ""], list(info.items())) + "\n"
    print(header, flush=True)

    # ---- W1
    rows = []
    for kind in kinds:
        res = run_w1(kind, n_w1, [1, 4, 16], repeats)
        for readers in (1, 4, 16):
            floor = res[(readers, "callbacks (floor)")]["rate"]
            queue = res[(readers, "asyncio.Queue")]["rate"]
            for name, _ in W1_VARIANTS:
                r = res[(readers, name)]
                rows.append(
                    [
                        kind,
                        readers,
                        name,
                        fmt_rate(r["rate"]),
                        f"{r['rate'] / queue:.2f}x",
                        f"{r['rate'] / floor:.2f}x",
                        int(r["lagged"]) if name.startswith("aimdb") else "-",
                    ]
                )
        q16 = res[(16, "asyncio.Queue")]["rate"]
        q1 = res[(1, "asyncio.Queue")]["rate"]
        f16 = res[(16, "callbacks (floor)")]["rate"]
        a16 = res[(16, "aimdb async for")]["rate"] / q16
        a1 = res[(1, "aimdb async for")]["rate"] / q1
        b16 = res[(16, "aimdb recv_batch")]["rate"] / f16
        verdicts.append(("W1 16 readers, async for >= 2x Queue (aim 2.5x)", kind, f"{a16:.2f}x", a16 >= 2.0))
        verdicts.append(("W1 1 reader, async for >= 1.5x Queue", kind, f"{a1:.2f}x", a1 >= 1.5))
        verdicts.append(("W1 16 readers, recv_batch >= 1x callback floor", kind, f"{b16:.2f}x", b16 >= 1.0))
        lag = sum(res[(r, v)]["lagged"] for r in (1, 4, 16) for v in ("aimdb async for", "aimdb recv_batch"))
        verdicts.append(("W1 no lag with SpmcRing(1024)", kind, str(int(lag)) + " lagged", lag == 0))
    emit(
        "W1 fan-out throughput (" + f"{n_w1:,}" + " values, best of " + str(repeats) + ")",
        "Deliveries per second (values x readers / wall time); ratios against the asyncio.Queue "
        "baseline and the callback floor of the same loop and reader count. `lagged` is the sum of "
        "values aimdb readers lost to ring overflow over all repeats.\n\n"
        + table(
            ["loop", "readers", "variant", "deliveries/s", "vs Queue", "vs floor", "lagged"], rows, name="w1"
        ),
    )

    # ---- produce() cost
    rows = []
    for kind in kinds:
        for label, s in run_produce_cost(kind, samples, 1000):
            rows.append([kind, label, f"{percentile(s, 50):.0f}", f"{percentile(s, 99):.0f}"])
            if label.startswith("aimdb produce"):
                med = percentile(s, 50)
                verdicts.append(
                    (
                        "produce() median <= 1 us, " + label[len("aimdb produce, ") :],
                        kind,
                        f"{med:.0f} ns",
                        med <= 1000,
                    )
                )
    emit(
        "produce() cost with 16 subscribed readers",
        "ns per call; each sample is the mean of 1000 consecutive calls timed with "
        "`perf_counter_ns`, " + str(samples) + " samples; median and p99 over samples. "
        "Active readers drain between samples, so the first call of each batch wakes 16 waiting "
        "readers. Baselines are per value delivered to 16 readers.\n\n"
        + table(["loop", "case", "median ns", "p99 ns"], rows, name="produce"),
    )

    # ---- W2 latency
    rows = []
    for kind in kinds:
        res2 = run_w2(kind, [1_000, 10_000], w2_seconds)
        by = {(rate, impl): lat for rate, impl, lat in res2}
        for rate, impl, lat in res2:
            rows.append(
                [
                    kind,
                    f"{rate:,}/s",
                    "asyncio.Queue" if impl == "queue" else "aimdb async for",
                    f"{len(lat):,}",
                    f"{percentile(lat, 50) / 1e3:.1f}",
                    f"{percentile(lat, 99) / 1e3:.1f}",
                    f"{percentile(lat, 99.9) / 1e3:.1f}",
                    f"{lat[-1] / 1e3:.1f}" if lat else "nan",
                ]
            )
        for rate in (1_000, 10_000):
            a99 = percentile(by[(rate, "aimdb")], 99) / 1e3
            q99 = percentile(by[(rate, "queue")], 99) / 1e3
            verdicts.append(
                (
                    f"W2 {rate:,}/s p99 <= Queue p99 and <= 100 us",
                    kind,
                    f"{a99:.1f} us (Queue {q99:.1f} us)",
                    a99 <= q99 and a99 <= 100,
                )
            )
    emit(
        "W2 latency produce -> receive, 4 readers ("
        + str(w2_seconds)
        + " s per rate and impl, in 2 alternating slices, first 10 % of each dropped)",
        "Microseconds from `produce` to the reader holding the value, over all readers' samples.\n\n"
        + table(
            ["loop", "rate", "impl", "samples", "p50 us", "p99 us", "p999 us", "max us"], rows, name="w2"
        ),
    )

    # ---- W3 memory
    mem = memory_latest(records)
    ring = memory_ring(ring_cap)
    rows = [
        ["SingleLatest: LatestBuffer object alone, one value held", f"{mem['buffer']:.0f}"],
        ["SingleLatest: whole record in a built AimDb (buffer, config, metadata)", f"{mem['record']:.0f}"],
        ["baseline: asyncio.Queue(maxsize=1), one value held", f"{mem['queue']:.0f}"],
        [f"SpmcRing({ring_cap:,}) per slot, empty", f"{ring['empty']:.2f}"],
        [f"SpmcRing({ring_cap:,}) per slot, full (one shared value)", f"{ring['full']:.2f}"],
    ]
    verdicts.append(
        ("W3 SingleLatest buffer <= 200 B per record", "-", f"{mem['buffer']:.0f} B", mem["buffer"] <= 200)
    )
    verdicts.append(
        (
            "W3 SingleLatest whole record in AimDb <= 200 B",
            "-",
            f"{mem['record']:.0f} B",
            mem["record"] <= 200,
        )
    )
    verdicts.append(
        ("W3 ring slot <= one list slot (8 B)", "-", f"{ring['full']:.2f} B", ring["full"] <= 8.05)
    )
    emit(
        "W3 memory (tracemalloc, " + f"{records:,}" + " records)",
        "Bytes per record beyond the value and the key string (both created before measuring). "
        f"Building the {records:,}-record database took {mem['build_s']:.2f} s.\n\n"
        + table(["what", "bytes"], rows, name="w3"),
    )

    # ---- allocations
    rows = []
    warm, n_alloc = (4_096, 8_192) if quick else (16_384, 65_536)
    for kind in kinds:
        for impl, r in run_alloc(kind, 16, warm, n_alloc):
            rows.append(
                [
                    kind,
                    impl,
                    f"{r['net_per_delivery']:.3f}",
                    f"{r['peak']:,}",
                    "-"
                    if r["waits_per_delivery"] != r["waits_per_delivery"]
                    else f"{r['waits_per_delivery']:.4f}",
                ]
            )
            if impl.startswith("aimdb"):
                verdicts.append(
                    (
                        "no bytes retained per delivery, " + impl,
                        kind,
                        f"{r['net_per_delivery']:.3f} B",
                        abs(r["net_per_delivery"]) < 0.5,
                    )
                )
    emit(
        "Allocations on the hot path (16 readers, " + f"{n_alloc:,}" + " pre-created values, steady state)",
        "`net B/delivery`: tracemalloc traced memory after minus before the fan-out, per delivery "
        "(what the hot path retains). `peak B`: highest traced memory during the fan-out above "
        "the start (transient allocations alive at once). `waits/delivery`: reader suspensions "
        "per delivered value; each allocates a waiter, a future and a wake-up handle, freed "
        "on wake.\n\n"
        + table(["loop", "variant", "net B/delivery", "peak B", "waits/delivery"], rows, name="alloc"),
    )

    # ---- verdicts
    vrows = [[t, k, m, "PASS" if ok else "FAIL"] for t, k, m, ok in verdicts]
    emit("Targets", table(["target", "loop", "measured", "result"], vrows, name="targets"))
    elapsed = time.perf_counter() - started
    footer = f"Total run time {elapsed:.0f} s; load average at the end: {load_average()}.\n"
    print(footer)

    source = f"{command_line()} at aimdb {info['aimdb commit']}, {time.strftime('%Y-%m-%d')}"
    if args.json:
        write_results(args.json, "benchmarks.md", source)
    if not (quick or args.no_write):
        body = header + "\n" + "\n".join(sections) + "\n" + footer
        write_between_markers(DOCS, "bench:core", body, "Core engine (`bench/core.py`)")
        write_results(RESULTS / "core.json", "benchmarks.md", source)
        print("updated docs/benchmarks.md and bench/results/core.json (redraw: python bench/plots.py)")


if __name__ == "__main__":
    main()
