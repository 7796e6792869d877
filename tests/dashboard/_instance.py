"""A database with remote access over HTTP, run as a subprocess by the dashboard tests.

``python _instance.py PORT [--token T] [--unix PATH] [--no-connectors]`` serves the dashboard
page and ``/ws`` on 127.0.0.1:PORT (0 picks a free port), prints one JSON line ``{"url": ...}`` once
listening, then obeys JSON lines on stdin, answering each with one JSON line:

- ``{"op": "produce", "key": K, "value": V}``: converts V to the record's type and calls
  ``produce()``; answers ``{"ok": true}``.
- ``{"op": "get", "key": K}``: the record's newest value (read through the database, not the
  remote protocol): ``{"ok": true, "value": ...}`` or ``{"ok": false}`` without a value.

Records: passive, ring, writable config, a ticking source, a transform, a join, a string
record whose key and values look like HTML, a persisted ring holding ``HISTORY`` values
stored before the server starts, a writable record with a long key (``LONG_KEY``, 71
characters), a writable record ``config.stamp`` holding the integer ``BIG_INT`` (2^60 + 1)
in ``ts_ns``, and an outbound ``aimdb://`` link to a peer that does not exist (so the link is
never connected). ``--no-connectors`` answers ``stats`` as a server from before per-connector
statistics did (without ``connectors``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import msgspec

from aimdb import AimDbBuilder, BufferCfg, BufferEmpty
from aimdb.persistence import SqliteBackend
from aimdb.remote import AimdbConnector, RemoteConfig, start_server

HTML_KEY = "html.<i>key<i>"
LONG_KEY = "config.plant.north.hall7.line3.cell12.spindle.bearing.temperature.limit"


@dataclass
class Temp:
    celsius: float


@dataclass
class Setpoint:
    celsius: float


@dataclass
class Weather:
    celsius: float
    humidity: float
    ts_ns: int


@dataclass
class Stamp:
    ts_ns: int
    label: str


BIG_INT = 2**60 + 1  # beyond 2^53: a double would round it


async def _tick(ctx: Any, producer: Any) -> None:
    n = 0
    while True:
        n += 1
        producer.produce(Temp(float(n % 50)))
        await ctx.time.sleep(0.1)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TYPES: dict[str, type] = {
    "station.1.temp": Temp,
    "station.2.temp": Temp,
    "station.1.log": Temp,
    "config.setpoint": Setpoint,
    "sensor.tick": Temp,
    "derived.double": Temp,
    "derived.join": Temp,
    HTML_KEY: str,
    "hidden.secret": Temp,
    "sensor.hist": Temp,
    "station.1.weather": Weather,
    LONG_KEY: Setpoint,
    "config.stamp": Stamp,
}
HISTORY = 40  # values stored in sensor.hist before the server starts


def build(store: str) -> AimDbBuilder:
    b = AimDbBuilder()
    b.with_persistence(SqliteBackend(store))
    b.with_connector(AimdbConnector(f"tcp://127.0.0.1:{_dead_port()}"))
    b.configure(
        Temp,
        "station.1.temp",
        lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://peer.temp").finish(),
    )
    b.configure(Temp, "station.2.temp", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Temp, "station.1.log", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)))
    b.configure(
        Setpoint, "config.setpoint", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True)
    )
    b.configure(Temp, "sensor.tick", lambda r: r.buffer(BufferCfg.SingleLatest()).source(_tick))
    b.configure(
        Temp,
        "derived.double",
        lambda r: r.buffer(BufferCfg.SingleLatest()).transform(
            Temp, "station.1.temp", lambda t: Temp(t.celsius * 2)
        ),
    )
    b.configure(
        Temp,
        "derived.join",
        lambda r: r.buffer(BufferCfg.SingleLatest()).join(
            [(Temp, "station.1.temp"), (Setpoint, "config.setpoint")],
            lambda t, s: Temp(t.celsius - s.celsius),
        ),
    )
    b.configure(str, HTML_KEY, lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Temp, "hidden.secret", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(readable=False))
    b.configure(Temp, "sensor.hist", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)).persist())
    b.configure(Weather, "station.1.weather", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Setpoint, LONG_KEY, lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True))
    b.configure(Stamp, "config.stamp", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True))
    return b


async def main(port: int, token: str | None, unix: str | None) -> None:
    async with build(os.path.join(tempfile.mkdtemp(prefix="aimdb-dash-"), "store.db")).build() as db:
        db.producer(Setpoint, "config.setpoint").produce(Setpoint(20.0))
        db.producer(Setpoint, LONG_KEY).produce(Setpoint(80.0))
        db.producer(Stamp, "config.stamp").produce(Stamp(BIG_INT, "start"))
        hist = db.producer(Temp, "sensor.hist")
        for i in range(HISTORY):
            hist.produce(Temp(float(i % 7)))
        while len(await db.history("sensor.hist", limit=HISTORY)) < HISTORY:  # committed every 0.1 s
            await asyncio.sleep(0.05)
        cfg = RemoteConfig(
            name="dash-test", unix=unix, http=f"127.0.0.1:{port}", writable=["config.#"], token=token
        )
        server = await start_server(db, cfg)
        print(json.dumps({"url": server.http_url}), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            key = cmd["key"]
            if cmd["op"] == "produce":
                db.producer(TYPES[key], key).produce(msgspec.convert(cmd["value"], TYPES[key]))
                reply: dict[str, Any] = {"ok": True}
            else:
                buf = db.buffer(key)
                try:
                    reply = {"ok": True, "value": msgspec.to_builtins(buf.latest() if buf else None)}
                except BufferEmpty:
                    reply = {"ok": False}
            print(json.dumps(reply), flush=True)


def _without_connectors() -> None:
    """Answer ``stats`` as an older server: the same reply without ``connectors``."""
    from aimdb.remote import _methods

    stats = _methods.HANDLERS["stats"]

    def older(session: Any, params: dict[str, Any]) -> Any:
        reply = stats(session, params)
        reply.pop("connectors", None)
        return reply

    _methods.HANDLERS["stats"] = older


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--token")
    ap.add_argument("--unix", help="also serve this Unix socket (for aimdb dashboard)")
    ap.add_argument("--no-connectors", action="store_true", help="stats without 'connectors'")
    args = ap.parse_args()
    if args.no_connectors:
        _without_connectors()
    asyncio.run(main(args.port, args.token, args.unix))
