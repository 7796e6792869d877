"""Remote access: a server with several records and a client that lists, reads, writes and watches.

Server records:
  sensor.temp     SingleLatest, written by a source (read-only remotely)
  sensor.log      SpmcRing(16), a log line per reading (read-only remotely)
  config.setpoint SingleLatest, passive and writable remotely (allow-listed)
  sensor.alarm    SingleLatest, a transform of sensor.temp against the setpoint

Run it: ``python examples/remote_access.py`` (ends by itself after a few seconds).
``--serve SECONDS`` keeps the server up that long so you can try the CLI:
``aimdb --connect unix://<printed path> record list``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import RemoteConfig, connect, start_server


@dataclass
class Temperature:
    celsius: float


@dataclass
class Setpoint:
    celsius: float


@dataclass
class Alarm:
    active: bool
    celsius: float


async def temp_source(ctx, producer):
    t = 20.0
    while True:
        t += 0.25
        producer.produce(Temperature(round(t, 2)))
        await ctx.time.sleep(0.05)


def build() -> AimDbBuilder:
    b = AimDbBuilder()
    b.configure(Temperature, "sensor.temp", lambda r: r.buffer(BufferCfg.SingleLatest()).source(temp_source))
    b.configure(
        str,
        "sensor.log",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).transform(
            Temperature, "sensor.temp", lambda t: f"temp {t.celsius:.2f} C"
        ),
    )

    b.configure(
        Setpoint,
        "config.setpoint",
        lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True),
    )
    b.configure(
        Alarm,
        "sensor.alarm",
        lambda r: r.buffer(BufferCfg.SingleLatest()).join(
            [(Temperature, "sensor.temp"), (Setpoint, "config.setpoint")],
            lambda t, s: Alarm(t.celsius > s.celsius, t.celsius),
        ),
    )
    return b


async def main(serve_for: float) -> None:
    sock = os.path.join(tempfile.mkdtemp(prefix="aimdb-example-"), "example.sock")
    async with build().build() as db:
        db.producer(Setpoint, "config.setpoint").produce(Setpoint(21.0))
        server = await start_server(db, RemoteConfig(name="example", unix=sock, writable=["config.#"]))
        print("serving on", ", ".join(server.endpoints))

        async with await connect(server.endpoints[0], client_name="example") as client:
            print("server:", client.server_info["name"], "protocol", client.server_info["protocol"])
            for rec in await client.list():
                flag = "writable" if rec["writable"] else "read-only"
                print(f"  {rec['key']:<16} {rec['type']:<12} {rec['buffer']:<14} {rec['writer']:<9} {flag}")
            await asyncio.sleep(0.2)
            print("get sensor.temp ->", await client.get("sensor.temp"))
            print("set config.setpoint ->", await client.set("config.setpoint", {"celsius": 22.5}))
            try:
                await client.set("sensor.temp", {"celsius": -1})
            except Exception as exc:  # permission_denied: the record has a source
                print("set sensor.temp refused:", exc)
            sub = await client.subscribe("sensor.#")
            print(f"subscribed {sub.keys} ({sub.snapshot} snapshot values first)")
            for _ in range(8):
                ev = await sub.next(timeout=2.0)
                kind = "snapshot" if ev.snapshot else "update"
                print(f"  #{ev.seq:<3} {kind:<8} {ev.key:<12} {ev.value}")
            await sub.close()
        if serve_for > 0:
            print(f"serving for {serve_for:g} s more")
            await asyncio.sleep(serve_for)
    print("done")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=float, default=0.0, metavar="SECONDS", help="keep serving afterwards")
    asyncio.run(main(ap.parse_args().serve))
