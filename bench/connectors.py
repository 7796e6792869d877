"""Connector benchmarks through real local brokers, side by side in one run.

Run (about a minute; starts its own private Mosquitto and Tansu on free ports)::

    python bench/connectors.py
    python bench/connectors.py --json out.json --only mqtt

MQTT (private Mosquitto, no queue limits):

* throughput, QoS 0 and QoS 1: ``--messages`` values produced into an aimdb record linked
  to a topic, received by a record of a second database linked from it; values/s =
  received / (last receive - first produce). Beside it, a plain aiomqtt loop
  (``await client.publish()`` per value, aiomqtt subscriber).
* latency at ``--rate`` (1k/s): p50/p99 of receive time - produce time (same clock).
* stalled broker: the broker is SIGSTOPped while 200k 1 KiB values are produced; the
  process's peak memory growth and the values counted as lag show that memory stays bounded.

Kafka (Tansu, in memory):

* throughput: a raw aiokafka producer (``send()`` without awaiting each ack) and consumer
  versus aimdb record -> KafkaConnector -> Tansu -> KafkaConnector -> aimdb record.
* latency at 1k/s for the connector defaults and for a low-latency setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import KafkaConnector, MqttConnector
from brokers import PrivateMosquitto, Tansu

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


async def _produce(producer: Any, n: int, rate: float | None) -> int:
    t0 = time.perf_counter_ns()
    start = time.perf_counter()
    if rate is None:
        for i in range(0, n, 500):
            for j in range(i, min(n, i + 500)):
                producer.produce(Sample(j, time.perf_counter_ns()))
            await asyncio.sleep(0)
    else:
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            producer.produce(Sample(i, time.perf_counter_ns()))
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


async def run_aimdb(
    connector_factory: Any,
    url_out: str,
    url_in: str,
    n: int,
    rate: float | None,
    name: str,
    settle: float = 0.0,
) -> dict[str, Any]:
    sink = Sink(n)
    c_pub = connector_factory()
    c_sub = connector_factory(sub=True)
    cap = max(1024, n)
    bo = AimDbBuilder().with_connector(c_pub)
    bo.configure(Sample, "s", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=cap)).link_to(url_out).finish())
    bi = AimDbBuilder().with_connector(c_sub)
    bi.configure(
        Sample,
        "s",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=cap)).link_from(url_in).finish().tap(_sink_tap(sink)),
    )
    db_in = bi.build()
    db_out = bo.build()
    async with db_in, db_out:
        await c_sub.wait_connected(30)
        await c_pub.wait_connected(30)
        if settle:
            await asyncio.sleep(settle)
        t0 = await _produce(db_out.producer(Sample, "s"), n, rate)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sink.done.wait(), DEADLINE)
    return _result(name, sink, t0, n, rate is not None)


# ---------------------------------------------------------------- MQTT


def _mqtt_payload(i: int) -> bytes:
    return b'{"seq":%d,"t":%d}' % (i, time.perf_counter_ns())


async def run_aiomqtt(port: int, topic: str, qos: int, n: int, rate: float | None) -> dict[str, Any]:
    import logging

    import aiomqtt

    quiet = logging.getLogger("bench.quiet")
    quiet.setLevel(logging.ERROR)
    sink = Sink(n)
    async with (
        aiomqtt.Client("127.0.0.1", port, logger=quiet, max_inflight_messages=1000) as sub,
        aiomqtt.Client("127.0.0.1", port, logger=quiet, max_inflight_messages=1000) as pub,
    ):
        await sub.subscribe(topic, qos=qos)

        async def reader() -> None:
            async for m in sub.messages:
                d = json.loads(m.payload)  # type: ignore[arg-type]
                sink(d["seq"], d["t"])
                if sink.done.is_set():
                    return

        task = asyncio.create_task(reader())
        t0 = time.perf_counter_ns()
        start = time.perf_counter()
        for i in range(n):
            if rate is not None:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await pub.publish(topic, _mqtt_payload(i), qos=qos)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, DEADLINE)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return _result(f"aiomqtt await-each qos{qos}", sink, t0, n, rate is not None)


async def mqtt_stall(broker: PrivateMosquitto, n: int = 200_000) -> dict[str, Any]:
    conn = MqttConnector(broker.url, keepalive=0)
    b = AimDbBuilder().with_connector(conn)
    b.configure(
        bytes,
        "blob",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=1024))
            .link_to("mqtt://bench/stall")
            .with_serializer(lambda v: v)
            .finish()
        ),
    )
    blob = os.urandom(1024)
    async with b.build() as db:
        await conn.wait_connected(10)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            p = db.producer(bytes, "blob")
            t0 = time.perf_counter()
            for i in range(n):
                p.produce(blob)
                if i % 256 == 0:
                    await asyncio.sleep(0)
            secs = time.perf_counter() - t0
            await asyncio.sleep(0.3)
            st = db.link_statistics()[0]
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        finally:
            os.kill(broker.pid, signal.SIGCONT)
    return {
        "name": "mqtt broker stalled (SIGSTOP), 200k x 1 KiB",
        "offered_mib": round(n * 1024 / 2**20),
        "produce_per_s": round(n / secs),
        "sent_before_stall_filled": st.sent,
        "dropped_lag": st.dropped_lag,
        "peak_rss_growth_mib": round((rss1 - rss0) / 1024, 1),
    }


async def bench_mqtt(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with PrivateMosquitto() as broker:
        for qos in (0, 1):
            topic = f"bench/{uuid.uuid4().hex[:8]}"

            def factory(sub: bool = False, qos: int = qos) -> MqttConnector:
                return MqttConnector(broker.url, default_qos=qos)

            out.append(
                await run_aimdb(
                    factory,
                    f"mqtt://{topic}",
                    f"mqtt://{topic}",
                    args.messages,
                    None,
                    f"aimdb MqttConnector qos{qos}",
                )
            )
            out.append(
                await run_aiomqtt(broker.port, f"bench/{uuid.uuid4().hex[:8]}", qos, args.messages // 2, None)
            )
        for qos in (0, 1):
            topic = f"bench/{uuid.uuid4().hex[:8]}"

            def factory2(sub: bool = False, qos: int = qos) -> MqttConnector:
                return MqttConnector(broker.url, default_qos=qos)

            r = await run_aimdb(
                factory2,
                f"mqtt://{topic}",
                f"mqtt://{topic}",
                args.latency_messages,
                args.rate,
                f"aimdb MqttConnector qos{qos} @{int(args.rate)}/s",
            )
            out.append(r)
        out.append(
            await run_aiomqtt(
                broker.port, f"bench/{uuid.uuid4().hex[:8]}", 0, args.latency_messages, args.rate
            )
        )
        out[-1]["name"] += f" @{int(args.rate)}/s"
    with PrivateMosquitto() as broker:
        out.append(await mqtt_stall(broker))
    return out


# ---------------------------------------------------------------- Kafka


async def run_raw_kafka(address: str, topic: str, n: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    sink = Sink(n)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=address, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"seq":-1,"t":0}')

        async def reader() -> None:
            while not sink.done.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=4096)
                for recs in batch.values():
                    for rec in recs:
                        d = json.loads(rec.value)
                        if d["seq"] >= 0:
                            sink(d["seq"], d["t"])

        task = asyncio.create_task(reader())
        t0 = time.perf_counter_ns()
        for i in range(n):
            await producer.send(topic, _mqtt_payload(i))
        await producer.flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, DEADLINE)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    finally:
        await producer.stop()
        await consumer.stop()
    return _result("raw aiokafka producer/consumer", sink, t0, n, False)


async def bench_kafka(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with Tansu() as tansu:
        for _ in range(2):  # raw first, then aimdb; twice, keep both (warm-up effects show)
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await asyncio.to_thread(tansu.create_topic, topic, 1)
            out.append(await run_raw_kafka(tansu.address, topic, args.messages))
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await asyncio.to_thread(tansu.create_topic, topic, 1)

            def factory(sub: bool = False) -> KafkaConnector:
                return KafkaConnector(tansu.url, start="earliest")

            out.append(
                await run_aimdb(
                    factory,
                    f"kafka://{topic}",
                    f"kafka://{topic}",
                    args.messages,
                    None,
                    "aimdb KafkaConnector",
                )
            )
        settings = {
            "default (linger 0 ms, fetch wait 100 ms)": {},
            "low latency (fetch wait 1 ms)": {"fetch_max_wait_ms": 1},
            "batched (linger 5 ms)": {"linger_ms": 5},
        }
        for label, kw in settings.items():
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await asyncio.to_thread(tansu.create_topic, topic, 1)

            def factory2(sub: bool = False, kw: dict[str, Any] = kw) -> KafkaConnector:
                return KafkaConnector(tansu.url, start="earliest", **kw)

            out.append(
                await run_aimdb(
                    factory2,
                    f"kafka://{topic}",
                    f"kafka://{topic}",
                    args.latency_messages,
                    args.rate,
                    f"aimdb KafkaConnector {label} @{int(args.rate)}/s",
                    settle=0.5,
                )
            )
    return out


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
    if args.only in (None, "mqtt"):
        rows += await bench_mqtt(args)
    if args.only in (None, "kafka"):
        rows += await bench_kafka(args)
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
    ap.add_argument("--only", choices=["mqtt", "kafka"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    a = ap.parse_args()
    signal.alarm(240)
    if a.uvloop:
        import uvloop

        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
