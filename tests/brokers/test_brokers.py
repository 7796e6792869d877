"""The broker test infrastructure works against the real brokers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

# Load the fixtures here too, so this file runs even without tests/conftest.py.
pytest_plugins = ["tests.brokers.fixtures"]

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import brokers  # noqa: E402

HOST = "127.0.0.1"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _run(
    argv: list[str], *, input: bytes | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=False)


def _require(*cmds: str) -> None:
    missing = [c for c in cmds if shutil.which(c) is None]
    if missing:
        pytest.fail(f"missing {missing}: run scripts/setup-test-env", pytrace=False)


def _pub_until_received(
    port: int, topic: str, payload: str, *, extra: list[str] | None = None, timeout: float = 10
) -> str:
    """Start mosquitto_sub, publish with mosquitto_pub until it got one message, return it."""
    extra = extra or []
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            HOST,
            "-p",
            str(port),
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            str(int(timeout)),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while sub.poll() is None and time.monotonic() < deadline:
            # The subscription may not be in place yet: publish until the subscriber exits.
            _run(
                [
                    "mosquitto_pub",
                    "-h",
                    HOST,
                    "-p",
                    str(port),
                    "-t",
                    topic,
                    "-q",
                    "1",
                    "-m",
                    payload,
                    *extra,
                ],
                timeout=5,
            )
            try:
                sub.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        out, err = sub.communicate(timeout=5)
        assert sub.returncode == 0, err.decode()
        return out.decode().strip()
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()


# ----------------------------------------------------------------------- helpers


def test_free_port_is_bindable() -> None:
    port = brokers.free_port()
    with socket.socket() as s:
        s.bind((HOST, port))


def test_unique_topic_is_valid_for_mqtt_and_kafka(unique_topic: str) -> None:
    assert unique_topic.startswith("aimdb-test-unique-topic")
    assert all(c.isalnum() or c == "-" for c in unique_topic)
    assert len(unique_topic) < 249


# ------------------------------------------------------------------- Mosquitto


def test_system_mosquitto_pub_sub(mosquitto_url: str, unique_topic: str) -> None:
    _require("mosquitto_pub", "mosquitto_sub")
    assert mosquitto_url == "mqtt://127.0.0.1:1883"
    payload = json.dumps({"celsius": 21.5, "topic": unique_topic})
    assert _pub_until_received(_port(mosquitto_url), f"{unique_topic}/temp", payload) == payload


def test_private_mosquitto_restart_same_port(
    private_mosquitto: brokers.PrivateMosquitto, unique_topic: str
) -> None:
    _require("mosquitto_pub", "mosquitto_sub")
    m = private_mosquitto
    assert m.url == f"mqtt://127.0.0.1:{m.port}"
    assert _pub_until_received(m.port, unique_topic, "before") == "before"
    pid = m.pid
    m.restart()
    assert m.pid != pid and m.running
    assert brokers.port_open(HOST, m.port)
    assert _pub_until_received(m.port, unique_topic, "after") == "after"
    m.kill()
    assert not brokers.port_open(HOST, m.port)
    m.start()
    assert _pub_until_received(m.port, unique_topic, "after-kill") == "after-kill"


def test_private_mosquitto_process_ends_with_context() -> None:
    with brokers.PrivateMosquitto() as m:
        pid, port, workdir = m.pid, m.port, m.workdir
        assert pid is not None and workdir.is_dir()
    assert not brokers.port_open(HOST, port)
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_private_mosquitto_with_password(private_mosquitto_factory, unique_topic: str) -> None:
    _require("mosquitto_pub", "mosquitto_sub", "mosquitto_passwd")
    m = private_mosquitto_factory(users={"alice": "s3cret"})
    anon = _run(["mosquitto_pub", "-h", HOST, "-p", str(m.port), "-t", unique_topic, "-m", "x"], timeout=10)
    assert anon.returncode != 0
    assert b"not authori" in anon.stderr.lower() or b"refused" in anon.stderr.lower(), anon.stderr
    bad = _run(
        [
            "mosquitto_pub",
            "-h",
            HOST,
            "-p",
            str(m.port),
            "-u",
            "alice",
            "-P",
            "wrong",
            "-t",
            unique_topic,
            "-m",
            "x",
        ],
        timeout=10,
    )
    assert bad.returncode != 0
    got = _pub_until_received(m.port, unique_topic, "authed", extra=["-u", "alice", "-P", "s3cret"])
    assert got == "authed"


def _slow_subscriber_count(port: int, topic: str, n: int) -> int:
    """Publish n QoS 1 messages while the subscriber does not read; then count what arrives."""
    import paho.mqtt.client as mqtt

    received: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{topic}-sub", clean_session=True)
    sub.on_message = lambda c, u, msg: (
        received.append(msg.payload),
        len(received) >= n and done.set(),
    )
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(HOST, port)
    sub.subscribe(topic, qos=1)
    deadline = time.monotonic() + 5
    while not subscribed.is_set() and time.monotonic() < deadline:
        sub.loop(0.05)
    assert subscribed.is_set()

    # Subscriber is now "slow": its network loop does not run while we publish.
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{topic}-pub")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect(HOST, port)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, b'{"i": %d}' % i, qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(timeout=20)
    finally:
        pub.disconnect()
        pub.loop_stop()

    # Read until all arrived, or nothing new came for a second (bounded either way).
    deadline = time.monotonic() + 20
    last_count, last_change = -1, time.monotonic()
    while not done.is_set() and time.monotonic() < deadline:
        sub.loop(0.05)
        if len(received) != last_count:
            last_count, last_change = len(received), time.monotonic()
        elif time.monotonic() - last_change > 1.0:
            break
    # drain a bit more: anything beyond n would be a duplicate
    sub.loop(0.1)
    sub.disconnect()
    return len(received)


def test_private_mosquitto_does_not_drop_for_slow_subscriber(private_mosquitto, unique_topic: str) -> None:
    n = 5000
    assert _slow_subscriber_count(private_mosquitto.port, unique_topic, n) == n


def test_stock_limits_drop_for_slow_subscriber(private_mosquitto_factory, unique_topic: str) -> None:
    """Mosquitto's defaults (20 in flight + 1000 queued) lose QoS 1 messages: the SPEC's gotcha."""
    m = private_mosquitto_factory(max_queued_messages=1000, max_inflight_messages=20)
    got = _slow_subscriber_count(m.port, unique_topic, 5000)
    assert got < 5000
    assert got >= 1000


# ----------------------------------------------------------------------- Tansu


async def _aiokafka_produce(address: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=address, request_timeout_ms=10000)
    await producer.start()
    try:
        for v in values:
            await asyncio.wait_for(producer.send_and_wait(topic, v, key=b"k"), 15)
    finally:
        await producer.stop()


async def _aiokafka_consume(address: str, topic: str, n: int, timeout: float = 20) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=address, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(timeout) if hasattr(asyncio, "timeout") else _nullctx():
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    got.extend(m.value for m in msgs)
    finally:
        await consumer.stop()
    return got


class _nullctx:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _kcat_consume(tansu, topic: str, n: int) -> list[bytes]:
    r = _run(
        [
            "kcat",
            "-C",
            "-b",
            tansu.kcat_bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-c",
            str(n),
            "-e",
            "-q",
            "-m",
            "10",
        ],
        timeout=30,
    )
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.splitlines()


def test_tansu_aiokafka_roundtrip(tansu, unique_topic: str) -> None:
    assert tansu.url == f"kafka://127.0.0.1:{tansu.port}"
    values = [json.dumps({"i": i}).encode() for i in range(5)]
    asyncio.run(_aiokafka_produce(tansu.address, unique_topic, values))
    assert asyncio.run(_aiokafka_consume(tansu.address, unique_topic, 5)) == values


def test_tansu_aiokafka_to_kcat(tansu, unique_topic: str) -> None:
    _require("kcat")
    values = [f"from-aiokafka-{i}".encode() for i in range(3)]
    asyncio.run(_aiokafka_produce(tansu.address, unique_topic, values))
    assert sorted(_kcat_consume(tansu, unique_topic, 3)) == sorted(values)


def test_tansu_kcat_to_aiokafka(tansu, unique_topic: str) -> None:
    _require("kcat")
    r = _run(
        ["kcat", "-P", "-b", tansu.kcat_bootstrap, "-t", unique_topic, "-K", ":"],
        input=b"k:from-kcat-1\nk:from-kcat-2\n",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert asyncio.run(_aiokafka_consume(tansu.address, unique_topic, 2)) == [
        b"from-kcat-1",
        b"from-kcat-2",
    ]


def test_tansu_topic_partitions(tansu, unique_topic: str) -> None:
    async def partitions(topic: str) -> set[int]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=tansu.address)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"x")
            return await producer.partitions_for(topic)
        finally:
            await producer.stop()

    # auto-created on first use: 4 partitions in tansu 0.6.0
    assert len(asyncio.run(partitions(f"{unique_topic}-auto"))) >= 1
    tansu.create_topic(f"{unique_topic}-one", partitions=1)
    assert asyncio.run(partitions(f"{unique_topic}-one")) == {0}


def test_tansu_restart_same_port(private_tansu, unique_topic: str) -> None:
    t = private_tansu
    asyncio.run(_aiokafka_produce(t.address, unique_topic, [b"before"]))
    port, pid = t.port, t.pid
    t.restart()
    assert t.port == port and t.pid != pid
    # In-memory storage: the restarted broker is empty, but takes new records at once.
    asyncio.run(_aiokafka_produce(t.address, unique_topic, [b"after"]))
    assert asyncio.run(_aiokafka_consume(t.address, unique_topic, 1)) == [b"after"]
    if shutil.which("kcat"):
        assert _kcat_consume(t, unique_topic, 1) == [b"after"]


# ------------------------------------------------------------------------ NATS


async def _nats_round_trip(url: str, subject: str, data: bytes, **connect: Any) -> bytes:
    from nats.aio.client import Client

    nc = Client()  # closed even when connect fails (its socket would leak)
    try:
        await nc.connect(url, allow_reconnect=False, **connect)
        sub = await nc.subscribe(subject)
        await nc.publish(subject, data)
        await nc.flush()
        msg = await sub.next_msg(5)
        return bytes(msg.data)
    finally:
        await nc.close()


def test_system_nats_pub_sub(nats_url: str, unique_topic: str) -> None:
    assert nats_url == "nats://127.0.0.1:4222"
    assert asyncio.run(_nats_round_trip(nats_url, f"{unique_topic}.temp", b"21.5")) == b"21.5"


def test_private_nats_restart_keeps_jetstream(private_nats: brokers.PrivateNats, unique_topic: str) -> None:
    import nats

    n = private_nats
    assert n.url == f"nats://127.0.0.1:{n.port}"

    async def add_and_publish() -> None:
        nc = await nats.connect(n.url, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await js.add_stream(name=unique_topic, subjects=[f"{unique_topic}.>"])
            await js.publish(f"{unique_topic}.x", b"kept")
        finally:
            await nc.close()

    async def stored() -> int:
        nc = await nats.connect(n.url, allow_reconnect=False)
        try:
            return int((await nc.jetstream().stream_info(unique_topic)).state.messages)
        finally:
            await nc.close()

    asyncio.run(add_and_publish())
    pid = n.pid
    n.kill()
    assert not brokers.port_open(HOST, n.port)
    n.start()
    assert n.pid != pid and n.running
    assert asyncio.run(stored()) == 1  # the store in the private temp dir survived
    assert asyncio.run(_nats_round_trip(n.url, f"{unique_topic}.y", b"after")) == b"after"


def test_private_nats_process_ends_with_context() -> None:
    with brokers.PrivateNats() as n:
        pid, port, workdir = n.pid, n.port, n.workdir
        assert pid is not None and workdir.is_dir()
    assert not brokers.port_open(HOST, port)
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_private_nats_with_credentials(private_nats_factory, unique_topic: str) -> None:
    n = private_nats_factory(user="alice", password="s3cret")
    with pytest.raises(Exception, match="Authorization"):
        asyncio.run(_nats_round_trip(n.url, unique_topic, b"x"))
    data = asyncio.run(_nats_round_trip(n.url, unique_topic, b"ok", user="alice", password="s3cret"))
    assert data == b"ok"
    t = private_nats_factory(token="tok")
    assert asyncio.run(_nats_round_trip(t.url, unique_topic, b"ok", token="tok")) == b"ok"
