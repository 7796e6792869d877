"""Sync API overhead: ``SyncProducer.set`` + ``SyncConsumer.get`` vs ``queue.Queue`` between threads.

Two measurements, each side by side in one run, interleaved in rounds so machine noise
hits both alike:

* **ping-pong** (latency of one value, one value in flight): the calling thread does
  ``p.set(i); c.get()`` — the value travels to the database's loop thread and back.
  Baseline: the calling thread does ``q1.put(i); q2.get()`` with an echo thread moving
  values from ``q1`` to ``q2`` — the same two thread hand-offs with ``queue.Queue``.
* **stream** (cost per value, many in flight): one thread sets N values, another gets
  them. Baseline: one thread ``put``s N values on a ``queue.Queue``, another ``get``s.

Usage: ``python bench/sync_api.py [--n 20000] [--rounds 10] [--loop asyncio|uvloop]``
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_results

import aimdb.sync
from aimdb import AimDbBuilder, BufferCfg


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100.0 * len(s)))]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


# ---------------------------------------------------------------- ping-pong


def pingpong_aimdb(h: Any, n: int) -> list[float]:
    p = h.producer(int, "bench.ring")
    c = h.consumer(int, "bench.ring")
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        p.set(i)
        c.get()
        out.append((clock() - t0) / 1000)
    c.close()
    return out


def pingpong_queue(n: int) -> list[float]:
    q1: queue.Queue[int | None] = queue.Queue()
    q2: queue.Queue[int] = queue.Queue()

    def echo() -> None:
        while True:
            v = q1.get()
            if v is None:
                return
            q2.put(v)

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        q1.put(i)
        q2.get()
        out.append((clock() - t0) / 1000)
    q1.put(None)
    th.join()
    return out


# ---------------------------------------------------------------- stream


def stream_aimdb(h: Any, n: int) -> float:
    p = h.producer(int, "bench.ring")
    c = h.consumer(int, "bench.ring")
    done = threading.Event()

    def reader() -> None:
        got = 0
        while got < n:
            c.get()
            got += 1
        done.set()

    th = threading.Thread(target=reader, daemon=True)
    t0 = time.perf_counter_ns()
    th.start()
    for i in range(n):
        p.set(i)
    done.wait()
    dt = time.perf_counter_ns() - t0
    th.join()
    c.close()
    return dt / n / 1000


def stream_queue(n: int) -> float:
    q: queue.Queue[int] = queue.Queue()
    done = threading.Event()

    def reader() -> None:
        for _ in range(n):
            q.get()
        done.set()

    th = threading.Thread(target=reader, daemon=True)
    t0 = time.perf_counter_ns()
    th.start()
    for i in range(n):
        q.put(i)
    done.wait()
    dt = time.perf_counter_ns() - t0
    th.join()
    return dt / n / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="values per round and method")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument(
        "--json",
        type=Path,
        help="also write the table to this results file as sync-LOOP (docs: bench/results/runtimes.json)",
    )
    args = ap.parse_args()
    n_ping = max(1, args.n // 10)

    b = AimDbBuilder()
    # Ring larger than the stream, so the slow-reader case never loses values.
    b.configure(int, "bench.ring", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=args.n + 1)))
    ping_a: list[float] = []
    ping_q: list[float] = []
    stream_a: list[float] = []
    stream_q: list[float] = []
    with aimdb.sync.attach(b, loop_factory=loop_factory(args.loop), queue_size=args.n + 1) as h:
        pingpong_aimdb(h, 500)  # warm-up
        pingpong_queue(500)
        for _ in range(args.rounds):
            ping_a += pingpong_aimdb(h, n_ping)
            ping_q += pingpong_queue(n_ping)
            stream_a.append(stream_aimdb(h, args.n))
            stream_q.append(stream_queue(args.n))

    print(
        f"Sync API vs queue.Queue — Python {platform.python_version()}, {sys.platform}, "
        f"loop={args.loop}, {args.rounds} rounds x {n_ping} ping-pongs / {args.n} streamed values\n"
    )
    ma, mq = pct(ping_a, 50), pct(ping_q, 50)
    pa, pq = pct(ping_a, 99), pct(ping_q, 99)
    sa, sq = pct(stream_a, 50), pct(stream_q, 50)
    rows = [
        ["ping-pong median (µs per value)", f"{ma:.1f}", f"{mq:.1f}", f"{ma / mq:.2f}x"],
        ["ping-pong p99 (µs per value)", f"{pa:.1f}", f"{pq:.1f}", f"{pa / pq:.2f}x"],
        ["stream, median of rounds (µs per value)", f"{sa:.2f}", f"{sq:.2f}", f"{sa / sq:.2f}x"],
    ]
    loop_name = "asyncio loop" if args.loop == "asyncio" else args.loop
    headers = [f"measurement ({loop_name})", "aimdb.sync", "queue.Queue", "ratio"]
    print("| " + " | ".join(headers) + " |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        table = {"sync-" + args.loop: {"headers": headers, "rows": rows}}
        write_results(args.json, "benchmarks-runtimes.md", command_line(), table)


if __name__ == "__main__":
    main()
