"""/metrics rendering for 1,000 records: aimdb's text writer beside prometheus_client's generate_latest.

Run: ``python bench/metrics.py [--records 1000] [--repeat 30] [--write]`` (``--write``
updates the /metrics section of docs/benchmarks-websocket.md and
bench/results/websocket.json). Both renderers start from the same ``db.statistics()`` call
and metric families; the baseline feeds them through ``AimDbCollector`` into
``prometheus_client.generate_latest``. Also timed: a whole ``GET /metrics`` over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import prometheus_client

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import RemoteConfig, start_server
from aimdb.remote._metrics import AimDbCollector, MetricsRenderer
from aimdb.testing import MemoryConnector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, machine_info, table, write_between_markers, write_results

DOC = ROOT / "docs" / "benchmarks-websocket.md"


@dataclass
class Reading:
    value: float


def build(n: int) -> AimDbBuilder:
    """``n`` ring records; every tenth derives from the one before (a stage); every tenth links out."""
    b = AimDbBuilder(type_checks=False)
    b.with_connector(MemoryConnector())
    for i in range(n):
        key = f"plant.{i // 100}.sensor.{i}"

        def cfg(r: Any, i: int = i) -> Any:
            r = r.buffer(BufferCfg.SpmcRing(capacity=64))
            if i % 10 == 1:
                r = r.transform(Reading, f"plant.{(i - 1) // 100}.sensor.{i - 1}", lambda v: v)
            if i % 10 == 5:
                r = r.link_to(f"memory://out/{i}").finish()
            return r

        b.configure(Reading, key, cfg)
    return b


def _ms(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1000, s[min(len(s) - 1, int(len(s) * 0.95))] * 1000


async def measure(n: int, repeat: int) -> dict[str, Any]:
    async with build(n).build() as db:
        for key in list(db.statistics())[::3]:
            db.producer(Reading, key).produce(Reading(1.0))
        server = await start_server(db, RemoteConfig(unix=None, http="127.0.0.1:0"))
        renderer = MetricsRenderer(db, server.statistics)
        registry = prometheus_client.CollectorRegistry()
        registry.register(AimDbCollector(renderer.families))
        body = renderer.render()
        assert body == prometheus_client.generate_latest(registry)
        samples = sum(1 for ln in body.splitlines() if not ln.startswith(b"#"))
        stats_t, ours_t, base_t, http_t = [], [], [], []
        async with aiohttp.ClientSession() as s:
            url = f"{server.http_url}metrics"
            for _ in range(3):  # warm up
                renderer.render()
                prometheus_client.generate_latest(registry)
                async with s.get(url) as r:
                    await r.read()
            for _ in range(repeat):
                t0 = time.perf_counter()
                db.statistics()
                t1 = time.perf_counter()
                renderer.render()
                t2 = time.perf_counter()
                prometheus_client.generate_latest(registry)
                t3 = time.perf_counter()
                async with s.get(url) as r:
                    await r.read()
                t4 = time.perf_counter()
                stats_t.append(t1 - t0)
                ours_t.append(t2 - t1)
                base_t.append(t3 - t2)
                http_t.append(t4 - t3)
        return {
            "records": n,
            "samples": samples,
            "bytes": len(body),
            "statistics": _ms(stats_t),
            "ours": _ms(ours_t),
            "baseline": _ms(base_t),
            "http": _ms(http_t),
        }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="aimdb /metrics rendering benchmark")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks-websocket.md")
    args = ap.parse_args(argv)
    r = asyncio.run(measure(args.records, args.repeat))
    rows = [
        ["db.statistics() alone", *(f"{v:.1f} ms" for v in r["statistics"])],
        ["aimdb text writer (statistics + render)", *(f"{v:.1f} ms" for v in r["ours"])],
        ["generate_latest over AimDbCollector (baseline)", *(f"{v:.1f} ms" for v in r["baseline"])],
        ["GET /metrics over HTTP (aimdb writer)", *(f"{v:.1f} ms" for v in r["http"])],
    ]
    t = table(["rendering", "median", "p95"], rows, name="metrics")
    speedup = r["baseline"][0] / r["ours"][0]
    print(f"{r['records']} records, {r['samples']} samples, {r['bytes']:,} bytes")
    print(t)
    print(f"text writer: {speedup:.1f}x faster than generate_latest (median)")
    if args.write:
        info = machine_info()
        body = (
            f"Measured with `python bench/metrics.py --records {args.records} --repeat {args.repeat} --write`"
            f" on {info['Python']}, {info['CPU']}, {info['cores']} cores, "
            f"load {info['load average at start']}.\n\n"
            f"{r['records']:,} records ({r['records'] // 10} with a transform stage, "
            f"{r['records'] // 10} with an outbound link) give {r['samples']:,} samples, "
            f"{r['bytes']:,} bytes of text.\n\n" + t + "\n\n"
            f"The text writer is {speedup:.1f}x faster than the baseline (median); both outputs are "
            "byte-identical (checked by the benchmark and by tests/remote/test_metrics.py)."
        )
        write_between_markers(DOC, "metrics", body, "/metrics rendering (target: 1,000 records in 50 ms)")
        source = " ".join(["python bench/metrics.py", *argv])
        write_results(RESULTS / "websocket.json", "benchmarks-websocket.md", source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
