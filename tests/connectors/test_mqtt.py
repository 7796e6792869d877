"""MqttConnector against real Mosquitto brokers (the machine's on 1883, and private ones)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, ConnectionFailed, ConnectorTimeout
from aimdb.connectors import MqttConnector, ReconnectPolicy

from ._util import (
    CODECS,
    RESTART_CASES,
    Command,
    MosquittoSub,
    Reading,
    Temp,
    codec_round_trip,
    collector,
    mosquitto_pub,
    restart_mid_stream,
    round_trip,
    stalled_broker_lags_the_reader,
    unreachable_retries_with_backoff,
    wait_until,
)

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(60)]

FAST_RETRY = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def ring(n: int = 64) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_round_trip(rt: Any, mosquitto_url: str, unique_topic: str, qos: int, protocol: Any) -> None:
    """aimdb record -> Mosquitto -> aimdb record in another database, typed, in order."""
    await round_trip(
        MqttConnector(mosquitto_url, protocol=protocol),
        MqttConnector(mosquitto_url, protocol=protocol),
        f"mqtt://{unique_topic}/sensors/temp",
        link_options=lambda ln: ln.qos(qos),
    )


async def test_wildcards_route_to_every_matching_record(
    rt: Any, mosquitto_url: str, unique_topic: str
) -> None:
    t = unique_topic
    conn = MqttConnector(mosquitto_url)
    plus: list[Temp] = []
    hash_: list[Temp] = []
    exact: list[Temp] = []
    exact2: list[Temp] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "plus", lambda r: r.buffer(ring()).link_from(f"mqtt://{t}/+/temp").finish()
                .tap(collector(plus)))
    b.configure(Temp, "hash", lambda r: r.buffer(ring()).link_from(f"mqtt://{t}/#").finish()
                .tap(collector(hash_)))
    b.configure(Temp, "exact", lambda r: r.buffer(ring()).link_from(f"mqtt://{t}/a/temp").finish()
                .tap(collector(exact)))
    # same filter twice: one subscription, both records fed
    b.configure(Temp, "exact2", lambda r: r.buffer(ring()).link_from(f"mqtt://{t}/a/temp").finish()
                .tap(collector(exact2)))
    async with b.build():
        await conn.wait_connected(5)
        assert len(conn._routing.filters) == 3
        mosquitto_pub(mosquitto_url, f"{t}/a/temp", b'{"celsius": 1}')
        mosquitto_pub(mosquitto_url, f"{t}/b/temp", b'{"celsius": 2}')
        mosquitto_pub(mosquitto_url, f"{t}/b/c/temp", b'{"celsius": 3}')
        mosquitto_pub(mosquitto_url, f"{t}", b'{"celsius": 4}')  # '#' also matches the parent
        await wait_until(lambda: len(hash_) == 4, what=f"4 values on # {hash_} {plus}")
        await asyncio.sleep(0.05)
    assert [v.celsius for v in plus] == [1, 2]
    assert [v.celsius for v in hash_] == [1, 2, 3, 4]
    assert [v.celsius for v in exact] == [1] and [v.celsius for v in exact2] == [1]


async def test_topic_provider_and_retain(rt: Any, mosquitto_url: str, unique_topic: str) -> None:
    t = unique_topic
    conn = MqttConnector(mosquitto_url)
    b = AimDbBuilder().with_connector(conn)
    b.configure(
        Reading,
        "reading",
        lambda r: r.buffer(ring())
        .link_to(f"mqtt://{t}/unused")
        .with_topic_provider(lambda v: f"{t}/room/{v.sensor}")
        .retain()
        .qos(1)
        .finish(),
    )
    async with b.build() as db:
        await conn.wait_connected(5)
        p = db.producer(Reading, "reading")
        p.produce(Reading("kitchen", 1, 20.5))
        p.produce(Reading("hall", 2, 19.0))
        await wait_until(lambda: not conn._session.unacked and db.link_statistics()[0].sent == 2, what="acks")
    # retained: a late subscriber still gets the latest value per topic
    sub = MosquittoSub(mosquitto_url, f"{t}/room/+", 2)
    lines = sorted(sub.result())
    assert lines == [
        f'{t}/room/hall {{"sensor":"hall","seq":2,"value":19.0}}',
        f'{t}/room/kitchen {{"sensor":"kitchen","seq":1,"value":20.5}}',
    ]
    for room in ("hall", "kitchen"):  # clear the retained messages
        mosquitto_pub(mosquitto_url, f"{t}/room/{room}", b"", extra=["-r"])


async def test_bad_payloads_are_dropped_and_counted(
    rt: Any, mosquitto_url: str, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    t = unique_topic
    conn = MqttConnector(mosquitto_url)
    cmds: list[Command] = []
    temps: list[Temp] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Command, "cmd", lambda r: r.buffer(ring()).link_from(f"mqtt://{t}/cmd").qos(1).finish()
                .tap(collector(cmds)))
    b.configure(Temp, "temp", lambda r: r.buffer(ring()).link_from(f"mqtt://{t}/temp").qos(1).finish()
                .tap(collector(temps)))
    bad = [
        b"not json at all",
        b'["a", "list"]',  # wrong shape
        b'{"action": 5, "level": "high"}',  # wrong field types
        b'{"action": "x"}',  # missing field
        bytes(range(256)) * 4096,  # 1 MiB of garbage
    ]
    caplog.set_level(logging.WARNING, logger="aimdb")
    async with b.build() as db:
        await conn.wait_connected(5)
        for i, payload in enumerate(bad):
            mosquitto_pub(mosquitto_url, f"{t}/cmd", payload)
            mosquitto_pub(mosquitto_url, f"{t}/temp", b'{"celsius": %d}' % i)
        mosquitto_pub(mosquitto_url, f"{t}/cmd", b'{"action": "open", "level": 3}')
        await wait_until(lambda: len(cmds) == 1 and len(temps) == len(bad), what="good messages")
        stats = {s.url: s for s in db.link_statistics()}
        assert conn.connected and conn.statistics().connects == 1
    assert cmds == [Command("open", 3)]
    assert [v.celsius for v in temps] == list(range(len(bad)))
    assert stats[f"mqtt://{t}/cmd"].failed == len(bad)
    assert stats[f"mqtt://{t}/cmd"].received == 1
    assert stats[f"mqtt://{t}/temp"].failed == 0
    logged = [r.getMessage() for r in caplog.records if "bad payload" in r.getMessage()]
    assert len(logged) == len(bad)
    assert all(f"{t}/cmd" in m and "'cmd'" in m for m in logged)


async def test_interop_aimdb_to_mosquitto_sub(rt: Any, mosquitto_url: str, unique_topic: str) -> None:
    topic = f"{unique_topic}/out"
    sub = MosquittoSub(mosquitto_url, topic, 3)
    await asyncio.sleep(0.5)  # let mosquitto_sub subscribe
    conn = MqttConnector(mosquitto_url)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_to(f"mqtt://{topic}").qos(1).finish())
    async with b.build() as db:
        await conn.wait_connected(5)
        p = db.producer(Reading, "r")
        for i in range(3):
            p.produce(Reading("s1", i, i / 2))
        lines = await asyncio.to_thread(sub.result)
    assert [json.loads(line.split(" ", 1)[1]) for line in lines] == [
        {"sensor": "s1", "seq": i, "value": i / 2} for i in range(3)
    ]


async def test_interop_mosquitto_pub_to_aimdb(rt: Any, mosquitto_url: str, unique_topic: str) -> None:
    topic = f"{unique_topic}/in"
    conn = MqttConnector(mosquitto_url, protocol="3.1.1")
    got: list[Reading] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_from(f"mqtt://{topic}").qos(2).finish()
                .tap(collector(got)))
    async with b.build():
        await conn.wait_connected(5)
        for q in (0, 1, 2):
            payload = json.dumps({"sensor": "ext", "seq": q, "value": 1.5}).encode()
            await asyncio.to_thread(mosquitto_pub, mosquitto_url, topic, payload, q)
        await wait_until(lambda: len(got) == 3, what="3 values from mosquitto_pub")
    assert got == [Reading("ext", q, 1.5) for q in (0, 1, 2)]


@pytest.mark.parametrize("codec", CODECS)
async def test_binary_codecs(rt: Any, mosquitto_url: str, unique_topic: str, codec: str) -> None:
    await codec_round_trip(MqttConnector(mosquitto_url), f"mqtt://{unique_topic}/{codec}", codec)


async def test_wrong_password_is_a_clear_connection_failed(rt: Any, private_mosquitto_factory: Any) -> None:
    broker = private_mosquitto_factory(users={"aimdb": "secret"})
    for protocol in (5, "3.1.1"):
        conn = MqttConnector(
            broker.url,
            username="aimdb",
            password="wrong",
            protocol=protocol,
            reconnect=ReconnectPolicy(initial_delay=0.02, max_delay=0.05, max_attempts=3),
        )
        b = AimDbBuilder().with_connector(conn)
        b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("mqtt://x/t").finish())
        async with b.build():
            with pytest.raises(ConnectionFailed) as ei:
                await conn.wait_connected(5)
        assert "refused" in str(ei.value)
        assert "bad user name or password" in ei.value.reason or "not authorized" in ei.value.reason
        assert conn.statistics().failed_attempts == 3
        assert conn.state == "closed"

    # retried per policy: unlimited retries keep trying and time out with the reason
    conn = MqttConnector(broker.url, username="aimdb", password="wrong", reconnect=FAST_RETRY)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("mqtt://x/t").finish())
    async with b.build():
        with pytest.raises(ConnectorTimeout) as et:
            await conn.wait_connected(0.5)
        assert isinstance(et.value.__cause__, ConnectionFailed)
        assert conn.statistics().failed_attempts >= 2

    ok = MqttConnector(f"mqtt://aimdb:secret@127.0.0.1:{broker.port}")
    b = AimDbBuilder().with_connector(ok)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("mqtt://x/t").finish())
    async with b.build():
        await ok.wait_connected(5)


async def test_unreachable_broker_retries_with_backoff(rt: Any, unique_topic: str) -> None:
    await unreachable_retries_with_backoff(MqttConnector, "mqtt", f"mqtt://{unique_topic}")


@pytest.mark.parametrize(("kind", "produced", "expected"), RESTART_CASES)
async def test_broker_restart_mid_stream(
    rt: Any, private_mosquitto: Any, unique_topic: str, kind: str, produced: int, expected: list[int]
) -> None:
    """Kill the broker, produce while it is down, restart it on the same port.

    The link reconnects by itself, re-subscribes, and sends what the buffer kind says;
    at QoS 1 nothing arrives twice.
    """
    conn = MqttConnector(private_mosquitto.url, reconnect=FAST_RETRY, keepalive=5)
    await restart_mid_stream(
        conn,
        private_mosquitto,
        f"mqtt://{unique_topic}/seq",
        kind,
        produced,
        expected,
        disconnected=lambda: conn.state != "connected",
        link_options=lambda ln: ln.qos(1),
        pace=0.01,
    )


async def test_stalled_broker_lags_the_reader_not_the_producer(
    rt: Any, private_mosquitto: Any, unique_topic: str
) -> None:
    """A broker that stops reading: the producer never blocks, the ring reader lags (counted)."""
    conn = MqttConnector(private_mosquitto.url, keepalive=0)

    def write_buffer() -> int:
        transport = conn._proto.transport if conn._proto else None
        return transport.get_write_buffer_size() if transport else 0

    buffered = await stalled_broker_lags_the_reader(
        conn, private_mosquitto, f"mqtt://{unique_topic}/blob", write_buffer
    )
    assert buffered < 4 * 1024 * 1024  # bounded by the write high-water mark plus one batch
