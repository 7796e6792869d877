"""NatsConnector benchmark through a private nats-server, beside plain nats-py loops in one run.

Run (about half a minute; starts its own nats-server with JetStream on a free port)::

    python bench/nats_connector.py
    python bench/nats_connector.py --json out.json --uvloop

(The file is not called ``nats.py``: run as a script, it would shadow the ``nats`` package.)

Core NATS:

* throughput: ``--messages`` values produced into an aimdb record linked to a subject,
  received by a record of a second database linked from it; values/s = received / (last
  receive - first produce). Beside it, plain nats-py: ``await nc.publish()`` per value on one
  connection, a callback subscription on another.
* latency at ``--rate`` (1k/s): p50/p99 of receive time - produce time (same clock).
* stalled server: the server is SIGSTOPped while 200k values of 1 KiB are produced; the
  growth of the process's resident memory (sampled while producing) and the values counted
  as lag show that memory stays bounded.

JetStream (file storage, one stream):

* throughput: aimdb (acknowledged publishes, pull consumer) beside plain nats-py
  (``js.publish_async()`` per value, then a pull consumer fetching batches).
* latency at 1k/s: aimdb beside plain nats-py (``await js.publish()`` per value, push
  consumer with a callback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import nats

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import NatsConnector
from brokers import PrivateNats

DEADLINE = 30.0


@dataclass
class Sample:
    seq: int
    t: int  # perf_counter_ns at produce


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


class Sink:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.last_ns = 0
        self.lat_ms: list[float] = []
        self.done = asyncio.Event()

    def __call__(self, seq: int, t: int) -> None:
        now = time.perf_counter_ns()
        self.count += 1
        self.last_ns = now
        self.lat_ms.append((now - t) / 1e6)
        if self.count >= self.n:
            self.done.set()


def _sink_tap(sink: Sink) -> Any:
    async def tap(ctx: Any, consumer: Any) -> None:
        reader = consumer.subscribe()
        while True:
            for v in await reader.recv_batch(4096):
                sink(v.seq, v.t)

    return tap


def _payload(i: int) -> bytes:
    return b'{"seq":%d,"t":%d}' % (i, time.perf_counter_ns())


async def _paced(n: int, rate: float | None, send: Any) -> int:
    """Call ``await send(i)`` n times, at ``rate`` per second or as fast as possible."""
    t0 = time.perf_counter_ns()
    start = time.perf_counter()
    for i in range(n):
        if rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await send(i)
    return t0


def _result(name: str, sink: Sink, t0: int, n: int, latency: bool) -> dict[str, Any]:
    secs = (sink.last_ns - t0) / 1e9 if sink.count else float("nan")
    return {
        "name": name,
        "received": sink.count,
        "sent": n,
        "per_s": round(sink.count / secs) if sink.count and not latency else None,
        "p50_ms": round(_pct(sink.lat_ms, 50), 3),
        "p99_ms": round(_pct(sink.lat_ms, 99), 3),
    }


async def _stream(url: str, subject: str) -> str:
    name = "bench-" + uuid.uuid4().hex[:8]
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=name, subjects=[subject])
    finally:
        await nc.close()
    return name


# ---------------------------------------------------------------- aimdb


async def run_aimdb(
    url: str, n: int, rate: float | None, name: str, jetstream: bool = False
) -> dict[str, Any]:
    subject = "bench." + uuid.uuid4().hex[:8]
    if jetstream:
        await _stream(url, subject)
    sink = Sink(n)
    c_pub = NatsConnector(url, jetstream=jetstream)
    c_sub = NatsConnector(url, jetstream=jetstream, start="earliest")
    cap = max(1024, n)
    bo = AimDbBuilder().with_connector(c_pub)
    bo.configure(
        Sample,
        "s",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=cap)).link_to(f"nats://{subject}").finish(),
    )
    bi = AimDbBuilder().with_connector(c_sub)
    bi.configure(
        Sample,
        "s",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=cap))
            .link_from(f"nats://{subject}")
            .finish()
            .tap(_sink_tap(sink))
        ),
    )
    async with bi.build(), bo.build() as db_out:
        await c_sub.wait_connected(30)
        await c_pub.wait_connected(30)
        producer = db_out.producer(Sample, "s")
        if rate is None:
            t0 = time.perf_counter_ns()
            for i in range(0, n, 500):
                for j in range(i, min(n, i + 500)):
                    producer.produce(Sample(j, time.perf_counter_ns()))
                await asyncio.sleep(0)
        else:

            async def send(i: int) -> None:
                producer.produce(Sample(i, time.perf_counter_ns()))

            t0 = await _paced(n, rate, send)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sink.done.wait(), DEADLINE)
    return _result(name, sink, t0, n, rate is not None)


# ---------------------------------------------------------------- plain nats-py


async def run_raw_core(url: str, n: int, rate: float | None) -> dict[str, Any]:
    subject = "bench." + uuid.uuid4().hex[:8]
    sink = Sink(n)
    sub_nc = await nats.connect(url)
    pub_nc = await nats.connect(url)
    try:

        async def on_msg(msg: Any) -> None:
            d = json.loads(msg.data)
            sink(d["seq"], d["t"])

        await sub_nc.subscribe(subject, cb=on_msg)
        await sub_nc.flush()

        async def send(i: int) -> None:
            await pub_nc.publish(subject, _payload(i))

        t0 = await _paced(n, rate, send)
        await pub_nc.flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sink.done.wait(), DEADLINE)
    finally:
        await pub_nc.close()
        await sub_nc.close()
    label = "nats-py publish/subscribe" + (f" @{int(rate)}/s" if rate else "")
    return _result(label, sink, t0, n, rate is not None)


async def run_raw_js_throughput(url: str, n: int) -> dict[str, Any]:
    subject = "bench." + uuid.uuid4().hex[:8]
    stream = await _stream(url, subject)
    sink = Sink(n)
    pub_nc = await nats.connect(url)
    sub_nc = await nats.connect(url)
    try:
        js = pub_nc.jetstream()
        psub = await sub_nc.jetstream().pull_subscribe(subject, durable=None, stream=stream)

        async def reader() -> None:
            while not sink.done.is_set():
                try:
                    msgs = await psub.fetch(512, timeout=1)
                except asyncio.TimeoutError:
                    continue
                for m in msgs:
                    d = json.loads(m.data)
                    sink(d["seq"], d["t"])
                    await m.ack()

        task = asyncio.create_task(reader())
        t0 = time.perf_counter_ns()
        for i in range(n):
            await js.publish_async(subject, _payload(i))
        await js.publish_async_completed()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, DEADLINE)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    finally:
        await pub_nc.close()
        await sub_nc.close()
    return _result("nats-py JetStream publish_async / pull fetch(512)", sink, t0, n, False)


async def run_raw_js_latency(url: str, n: int, rate: float) -> dict[str, Any]:
    subject = "bench." + uuid.uuid4().hex[:8]
    await _stream(url, subject)
    sink = Sink(n)
    pub_nc = await nats.connect(url)
    sub_nc = await nats.connect(url)
    try:
        js = pub_nc.jetstream()

        async def on_msg(msg: Any) -> None:
            d = json.loads(msg.data)
            sink(d["seq"], d["t"])
            await msg.ack()

        await sub_nc.jetstream().subscribe(subject, cb=on_msg, manual_ack=True)

        async def send(i: int) -> None:
            await js.publish(subject, _payload(i))

        t0 = await _paced(n, rate, send)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sink.done.wait(), DEADLINE)
    finally:
        await pub_nc.close()
        await sub_nc.close()
    return _result(f"nats-py JetStream await publish / push consumer @{int(rate)}/s", sink, t0, n, True)


# ---------------------------------------------------------------- stalled server


def _rss_kib() -> int:
    """Current resident set size of this process in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def stall(server: PrivateNats, n: int = 200_000) -> dict[str, Any]:
    conn = NatsConnector(server.url)
    b = AimDbBuilder().with_connector(conn)
    b.configure(
        bytes,
        "blob",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=1024))
            .link_to("nats://bench.stall")
            .with_serializer(lambda v: v)
            .finish()
        ),
    )
    blob = os.urandom(1024)
    async with b.build() as db:
        await conn.wait_connected(10)
        rss0 = _rss_kib()
        peak = rss0
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            p = db.producer(bytes, "blob")
            t0 = time.perf_counter()
            for i in range(n):
                p.produce(blob)
                if i % 256 == 0:
                    await asyncio.sleep(0)
                if i % 4096 == 0:
                    peak = max(peak, _rss_kib())
            secs = time.perf_counter() - t0
            await asyncio.sleep(0.3)
            st = db.link_statistics()[0]
            peak = max(peak, _rss_kib())
        finally:
            os.kill(server.pid, signal.SIGCONT)
    return {
        "name": "nats server stalled (SIGSTOP), 200k x 1 KiB",
        "offered_mib": round(n * 1024 / 2**20),
        "produce_per_s": round(n / secs),
        "sent_before_stall_filled": st.sent,
        "dropped_lag": st.dropped_lag,
        "rss_growth_mib": round((peak - rss0) / 1024, 1),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | received/sent | values/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for r in rows:
        if "received" not in r:
            continue
        per_s = "-" if r["per_s"] is None else f"{r['per_s']:,}"
        lines.append(
            f"| {r['name']} | {r['received']}/{r['sent']} | {per_s} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    n, ln, rate = args.messages, args.latency_messages, args.rate
    with PrivateNats() as server:
        url = server.url
        for _ in range(2):  # raw first, then aimdb; twice, keep both (warm-up effects show)
            rows.append(await run_raw_core(url, n, None))
            rows.append(await run_aimdb(url, n, None, "aimdb NatsConnector"))
        rows.append(await run_raw_core(url, ln, rate))
        rows.append(await run_aimdb(url, ln, rate, f"aimdb NatsConnector @{int(rate)}/s"))
        rows.append(await run_raw_js_throughput(url, n))
        rows.append(await run_aimdb(url, n, None, "aimdb NatsConnector JetStream", jetstream=True))
        rows.append(await run_raw_js_latency(url, ln, rate))
        rows.append(
            await run_aimdb(url, ln, rate, f"aimdb NatsConnector JetStream @{int(rate)}/s", jetstream=True)
        )
    with PrivateNats(jetstream=False) as server:
        rows.append(await stall(server))
    print(_table(rows))
    for r in rows:
        if "received" not in r:
            print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--latency-messages", type=int, default=3_000)
    ap.add_argument("--rate", type=float, default=1_000.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    a = ap.parse_args()
    signal.alarm(240)
    if a.uvloop:
        import uvloop

        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
