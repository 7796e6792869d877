"""The fault-injecting MQTT proxy (tests/connectors/_mqtt_proxy.py) against a real Mosquitto.

Raw MQTT 3.1.1 clients (hand-built packets) show exactly what the proxy forwards, drops
and cuts; the connector runs through it once end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector, ReconnectPolicy

from ._mqtt_packets import packet, string
from ._mqtt_proxy import MqttFaultProxy
from ._util import Temp, collector, round_trip, wait_until

pytestmark = [pytest.mark.runtimes("asyncio"), pytest.mark.timeout(60)]


class RawClient:
    """A minimal MQTT 3.1.1 client over a real socket: send packets, read packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, client_id: str, clean: bool = True) -> tuple[RawClient, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        c = cls(reader, writer)
        flags = 0x02 if clean else 0
        c.send(packet(0x10, string("MQTT") + bytes((4, flags)) + b"\x00\x3c" + string(client_id)))
        connack = await c.recv()
        assert connack is not None and connack[0] == 0x20 and connack[3] == 0, connack
        return c, connack

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = 5.0) -> bytes | None:
        """The next packet; ``None`` when none came within ``timeout``.

        Raises:
            ConnectionError: the connection ended.
        """
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None
        except asyncio.IncompleteReadError as exc:
            raise ConnectionError("connection ended") from exc
        assert head[1] < 128, "test packets are short"
        return head + await self.reader.readexactly(head[1])

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the connection ends (EOF or reset) within ``timeout``; then closes it."""
        try:
            while await asyncio.wait_for(self.reader.read(4096), timeout):
                pass
        except (asyncio.TimeoutError, TimeoutError):
            return False
        except ConnectionError:
            pass
        self.close()
        return True

    def close(self) -> None:
        self.writer.transport.abort()
        self.writer.close()


def publish311(topic: str, payload: bytes, qos: int, pid: int, dup: bool = False) -> bytes:
    head = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return packet(head, string(topic) + (struct.pack(">H", pid) if qos else b"") + payload)


@contextlib.asynccontextmanager
async def proxied(port: int) -> Any:
    proxy = MqttFaultProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_everything_passes_when_no_rule_fires(
    rt: Any, private_mosquitto: Any, unique_topic: str
) -> None:
    """The connector works end to end through the proxy, which logs each packet both ways."""
    async with proxied(private_mosquitto.port) as proxy:
        await round_trip(
            MqttConnector(proxy.url),
            MqttConnector(private_mosquitto.url),
            f"mqtt://{unique_topic}/t",
            link_options=lambda ln: ln.qos(2),
        )
        kinds = {(p.direction, p.kind) for p in proxy.log}
        assert {("to_broker", "CONNECT"), ("to_client", "CONNACK"), ("to_broker", "PUBLISH")} <= kinds
        assert {("to_client", "PUBREC"), ("to_broker", "PUBREL"), ("to_client", "PUBCOMP")} <= kinds
        assert len(proxy.packets("PUBLISH", "to_broker")) == 20
        assert {p.pid for p in proxy.packets("PUBCOMP")} == {p.pid for p in proxy.packets("PUBLISH")}
        assert all(p.action == "forwarded" for p in proxy.log)


async def test_drop_the_first_pubrec(rt: Any, private_mosquitto: Any, unique_topic: str) -> None:
    async with proxied(private_mosquitto.port) as proxy:
        proxy.drop("to_client", "PUBREC")
        c, _ = await RawClient.connect(proxy.port, "proxy-drop-pubrec")
        c.send(publish311(unique_topic, b"v", 2, 7))
        assert await c.recv(1.0) is None  # the broker's PUBREC was dropped
        c.send(publish311(unique_topic, b"v", 2, 7, dup=True))  # re-send: the second passes
        assert await c.recv() == b"\x50\x02\x00\x07"
        c.send(b"\x62\x02\x00\x07")
        assert await c.recv() == b"\x70\x02\x00\x07"
        assert [p.action for p in proxy.packets("PUBREC")] == ["dropped", "forwarded"]
        assert proxy.packets("PUBREC")[0].pid == 7
        c.close()


async def test_cut_after_pubrec_then_the_session_resumes_with_pubrel(
    rt: Any, private_mosquitto: Any, unique_topic: str
) -> None:
    """The QoS 2 outbound case: the PUBREC arrives, the connection breaks before PUBREL."""
    async with proxied(private_mosquitto.port) as proxy:
        proxy.cut_after("to_client", "PUBREC")
        c, _ = await RawClient.connect(proxy.port, "proxy-cut-pubrec", clean=False)
        c.send(publish311(unique_topic, b"v", 2, 9))
        assert await c.recv() == b"\x50\x02\x00\x09"  # forwarded, then cut
        assert await c.closed()
        await proxy.wait_for(lambda p: len(p.ended) >= 2, what="both pumps of connection 1 ended")
        assert any("cut by the proxy after to_client PUBREC" in cause for _n, cause in proxy.ended)
        # the broker kept the session: PUBREL completes the exchange on the next connection
        c2, connack = await RawClient.connect(proxy.port, "proxy-cut-pubrec", clean=False)
        assert connack[2] == 1  # session present
        c2.send(b"\x62\x02\x00\x09")
        assert await c2.recv() == b"\x70\x02\x00\x09"
        assert proxy.connections == 2
        c2.close()


async def test_drop_pubcomp_to_the_broker_and_cut(rt: Any, private_mosquitto: Any, unique_topic: str) -> None:
    """The QoS 2 inbound case: the broker never sees PUBCOMP and sends PUBREL again after reconnecting."""
    async with proxied(private_mosquitto.port) as proxy:
        proxy.drop("to_broker", "PUBCOMP")
        sub, _ = await RawClient.connect(proxy.port, "proxy-sub", clean=False)
        sub.send(packet(0x82, b"\x00\x01" + string(unique_topic) + b"\x02"))
        assert await sub.recv() == b"\x90\x03\x00\x01\x02"
        pub, _ = await RawClient.connect(private_mosquitto.port, "proxy-pub")
        pub.send(publish311(unique_topic, b"once", 2, 1))
        assert await pub.recv() == b"\x50\x02\x00\x01"
        pub.send(b"\x62\x02\x00\x01")  # Mosquitto delivers a QoS 2 message at PUBREL
        assert await pub.recv() == b"\x70\x02\x00\x01"
        got = await sub.recv()
        assert got is not None and got[0] & 0xF6 == 0x34 and got.endswith(b"once")
        pid = struct.unpack(">H", got[4 + len(unique_topic) : 6 + len(unique_topic)])[0]
        sub.send(b"\x50\x02" + struct.pack(">H", pid))
        assert await sub.recv() == b"\x62\x02" + struct.pack(">H", pid)  # PUBREL
        sub.send(b"\x70\x02" + struct.pack(">H", pid))  # PUBCOMP: dropped by the proxy
        await proxy.wait_for(lambda p: bool(p.packets("PUBCOMP")), what="the PUBCOMP")
        assert proxy.packets("PUBCOMP")[0].action == "dropped"
        proxy.cut_all()
        assert await sub.closed()
        sub2, _ = await RawClient.connect(proxy.port, "proxy-sub", clean=False)
        assert await sub2.recv() == b"\x62\x02" + struct.pack(">H", pid)  # the broker re-sends PUBREL
        sub2.send(b"\x70\x02" + struct.pack(">H", pid))
        assert await sub2.recv(0.5) is None  # nothing more: no second PUBLISH
        for c in (sub2, pub):
            c.close()


async def test_cut_before_a_packet_does_not_forward_it(
    rt: Any, private_mosquitto: Any, unique_topic: str
) -> None:
    async with proxied(private_mosquitto.port) as proxy:
        proxy.cut_before("to_broker", "PUBLISH", when=lambda p: p.qos == 1)
        c, _ = await RawClient.connect(proxy.port, "proxy-cut-before")
        c.send(publish311(unique_topic, b"q0", 0, 0))  # QoS 0: does not match
        c.send(publish311(unique_topic, b"q1", 1, 3))
        assert await c.closed()
        actions = [(p.qos, p.action) for p in proxy.packets("PUBLISH")]
        assert actions == [(0, "forwarded"), (1, "cut")]


def test_rules_are_checked() -> None:
    proxy = MqttFaultProxy(1)
    with pytest.raises(ValueError):
        proxy.drop("sideways", "PUBREC")
    with pytest.raises(ValueError):
        proxy.drop("to_client", "PUBRECK")
    with pytest.raises(ValueError):
        proxy.cut_after("to_client", "PUBREC", nth=0)


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_a_malformed_packet_from_the_broker_closes_with_the_reason_and_reconnects(
    rt: Any, private_mosquitto: Any, unique_topic: str, protocol: Any
) -> None:
    """The unchanged connector over the strict wire: a PUBACK with wrong flags (injected by the
    proxy) closes the connection, with DISCONNECT 0x81 in MQTT 5; the connector reconnects and
    the value still arrives (QoS 1: at least once)."""
    got: list[Temp] = []
    async with proxied(private_mosquitto.port) as proxy:
        proxy.replace("to_client", "PUBACK", b"\x41\x02\x00\x01")
        pub = MqttConnector(proxy.url, protocol=protocol, reconnect=ReconnectPolicy(initial_delay=0.05))
        sub = MqttConnector(private_mosquitto.url)
        ring = BufferCfg.SpmcRing(capacity=16)
        link = f"mqtt://{unique_topic}/t"
        bs = AimDbBuilder().with_connector(sub)
        bs.configure(Temp, "in", lambda r: r.buffer(ring).link_from(link).qos(1).finish().tap(collector(got)))
        bp = AimDbBuilder().with_connector(pub)
        bp.configure(Temp, "out", lambda r: r.buffer(ring).link_to(link).qos(1).finish())
        async with bs.build(), bp.build() as dbp:
            await sub.wait_connected(10)
            await pub.wait_connected(10)
            dbp.producer(Temp, "out").produce(Temp(1.5))
            await wait_until(lambda: pub.statistics().reconnects >= 1, what="a reconnect")
            await wait_until(lambda: Temp(1.5) in got, what="the value")
            dbp.producer(Temp, "out").produce(Temp(2.5))
            await wait_until(lambda: Temp(2.5) in got, what="a value after the reconnect")
            stats = pub.statistics()
        assert "protocol violation" in (stats.last_error or ""), stats.as_dict()
        assert "PUBACK with wrong fixed-header flags" in (stats.last_error or "")
        first = [p for p in proxy.log if p.conn == 1 and p.direction == "to_broker"]
        if protocol == 5:
            assert first[-1].kind == "DISCONNECT" and first[-1].data == b"\xe0\x01\x81"
        else:
            assert all(p.kind != "DISCONNECT" for p in first)
