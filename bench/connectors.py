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
import json
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from _common import (
    Sink,
    connector_arg_parser,
    join_reader,
    json_payload,
    paced,
    peak_rss_kib,
    report,
    result_row,
    run_main,
    run_pipeline,
    stalled_broker,
)

from aimdb.connectors import KafkaConnector, MqttConnector
from brokers import PrivateMosquitto, Tansu

# ---------------------------------------------------------------- MQTT


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

        async def send(i: int) -> None:
            await pub.publish(topic, json_payload(i), qos=qos)

        task = asyncio.create_task(reader())
        t0 = await paced(n, rate, send)
        await join_reader(task)
    return result_row(f"aiomqtt await-each qos{qos}", sink, t0, n, rate is not None)


async def run_aimdb_mqtt(broker: PrivateMosquitto, qos: int, n: int, rate: float | None) -> dict[str, Any]:
    topic = f"bench/{uuid.uuid4().hex[:8]}"
    name = f"aimdb MqttConnector qos{qos}" + (f" @{int(rate)}/s" if rate is not None else "")
    return await run_pipeline(
        MqttConnector(broker.url, default_qos=qos),
        MqttConnector(broker.url, default_qos=qos),
        f"mqtt://{topic}",
        n,
        rate,
        name,
    )


async def mqtt_stall(broker: PrivateMosquitto) -> dict[str, Any]:
    assert broker.pid is not None
    return await stalled_broker(
        MqttConnector(broker.url, keepalive=0),
        "mqtt://bench/stall",
        broker.pid,
        "mqtt broker stalled (SIGSTOP), 200k x 1 KiB",
        "peak_rss_growth_mib",
        peak_rss_kib,
    )


async def bench_mqtt(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with PrivateMosquitto() as broker:
        for qos in (0, 1):
            out.append(await run_aimdb_mqtt(broker, qos, args.messages, None))
            out.append(
                await run_aiomqtt(broker.port, f"bench/{uuid.uuid4().hex[:8]}", qos, args.messages // 2, None)
            )
        for qos in (0, 1):
            out.append(await run_aimdb_mqtt(broker, qos, args.latency_messages, args.rate))
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

        async def send(i: int) -> None:
            await producer.send(topic, json_payload(i))

        task = asyncio.create_task(reader())
        t0 = await paced(n, None, send)
        await producer.flush()
        await join_reader(task)
    finally:
        await producer.stop()
        await consumer.stop()
    return result_row("raw aiokafka producer/consumer", sink, t0, n, False)


async def bench_kafka(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with Tansu() as tansu:
        for _ in range(2):  # raw first, then aimdb; twice, keep both (warm-up effects show)
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await asyncio.to_thread(tansu.create_topic, topic, 1)
            out.append(await run_raw_kafka(tansu.address, topic, args.messages))
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await asyncio.to_thread(tansu.create_topic, topic, 1)
            out.append(
                await run_pipeline(
                    KafkaConnector(tansu.url, start="earliest"),
                    KafkaConnector(tansu.url, start="earliest"),
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
            out.append(
                await run_pipeline(
                    KafkaConnector(tansu.url, start="earliest", **kw),
                    KafkaConnector(tansu.url, start="earliest", **kw),
                    f"kafka://{topic}",
                    args.latency_messages,
                    args.rate,
                    f"aimdb KafkaConnector {label} @{int(args.rate)}/s",
                    settle=0.5,
                )
            )
    return out


async def main(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    if args.only in (None, "mqtt"):
        rows += await bench_mqtt(args)
    if args.only in (None, "kafka"):
        rows += await bench_kafka(args)
    report(rows, args.json)


if __name__ == "__main__":
    ap = connector_arg_parser(__doc__)
    ap.add_argument("--only", choices=["mqtt", "kafka"])
    run_main(main, ap.parse_args())
