"""Persistence benchmarks: persisted throughput against raw sqlite3, produce() cost, history, restore.

    python bench/persistence.py              # full sizes (about a minute)
    python bench/persistence.py --quick      # smaller sizes, a smoke test
    python bench/persistence.py --json out.json

Workloads (the targets come from the persistence issue):

- Throughput: 200k small values (a dataclass with an int and a float) produced into a
  persisted ``SpmcRing(capacity=4096)``, the producer yielding every 256 values and
  waiting while the store is more than half full (so nothing is lost); timed from the
  first produce until the store reports every row committed. Baseline in the
  same run, alternating rounds: the same rows (key, ts, JSON payload encoded beforehand)
  inserted with one ``executemany`` in one transaction into a fresh file with the same
  schema, WAL and ``synchronous=NORMAL``. Target: >= 100k values/s and >= 50 % of raw.
- produce(): ns per call on a ring with one idle reader, not persisted and persisted
  (batches of 1000 calls, median of batches), to show what persisting adds to the
  producer (the listener wake-up) and that a record that is not persisted pays nothing.
- history: ``db.history(key, limit=1000, newest_first=True)`` on a file of 1M rows (10
  keys, 100k rows each), 200 queries after a warm-up; p50 and p99. Target p99 <= 10 ms.
- Restore: ``db.start()`` of a database with 1000 persisted SingleLatest records whose
  newest values are restored from a file of 10k rows, against the same database without
  persistence. Target <= 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, percentile

from aimdb import AimDbBuilder, SingleLatest, SpmcRing
from aimdb.persistence import SqliteBackend
from aimdb.persistence._sqlite import _INSERT, _SCHEMA


@dataclasses.dataclass
class Sample:
    n: int
    v: float


def _rows(n: int, key: str = "bench.r") -> list[tuple[str, int, bytes]]:
    enc = msgspec.json.Encoder()
    t = time.time_ns()
    return [(key, t + i, enc.encode(Sample(i, i * 0.5))) for i in range(n)]


def raw_sqlite(path: Path, rows: list[tuple[str, int, bytes]], encode: int = 0) -> float:
    """Seconds for one executemany of ``rows`` in one transaction (schema as the backend's).

    With ``encode`` > 0 the rows are built inside the timing instead: ``encode`` values
    created and encoded with msgspec, then inserted (what a hand-written loop would do).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for stmt in _SCHEMA:
        conn.execute(stmt)
    t0 = time.perf_counter()
    if encode:
        rows = _rows(encode)
    conn.execute("BEGIN")
    conn.executemany(_INSERT, rows)
    conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return dt


async def persisted(path: Path, n: int) -> float:
    """Seconds from the first produce until all ``n`` values are committed.

    The producer runs flat out but waits (1 ms sleeps) while the store holds more than half
    of ``max_pending`` rows not yet written, so the figure is what the pipeline sustains
    without losing values; the run fails if any value was dropped.
    """
    store = SqliteBackend(path)
    b = AimDbBuilder(type_checks=False)
    b.configure(Sample, "bench.r", lambda r: r.buffer(SpmcRing(capacity=4096)).persist())
    b.with_persistence(store)
    high = store.max_pending // 2
    async with b.build() as db:
        p = db.producer(Sample, "bench.r")
        t0 = time.perf_counter()
        for i in range(n):
            p.produce(Sample(i, i * 0.5))
            if i % 256 == 255:
                await asyncio.sleep(0)
                while store.pending() > high:
                    await asyncio.sleep(0.001)
        stats = db.record_statistics("bench.r")["persistence"]
        while stats["stored"] + stats["dropped"] < n or store.pending():
            await asyncio.sleep(0.001)
            stats = db.record_statistics("bench.r")["persistence"]
        dt = time.perf_counter() - t0
        assert stats["dropped"] == 0, stats
        assert store.statistics().written == n, store.statistics()
    return dt


async def produce_cost(path: Path, persist: bool, batches: int) -> float:
    """Median ns per produce() call over ``batches`` batches of 1000 calls."""
    b = AimDbBuilder(type_checks=False)
    reg = b.configure(Sample, "bench.r", lambda r: r.buffer(SpmcRing(capacity=4096)))
    if persist:
        reg.persist()
        b.with_persistence(SqliteBackend(path))
    per: list[float] = []
    async with b.build() as db:
        p = db.producer(Sample, "bench.r")
        idle = db.consumer(Sample, "bench.r").subscribe()
        v = Sample(1, 0.5)
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in range(1000):
                p.produce(v)
            per.append((time.perf_counter_ns() - t0) / 1000)
            await asyncio.sleep(0)  # the persister drains between batches
        idle.close()
    return statistics.median(per)


async def history_latency(path: Path, rows: int, queries: int) -> tuple[float, float]:
    keys = [f"bench.k{i}" for i in range(10)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for stmt in _SCHEMA:
        conn.execute(stmt)
    per_key = rows // len(keys)
    conn.execute("BEGIN")
    for k in keys:
        conn.executemany(_INSERT, _rows(per_key, k))
    conn.execute("COMMIT")
    conn.close()
    b = AimDbBuilder()
    for k in keys:
        b.configure(Sample, k, lambda r: r.buffer(SpmcRing(capacity=16)).persist())
    b.with_persistence(SqliteBackend(path))
    times: list[float] = []
    async with b.build() as db:
        for i in range(queries + 20):
            t0 = time.perf_counter()
            got = await db.history(keys[i % len(keys)], limit=1000, newest_first=True)
            dt = time.perf_counter() - t0
            assert len(got) == 1000
            if i >= 20:
                times.append(dt * 1000)
    times.sort()
    return percentile(times, 50), percentile(times, 99)


async def restore_time(path: Path, records: int) -> tuple[float, float]:
    keys = [f"bench.s{i}" for i in range(records)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for stmt in _SCHEMA:
        conn.execute(stmt)
    conn.execute("BEGIN")
    for k in keys:
        conn.executemany(_INSERT, _rows(10, k))
    conn.execute("COMMIT")
    conn.close()

    async def start(persist: bool) -> float:
        b = AimDbBuilder()
        for k in keys:
            reg = b.configure(Sample, k, lambda r: r.buffer(SingleLatest()))
            if persist:
                reg.persist()
        if persist:
            b.with_persistence(SqliteBackend(path))
        db = b.build()
        t0 = time.perf_counter()
        await db.start()
        dt = time.perf_counter() - t0
        if persist:
            assert db.buffer(keys[-1]).peek() == Sample(9, 4.5)  # type: ignore[union-attr]
        await db.aclose()
        return dt * 1000

    with_p = min([await start(True) for _ in range(3)])
    without = min([await start(False) for _ in range(3)])
    return with_p, without


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the throughput pair")
    ap.add_argument("--json", type=Path, help="also write the result rows here")
    args = ap.parse_args()
    n = 20_000 if args.quick else 200_000
    hist_rows = 100_000 if args.quick else 1_000_000
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rows = _rows(n)
        raw: list[float] = []
        raw_enc: list[float] = []
        ours: list[float] = []
        for r in range(args.rounds):
            raw.append(n / raw_sqlite(d / f"raw{r}.db", rows))
            raw_enc.append(n / raw_sqlite(d / f"rawenc{r}.db", [], encode=n))
            ours.append(n / asyncio.run(persisted(d / f"aimdb{r}.db", n)))
        best_raw, best_enc, best_ours = max(raw), max(raw_enc), max(ours)
        out.append({"name": "throughput raw sqlite3 executemany", "values_per_s": best_raw})
        out.append({"name": "throughput raw sqlite3, encoding included", "values_per_s": best_enc})
        out.append({"name": "throughput aimdb persisted ring", "values_per_s": best_ours})
        plain = asyncio.run(produce_cost(d / "p0.db", False, 200))
        pers = asyncio.run(produce_cost(d / "p1.db", True, 200))
        out.append({"name": "produce() ns, not persisted", "ns": plain})
        out.append({"name": "produce() ns, persisted", "ns": pers})
        p50, p99 = asyncio.run(history_latency(d / "hist.db", hist_rows, 200))
        out.append({"name": f"history(limit=1000) on {hist_rows} rows", "p50_ms": p50, "p99_ms": p99})
        with_p, without = asyncio.run(restore_time(d / "restore.db", 1000))
        out.append({"name": "start() of 1000 records", "with_restore_ms": with_p, "without_ms": without})
    info = machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    print()
    lines = [
        "| measurement | aimdb | baseline | ratio / target |",
        "|---|---:|---:|---|",
        f"| persisted throughput (values/s, best of {args.rounds}) | {best_ours:,.0f} | {best_raw:,.0f} "
        f"(raw executemany) | {best_ours / best_raw:.0%} of raw (target >= 50 %, >= 100k/s) |",
        f"| the same, raw baseline encoding too | {best_ours:,.0f} | {best_enc:,.0f} | "
        f"{best_ours / best_enc:.0%} |",
        f"| produce() ns per call, ring + 1 idle reader | {pers:.0f} (persisted) | {plain:.0f} (not) | |",
        f"| history(limit=1000) on {hist_rows:,} rows, p50 / p99 (ms) | {p50:.2f} / {p99:.2f} | "
        "| p99 <= 10 ms |",
        f"| start() with 1000 restored records (ms) | {with_p:.1f} | {without:.1f} (no persistence) "
        "| <= 200 ms |",
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
