"""Connector tasks are owned by the database: a task that raises is logged once, counted, restarted.

Faults are injected into the send step of real connectors talking to real brokers (the
machine's Mosquitto), so the link's recovery and its statistics are checked end to end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb._core._connector import InboundRoute
from aimdb.connectors import MqttConnector, ReconnectPolicy
from aimdb.connectors import mqtt as mqtt_module

from ._util import Temp, collector, wait_until

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(60)]

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


class _FailOnce:
    """Wraps a function; the ``nth`` call raises ``RuntimeError("injected")``, every other call passes."""

    def __init__(self, fn: Any, nth: int) -> None:
        self.fn = fn
        self.nth = nth
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.nth:
            raise RuntimeError("injected")
        return self.fn(*args, **kwargs)


def _pair(
    url: str, topic: str, got: list[Temp], qos: int
) -> tuple[AimDbBuilder, AimDbBuilder, MqttConnector]:
    pub_conn = MqttConnector(url, reconnect=FAST)
    pub = AimDbBuilder().with_connector(pub_conn)
    pub.configure(
        Temp,
        "t",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1024)).link_to("mqtt://" + topic).qos(qos).finish(),
    )
    sub = AimDbBuilder().with_connector(MqttConnector(url, reconnect=FAST))
    sub.configure(
        Temp,
        "t",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1024))
        .link_from("mqtt://" + topic)
        .qos(qos)
        .finish()
        .tap(collector(got)),
    )
    return pub, sub, pub_conn


@pytest.mark.parametrize("qos", [0, 1])
async def test_exception_in_mqtt_send_path_costs_only_its_values(
    rt: Any, mosquitto_url: str, unique_topic: str, qos: int, monkeypatch: Any, caplog: Any
) -> None:
    """Regression: one exception while building a PUBLISH stopped the link for good.

    Before, 49 of 600 values arrived, the link still said ``connected`` and no statistic
    or log line showed anything. Now the values of the failing batch are counted as
    ``failed``, the exception is counted in ``errors`` and logged once, and every value
    after it arrives.
    """
    got: list[Temp] = []
    pub, sub, conn = _pair(mosquitto_url, unique_topic + "/inj", got, qos)
    inject = _FailOnce(mqtt_module.publish_packet, 20)
    monkeypatch.setattr(mqtt_module, "publish_packet", inject)
    n = 200
    async with sub.build() as dbs:
        await dbs.connectors()[0].wait_connected()
        async with pub.build() as db:
            await conn.wait_connected()
            p = db.producer(Temp, "t")
            for i in range(n):
                p.produce(Temp(float(i)))
                if i % 10 == 9:
                    await asyncio.sleep(0.01)
            await wait_until(
                lambda: len(got) + db.link_statistics()[0].failed >= n,
                what="every value arrived or counted",
                detail=lambda: (len(got), db.link_statistics()),
            )
            stats = db.link_statistics()[0]
            assert stats.errors == 1
            assert stats.failed >= 1
            assert stats.last_error is not None and "injected" in stats.last_error
            assert stats.last_error_at is not None
            assert stats.state == "connected"
            await asyncio.sleep(0.2)  # nothing more may arrive than was sent
            assert len(got) + stats.failed == n
            assert got[-1].celsius == n - 1.0
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "injected" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].exc_info is not None


async def test_pump_that_raises_outside_the_send_step_is_restarted(
    rt: Any, mosquitto_url: str, unique_topic: str, monkeypatch: Any, caplog: Any
) -> None:
    """A pump task that raises is restarted by the database; meanwhile its link is not ``connected``."""
    got: list[Temp] = []
    pub, sub, conn = _pair(mosquitto_url, unique_topic + "/pump", got, 1)
    original = MqttConnector._wait_sendable
    calls = {"n": 0}

    async def flaky(self: MqttConnector) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("pump broke")
        await original(self)

    monkeypatch.setattr(MqttConnector, "_wait_sendable", flaky)
    async with sub.build() as dbs:
        await dbs.connectors()[0].wait_connected()
        async with pub.build() as db:
            await conn.wait_connected()
            p = db.producer(Temp, "t")
            for i in range(50):
                p.produce(Temp(float(i)))
                await asyncio.sleep(0.002)
            await wait_until(lambda: len(got) >= 50, what="all 50 values",
                             detail=lambda: (len(got), db.link_statistics()))
            stats = db.link_statistics()[0]
            pumps = [t for t in db.tasks() if t.kind == "link"]
            assert len(pumps) == 1
            assert pumps[0].failures == 1 and pumps[0].restarts == 1, pumps
            assert pumps[0].state == "running"
            assert stats.errors == 1 and "pump broke" in (stats.last_error or "")
            assert [v.celsius for v in got] == [float(i) for i in range(50)]  # the reader kept them
    assert sum("pump broke" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR) == 1


async def test_link_whose_pump_is_down_is_not_connected(
    rt: Any, mosquitto_url: str, unique_topic: str, monkeypatch: Any
) -> None:
    """With ``on_error="log"`` a pump that raises ends; its link says ``failed``, not ``connected``."""
    got: list[Temp] = []
    pub, _sub, conn = _pair(mosquitto_url, unique_topic + "/down", got, 0)
    conn.on_error = "log"

    async def broken(self: MqttConnector) -> None:
        raise RuntimeError("pump broke for good")

    monkeypatch.setattr(MqttConnector, "_wait_sendable", broken)
    async with pub.build() as db:
        await conn.wait_connected()
        await wait_until(lambda: db.link_statistics()[0].errors == 1, what="the pump's failure")
        stats = db.link_statistics()[0]
        assert conn.state == "connected"  # the connection itself is fine
        assert stats.state == "failed"
        assert stats.as_dict()["state"] == "failed"


async def test_connector_task_with_on_error_stop_stops_the_database(
    rt: Any, mosquitto_url: str, unique_topic: str, monkeypatch: Any
) -> None:
    from aimdb import StageFailed

    got: list[Temp] = []
    pub, _sub, conn = _pair(mosquitto_url, unique_topic + "/stop", got, 0)
    conn.on_error = "stop"

    async def broken(self: MqttConnector) -> None:
        raise RuntimeError("fatal pump")

    monkeypatch.setattr(MqttConnector, "_wait_sendable", broken)
    db = pub.build()
    with pytest.raises(StageFailed) as info:
        await asyncio.wait_for(db.run(), 10)
    assert info.value.key == "t"
    assert "fatal pump" in repr(info.value.cause)
    assert db.state == "stopped"


async def test_exception_in_mqtt_receive_path_costs_only_its_message(
    rt: Any, mosquitto_url: str, unique_topic: str, monkeypatch: Any, caplog: Any
) -> None:
    """Regression: an exception while routing a received message escaped the protocol callback.

    asyncio then closed the connection (every message in flight lost, uncounted). Now the
    message is counted in the connector's ``errors``, logged once, and the connection
    and the following messages are unaffected.
    """
    got: list[Temp] = []
    topic = unique_topic + "/rx"
    pub, sub, pub_conn = _pair(mosquitto_url, topic, got, 1)
    original = InboundRoute.deliver
    calls = {"n": 0}

    def flaky(self: InboundRoute, payload: bytes, source: str | None = None) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("routing broke")
        return original(self, payload, source)

    monkeypatch.setattr(InboundRoute, "deliver", flaky)
    async with sub.build() as dbs:
        sub_conn = dbs.connectors()[0]
        await sub_conn.wait_connected()
        async with pub.build() as db:
            await pub_conn.wait_connected()
            p = db.producer(Temp, "t")
            for i in range(20):
                p.produce(Temp(float(i)))
                await asyncio.sleep(0.005)
            await wait_until(lambda: len(got) >= 19, what="19 values",
                             detail=lambda: (got, sub_conn.statistics()))
        st = sub_conn.statistics()
        assert (st.errors, st.disconnects) == (1, 0), st
        assert [v.celsius for v in got] == [float(i) for i in range(1, 20)]
    assert sum("routing broke" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR) == 1


def _send_fails_once(original: Any, nth: int, lost: list[int]) -> Any:
    """A send step whose ``nth`` call raises before sending anything; its batch size goes to ``lost``."""
    calls = [0]

    async def send(conn: Any, route: Any, values: list[Any]) -> list[Any]:
        calls[0] += 1
        if calls[0] == nth:
            lost.append(len(values))
            raise RuntimeError("send step broke")
        result: list[Any] = await original(conn, route, values)
        return result

    return send


def _kafka(tansu: Any, topic: str, got: list[Temp]) -> tuple[AimDbBuilder, AimDbBuilder, Any, Any]:
    from aimdb.connectors import KafkaConnector

    out = KafkaConnector(tansu.url)
    inn = KafkaConnector(tansu.url, start="earliest")
    pub = AimDbBuilder().with_connector(out)
    pub.configure(
        Temp, "t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1024)).link_to("kafka://" + topic).finish()
    )
    sub = AimDbBuilder().with_connector(inn)
    sub.configure(
        Temp,
        "t",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1024))
        .link_from("kafka://" + topic)
        .finish()
        .tap(collector(got)),
    )
    return pub, sub, out, inn


@pytest.mark.runtimes("asyncio")
@pytest.mark.parametrize("kind", ["mqtt", "kafka"])
async def test_send_step_that_raises_costs_exactly_its_batch(
    rt: Any, kind: str, request: Any, unique_topic: str, monkeypatch: Any, caplog: Any
) -> None:
    """Every connector: an exception in the send step loses that batch, counted; the rest arrive."""
    from aimdb.connectors import KafkaConnector

    got: list[Temp] = []
    cls: Any
    if kind == "mqtt":
        pub, sub, out = _pair(request.getfixturevalue("mosquitto_url"), unique_topic + "/step", got, 1)
        cls = MqttConnector
    else:
        tansu = request.getfixturevalue("tansu")
        pub, sub, out, _inn = _kafka(tansu, unique_topic.replace("/", "-") + "-step", got)
        cls = KafkaConnector
    lost: list[int] = []
    monkeypatch.setattr(cls, "_send", _send_fails_once(cls._send, 3, lost))
    n = 60
    async with sub.build() as dbs:
        await dbs.connectors()[0].wait_connected(15)
        async with pub.build() as db:
            await out.wait_connected(15)
            p = db.producer(Temp, "t")
            for i in range(n):
                p.produce(Temp(float(i)))
                await asyncio.sleep(0.01)
            await wait_until(
                lambda: len(got) + db.link_statistics()[0].failed >= n,
                timeout=20,
                what="all values",
                detail=lambda: (len(got), db.link_statistics()),
            )
            await asyncio.sleep(0.3)
            stats = db.link_statistics()[0]
            assert len(lost) == 1 and lost[0] >= 1
            assert stats.failed == lost[0] and stats.errors == 1, stats
            assert len(got) == n - lost[0]
            assert max(v.celsius for v in got) == n - 1.0  # Kafka orders per partition only
    assert sum("send step broke" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR) == 1
