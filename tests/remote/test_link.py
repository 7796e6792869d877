"""Instance-to-instance links (``aimdb://``): inbound mirror, outbound set, reconnect, byte streams."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, InvalidConfiguration
from aimdb.remote import AimdbConnector, RemoteConfig, RemoteServer

from ._helpers import Setpoint, Temp, aio, short_tmpdir, wait_until


def station() -> AimDbBuilder:
    b = AimDbBuilder()
    b.configure(Temp, "station.1.temp", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Temp, "station.2.temp", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(
        Setpoint, "station.1.setpoint", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True)
    )
    return b


def hub(conn: AimdbConnector) -> AimDbBuilder:
    b = AimDbBuilder().with_connector(conn)
    b.configure(
        Temp,
        "mirror.1.temp",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)).link_from("aimdb://station.1.temp").finish(),
    )
    b.configure(
        Temp,
        "mirror.all",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)).link_from("aimdb://station.*.temp").finish(),
    )
    b.configure(
        Setpoint,
        "hub.setpoint",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).link_to("aimdb://station.1.setpoint").finish(),
    )
    return b


@aio
async def test_link_both_directions_and_reconnect() -> None:
    with short_tmpdir() as d:
        path = os.path.join(d, "station.sock")
        conn = AimdbConnector("unix://" + path, backoff=(0.02, 0.1))
        async with station().build() as sdb:
            sdb.producer(Temp, "station.1.temp").produce(Temp(10.0))
            server = RemoteServer(sdb, RemoteConfig(unix=path, writable=["station.*.setpoint"]))
            await server.start()
            async with hub(conn).build() as hdb:
                r1 = hdb.buffer("mirror.1.temp").subscribe()
                rall = hdb.buffer("mirror.all").subscribe()
                await conn.wait_connected(5)
                assert await asyncio.wait_for(r1.recv(), 3) == Temp(10.0)  # late-joiner snapshot
                sdb.producer(Temp, "station.2.temp").produce(Temp(20.0))
                got = [await asyncio.wait_for(rall.recv(), 3), await asyncio.wait_for(rall.recv(), 3)]
                assert sorted(t.celsius for t in got) == [10.0, 20.0]
                # outbound: hub -> station via record.set
                hdb.producer(Setpoint, "hub.setpoint").produce(Setpoint(18.0))
                assert await wait_until(lambda: sdb.buffer("station.1.setpoint").peek() == Setpoint(18.0), 3)
                # the station's server goes away; the hub keeps buffering outbound values
                await server.aclose()
                assert await wait_until(lambda: not conn.connected, 3)
                for v in (1.0, 2.0, 3.0):
                    hdb.producer(Setpoint, "hub.setpoint").produce(Setpoint(v))
                server = RemoteServer(sdb, RemoteConfig(unix=path, writable=["station.*.setpoint"]))
                await server.start()
                await conn.wait_connected(5)
                assert await wait_until(lambda: sdb.buffer("station.1.setpoint").peek() == Setpoint(3.0), 3)
                sdb.producer(Temp, "station.1.temp").produce(Temp(11.0))
                seen = []
                while Temp(11.0) not in seen:
                    seen.append(await asyncio.wait_for(r1.recv(), 3))
                assert conn.statistics().connects >= 2 and conn.statistics().disconnects >= 1
                stats = {s.url: s for s in hdb.link_statistics()}
                assert stats["aimdb://station.1.setpoint"].sent == 4
                assert stats["aimdb://station.1.temp"].received >= 3
            await server.aclose()


@aio
async def test_outbound_refused_by_peer_is_counted_not_fatal() -> None:
    with short_tmpdir() as d:
        path = os.path.join(d, "ro.sock")
        conn = AimdbConnector("unix://" + path, backoff=(0.02, 0.1))
        async with station().build() as sdb:
            async with RemoteServer(sdb, RemoteConfig(unix=path)):  # read-only
                sdb.producer(Temp, "station.1.temp").produce(Temp(1.0))
                async with hub(conn).build() as hdb:
                    r1 = hdb.buffer("mirror.1.temp").subscribe()
                    await conn.wait_connected(5)
                    await asyncio.wait_for(r1.recv(), 3)
                    hdb.producer(Setpoint, "hub.setpoint").produce(Setpoint(5.0))
                    def out_link() -> Any:
                        return next(s for s in hdb.link_statistics() if s.direction == "out")

                    assert await wait_until(lambda: out_link().failed == 1, 3)
                    assert "read-only" in (out_link().last_error or "")
                    sdb.producer(Temp, "station.1.temp").produce(Temp(2.0))
                    assert await asyncio.wait_for(r1.recv(), 3) == Temp(2.0)  # inbound unaffected
                    assert conn.statistics().connects == 1


@aio
async def test_link_over_a_byte_stream() -> None:
    """Any byte stream works: here a socketpair per connection (a pipe or serial port is alike)."""
    async with station().build() as sdb:
        server = RemoteServer(sdb, RemoteConfig(unix=None, writable=["station.1.setpoint"]))
        await server.start()
        tasks: list[asyncio.Task[None]] = []

        async def opener():
            a, b = socket.socketpair()
            sr, sw = await asyncio.open_connection(sock=a)
            tasks.append(asyncio.create_task(server.serve_stream(sr, sw)))
            return await asyncio.open_connection(sock=b)

        conn = AimdbConnector(opener=opener, backoff=(0.02, 0.1))
        sdb.producer(Temp, "station.1.temp").produce(Temp(7.0))
        async with hub(conn).build() as hdb:
            r1 = hdb.buffer("mirror.1.temp").subscribe()
            assert await asyncio.wait_for(r1.recv(), 3) == Temp(7.0)
            hdb.producer(Setpoint, "hub.setpoint").produce(Setpoint(9.0))
            assert await wait_until(lambda: sdb.buffer("station.1.setpoint").peek() == Setpoint(9.0), 3)
        await server.aclose()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_link_validation() -> None:
    b = AimDbBuilder().with_connector(AimdbConnector("tcp://127.0.0.1:7433"))
    b.configure(
        Temp, "x", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://station.*.temp").finish()
    )
    b.configure(Temp, "y", lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("aimdb://a..b").finish())
    b.configure(Temp, "z", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://a/b").finish())
    with pytest.raises(InvalidConfiguration) as ei:
        b.build()
    text = str(ei.value)
    assert "not a pattern" in text and "dot-separated" in text
    assert "one record key: record key may not contain '/'" in text
    with pytest.raises(ValueError):
        AimdbConnector("ftp://nope")


@aio
async def test_normal_shutdown_logs_no_lost_link(caplog: pytest.LogCaptureFixture) -> None:
    with short_tmpdir() as d:
        path = os.path.join(d, "station.sock")
        conn = AimdbConnector("unix://" + path, backoff=(0.02, 0.1))
        async with station().build() as sdb:
            server = RemoteServer(sdb, RemoteConfig(unix=path, writable=["station.*.setpoint"]))
            await server.start()
            with caplog.at_level("WARNING", logger="aimdb.remote.link"):
                async with hub(conn).build():
                    await conn.wait_connected(5)
            await server.aclose()
    assert not [r for r in caplog.records if "lost" in r.getMessage()], caplog.text
