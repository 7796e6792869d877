"""QoS 2 is exactly once across reconnects of a persistent session, both directions.

The connector runs through the fault-injecting proxy (``_mqtt_proxy.py``) to a private
Mosquitto; the proxy drops one acknowledgement and the test cuts the connection at that
moment, so the exchange has to be resumed on the next connection as the MQTT state
machine says: outbound with PUBREL after PUBREC (never the PUBLISH again), inbound
remembering which packet identifiers it already delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector, ReconnectPolicy

from ._mqtt_proxy import MqttFaultProxy
from ._util import Temp, collector, wait_until

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(60)]

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)


@contextlib.asynccontextmanager
async def proxied(port: int) -> AsyncIterator[MqttFaultProxy]:
    proxy = MqttFaultProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def _ring() -> Any:
    return BufferCfg.SpmcRing(capacity=64)


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_outbound_resumes_with_pubrel_when_pubcomp_was_lost(
    rt: Any, private_mosquitto: Any, unique_topic: str, protocol: Any
) -> None:
    """Regression: after PUBREC nothing was kept, so the reconnect sent the PUBLISH again.

    The broker had already delivered the value at PUBREL and forgotten the packet id, so the
    subscriber got it twice. Now the connector completes the exchange with PUBREL.
    """
    topic = unique_topic + "/q2out"
    got: list[Temp] = []
    sub = MqttConnector(private_mosquitto.url)
    sb = AimDbBuilder().with_connector(sub)
    sb.configure(Temp, "in", lambda r: r.buffer(_ring()).link_from("mqtt://" + topic).qos(2).finish()
                 .tap(collector(got)))  # fmt: skip
    async with proxied(private_mosquitto.port) as proxy, sb.build():
        await sub.wait_connected()
        proxy.drop("to_client", "PUBCOMP")
        pub = MqttConnector(
            proxy.url, client_id="q2out-" + unique_topic[-12:], clean_session=False, protocol=protocol,
            reconnect=FAST,
        )  # fmt: skip
        pb = AimDbBuilder().with_connector(pub)
        pb.configure(Temp, "out", lambda r: r.buffer(_ring()).link_to("mqtt://" + topic).qos(2).finish())
        async with pb.build() as db:
            await pub.wait_connected()
            db.producer(Temp, "out").produce(Temp(1.0))
            await proxy.wait_for(lambda p: bool(p.packets("PUBCOMP")), what="the PUBCOMP (dropped)")
            await wait_until(lambda: len(got) == 1, what="the value")
            proxy.cut_all()
            await proxy.wait_for(lambda p: p.connections >= 2 and len(p.packets("PUBCOMP")) >= 2,
                                 what="the exchange completed on the next connection")  # fmt: skip
            db.producer(Temp, "out").produce(Temp(2.0))
            await wait_until(lambda: len(got) == 2, what="the next value")
            await asyncio.sleep(0.3)
            second = [p for p in proxy.log if p.conn == 2 and p.direction == "to_broker"]
            kinds = [p.kind for p in second if p.kind in ("PUBLISH", "PUBREL")]
            assert kinds[0] == "PUBREL", kinds  # resumed, not re-published
            assert kinds.count("PUBLISH") == 1  # only the new value
        assert [v.celsius for v in got] == [1.0, 2.0]  # exactly once


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_inbound_does_not_deliver_a_dup_resend_twice(
    rt: Any, private_mosquitto: Any, unique_topic: str, protocol: Any
) -> None:
    """Regression: the ids of inbound QoS 2 publishes lived in the connection.

    The connector delivers a QoS 2 publish when it arrives and answers PUBREC; the proxy
    drops that PUBREC and the connection breaks, so the broker sends the PUBLISH again
    (DUP) on the next connection. It must not reach the record a second time.
    """
    topic = unique_topic + "/q2in"
    got: list[Temp] = []
    async with proxied(private_mosquitto.port) as proxy:
        proxy.drop("to_broker", "PUBREC")
        sub = MqttConnector(
            proxy.url, client_id="q2in-" + unique_topic[-12:], clean_session=False, protocol=protocol,
            reconnect=FAST,
        )  # fmt: skip
        sb = AimDbBuilder().with_connector(sub)
        sb.configure(Temp, "in", lambda r: r.buffer(_ring()).link_from("mqtt://" + topic).qos(2).finish()
                     .tap(collector(got)))  # fmt: skip
        pub = MqttConnector(private_mosquitto.url)
        pb = AimDbBuilder().with_connector(pub)
        pb.configure(Temp, "out", lambda r: r.buffer(_ring()).link_to("mqtt://" + topic).qos(2).finish())
        async with sb.build(), pb.build() as db:
            await sub.wait_connected()
            await pub.wait_connected()
            db.producer(Temp, "out").produce(Temp(1.0))
            await proxy.wait_for(lambda p: bool(p.packets("PUBREC", "to_broker")), what="PUBREC (dropped)")
            await wait_until(lambda: len(got) == 1, what="the value")
            proxy.cut_all()
            await proxy.wait_for(
                lambda p: any(q.conn >= 2 and q.kind == "PUBCOMP" for q in p.log), what="exchange completed"
            )
            db.producer(Temp, "out").produce(Temp(2.0))
            await wait_until(lambda: len(got) == 2, what="the next value")
            await asyncio.sleep(0.3)
            dups = [p for p in proxy.log if p.conn >= 2 and p.kind == "PUBLISH" and p.data[0] & 0x08]
            assert dups, "the broker did not re-send the PUBLISH; the test did not test anything"
        assert [v.celsius for v in got] == [1.0, 2.0]  # exactly once
