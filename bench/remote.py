"""Remote-access benchmarks: record.get round trip, subscribe throughput, produce() cost.

Run: ``python bench/remote.py [--seconds 3] [--write] [--json PATH] [--rows PATH] [--only PART]``
(``--write`` updates docs/benchmarks-remote.md and bench/results/remote.json, from which
``python bench/plots.py`` draws the page's plot; ``--json`` writes the tables to another
results file; ``--rows`` writes the measurements as numbers, one row per measurement, the
format ``bench/before_after.py`` compares: ``before_after.py --json-flag=--rows``; ``--only
get|subscribe|produce``, repeatable, runs only those parts, for ``--rows``). The server
runs in its own process, clients in another, so the numbers are not two event loops fighting
over one GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import AsyncClient, RemoteConfig, start_server

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks-remote.md"
KEEP = "<!-- side-by-side comparisons below: kept when bench/remote.py --write rewrites the page -->"
"""The page's text from this line on is not generated: ``--write`` keeps it."""


@dataclass
class Reading:
    seq: int
    celsius: float


# ---------------------------------------------------------------- server process


def _server_main(path: str, ready: Any, mode: str) -> None:
    asyncio.run(_server(path, ready, mode))


async def _server(path: str, ready: Any, mode: str) -> None:
    b = AimDbBuilder(type_checks=False)
    b.configure(Reading, "bench.latest", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Reading, "bench.stream", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4096)))
    async with b.build() as db:
        db.producer(Reading, "bench.latest").produce(Reading(0, 21.5))
        await start_server(db, RemoteConfig(unix=path, max_connections=128, queue_size=4096))
        ready.set()
        if mode == "stream":
            p = db.producer(Reading, "bench.stream")
            i = 0
            while True:  # produce as fast as the loop allows, 64 values per turn
                for _ in range(64):
                    i += 1
                    p.produce(Reading(i, 20.0))
                await asyncio.sleep(0)
        await asyncio.Event().wait()


def _start_server(mode: str) -> tuple[Any, str, str]:
    d = tempfile.mkdtemp(prefix="aimdb-bench-")
    path = os.path.join(d, "bench.sock")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_server_main, args=(path, ready, mode), daemon=True)
    proc.start()
    if not ready.wait(20):
        proc.kill()
        raise RuntimeError("bench server did not start")
    return proc, path, d


def _stop(proc: Any, d: str) -> None:
    proc.kill()
    proc.join(5)
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- measurements


async def bench_get(path: str, n: int) -> dict[str, float]:
    async with await AsyncClient.connect("unix://" + path) as c:
        for _ in range(200):  # warm up
            await c.get("bench.latest")
        times = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await c.get("bench.latest")
            times.append(time.perf_counter_ns() - t0)
    times.sort()
    return {
        "median_us": statistics.median(times) / 1000,
        "p99_us": times[int(len(times) * 0.99)] / 1000,
        "n": n,
    }


async def bench_subscribe(path: str, clients: int, seconds: float) -> dict[str, float]:
    conns = [await AsyncClient.connect("unix://" + path) for _ in range(clients)]
    subs = [await c.subscribe("bench.stream", snapshot=False) for c in conns]
    received = [0] * clients
    missed = [0] * clients

    async def drain(i: int) -> None:
        s = subs[i]
        while True:
            ev = await s.next()
            received[i] += 1
            missed[i] += ev.gap

    tasks = [asyncio.create_task(drain(i)) for i in range(clients)]
    await asyncio.sleep(0.5)  # warm up
    r0, m0 = sum(received), sum(missed)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    dt = time.perf_counter() - t0
    r1, m1 = sum(received), sum(missed)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in conns:
        await c.aclose()
    got = r1 - r0
    lost = m1 - m0
    return {
        "clients": clients,
        "events_per_s_total": got / dt,
        "events_per_s_per_client": got / dt / clients,
        "lost_pct": 100.0 * lost / max(1, got + lost),
    }


def _subscriber_main(path: str, n: int, ready: Any) -> None:
    async def go() -> None:
        conns = [await AsyncClient.connect("unix://" + path) for _ in range(n)]
        subs = [await c.subscribe("bench.cost", snapshot=False) for c in conns]
        ready.set()

        async def drain(s: Any) -> None:
            while True:
                await s.next()

        await asyncio.gather(*(drain(s) for s in subs))

    asyncio.run(go())


def bench_produce_cost(n_values: int) -> list[dict[str, float]]:
    """Time spent inside produce() with 0, 1 and 50 remote subscribers (clients in another process)."""
    out = []
    for subscribers in (0, 1, 50):
        out.append(asyncio.run(_produce_cost(subscribers, n_values)))
    return out


async def _produce_cost(subscribers: int, n_values: int) -> dict[str, float]:
    d = tempfile.mkdtemp(prefix="aimdb-bench-")
    path = os.path.join(d, "cost.sock")
    b = AimDbBuilder(type_checks=False)
    b.configure(Reading, "bench.cost", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1024)))
    proc = None
    try:
        async with b.build() as db:
            await start_server(db, RemoteConfig(unix=path, max_connections=128, queue_size=4096))
            if subscribers:
                ctx = mp.get_context("spawn")
                ready = ctx.Event()
                proc = ctx.Process(target=_subscriber_main, args=(path, subscribers, ready), daemon=True)
                proc.start()
                for _ in range(1200):  # at most 60 s for the subscriber process to connect
                    if ready.is_set() or not proc.is_alive():
                        break
                    await asyncio.sleep(0.05)
                if not ready.is_set():
                    raise RuntimeError(f"the subscriber process never got ready (exit code {proc.exitcode})")
            p = db.producer(Reading, "bench.cost")
            v = Reading(1, 20.0)
            inside = 0
            batches = n_values // 100
            t_wall = time.perf_counter()
            for _ in range(batches):
                t0 = time.perf_counter_ns()
                for _ in range(100):
                    p.produce(v)
                inside += time.perf_counter_ns() - t0
                await asyncio.sleep(0)  # let the feed and writers run
            wall = time.perf_counter() - t_wall
            t0 = time.perf_counter_ns()
            for _ in range(100_000):  # tight loop: the feed never runs, only the producer's path
                p.produce(v)
            tight = (time.perf_counter_ns() - t0) / 100_000
            return {
                "tight_ns": tight,
                "subscribers": subscribers,
                "produce_ns": inside / (batches * 100),
                "wall_per_value_ns": wall * 1e9 / (batches * 100),
            }
    finally:
        if proc is not None:
            proc.kill()
            proc.join(5)
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="aimdb remote-access benchmarks")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput run")
    ap.add_argument("--gets", type=int, default=5000, help="record.get round trips")
    ap.add_argument("--values", type=int, default=200_000, help="values produced per produce() cost run")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks-remote.md")
    ap.add_argument("--json", type=Path, help="also write the tables to this results file")
    ap.add_argument("--rows", type=Path, help="also write the measurements as numeric rows (before_after.py)")
    ap.add_argument(
        "--only",
        choices=("get", "subscribe", "produce"),
        action="append",
        help="run only this part (repeatable; not with --write or --json, which need every table)",
    )
    args = ap.parse_args(argv)
    parts = set(args.only or ("get", "subscribe", "produce"))
    if args.only and (args.write or args.json):
        ap.error("--only gives part of the tables: use it with --rows")

    get: dict[str, float] | None = None
    if "get" in parts:
        proc, path, d = _start_server("idle")
        try:
            get = asyncio.run(bench_get(path, args.gets))
        finally:
            _stop(proc, d)
        print(f"record.get over Unix socket: median {get['median_us']:.1f} us, p99 {get['p99_us']:.1f} us")

    subs = []
    for clients in (1, 50) if "subscribe" in parts else ():
        proc, path, d = _start_server("stream")
        try:
            subs.append(asyncio.run(bench_subscribe(path, clients, args.seconds)))
        finally:
            _stop(proc, d)
        s = subs[-1]
        print(
            f"subscribe, {clients} client(s): {s['events_per_s_total']:,.0f} events/s total, "
            f"{s['events_per_s_per_client']:,.0f} per client, lost {s['lost_pct']:.1f} %"
        )

    cost = bench_produce_cost(args.values) if "produce" in parts else []
    for c in cost:
        print(
            f"produce() with {c['subscribers']} remote subscriber(s): {c['tight_ns']:.0f} ns tight loop, "
            f"{c['produce_ns']:.0f} ns inside produce, {c['wall_per_value_ns']:.0f} ns wall per value"
        )
    if args.rows:
        args.rows.write_text(json.dumps(_rows(get, subs, cost), indent=2))
    if get is None or not subs or not cost:
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import RESULTS, write_results

    tables = _tables(get, subs, cost)
    source = f"python bench/remote.py --seconds {args.seconds:g} --gets {args.gets}"
    if args.values != 200_000:
        source += f" --values {args.values}"
    if args.json:
        write_results(args.json, "benchmarks-remote.md", source, tables)
    if args.write:
        _write_doc(tables, args)
        write_results(RESULTS / "remote.json", "benchmarks-remote.md", source + " --write", tables)
    return 0


def _rows(
    get: dict[str, float] | None, subs: list[dict[str, float]], cost: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """The measurements as rows of ``name`` and numbers (what ``bench/before_after.py`` reads)."""
    rows: list[dict[str, Any]] = []
    if get is not None:
        rows.append({"name": "record.get", "median_us": get["median_us"], "p99_us": get["p99_us"]})
    for s in subs:
        n = int(s["clients"])
        rows.append({"name": f"subscribe, {n} client{'s' if n != 1 else ''}", **s})
    for c in cost:
        n = int(c["subscribers"])
        rows.append({"name": f"produce, {n} remote subscriber{'s' if n != 1 else ''}", **c})
    return rows


def _tables(
    get: dict[str, float], subs: list[dict[str, float]], cost: list[dict[str, float]]
) -> dict[str, dict[str, list[Any]]]:
    """The page's three tables: headers and rows of cell texts."""
    return {
        "get": {
            "headers": ["requests", "median", "p99"],
            "rows": [[f"{get['n']:,}", f"{get['median_us']:.1f} µs", f"{get['p99_us']:.1f} µs"]],
        },
        "subscribe": {
            "headers": ["clients", "events/s total", "events/s per client", "lost"],
            "rows": [
                [
                    f"{s['clients']:.0f}",
                    f"{s['events_per_s_total']:,.0f}",
                    f"{s['events_per_s_per_client']:,.0f}",
                    f"{s['lost_pct']:.1f} %",
                ]
                for s in subs
            ],
        },
        "produce-cost": {
            "headers": ["remote subscribers", "tight loop", "inside produce", "wall per value"],
            "rows": [
                [
                    f"{c['subscribers']:.0f}",
                    f"{c['tight_ns']:.0f} ns",
                    f"{c['produce_ns']:.0f} ns",
                    f"{c['wall_per_value_ns']:.0f} ns",
                ]
                for c in cost
            ],
        },
    }


def _md(t: dict[str, list[Any]]) -> list[str]:
    """A table as markdown lines, every column right-aligned."""
    lines = ["| " + " | ".join(t["headers"]) + " |", "|" + "---:|" * len(t["headers"])]
    return lines + ["| " + " | ".join(r) + " |" for r in t["rows"]]


def _write_doc(tables: dict[str, dict[str, list[Any]]], args: Any) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Remote access benchmarks",
        "",
        "Measured with:",
        "",
        "```",
        f"python bench/remote.py --seconds {args.seconds:g} --gets {args.gets}"
        + (f" --values {args.values}" if args.values != 200_000 else "")
        + " --write",
        "```",
        "",
        f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
        f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs, asyncio loop. Server and clients run in "
        "separate processes and talk over a Unix socket.",
        "",
        "![Subscribe event throughput, and the cost per value a remote subscriber adds to produce()]"
        "(images/bench-remote.svg)",
        "",
        "The plot shows the tables below, drawn by `python bench/plots.py` from `bench/results/remote.json`",
        "(the tables of this page as data; bar labels are the table's cells).",
        "",
        "## record.get round trip (target: p99 under 1 ms)",
        "",
        *_md(tables["get"]),
        "",
        "## Subscribe event throughput (target: at least 20k events/s to one client)",
        "",
        "The server produces into a ring (capacity 4096) as fast as its loop allows, 64 values per loop",
        "turn; each client subscribes to that record with a server-side queue of 4096. `lost` counts",
        "events the server dropped for a slow client (visible to it as sequence-number gaps).",
        "",
        *_md(tables["subscribe"]),
    ]
    lines += [
        "",
        "## Cost a remote subscriber adds to produce() (must stay O(1))",
        "",
        f"{args.values:,} values produced in batches of 100 with a loop turn between batches (so the",
        "server's feed and writers run); `inside produce` is the time spent in `produce()` itself,",
        "`wall` the total time per value including the server's fan-out work on the same loop.",
        "Subscribers are clients in another process.",
        "",
        "`tight loop` is 100,000 produces with no loop turn at all: the producer's own code path.",
        "",
        *_md(tables["produce-cost"]),
    ]
    lines += [
        "",
        "The producer's code path does not depend on the number of subscribers (tight loop): the server",
        "keeps one reader per subscribed record and a produce at most wakes it; fan-out happens in the",
        "server's feed task (encode once, then one small frame per subscription). With batches the",
        "`inside produce` time grows somewhat with 50 subscribers although the code path is the same;",
        "that is the cache and allocator churn of the fan-out work running between batches. The `wall`",
        "column is the server's total fan-out work on the shared loop (about 6 µs per event per",
        "subscriber with 50 subscribers), paid by the loop, not inside `produce()`. On a 2-CPU machine",
        "the subscriber process competes with the producer for a core, which also inflates the",
        "50-subscriber rows. Throughput numbers on a shared machine vary by 2-3x between runs.",
        "",
    ]
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    kept = old[old.index(KEEP) :] if KEEP in old else ""
    DOC.write_text("\n".join(lines) + ("\n" + kept if kept else ""), encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
