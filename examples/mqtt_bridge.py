"""Mirror a few sensor records to MQTT and take commands from it.

Run against a local broker (defaults to mqtt://127.0.0.1:1883)::

    python examples/mqtt_bridge.py [mqtt://host:port] [--seconds 3]

What it does:

* three sensor records (``temp.<room>``) with a source each, published to
  ``<prefix>/sensors/<room>/temp`` at QoS 1;
* one command record fed from ``<prefix>/cmd/+/set`` (a wildcard), a Mailbox: the
  newest command wins;
* a tap applies each command (here: prints it) and a second connection plays the
  "remote operator", sending a command over MQTT and watching the sensor topics.

It ends by itself after ``--seconds`` and prints the link statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import uuid
from dataclasses import dataclass
from typing import Any

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector


@dataclass
class Temperature:
    room: str
    celsius: float


@dataclass
class SetPoint:
    room: str
    celsius: float


ROOMS = ("kitchen", "hall", "office")


def build(url: str, prefix: str, applied: list[SetPoint]) -> tuple[Any, MqttConnector]:
    conn = MqttConnector(url, client_id=f"{prefix}-bridge")
    b = AimDbBuilder().with_connector(conn)

    def sensor(room: str) -> Any:
        async def source(ctx: Any, producer: Any) -> None:
            value = 20.0
            while True:
                value += random.uniform(-0.2, 0.2)
                producer.produce(Temperature(room, round(value, 2)))
                await ctx.time.sleep(0.1)

        return source

    for room in ROOMS:
        b.configure(
            Temperature,
            f"temp.{room}",
            lambda r, room=room: r.buffer(BufferCfg.SpmcRing(capacity=64))
            .source(sensor(room))
            .link_to(f"mqtt://{prefix}/sensors/{room}/temp")
            .qos(1)
            .finish(),
        )

    async def apply(ctx: Any, consumer: Any) -> None:
        async for cmd in consumer.subscribe():
            applied.append(cmd)
            print(f"command: set {cmd.room} to {cmd.celsius} °C")

    b.configure(
        SetPoint,
        "setpoint",
        lambda r: r.buffer(BufferCfg.Mailbox()).link_from(f"mqtt://{prefix}/cmd/+/set").qos(1).finish().tap(apply),
    )
    return b.build(), conn


def operator(url: str, prefix: str, seen: list[Temperature]) -> tuple[Any, MqttConnector]:
    """A second database standing in for a remote operator: sends a command, watches sensors."""
    conn = MqttConnector(url, client_id=f"{prefix}-operator")
    b = AimDbBuilder().with_connector(conn)

    async def watch(ctx: Any, consumer: Any) -> None:
        async for t in consumer.subscribe():
            seen.append(t)

    b.configure(
        Temperature,
        "remote.temps",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=256)).link_from(f"mqtt://{prefix}/sensors/+/temp").finish()
        .tap(watch),
    )
    b.configure(
        SetPoint,
        "remote.cmd",
        lambda r: r.buffer(BufferCfg.SingleLatest())
        .link_to(f"mqtt://{prefix}/cmd/unused/set")
        .with_topic_provider(lambda c: f"{prefix}/cmd/{c.room}/set")
        .qos(1)
        .finish(),
    )
    return b.build(), conn


async def main(url: str, seconds: float) -> int:
    prefix = "aimdb-demo-" + uuid.uuid4().hex[:8]
    applied: list[SetPoint] = []
    seen: list[Temperature] = []
    db, conn = build(url, prefix, applied)
    op_db, op_conn = operator(url, prefix, seen)
    async with db, op_db:
        await conn.wait_connected(5)
        await op_conn.wait_connected(5)
        print(f"bridging to {url} under {prefix}/")
        await asyncio.sleep(seconds / 2)
        op_db.producer(SetPoint, "remote.cmd").produce(SetPoint("kitchen", 22.5))
        await asyncio.sleep(seconds / 2)
        for s in db.link_statistics():
            print(f"  {s.direction:3} {s.url}: sent={s.sent} received={s.received} failed={s.failed}")
    print(f"operator saw {len(seen)} readings; bridge applied {len(applied)} command(s)")
    return 0 if applied and seen else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", default=os.environ.get("AIMDB_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    raise SystemExit(asyncio.run(main(args.url, args.seconds)))
