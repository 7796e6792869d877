"""W1 fan-out on trio: one producer, 16 readers, a ring record vs one trio memory channel per reader.

Workload W1: a source produces N values (default 200 000) into an ``SpmcRing`` record,
yielding to the scheduler (``await trio.sleep(0)``) every 256 values; 16 taps read with
``async for``. Baseline in the same run: the producer ``send_nowait``s every value into 16
``trio`` memory channels (buffer 1024, one per reader; ``await send`` when one is full)
with the same yield pattern; 16 tasks read with ``async for``. Both runs end when every
reader has every value; times are the best of ``--rounds`` runs.

Usage: ``python bench/trio_fanout.py [--n 200000] [--readers 16] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_results

from aimdb import AimDbBuilder, BufferCfg

BATCH = 256


async def run_aimdb(n: int, readers: int) -> float:
    done = trio.Event()
    finished = [0]
    t0 = [0.0]

    async def source(ctx: Any, producer: Any) -> None:
        t0[0] = time.perf_counter()
        produce = producer.produce
        for i in range(n):
            produce(i)
            if i % BATCH == BATCH - 1:
                await trio.sleep(0)

    async def tap(ctx: Any, consumer: Any) -> None:
        count = 0
        async for _ in consumer.subscribe():
            count += 1
            if count == n:
                finished[0] += 1
                if finished[0] == readers:
                    done.set()
                return

    b = AimDbBuilder(type_checks=False)

    def configure(r: Any) -> None:
        r.buffer(BufferCfg.SpmcRing(capacity=1024)).source(source)
        for k in range(readers):
            r.tap(tap, name=f"r{k}")

    b.configure(int, "w1", configure)
    async with b.build():
        await done.wait()
        elapsed = time.perf_counter() - t0[0]
    return elapsed


async def run_channels(n: int, readers: int) -> float:
    pairs = [trio.open_memory_channel[int](1024) for _ in range(readers)]
    finished = [0]
    done = trio.Event()

    async def reader(rx: trio.MemoryReceiveChannel[int]) -> None:
        count = 0
        async for _ in rx:
            count += 1
            if count == n:
                finished[0] += 1
                if finished[0] == readers:
                    done.set()
                return

    async with trio.open_nursery() as nursery:
        for _, rx in pairs:
            nursery.start_soon(reader, rx)
        await trio.sleep(0)
        t0 = time.perf_counter()
        senders = [tx for tx, _ in pairs]
        for i in range(n):
            for tx in senders:
                try:
                    tx.send_nowait(i)
                except trio.WouldBlock:  # reader behind by a full buffer: wait for room
                    await tx.send(i)
            if i % BATCH == BATCH - 1:
                await trio.sleep(0)
        await done.wait()
        elapsed = time.perf_counter() - t0
        for tx in senders:
            await tx.aclose()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--readers", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--json",
        type=Path,
        help="also write the table to this results file (bench/results/runtimes.json for the docs)",
    )
    args = ap.parse_args()
    a: list[float] = []
    c: list[float] = []
    for _ in range(args.rounds):
        a.append(trio.run(run_aimdb, args.n, args.readers))
        c.append(trio.run(run_channels, args.n, args.readers))
    best_a, best_c = min(a), min(c)
    deliveries = args.n * args.readers
    print(
        f"W1 on trio {trio.__version__}, Python {platform.python_version()}: 1 producer, "
        f"{args.readers} readers, {args.n} values, yield every {BATCH}; best of {args.rounds}\n"
    )
    headers = ["implementation", "total (s)", "values/s (producer)", "ns per delivery", "speed-up"]
    rows = [
        [name, f"{t:.3f}", f"{args.n / t:,.0f}", f"{t / deliveries * 1e9:.0f}", f"{best_c / t:.2f}x"]
        for name, t in (("aimdb SpmcRing (trio backend)", best_a), ("trio memory channel per reader", best_c))
    ]
    print("| " + " | ".join(headers) + " |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        write_results(
            args.json, "benchmarks-runtimes.md", command_line(), {"trio": {"headers": headers, "rows": rows}}
        )


if __name__ == "__main__":
    main()
