"""Events to one WebSocket client beside one Unix-socket client, same server, same run.

Run: ``python bench/websocket.py [--seconds 3] [--rounds 3] [--write]`` (``--write``
updates the WebSocket section of docs/benchmarks-websocket.md and
bench/results/websocket.json). The server runs in its own process and produces into a
ring (capacity 4096) as fast as its loop allows, 64 values per loop turn. The clients
take turns (Unix, WebSocket, Unix, ...), each subscribing for ``--seconds`` and decoding
every event (``AimDbClient`` over the socket; msgspec over aiohttp's WebSocket client).
``lost`` counts events the server dropped for the client (sequence gaps).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import AsyncClient, RemoteConfig, start_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, machine_info, table, write_between_markers, write_results

DOC = ROOT / "docs" / "benchmarks-websocket.md"


@dataclass
class Reading:
    seq: int
    celsius: float


def _server_main(path: str, conn: Any) -> None:
    asyncio.run(_server(path, conn))


async def _server(path: str, conn: Any) -> None:
    b = AimDbBuilder(type_checks=False)
    b.configure(Reading, "bench.stream", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4096)))
    async with b.build() as db:
        cfg = RemoteConfig(unix=path, http="127.0.0.1:0", queue_size=4096, idle_timeout=None)
        server = await start_server(db, cfg)
        conn.send(server.http_url)
        p = db.producer(Reading, "bench.stream")
        i = 0
        while True:
            for _ in range(64):
                i += 1
                p.produce(Reading(i, 20.0))
            await asyncio.sleep(0)


@dataclass
class Count:
    """Events a client received and events the server dropped for it (sequence gaps)."""

    got: int = 0
    lost: int = 0


async def measure(drain: Coroutine[Any, Any, None], count: Count, seconds: float) -> tuple[float, float]:
    """Run ``drain`` (which updates ``count``); after 0.5 s of warm-up, measure ``seconds``.

    Returns events/s and the percentage of events lost in the measured window.
    """
    task = asyncio.ensure_future(drain)
    try:
        await asyncio.sleep(0.5)  # warm up
        g0, l0, t0 = count.got, count.lost, time.perf_counter()
        await asyncio.sleep(seconds)
        g1, l1, dt = count.got, count.lost, time.perf_counter() - t0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    n, m = g1 - g0, l1 - l0
    return n / dt, 100.0 * m / max(1, n + m)


async def unix_client(path: str, seconds: float) -> tuple[float, float]:
    async with await AsyncClient.connect("unix://" + path) as c:
        sub = await c.subscribe("bench.stream", snapshot=False)
        count = Count()

        async def drain() -> None:
            while True:
                ev = await sub.next()
                count.got += 1
                count.lost += ev.gap

        return await measure(drain(), count, seconds)


async def ws_client(url: str, seconds: float) -> tuple[float, float]:
    decode = msgspec.json.decode
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "ws", max_msg_size=0) as ws:
        await ws.send_str('{"id":1,"method":"hello","params":{"version":"1.0"}}')
        await ws.receive()
        await ws.send_str(
            '{"id":2,"method":"record.subscribe","params":{"pattern":"bench.stream","snapshot":false}}'
        )
        count = Count()

        async def drain() -> None:
            last = None
            async for msg in ws:
                seq = decode(msg.data).get("seq")
                if seq is None:
                    continue
                count.got += 1
                if last is not None and seq > last + 1:
                    count.lost += seq - last - 1
                last = seq

        return await measure(drain(), count, seconds)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="aimdb WebSocket vs Unix-socket event throughput")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks-websocket.md")
    args = ap.parse_args(argv)
    d = tempfile.mkdtemp(prefix="aimdb-bench-")
    path = os.path.join(d, "bench.sock")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_main, args=(path, child), daemon=True)
    proc.start()
    results: dict[str, list[tuple[float, float]]] = {"unix": [], "ws": []}
    try:
        if not parent.poll(30):
            raise RuntimeError("bench server did not start")
        url = parent.recv()
        for r in range(args.rounds):
            results["unix"].append(asyncio.run(unix_client(path, args.seconds)))
            results["ws"].append(asyncio.run(ws_client(url, args.seconds)))
            print(
                f"round {r + 1}: unix {results['unix'][-1][0]:,.0f} events/s, "
                f"websocket {results['ws'][-1][0]:,.0f} events/s"
            )
    finally:
        proc.kill()
        proc.join(5)
        shutil.rmtree(d, ignore_errors=True)
    rows = []
    for name, label in (("unix", "Unix socket (AsyncClient)"), ("ws", "WebSocket (aiohttp client)")):
        rates = [x for x, _ in results[name]]
        losses = [y for _, y in results[name]]
        rows.append(
            [
                label,
                f"{statistics.median(rates):,.0f}",
                f"{min(rates):,.0f} to {max(rates):,.0f}",
                f"{statistics.median(losses):.1f} %",
            ]
        )
    t = table(["one client over", "events/s (median)", "range over rounds", "lost"], rows, name="websocket")
    print(t)
    if args.write:
        info = machine_info()
        body = (
            f"Measured with `python bench/websocket.py --seconds {args.seconds:g} --rounds {args.rounds} "
            f"--write` on {info['Python']}, {info['CPU']}, {info['cores']} cores, "
            f"load {info['load average at start']}.\n\n" + t
        )
        write_between_markers(
            DOC, "websocket", body, "Events to one client (target: 20k events/s over WebSocket)"
        )
        source = " ".join(["python bench/websocket.py", *argv])
        write_results(RESULTS / "websocket.json", "benchmarks-websocket.md", source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
