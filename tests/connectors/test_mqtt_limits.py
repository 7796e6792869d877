"""MqttConnector honours what a strict MQTT 5 broker announces in its CONNACK.

The broker is a private Mosquitto configured with low limits (Receive Maximum 2, Maximum
Packet Size 256, Maximum QoS 1, no retained messages): every limit it announces is one a
conforming broker enforces by disconnecting the client.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb._core._connector import LinkCounters
from aimdb.connectors import MqttConnector, ReconnectPolicy
from aimdb.connectors._mqtt_session import BrokerLimits, MqttSession, Outgoing

from ._util import collector, wait_until

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(60)]

STRICT = "max_packet_size 256\nmax_qos 1\nretain_available false\n"


@dataclass
class V:
    n: int
    pad: str = ""


async def test_low_broker_limits_are_honoured(rt: Any, private_mosquitto_factory: Any, caplog: Any) -> None:
    """Regression: the window was not re-checked after a wake-up, the packet size never read, QoS 2
    and retain sent to a broker that allows neither: the broker disconnected the client over and
    over (281 reconnects in 15 s). Now the client stays connected, every value that fits arrives,
    and the one that does not is counted as failed with a clear reason.
    """
    broker = private_mosquitto_factory(max_inflight_messages=2, extra_config=STRICT)
    pub = MqttConnector(broker.url, reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2))
    sub = MqttConnector(broker.url)
    got: list[V] = []
    pb = AimDbBuilder().with_connector(pub)
    for k in ("a", "b", "c"):
        pb.configure(
            V,
            k,
            lambda r, k=k: r.buffer(BufferCfg.SpmcRing(capacity=1024))
            .link_to("mqtt://strict/" + k)
            .qos(2)
            .retain()
            .finish(),
        )
    sb = AimDbBuilder().with_connector(sub)
    sb.configure(
        V,
        "in",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4096)).link_from("mqtt://strict/+").qos(1).finish()
        .tap(collector(got)),
    )
    n = 100
    async with sb.build(), pb.build() as db:
        await sub.wait_connected()
        await pub.wait_connected()
        limits = pub.broker_limits
        assert (limits.receive_maximum, limits.maximum_packet_size, limits.maximum_qos) == (2, 256, 1)
        assert limits.retain_available is False
        producers = [db.producer(V, k) for k in "abc"]
        for i in range(n):
            for p in producers:
                p.produce(V(i, "x" * (300 if i == n // 2 else 0)))
            if i % 10 == 0:
                await asyncio.sleep(0.005)
        await wait_until(lambda: len(got) >= 3 * (n - 1), what="all that fits", detail=lambda: len(got))
        await asyncio.sleep(0.2)
        st = pub.statistics()
        assert (st.connects, st.disconnects) == (1, 0), st
        for s in db.link_statistics():
            assert (s.sent, s.failed) == (n - 1, 1), s
            assert "Maximum Packet Size of 256" in (s.last_error or "")
        assert len(got) == 3 * (n - 1)
        assert n // 2 not in {v.n for v in got}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("downgraded to the broker's Maximum QoS 1" in w for w in warnings) == 3
    assert sum("retain dropped" in w for w in warnings) == 3


def _out(stats: LinkCounters, size: int = 10) -> Outgoing:
    return Outgoing(bytes([0x32]) + bytes(size - 1), stats)


def test_resend_after_a_reconnect_respects_the_new_receive_maximum() -> None:
    stats = LinkCounters("mqtt://t", "out")
    s = MqttSession(max_inflight=100)
    for _ in range(5):
        s.unacked.add(s.ids.allocate(), _out(stats))
    dropped = s.start_connection(BrokerLimits({0x21: 2}), session_present=True)
    assert dropped == []
    first = s.next_resends()
    assert len(first) == 2 and all(p[0] & 0x08 for p in first)  # DUP set
    assert s.next_resends() == []  # the window is full until an ack comes
    pid = next(iter(k for k, _ in s.unacked.items()))
    s.unacked.pop(pid)
    assert len(s.next_resends()) == 1
    assert s.on_wire() == 2 and len(s.resend) == 2


def test_a_publish_the_broker_keeps_refusing_is_dropped_not_resent_forever() -> None:
    stats = LinkCounters("mqtt://t", "out")
    s = MqttSession(max_inflight=10)
    s.unacked.add(s.ids.allocate(), _out(stats))
    s.unacked.add(s.ids.allocate(), _out(stats, size=300))
    for _ in range(MqttSession.MAX_SENDS - 1):
        assert s.start_connection(BrokerLimits(), session_present=True) == []
        assert len(s.next_resends()) == 2
    dropped = s.start_connection(BrokerLimits({0x27: 256}), session_present=True)
    assert len(dropped) == 2  # one sent MAX_SENDS times, one over the new packet size limit
    assert len(s.unacked) == 0


def test_a_refused_too_large_publish_is_the_largest_not_yet_received() -> None:
    stats = LinkCounters("mqtt://t", "out")
    s = MqttSession(max_inflight=10)
    small, big, received = s.ids.allocate(), s.ids.allocate(), s.ids.allocate()
    s.unacked.add(small, _out(stats))
    s.unacked.add(big, _out(stats, size=300))
    s.unacked.add(received, _out(stats, size=400))
    s.released(received)  # the broker has that one already
    dropped = s.refused_too_large()
    assert dropped is not None and len(dropped.packet) == 300
    assert big not in s.ids and big not in s.unacked
    assert small in s.unacked and received in s.unacked


def test_qos2_state_across_a_reconnect() -> None:
    """A received (PUBREC) QoS 2 publish resumes with PUBREL, the others with PUBLISH DUP."""
    stats = LinkCounters("mqtt://t", "out")
    s = MqttSession(max_inflight=10)
    a, b = s.ids.allocate(), s.ids.allocate()
    s.unacked.add(a, _out(stats))
    s.unacked.add(b, _out(stats))
    s.released(a)
    s.inbound_qos2.add(7)
    s.start_connection(BrokerLimits(), session_present=True)
    assert s.next_resends() == [b"\x62\x02" + a.to_bytes(2, "big"), bytes([0x3A]) + bytes(9)]
    assert s.inbound_qos2 == {7}
    # the broker lost the session: the received one is complete, the other is published anew
    s.start_connection(BrokerLimits(), session_present=False)
    assert a not in s.unacked and b in s.unacked
    assert s.inbound_qos2 == set()


def test_connection_settings_are_checked_by_build() -> None:
    from aimdb import InvalidConfiguration

    b = AimDbBuilder().with_connector(
        MqttConnector("mqtt://127.0.0.1:1", protocol="3.1.1", password="secret", client_id="bad\udcff")
    )
    b.configure(V, "v", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("mqtt://t").finish())
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    messages = [p.message for p in info.value.problems]
    assert any("password only together with a user name" in m for m in messages), messages
    assert any("client id is not valid UTF-8" in m for m in messages), messages
