"""KafkaConnector against a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, ConnectionFailed
from aimdb.connectors import KafkaConnector, ReconnectPolicy

from ._util import Reading, collector, require, wait_until

pytestmark = [pytest.mark.runtimes("asyncio"), pytest.mark.timeout(90)]


def ring(n: int = 256) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


async def _raw_consume(address: str, topic: str, n: int, timeout: float = 20) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=address, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    out.extend(recs)
    finally:
        await consumer.stop()
    return out


async def _raw_produce(address: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=address)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, partition=partition)
    finally:
        await producer.stop()


async def test_round_trip_with_keys(rt: Any, tansu: Any, unique_topic: str) -> None:
    conn_out = KafkaConnector(tansu.url)
    conn_in = KafkaConnector(tansu.url, start="earliest")
    got: list[Reading] = []
    bo = AimDbBuilder().with_connector(conn_out)
    bo.configure(Reading, "r", lambda r: r.buffer(ring()).link_to(f"kafka://{unique_topic}")
                 .key(lambda v: v.sensor).finish())
    bi = AimDbBuilder().with_connector(conn_in)
    bi.configure(Reading, "r", lambda r: r.buffer(ring()).link_from(f"kafka://{unique_topic}").finish()
                 .tap(collector(got)))
    async with bo.build() as dbo, bi.build():
        await conn_out.wait_connected(15)
        await conn_in.wait_connected(15)
        p = dbo.producer(Reading, "r")
        for i in range(30):
            p.produce(Reading(f"s{i % 3}", i, i * 0.5))
        await wait_until(lambda: len(got) == 30, timeout=20, what="30 values")
        await wait_until(lambda: dbo.link_statistics()[0].sent == 30, what="acks")
    # per key (and so per partition) order is kept
    for s in ("s0", "s1", "s2"):
        seqs = [v.seq for v in got if v.sensor == s]
        assert seqs == sorted(seqs) and len(seqs) == 10
    recs = await _raw_consume(tansu.address, unique_topic, 30)
    assert {r.key for r in recs} == {b"s0", b"s1", b"s2"}
    assert all(json.loads(r.value)["sensor"].encode() == r.key for r in recs)


async def test_several_partitions_and_bad_payloads(rt: Any, tansu: Any, unique_topic: str) -> None:
    await asyncio.to_thread(tansu.create_topic, unique_topic, 3)
    conn = KafkaConnector(tansu.url, start="earliest")
    got: list[Reading] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_from(f"kafka://{unique_topic}").finish()
                .tap(collector(got)))
    async with b.build() as db:
        await conn.wait_connected(15)
        for part in range(3):
            await _raw_produce(tansu.address, unique_topic, [
                b"garbage" * 1000,
                json.dumps({"sensor": f"p{part}", "seq": part, "value": 1.0}).encode(),
            ], partition=part)
        await wait_until(lambda: len(got) == 3, timeout=20, what="one value per partition")
        st = db.link_statistics()[0]
    assert sorted(v.sensor for v in got) == ["p0", "p1", "p2"]
    assert st.failed == 3 and st.received == 3


@pytest.mark.slow
async def test_group_resumes_from_committed_offsets(rt: Any, tansu: Any, unique_topic: str) -> None:
    group = f"g-{unique_topic}"

    async def consume(expect: int) -> list[int]:
        got: list[Reading] = []
        conn = KafkaConnector(tansu.url, group_id=group, start="earliest", commit="batch", consumer_options={
            "session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "rebalance_timeout_ms": 2000})
        b = AimDbBuilder().with_connector(conn)
        b.configure(Reading, "r", lambda r: r.buffer(ring()).link_from(f"kafka://{unique_topic}").finish()
                    .tap(collector(got)))
        async with b.build():
            await conn.wait_connected(40)  # Tansu takes a few seconds to (re)balance a group
            await wait_until(lambda: len(got) >= expect, timeout=30, what=f"{expect} values")
            await asyncio.sleep(0.3)
        return [v.seq for v in got]

    def payload(i: int) -> bytes:
        return json.dumps({"sensor": "g", "seq": i, "value": 0.0}).encode()

    await asyncio.to_thread(tansu.create_topic, unique_topic, 1)  # one partition: total order
    await _raw_produce(tansu.address, unique_topic, [payload(i) for i in range(5)])
    assert await consume(5) == list(range(5))
    await _raw_produce(tansu.address, unique_topic, [payload(i) for i in range(5, 8)])
    assert await consume(3) == [5, 6, 7]  # resumed after the committed offset, not from the start


async def test_interop_kcat_both_ways(rt: Any, tansu: Any, unique_topic: str) -> None:
    require("kcat")
    out_topic = f"{unique_topic}-out"
    in_topic = f"{unique_topic}-in"
    conn = KafkaConnector(tansu.url, start="earliest")
    got: list[Reading] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(ring()).link_to(f"kafka://{out_topic}").finish())
    b.configure(Reading, "in", lambda r: r.buffer(ring()).link_from(f"kafka://{in_topic}").finish()
                .tap(collector(got)))
    async with b.build() as db:
        await conn.wait_connected(15)
        p = db.producer(Reading, "out")
        for i in range(3):
            p.produce(Reading("k", i, 2.5))
        await wait_until(lambda: db.link_statistics()[0].sent == 3, timeout=15, what="acks")
        res = await asyncio.to_thread(
            subprocess.run,
            ["kcat", "-C", "-b", tansu.kcat_bootstrap, "-t", out_topic, "-o", "beginning", "-c", "3", "-e",
             "-q"],
            capture_output=True, timeout=30, check=False,
        )
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        lines = res.stdout.decode().splitlines()
        assert sorted(json.loads(x)["seq"] for x in lines) == [0, 1, 2]
        assert all(json.loads(x) == {"sensor": "k", "seq": json.loads(x)["seq"], "value": 2.5} for x in lines)
        msgs = "".join(json.dumps({"sensor": "kcat", "seq": i, "value": 9.0}) + "\n" for i in range(2))
        res = await asyncio.to_thread(
            subprocess.run,
            ["kcat", "-P", "-b", tansu.kcat_bootstrap, "-t", in_topic],
            input=msgs.encode(), capture_output=True, timeout=30, check=False,
        )
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        await wait_until(lambda: len(got) == 2, timeout=20, what="values from kcat")
    assert sorted(v.seq for v in got) == [0, 1] and all(v.sensor == "kcat" for v in got)


async def test_unreachable_kafka_is_connection_failed(rt: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = KafkaConnector(
        f"kafka://127.0.0.1:{port}",
        reconnect=ReconnectPolicy(0.01, 0.05, max_attempts=2),
        connect_timeout=5,
    )
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_to("kafka://nowhere").finish())
    async with b.build():
        with pytest.raises(ConnectionFailed) as ei:
            await conn.wait_connected(15)
    assert ei.value.__cause__ is not None
    assert conn.statistics().failed_attempts == 2


def test_bad_kafka_link_options_are_reported() -> None:
    from aimdb import InvalidConfiguration

    b = AimDbBuilder().with_connector(KafkaConnector("kafka://127.0.0.1:9"))
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_to("kafka://bad topic!").partition(-1).finish())
    with pytest.raises(InvalidConfiguration) as ei:
        b.build()
    text = str(ei.value)
    assert "not a valid Kafka topic" in text and "partition" in text


@contextlib.asynccontextmanager
async def _five_acked(broker: Any, topic: str) -> AsyncIterator[tuple[KafkaConnector, Any, Any]]:
    """A database whose ring record "r" is linked to ``topic`` on ``broker`` (health checked
    every 0.2 s), with five values produced and acknowledged; yields connector, database and
    the record's producer."""
    conn = KafkaConnector(broker.url, health_interval=0.2, reconnect=ReconnectPolicy(0.05, 0.5))
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring(64)).link_to(f"kafka://{topic}").finish())
    async with b.build() as db:
        await conn.wait_connected(20)
        p = db.producer(Reading, "r")
        for i in range(5):
            p.produce(Reading("a", i, float(i)))
        await wait_until(lambda: db.link_statistics()[0].sent == 5, timeout=20, what="first acks")
        yield conn, db, p


async def test_broker_stalled_mid_stream(rt: Any, private_tansu: Any, unique_topic: str) -> None:
    """State follows the broker while aiokafka retries; the ring's backlog goes out after."""
    import os
    import signal

    t = private_tansu
    t.create_topic(unique_topic, partitions=1)
    async with _five_acked(t, unique_topic) as (conn, db, p):
        os.kill(t.pid, signal.SIGSTOP)  # the broker stops answering (connections stay open)
        try:
            await wait_until(lambda: conn.state == "disconnected", timeout=15, what="state disconnected")
            assert "broker unreachable" in (conn.statistics().last_error or "")
            for i in range(5, 15):  # held in the ring while the broker is away
                p.produce(Reading("a", i, float(i)))
            await asyncio.sleep(0.5)
            assert db.link_statistics()[0].sent == 5
        finally:
            os.kill(t.pid, signal.SIGCONT)
        await wait_until(lambda: conn.state == "connected", timeout=30, what="state connected again")
        await wait_until(lambda: db.link_statistics()[0].sent == 15, timeout=30, what="backlog acks")
        stats = conn.statistics()
    assert (stats.disconnects, stats.reconnects) == (1, 1)  # one stall: one loss, one recovery
    recs = await _raw_consume(t.address, unique_topic, 15)
    assert [json.loads(r.value)["seq"] for r in recs] == list(range(15))


async def test_broker_restart_mid_stream(rt: Any, private_tansu: Any, unique_topic: str) -> None:
    """A real restart (in-memory Tansu comes back empty): the link reconnects and goes on."""
    t = private_tansu
    async with _five_acked(t, unique_topic) as (conn, db, p):
        await asyncio.to_thread(t.stop)
        await wait_until(lambda: conn.state == "disconnected", timeout=15, what="state disconnected")
        await asyncio.to_thread(t.start)
        await asyncio.to_thread(t.create_topic, unique_topic, 1)  # the old topic is gone with the memory
        await wait_until(lambda: conn.state == "connected", timeout=30, what="state connected again")
        for i in range(5, 15):
            p.produce(Reading("a", i, float(i)))
        await wait_until(lambda: db.link_statistics()[0].sent == 15, timeout=30, what="acks after restart")
    recs = await _raw_consume(t.address, unique_topic, 10)
    assert [json.loads(r.value)["seq"] for r in recs] == list(range(5, 15))
