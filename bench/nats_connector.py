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

Connecting: ``--connects`` (100) fresh connectors, each with three core subscriptions and
one JetStream pull consumer; p50/p99 of the time from ``build()`` to the return of
``wait_connected()`` (which waits until the server has every subscription and consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import nats
from _common import (
    Sink,
    connector_arg_parser,
    current_rss_kib,
    join_reader,
    json_payload,
    paced,
    report,
    result_row,
    rounded_index_percentile,
    run_main,
    run_pipeline,
    stalled_broker,
)

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import NatsConnector
from brokers import PrivateNats


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
    return await run_pipeline(
        NatsConnector(url, jetstream=jetstream),
        NatsConnector(url, jetstream=jetstream, start="earliest"),
        f"nats://{subject}",
        n,
        rate,
        name,
    )


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
            await pub_nc.publish(subject, json_payload(i))

        t0 = await paced(n, rate, send)
        await pub_nc.flush()
        await sink.wait()
    finally:
        await pub_nc.close()
        await sub_nc.close()
    label = "nats-py publish/subscribe" + (f" @{int(rate)}/s" if rate else "")
    return result_row(label, sink, t0, n, rate is not None)


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

        async def send(i: int) -> None:
            await js.publish_async(subject, json_payload(i))

        task = asyncio.create_task(reader())
        t0 = await paced(n, None, send)
        await js.publish_async_completed()
        await join_reader(task)
    finally:
        await pub_nc.close()
        await sub_nc.close()
    return result_row("nats-py JetStream publish_async / pull fetch(512)", sink, t0, n, False)


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
            await js.publish(subject, json_payload(i))

        t0 = await paced(n, rate, send)
        await sink.wait()
    finally:
        await pub_nc.close()
        await sub_nc.close()
    return result_row(f"nats-py JetStream await publish / push consumer @{int(rate)}/s", sink, t0, n, True)


# ---------------------------------------------------------------- connecting


async def connect_times(url: str, trials: int) -> dict[str, Any]:
    subject = "bench." + uuid.uuid4().hex[:8]
    await _stream(url, subject + ".js")
    ms: list[float] = []
    for _ in range(trials):
        conn = NatsConnector(url)
        b = AimDbBuilder().with_connector(conn)
        for i in range(3):
            b.configure(bytes, f"core{i}", lambda r, i=i: r.buffer(BufferCfg.SpmcRing(16))
                        .link_from(f"nats://{subject}.core{i}").with_deserializer(bytes).finish())
        b.configure(bytes, "js", lambda r: r.buffer(BufferCfg.SpmcRing(16)).link_from(f"nats://{subject}.js")
                    .option("jetstream", True).with_deserializer(bytes).finish())
        t0 = time.perf_counter_ns()
        async with b.build():
            await conn.wait_connected(10)
            ms.append((time.perf_counter_ns() - t0) / 1e6)
    return {
        "name": "connect: build() to wait_connected(), 3 core subscriptions + 1 JetStream consumer",
        "connects": trials,
        "p50_ms": round(rounded_index_percentile(ms, 50), 3),
        "p99_ms": round(rounded_index_percentile(ms, 99), 3),
    }


# ---------------------------------------------------------------- stalled server


async def stall(server: PrivateNats) -> dict[str, Any]:
    assert server.pid is not None
    return await stalled_broker(
        NatsConnector(server.url),
        "nats://bench.stall",
        server.pid,
        "nats server stalled (SIGSTOP), 200k x 1 KiB",
        "rss_growth_mib",
        current_rss_kib,
        sample_every=4096,
    )


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
        rows.append(await connect_times(url, args.connects))
    with PrivateNats(jetstream=False) as server:
        rows.append(await stall(server))
    report(rows, args.json)


if __name__ == "__main__":
    parser = connector_arg_parser(__doc__)
    parser.add_argument("--connects", type=int, default=100)
    run_main(main, parser.parse_args())
