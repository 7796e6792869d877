"""The MQTT connector against independent broker implementations besides Mosquitto.

* ejabberd's mod_mqtt (Erlang), with the strictest limits it can be given: packets from
  clients of at most 256 bytes (enforced with DISCONNECT 0x95, not announced) and no topic
  aliases. It cannot announce Receive Maximum, Maximum QoS, Retain Available or Subscription
  Identifiers Available (see ``PrivateEjabberd``).
* mqttools' broker (Python, MQTT 5 only): announces Maximum QoS 0 and Wildcard Subscription
  Available 0.

Each test once failed on the connector (issue 11) and now shows it conforms.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector, ReconnectPolicy
from aimdb.connectors._mqtt_wire import MqttProtocol, connect_packet

from ._util import Temp, collector, round_trip, wait_until

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(90)]

STRICT = {"max_payload_size": 256, "max_topic_aliases": 0}


@pytest.fixture
def ejabberd(private_ejabberd_factory: Any) -> Any:
    return private_ejabberd_factory(**STRICT)


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_round_trip_through_ejabberd(
    rt: Any, ejabberd: Any, unique_topic: str, qos: int, protocol: Any
) -> None:
    """aimdb -> ejabberd -> aimdb, typed, in order, one connection, nothing failed."""
    await round_trip(
        MqttConnector(ejabberd.client_url, protocol=protocol),
        MqttConnector(ejabberd.client_url, protocol=protocol),
        f"mqtt://{unique_topic}/sensors/temp",
        link_options=lambda ln: ln.qos(qos),
    )


async def test_wildcard_subscription_through_ejabberd(rt: Any, ejabberd: Any, unique_topic: str) -> None:
    got: list[Temp] = []
    sub = MqttConnector(ejabberd.client_url)
    pub = MqttConnector(ejabberd.client_url, protocol="3.1.1")
    ring = BufferCfg.SpmcRing(capacity=16)
    bs = AimDbBuilder().with_connector(sub)
    bs.configure(
        Temp,
        "in",
        lambda r: r.buffer(ring).link_from(f"mqtt://{unique_topic}/+/t").qos(1).finish().tap(collector(got)),
    )
    bp = AimDbBuilder().with_connector(pub)
    bp.configure(Temp, "out", lambda r: r.buffer(ring).link_to(f"mqtt://{unique_topic}/a/t").qos(1).finish())
    async with bs.build(), bp.build() as dbp:
        await sub.wait_connected(10)
        await pub.wait_connected(10)
        for i in range(5):
            dbp.producer(Temp, "out").produce(Temp(float(i)))
        await wait_until(lambda: len(got) == 5, what="5 values over a wildcard")
    assert got == [Temp(float(i)) for i in range(5)]


async def test_ejabberd_connack_is_read_by_the_strict_decoder(rt: Any, ejabberd: Any) -> None:
    """Its MQTT 5 CONNACK passes the strict decoder; it announces no topic aliases."""
    loop = asyncio.get_running_loop()
    _t, proto = await loop.create_connection(
        lambda: MqttProtocol(5, lambda *m: None, lambda *a: None), ejabberd.host, ejabberd.port
    )
    try:
        proto.write(
            connect_packet(
                "aimdb-connack",
                version=5,
                keepalive=30,
                clean=True,
                username=ejabberd.username,
                password=ejabberd.password,
                session_expiry=0,
                receive_maximum=100,
                maximum_packet_size=1024,
            )
        )
        rc, present, props = await asyncio.wait_for(proto.connack, 10)
    finally:
        proto.abort("test done")
    assert (rc, present) == (0, False)
    assert props.get(0x22, 0) == 0  # Topic Alias Maximum: none (0 is not sent)
    assert props.get(0x2A) == 0  # Shared Subscription Available
    assert props.get(0x13) == 30  # Server Keep Alive: the client's
    assert not {0x21, 0x27, 0x24, 0x25, 0x29} & set(props)  # limits it cannot announce
    assert proto.violation is None


async def test_a_value_the_broker_refuses_as_too_large_does_not_block_the_others(
    rt: Any, ejabberd: Any, unique_topic: str
) -> None:
    got: list[Temp] = []
    sub = MqttConnector(ejabberd.client_url)
    pub = MqttConnector(ejabberd.client_url, reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.5))
    ring = BufferCfg.SpmcRing(capacity=16)
    bs = AimDbBuilder().with_connector(sub)
    bs.configure(
        Temp,
        "in",
        lambda r: (
            r.buffer(ring).link_from(f"mqtt://{unique_topic}/small").qos(1).finish().tap(collector(got))
        ),
    )
    bp = AimDbBuilder().with_connector(pub)
    bp.configure(bytes, "big", lambda r: r.buffer(ring).link_to(f"mqtt://{unique_topic}/big").qos(1)
                 .with_serializer(lambda b: b).finish())  # fmt: skip
    bp.configure(
        Temp, "small", lambda r: r.buffer(ring).link_to(f"mqtt://{unique_topic}/small").qos(1).finish()
    )
    async with bs.build(), bp.build() as dbp:
        await sub.wait_connected(10)
        await pub.wait_connected(10)
        dbp.producer(bytes, "big").produce(b"x" * 300)  # a packet over 256 bytes
        await asyncio.sleep(0.2)
        for i in range(5):
            dbp.producer(Temp, "small").produce(Temp(float(i)))
        await wait_until(
            lambda: len(got) == 5,
            timeout=10,
            what="the small values",
            detail=lambda: pub.statistics().as_dict(),
        )
        assert pub.statistics().connects <= 3


# ------------------------------------------------- mqttools: Maximum QoS 0, no wildcards


async def test_qos0_round_trip_through_mqttools(rt: Any, private_mqttools: Any, unique_topic: str) -> None:
    """The connector's MQTT 5 at QoS 0 works with a third implementation (mqttools)."""
    await round_trip(
        MqttConnector(private_mqttools.url),
        MqttConnector(private_mqttools.url),
        f"mqtt://{unique_topic}/t",
    )


async def test_a_qos1_link_on_a_maximum_qos_0_broker_is_downgraded_or_refused(
    rt: Any, private_mqttools: Any, unique_topic: str
) -> None:
    got: list[Temp] = []
    sub = MqttConnector(private_mqttools.url)
    pub = MqttConnector(private_mqttools.url)
    ring = BufferCfg.SpmcRing(capacity=16)
    link = f"mqtt://{unique_topic}/t"
    bs = AimDbBuilder().with_connector(sub)
    bs.configure(Temp, "in", lambda r: r.buffer(ring).link_from(link).qos(1).finish().tap(collector(got)))
    bp = AimDbBuilder().with_connector(pub)
    bp.configure(Temp, "out", lambda r: r.buffer(ring).link_to(link).qos(1).finish())
    async with bs.build(), bp.build() as dbp:
        await sub.wait_connected(10)
        await pub.wait_connected(10)
        for i in range(3):
            dbp.producer(Temp, "out").produce(Temp(float(i)))

        def settled() -> bool:
            out = {s.url: s for s in dbp.link_statistics()}[link]
            refused = out.failed == 3 and "QoS" in (out.last_error or "")
            return len(got) == 3 or refused

        await wait_until(settled, timeout=5, what="3 values downgraded to QoS 0, or refused naming the QoS")


async def test_a_wildcard_link_on_a_broker_without_wildcards_is_reported(
    rt: Any, private_mqttools: Any
) -> None:
    sub = MqttConnector(private_mqttools.url)
    ring = BufferCfg.SpmcRing(capacity=16)
    b = AimDbBuilder().with_connector(sub)
    b.configure(Temp, "in", lambda r: r.buffer(ring).link_from("mqtt://aimdb/+/t").finish())
    async with b.build() as db:
        await sub.wait_connected(10)

        def reported() -> bool:
            inn = db.link_statistics()[0]
            return "wildcard" in (inn.last_error or "") + (sub.statistics().last_error or "")

        await wait_until(reported, timeout=5, what="the wildcard link reported as not allowed")
