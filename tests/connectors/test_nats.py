"""NatsConnector against real nats-servers (the machine's on 4222, and private ones)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, ConnectionFailed, ConnectorTimeout, InvalidConfiguration
from aimdb._core._connector import InboundRoute, OutboundRoute
from aimdb.connectors import NatsConnector, ReconnectPolicy
from aimdb.connectors.nats._jetstream import PublishAcks

from ._util import (
    CODECS,
    RESTART_CASES,
    Command,
    Reading,
    Temp,
    codec_round_trip,
    collector,
    restart_mid_stream,
    round_trip,
    stalled_broker_lags_the_reader,
    unreachable_retries_with_backoff,
    wait_until,
)

nats = pytest.importorskip("nats")
pytest.importorskip("nats.aio.client")

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(60)]

FAST_RETRY = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def ring(n: int = 64) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


@contextlib.asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[Any]:
    """An independent plain nats-py client."""
    nc = nats.aio.client.Client()  # closed even when connect fails (its socket would leak)
    try:
        await nc.connect(url, allow_reconnect=False)
        yield nc
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def stream(url: str, name: str, subjects: list[str]) -> AsyncIterator[Any]:
    """A JetStream stream created for the test and deleted afterwards."""
    async with raw_client(url) as nc:
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=subjects)
        try:
            yield js
        finally:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)


def payload(sensor: str, seq: int, value: float = 0.0) -> bytes:
    return json.dumps({"sensor": sensor, "seq": seq, "value": value}).encode()


# ---------------------------------------------------------------- core NATS


async def test_round_trip(rt: Any, nats_url: str, unique_topic: str) -> None:
    """aimdb record -> nats-server -> aimdb record in another database, typed, in order."""
    pub = NatsConnector(nats_url)

    def still_connected() -> None:
        assert pub.state == "connected"

    out, inn = await round_trip(
        pub, NatsConnector(nats_url), f"nats://{unique_topic}.sensors.temp", while_open=still_connected
    )
    assert out.bytes == inn.bytes > 0
    assert inn.failed == 0


async def test_wildcards_deliver_once_per_matching_record(rt: Any, nats_url: str, unique_topic: str) -> None:
    t = unique_topic
    conn = NatsConnector(nats_url)
    star: list[Temp] = []
    rest: list[Temp] = []
    exact: list[Temp] = []
    exact2: list[Temp] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "star", lambda r: r.buffer(ring()).link_from(f"nats://{t}.*.temp").finish()
                .tap(collector(star)))
    b.configure(Temp, "rest", lambda r: r.buffer(ring()).link_from(f"nats://{t}.>").finish()
                .tap(collector(rest)))
    b.configure(Temp, "exact", lambda r: r.buffer(ring()).link_from(f"nats://{t}.a.temp").finish()
                .tap(collector(exact)))
    # the same subject twice: one subscription, both records fed
    b.configure(Temp, "exact2", lambda r: r.buffer(ring()).link_from(f"nats://{t}.a.temp").finish()
                .tap(collector(exact2)))
    async with b.build(), raw_client(nats_url) as nc:
        await conn.wait_connected(5)
        assert sorted(conn._core) == sorted([f"{t}.*.temp", f"{t}.>", f"{t}.a.temp"])
        await nc.publish(f"{t}.a.temp", b'{"celsius": 1}')
        await nc.publish(f"{t}.b.temp", b'{"celsius": 2}')
        await nc.publish(f"{t}.b.c.temp", b'{"celsius": 3}')  # '>' only: '*' is one token
        await nc.publish(f"{t}.x", b'{"celsius": 4}')  # '>' only
        await nc.publish(f"{t}", b'{"celsius": 5}')  # nothing: '>' needs at least one token
        await nc.flush()
        await wait_until(lambda: len(rest) == 4, what=f"4 values on > {rest} {star}")
        await asyncio.sleep(0.1)
    assert [v.celsius for v in star] == [1, 2]
    assert [v.celsius for v in rest] == [1, 2, 3, 4]
    assert [v.celsius for v in exact] == [1] and [v.celsius for v in exact2] == [1]


async def test_topic_provider_subject_per_value(rt: Any, nats_url: str, unique_topic: str) -> None:
    t = unique_topic
    conn = NatsConnector(nats_url)
    b = AimDbBuilder().with_connector(conn)
    b.configure(
        Reading,
        "reading",
        lambda r: r.buffer(ring())
        .link_to(f"nats://{t}.unused")
        .with_topic_provider(lambda v: f"{t}.room.{v.sensor}" if v.sensor != "bad" else f"{t}.room.*")
        .finish(),
    )
    async with raw_client(nats_url) as nc:
        sub = await nc.subscribe(f"{t}.room.>")
        await nc.flush()
        async with b.build() as db:
            await conn.wait_connected(5)
            p = db.producer(Reading, "reading")
            p.produce(Reading("kitchen", 1, 20.5))
            p.produce(Reading("bad", 2, 0.0))  # a wildcard subject: counted as failed, not sent
            p.produce(Reading("hall", 3, 19.0))
            msgs = [await sub.next_msg(5), await sub.next_msg(5)]
            st = db.link_statistics()[0]
    assert [(m.subject, json.loads(m.data)["seq"]) for m in msgs] == [
        (f"{t}.room.kitchen", 1),
        (f"{t}.room.hall", 3),
    ]
    assert st.sent == 2 and st.failed == 1 and "wildcard" in (st.last_error or "")


async def test_bad_payloads_are_dropped_and_counted(
    rt: Any, nats_url: str, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    t = unique_topic
    conn = NatsConnector(nats_url)
    cmds: list[Command] = []
    temps: list[Temp] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Command, "cmd", lambda r: r.buffer(ring()).link_from(f"nats://{t}.cmd").finish()
                .tap(collector(cmds)))
    b.configure(Temp, "temp", lambda r: r.buffer(ring()).link_from(f"nats://{t}.temp").finish()
                .tap(collector(temps)))
    bad = [
        b"not json at all",
        b'["a", "list"]',  # wrong shape
        b'{"action": 5, "level": "high"}',  # wrong field types
        b'{"action": "x"}',  # missing field
        b"",  # empty
        bytes(range(256)) * 4096,  # 1 MiB of garbage (the server's default max_payload)
    ]
    caplog.set_level(logging.WARNING, logger="aimdb")
    async with b.build() as db, raw_client(nats_url) as nc:
        await conn.wait_connected(5)
        for i, data in enumerate(bad):
            await nc.publish(f"{t}.cmd", data)
            await nc.publish(f"{t}.temp", b'{"celsius": %d}' % i)
        await nc.publish(f"{t}.cmd", b'{"action": "open", "level": 3}')
        await nc.flush()
        await wait_until(
            lambda: len(cmds) == 1 and len(temps) == len(bad),
            what="good messages",
            detail=lambda: (cmds, temps, conn.statistics(), conn._nc and conn._nc.stats, nc.stats),
        )
        stats = {s.url: s for s in db.link_statistics()}
        assert conn.connected and conn.statistics().connects == 1
        assert conn.statistics().disconnects == 0
    assert cmds == [Command("open", 3)]
    assert [v.celsius for v in temps] == list(range(len(bad)))
    assert stats[f"nats://{t}.cmd"].failed == len(bad)
    assert stats[f"nats://{t}.cmd"].received == 1
    assert stats[f"nats://{t}.temp"].failed == 0
    logged = [r.getMessage() for r in caplog.records if "bad payload" in r.getMessage()]
    assert len(logged) == len(bad)
    assert all(f"{t}.cmd" in m and "'cmd'" in m for m in logged)


async def test_interop_aimdb_to_plain_nats_py(rt: Any, nats_url: str, unique_topic: str) -> None:
    subject = f"{unique_topic}.out"
    conn = NatsConnector(nats_url)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_to(f"nats://{subject}").finish())
    async with raw_client(nats_url) as nc:
        sub = await nc.subscribe(subject)
        await nc.flush()
        async with b.build() as db:
            await conn.wait_connected(5)
            p = db.producer(Reading, "r")
            for i in range(3):
                p.produce(Reading("s1", i, i / 2))
            msgs = [await sub.next_msg(5) for _ in range(3)]
    expected = [{"sensor": "s1", "seq": i, "value": i / 2} for i in range(3)]
    assert [json.loads(m.data) for m in msgs] == expected
    assert all(m.subject == subject for m in msgs)


async def test_interop_plain_nats_py_to_aimdb(rt: Any, nats_url: str, unique_topic: str) -> None:
    subject = f"{unique_topic}.in"
    conn = NatsConnector(nats_url)
    got: list[Reading] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring()).link_from(f"nats://{subject}").finish()
                .tap(collector(got)))
    async with b.build(), raw_client(nats_url) as nc:
        await conn.wait_connected(5)
        for i in range(3):
            await nc.publish(subject, payload("ext", i, 1.5), headers={"X-From": "plain"} if i else None)
        await nc.flush()
        await wait_until(lambda: len(got) >= 3, what="3 values from nats-py",
                         detail=lambda: (got, conn.statistics(), conn._nc and conn._nc.stats, nc.stats))
        await nc.flush()
        await asyncio.sleep(0.05)  # a duplicate would arrive right behind
    assert got == [Reading("ext", i, 1.5) for i in range(3)]


@pytest.mark.parametrize("codec", CODECS)
async def test_binary_codecs(rt: Any, nats_url: str, unique_topic: str, codec: str) -> None:
    await codec_round_trip(NatsConnector(nats_url), f"nats://{unique_topic}.{codec}", codec)


def test_bad_links_are_reported_at_build() -> None:
    b = AimDbBuilder().with_connector(NatsConnector("nats://127.0.0.1:9"))
    b.configure(Temp, "a", lambda r: r.buffer(ring()).link_to("nats://sensors.*.temp").finish())
    b.configure(Temp, "b", lambda r: r.buffer(ring()).link_to("nats://sensors.>").finish())
    b.configure(Temp, "c", lambda r: r.buffer(ring()).link_to("nats://sensors..temp").finish())
    b.configure(Temp, "d", lambda r: r.buffer(ring()).link_from("nats://cmd.>.set").finish())
    b.configure(Temp, "e", lambda r: r.buffer(ring()).link_from("nats://cmd.a*.set").finish())
    b.configure(Temp, "f", lambda r: r.buffer(ring()).link_from("nats://cmd set").finish())
    b.configure(Temp, "g", lambda r: r.buffer(ring()).link_to("nats://ok.subject").qos(1).finish())
    b.configure(Temp, "h", lambda r: r.buffer(ring()).link_from("nats://ok.>").option("jetstream", "yes")
                .finish())
    b.configure(Temp, "i", lambda r: r.buffer(ring()).link_to("nats://").finish())
    with pytest.raises(InvalidConfiguration) as ei:
        b.build()
    text = str(ei.value)
    assert text.count("has a wildcard") == 2
    assert "'sensors..temp' has an empty token" in text
    assert "'>' must be the last token" in text
    assert "must be whole tokens" in text
    assert "whitespace" in text
    assert "unknown NATS link option 'qos'" in text
    assert "jetstream must be True or False" in text
    assert "empty NATS subject" in text


def test_good_links_and_options_build() -> None:
    conn = NatsConnector("nats://secret-token@127.0.0.1:9", durable="edge-1", jetstream=True)
    assert conn.token == "secret-token" and conn.username is None
    assert conn.url == "nats://127.0.0.1:9"  # no credentials in the URL shown
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "a", lambda r: r.buffer(ring()).link_to("nats://sensors.kitchen.temp").finish())
    b.configure(Temp, "b", lambda r: r.buffer(ring()).link_from("nats://cmd.*.set").finish())
    b.configure(Temp, "c", lambda r: r.buffer(ring()).link_from("nats://cmd.>").option("jetstream", False)
                .finish())
    b.build()
    name = conn.consumer_name("cmd.*.set")
    assert name is not None and name.startswith("edge-1-cmd_set-") and len(name) == len("edge-1-cmd_set-") + 8
    assert conn.consumer_name("cmd.*.set") != conn.consumer_name("cmd._.set")
    assert NatsConnector("nats://u:p@h").username == "u"
    for bad in ({"start": "middle"}, {"durable": "a.b"}, {"max_inflight": 0}):
        with pytest.raises(ValueError):
            NatsConnector("nats://127.0.0.1", **bad)
    with pytest.raises(ValueError):
        NatsConnector("mqtt://127.0.0.1")


async def test_wrong_password_is_a_clear_connection_failed(rt: Any, private_nats_factory: Any) -> None:
    server = private_nats_factory(user="aimdb", password="secret")
    conn = NatsConnector(
        server.url,
        username="aimdb",
        password="wrong",
        reconnect=ReconnectPolicy(initial_delay=0.02, max_delay=0.05, max_attempts=3),
    )
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("nats://x.t").finish())
    async with b.build():
        with pytest.raises(ConnectionFailed) as ei:
            await conn.wait_connected(5)
    assert "Authorization Violation" in ei.value.reason
    assert conn.statistics().failed_attempts == 3
    assert conn.state == "closed"

    ok = NatsConnector(f"nats://aimdb:secret@127.0.0.1:{server.port}")
    b = AimDbBuilder().with_connector(ok)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("nats://x.t").finish())
    async with b.build():
        await ok.wait_connected(5)

    tok = private_nats_factory(token="s3cret")
    for url, should_work in ((f"nats://s3cret@127.0.0.1:{tok.port}", True), (tok.url, False)):
        conn = NatsConnector(url, reconnect=ReconnectPolicy(0.02, 0.05, max_attempts=2))
        b = AimDbBuilder().with_connector(conn)
        b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("nats://x.t").finish())
        async with b.build():
            if should_work:
                await conn.wait_connected(5)
            else:
                with pytest.raises(ConnectionFailed):
                    await conn.wait_connected(5)


async def test_unreachable_server_retries_with_backoff(rt: Any, unique_topic: str) -> None:
    await unreachable_retries_with_backoff(NatsConnector, "nats", f"nats://{unique_topic}")


@pytest.mark.parametrize(("kind", "produced", "expected"), RESTART_CASES)
async def test_server_restart_mid_stream(
    rt: Any, private_nats: Any, unique_topic: str, kind: str, produced: int, expected: list[int]
) -> None:
    """Kill the server, produce while it is down, start it again on the same port.

    nats-py reconnects (spaced by the policy), renews the subscription, and the link sends
    what the buffer kind says; state and statistics follow along.
    """
    conn = NatsConnector(private_nats.url, reconnect=FAST_RETRY)

    async def when_down() -> None:
        st = conn.statistics()
        assert st.disconnects == 1, st
        # the loss, or a refused reconnect attempt that followed it before we looked
        error = st.last_error or ""
        assert "connection lost" in error or (st.failed_attempts >= 1 and "refused" in error), st
        with pytest.raises(ConnectorTimeout):
            await conn.wait_connected(0.2)

    async def before_restart() -> None:
        await wait_until(lambda: conn.statistics().failed_attempts >= 1, what="a refused reconnect attempt")

    await restart_mid_stream(
        conn,
        private_nats,
        f"nats://{unique_topic}.seq",
        kind,
        produced,
        expected,
        disconnected=lambda: conn.state == "disconnected",
        when_down=when_down,
        before_restart=before_restart,
    )
    assert conn.statistics().connects == 2


async def test_gives_up_per_policy_after_the_connection_is_lost(rt: Any, private_nats: Any) -> None:
    conn = NatsConnector(private_nats.url, reconnect=ReconnectPolicy(0.02, 0.05, max_attempts=3))
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("nats://x.t").finish())
    async with b.build() as db:
        await conn.wait_connected(5)
        await asyncio.to_thread(private_nats.kill)
        await wait_until(lambda: conn.state == "failed", timeout=10, what="giving up")
        with pytest.raises(ConnectionFailed) as ei:
            await conn.wait_connected(1)
        assert "gave up after 3 reconnect attempts" in str(ei.value)
        assert conn.statistics().failed_attempts == 3
        db.producer(Temp, "t").produce(Temp(1.0))  # the database keeps running
    assert conn.state == "closed"


async def test_stalled_server_lags_the_reader_not_the_producer(
    rt: Any, private_nats: Any, unique_topic: str
) -> None:
    """A server that stops reading: the producer never blocks, memory stays bounded, lag is counted."""
    conn = NatsConnector(private_nats.url, pending_bytes=512 * 1024)

    def pending_data() -> int:
        nc = conn._nc
        return nc.pending_data_size if nc is not None else 0

    pending = await stalled_broker_lags_the_reader(
        conn, private_nats, f"nats://{unique_topic}.blob", pending_data
    )
    assert pending <= 512 * 1024 + 2 * 65536  # our limit plus the value in hand


@pytest.mark.parametrize("jetstream", [False, True])
async def test_stop_publishes_what_the_reader_still_holds(
    rt: Any, nats_url: str, unique_topic: str, jetstream: bool
) -> None:
    subject = f"{unique_topic}.flush"
    conn = NatsConnector(nats_url, jetstream=jetstream)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "r", lambda r: r.buffer(ring(1000)).link_to(f"nats://{subject}").finish())
    async with contextlib.AsyncExitStack() as stack:
        if jetstream:
            await stack.enter_async_context(stream(nats_url, unique_topic, [f"{unique_topic}.>"]))
        nc = await stack.enter_async_context(raw_client(nats_url))
        sub = await nc.subscribe(subject)
        await nc.flush()
        async with b.build() as db:
            await conn.wait_connected(5)
            p = db.producer(Reading, "r")
            for i in range(500):
                p.produce(Reading("f", i, 0.0))
        # leaving the block stopped the database: the connector's shutdown sent everything
        st = conn.link_statistics()[0]
        assert st.sent == 500 and st.failed == 0  # JetStream: 500 acknowledgements
        assert conn.state == "closed" and conn.unacked == 0
        msgs = [await sub.next_msg(5) for _ in range(500)]
    assert [json.loads(m.data)["seq"] for m in msgs] == list(range(500))


# ---------------------------------------------------------------- faults in the connector's paths


def _faults_logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None and text in str(r.exc_info[1])]


@pytest.mark.parametrize("js", [False, True], ids=["core", "jetstream"])
async def test_receive_path_fault_is_logged_counted_and_the_link_goes_on(
    rt: Any,
    nats_url: str,
    unique_topic: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    js: bool,
) -> None:
    """Delivering the first message raises (injected), the deserializer raises on the second:
    each is logged once and counted, the messages after them arrive."""
    t = unique_topic
    got: list[Reading] = []
    decoded = [0]

    def deserialize(data: bytes) -> Reading:
        decoded[0] += 1
        if decoded[0] == 1:
            raise ValueError("injected deserializer fault")
        return Reading(**json.loads(data))

    real_deliver = InboundRoute.deliver
    delivered = [0]

    def deliver(self: InboundRoute, payload: bytes, source: str | None = None) -> bool:
        delivered[0] += 1
        if delivered[0] == 1:
            raise RuntimeError("injected receive fault")
        return real_deliver(self, payload, source)

    monkeypatch.setattr(InboundRoute, "deliver", deliver)
    caplog.set_level(logging.WARNING, logger="aimdb")
    conn = NatsConnector(nats_url, jetstream=js)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.in")
                .with_deserializer(deserialize).finish().tap(collector(got)))
    async with contextlib.AsyncExitStack() as stack:
        if js:
            await stack.enter_async_context(stream(nats_url, t, [f"{t}.>"]))
        db = await stack.enter_async_context(b.build())
        nc = await stack.enter_async_context(raw_client(nats_url))
        await conn.wait_connected(5)
        for i in range(4):
            await nc.publish(f"{t}.in", payload("s", i))
        await nc.flush()
        await wait_until(lambda: len(got) == 2, what="the values after the faults",
                         detail=lambda: (got, db.link_statistics()))
        await asyncio.sleep(0.1)  # nothing more (no redelivery of the faulty message)
        st = db.link_statistics()[0]
    assert [v.seq for v in got] == [2, 3]
    assert conn.statistics().errors == 1
    assert st.failed == 1 and st.received == 2
    assert len(_faults_logged(caplog, "injected receive fault")) == 1
    assert len([r for r in caplog.records if "injected deserializer fault" in r.getMessage()]) == 1


@pytest.mark.parametrize("js", [False, True], ids=["core", "jetstream"])
async def test_send_path_fault_is_logged_counted_and_the_link_goes_on(
    rt: Any,
    nats_url: str,
    unique_topic: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    js: bool,
) -> None:
    """The publish call raises once (the value is counted as failed), then the route's
    pump itself raises once outside the per-value handling (it starts again): every
    value after the faults arrives."""
    t = unique_topic
    caplog.set_level(logging.WARNING, logger="aimdb")
    conn = NatsConnector(nats_url, jetstream=js)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(ring()).link_to(f"nats://{t}.out").finish())
    async with contextlib.AsyncExitStack() as stack:
        if js:
            await stack.enter_async_context(stream(nats_url, t, [f"{t}.>"]))
        nc = await stack.enter_async_context(raw_client(nats_url))
        sub = await nc.subscribe(f"{t}.out")
        await nc.flush()
        db = await stack.enter_async_context(b.build())
        await conn.wait_connected(5)
        client = conn._nc
        assert client is not None
        real_publish = client.publish
        published = [0]

        async def publish(*args: Any, **kwargs: Any) -> None:
            published[0] += 1
            if published[0] == 1:
                raise RuntimeError("injected publish fault")
            await real_publish(*args, **kwargs)

        monkeypatch.setattr(client, "publish", publish)
        p = db.producer(Reading, "out")
        p.produce(Reading("s", 0, 0.0))
        await wait_until(lambda: db.link_statistics()[0].failed == 1, what="the failed publish counted")
        p.produce(Reading("s", 1, 0.0))
        assert json.loads((await sub.next_msg(5)).data)["seq"] == 1

        real_next_batch = OutboundRoute.next_batch
        batches = [0]

        async def next_batch(self: OutboundRoute, limit: int, carry: list[Any] | None = None) -> Any:
            batches[0] += 1
            if batches[0] == 1:
                raise RuntimeError("injected pump fault")
            return await real_next_batch(self, limit, carry)

        monkeypatch.setattr(OutboundRoute, "next_batch", next_batch)
        p.produce(Reading("s", 2, 0.0))  # taken by the pending call, then the pump raises
        await wait_until(lambda: batches[0] >= 1, what="the pump fault")
        p.produce(Reading("s", 3, 0.0))
        seqs = [json.loads((await sub.next_msg(5)).data)["seq"] for _ in range(2)]
        if js:
            await wait_until(lambda: db.link_statistics()[0].sent == 3, what="3 acknowledgements")
    assert seqs == [2, 3]
    st = db.link_statistics()[0]
    assert st.failed == 1 and st.sent == 3
    assert st.errors == 1 and conn.statistics().errors == 0  # the pump is the database's task
    assert len([r for r in caplog.records if "injected publish fault" in r.getMessage()]) == 1
    assert len(_faults_logged(caplog, "injected pump fault")) == 1


async def test_pump_fault_mid_batch_counts_the_values_it_lost(
    rt: Any,
    nats_url: str,
    unique_topic: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pump raises (injected) while it holds a batch of 3 taken values: they are counted
    as failed, the pump starts again, and the values after the fault arrive."""
    t = unique_topic
    caplog.set_level(logging.WARNING, logger="aimdb")
    conn = NatsConnector(nats_url, jetstream=True)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(ring()).link_to(f"nats://{t}.out").finish())
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(stream(nats_url, t, [f"{t}.>"]))
        nc = await stack.enter_async_context(raw_client(nats_url))
        sub = await nc.subscribe(f"{t}.out")
        await nc.flush()
        db = await stack.enter_async_context(b.build())
        await conn.wait_connected(5)
        checks = [0]

        def full(self: PublishAcks) -> bool:
            checks[0] += 1
            if checks[0] == 1:
                raise RuntimeError("injected fault mid-batch")
            return len(self) >= self.max_inflight

        monkeypatch.setattr(PublishAcks, "full", property(full))
        p = db.producer(Reading, "out")
        for i in range(3):  # one batch: produced before the pump runs
            p.produce(Reading("s", i, 0.0))
        await wait_until(lambda: db.link_statistics()[0].failed == 3, what="the 3 lost values counted",
                         detail=db.link_statistics)
        p.produce(Reading("s", 3, 0.0))
        assert json.loads((await sub.next_msg(5)).data)["seq"] == 3
        await wait_until(lambda: db.link_statistics()[0].sent == 1, what="the acknowledgement")
    st = db.link_statistics()[0]
    assert st.failed == 3 and st.errors == 1
    assert len(_faults_logged(caplog, "injected fault mid-batch")) == 1


async def test_reconnected_callback_fault_starts_a_new_connection(
    rt: Any,
    private_nats: Any,
    unique_topic: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connector's reconnected callback raises once (injected): reported, and instead of
    staying disconnected while nats-py is connected, the connector makes a new connection."""
    t = unique_topic
    got: list[Reading] = []
    caplog.set_level(logging.WARNING, logger="aimdb")
    conn = NatsConnector(private_nats.url, reconnect=FAST_RETRY)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.in").finish()
                .tap(collector(got)))
    async with b.build():
        await conn.wait_connected(5)
        real = conn._on_reconnected
        calls = [0]

        async def on_reconnected(nc: Any) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise RuntimeError("injected reconnect fault")
            await real(nc)

        monkeypatch.setattr(conn, "_on_reconnected", on_reconnected)
        await asyncio.to_thread(private_nats.restart)
        await wait_until(lambda: calls[0] >= 1, timeout=20, what="the reconnect")
        await wait_until(lambda: conn.statistics().connects == 2, timeout=20, what="a new connection",
                         detail=lambda: conn.statistics())
        await conn.wait_connected(5)
        async with raw_client(private_nats.url) as nc:
            await nc.publish(f"{t}.in", payload("s", 1))
            await nc.flush()
            await wait_until(lambda: len(got) == 1, what="a value after the new connection")
    assert conn.statistics().errors == 1
    assert conn.statistics().disconnects == 1
    assert len(_faults_logged(caplog, "injected reconnect fault")) == 1


# ---------------------------------------------------------------- JetStream


async def test_jetstream_round_trip_with_acks(rt: Any, nats_url: str, unique_topic: str) -> None:
    t = unique_topic
    got: list[Reading] = []
    conn = NatsConnector(nats_url, jetstream=True, start="earliest")
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(ring()).link_to(f"nats://{t}.readings").finish())
    b.configure(Reading, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.*").finish()
                .tap(collector(got)))
    async with stream(nats_url, t, [f"{t}.>"]) as js:
        async with b.build() as db:
            await conn.wait_connected(5)
            p = db.producer(Reading, "out")
            for i in range(30):
                p.produce(Reading("js", i, 1.0))
            await wait_until(lambda: len(got) == 30, what="30 values through the stream")
            await wait_until(lambda: db.link_statistics()[0].sent == 30, what="30 acks")
            assert conn.unacked == 0
        info = await js.stream_info(t)
        assert info.state.messages == 30
        consumers = await js.consumers_info(t) if hasattr(js, "consumers_info") else None
    assert [v.seq for v in got] == list(range(30))
    if consumers is not None:
        assert all(c.num_ack_pending == 0 for c in consumers)


def _stopped(pid: int) -> bool:
    """True when every thread of process ``pid`` is stopped (state ``T`` in /proc)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return all(st == "T" for st in states)


async def test_jetstream_publishes_unacknowledged_at_stop_count_as_failed(
    rt: Any, private_nats: Any, unique_topic: str
) -> None:
    """The server stops answering (SIGSTOP) with 5 publishes in flight: stopping the
    database within its shutdown timeout counts them as failed instead of losing them
    without a trace."""
    t = unique_topic
    conn = NatsConnector(private_nats.url, jetstream=True)
    b = AimDbBuilder(shutdown_timeout=1.0).with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(ring()).link_to(f"nats://{t}.out").finish())
    async with stream(private_nats.url, t, [f"{t}.>"]):
        try:
            async with b.build() as db:
                await conn.wait_connected(5)
                os.kill(private_nats.pid, signal.SIGSTOP)
                # every thread of the server stopped: none may still answer a publish
                await wait_until(lambda: _stopped(private_nats.pid), what="the server stopped")
                p = db.producer(Reading, "out")
                for i in range(5):
                    p.produce(Reading("s", i, 0.0))
                await wait_until(lambda: conn.unacked == 5, what="5 publishes in flight",
                                 detail=lambda: (conn.unacked, db.link_statistics()))
        finally:
            os.kill(private_nats.pid, signal.SIGCONT)
    st = db.link_statistics()[0]  # after the stop, which counted the unacknowledged ones
    assert conn.unacked == 0
    assert st.sent == 0 and st.failed == 5
    assert "not acknowledged before the connector stopped" in (st.last_error or "")


async def test_jetstream_publish_without_a_stream_is_counted_as_failed(
    rt: Any, nats_url: str, unique_topic: str
) -> None:
    conn = NatsConnector(nats_url)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to(f"nats://{unique_topic}.nostream")
                .option("jetstream", True).finish())
    async with b.build() as db:
        await conn.wait_connected(5)
        for i in range(3):
            db.producer(Temp, "t").produce(Temp(float(i)))
        await wait_until(lambda: db.link_statistics()[0].failed == 3, what="3 failures")
        st = db.link_statistics()[0]
        assert conn.connected and conn.unacked == 0
    assert st.sent == 0 and "no JetStream stream captures" in (st.last_error or "")


async def test_jetstream_consumer_waits_for_its_stream(rt: Any, nats_url: str, unique_topic: str) -> None:
    """A link_from whose stream does not exist yet: reported on the link, retried, then served."""
    t = unique_topic
    got: list[Temp] = []
    conn = NatsConnector(nats_url, jetstream=True, start="earliest")
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.temp").finish()
                .tap(collector(got)))
    async with b.build() as db:
        await conn.wait_connected(5)
        assert "JetStream consumer" in (db.link_statistics()[0].last_error or "")
        async with stream(nats_url, t, [f"{t}.>"]) as js:
            await js.publish(f"{t}.temp", b'{"celsius": 21.5}')
            await wait_until(lambda: len(got) == 1, timeout=10, what="value after the stream appeared")
    assert got == [Temp(21.5)]


async def test_jetstream_consumer_that_is_not_a_pull_consumer_is_reported(
    rt: Any, nats_url: str, unique_topic: str
) -> None:
    """A durable of that name exists as a push consumer: the link says so, nothing spins."""
    from nats.js.api import ConsumerConfig

    t = unique_topic
    conn = NatsConnector(nats_url, jetstream=True, durable="taken")
    name = conn.consumer_name(f"{t}.x")
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.x").finish())
    async with stream(nats_url, t, [f"{t}.>"]), raw_client(nats_url) as nc:
        await nc.jsm().add_consumer(t, ConsumerConfig(durable_name=name, deliver_subject=f"{t}-push.deliver"))
        async with b.build() as db:
            await conn.wait_connected(5)
            await wait_until(lambda: "push" in (db.link_statistics()[0].last_error or ""), what="the problem")
            assert conn.connected


async def test_jetstream_consumer_deleted_underneath_is_created_again(
    rt: Any, nats_url: str, unique_topic: str
) -> None:
    """The server ignores pulls on a missing consumer; the connector notices and recreates it."""
    from nats.js.errors import ServerError

    t = unique_topic
    got: list[Temp] = []
    conn = NatsConnector(nats_url, jetstream=True, durable="again", start="earliest")
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.x").finish()
                .tap(collector(got)))
    async with stream(nats_url, t, [f"{t}.>"]) as js, raw_client(nats_url) as nc:
        async with b.build():
            await conn.wait_connected(5)
            await js.publish(f"{t}.x", b'{"celsius": 1}')
            await wait_until(lambda: len(got) == 1, what="first value")
            name = conn.consumer_name(f"{t}.x")
            assert name is not None
            try:
                await nc.jsm().delete_consumer(t, name)
            except ServerError as exc:
                # The connector may notice the loss and create the consumer again (same
                # durable name) while the server still removes its files; the server then
                # answers 500 "directory not empty" although the consumer was deleted.
                if "directory not empty" not in str(exc):
                    raise
            await js.publish(f"{t}.x", b'{"celsius": 2}')
            await wait_until(lambda: len(got) == 2, timeout=15, what="value after the consumer came back")
            await asyncio.sleep(0.2)
            info = await nc.jsm().consumer_info(t, name)
    assert [v.celsius for v in got] == [1, 2]  # the first one again (from "earliest") was dropped
    assert conn.duplicates_dropped == 1 and info.num_ack_pending == 0


@pytest.mark.slow
async def test_jetstream_durable_consumer_resumes(rt: Any, nats_url: str, unique_topic: str) -> None:
    t = unique_topic

    async def consume(expect: int) -> list[int]:
        got: list[Reading] = []
        conn = NatsConnector(nats_url, jetstream=True, durable="resume", start="earliest")
        b = AimDbBuilder().with_connector(conn)
        b.configure(Reading, "r", lambda r: r.buffer(ring()).link_from(f"nats://{t}.r").finish()
                    .tap(collector(got)))
        async with b.build():
            await conn.wait_connected(5)
            await wait_until(lambda: len(got) >= expect, timeout=10, what=f"{expect} values")
            await asyncio.sleep(0.3)  # nothing more may arrive
        return [v.seq for v in got]

    async with stream(nats_url, t, [f"{t}.>"]) as js:
        for i in range(5):
            await js.publish(f"{t}.r", payload("d", i))
        assert await consume(5) == list(range(5))
        for i in range(5, 8):
            await js.publish(f"{t}.r", payload("d", i))
        assert await consume(3) == [5, 6, 7]  # resumed after the last acknowledged message
        name = NatsConnector(nats_url, durable="resume").consumer_name(f"{t}.r")
        info = await js.consumer_info(t, name)
        assert info.num_ack_pending == 0 and info.delivered.stream_seq == 8


async def test_jetstream_stopped_consumer_leaves_no_pull_request_behind(
    rt: Any, nats_url: str, unique_topic: str
) -> None:
    """A message published right after a durable consumer's connector stopped waits in the
    stream for the next instance; it does not go to the stopped one's open pull request
    (acknowledgement pending, delivered again only after the server's 30 s ack wait).
    30 trials, each with its own stream and connector."""
    stuck: list[int] = []
    async with raw_client(nats_url) as nc:
        js = nc.jetstream()
        for trial in range(30):
            t = f"{unique_topic}-{trial}"
            await js.add_stream(name=t, subjects=[f"{t}.>"])
            try:
                conn = NatsConnector(nats_url, jetstream=True, durable="stop", start="earliest")
                b = AimDbBuilder().with_connector(conn)
                b.configure(bytes, "r", lambda r, t=t: r.buffer(ring()).link_from(f"nats://{t}.r")
                            .with_deserializer(bytes).finish())
                await js.publish(f"{t}.r", b"first")
                async with b.build() as db:
                    await conn.wait_connected(5)
                    await wait_until(lambda db=db: db.link_statistics()[0].received == 1, what="first")
                await js.publish(f"{t}.r", b"second")
                await asyncio.sleep(0.05)
                info = await js.consumer_info(t, conn.consumer_name(f"{t}.r"))
                if info.num_ack_pending:
                    stuck.append(trial)
            finally:
                await js.delete_stream(t)
    assert stuck == [], f"trials whose message went to the stopped connector: {stuck}"


@pytest.mark.slow
async def test_jetstream_server_restart_loses_nothing(rt: Any, private_nats: Any, unique_topic: str) -> None:
    """Kill the server in the middle of a stream of JetStream publishes, start it again.

    Publishes not acknowledged when it died are sent again (the stream drops the ones it
    already had, by message id), the values produced while it was down follow from the
    ring, and the durable consumer picks up where it was: every value arrives exactly once.
    """
    t = unique_topic
    n = 1500
    got: list[Reading] = []
    conn = NatsConnector(private_nats.url, jetstream=True, durable="restart", reconnect=FAST_RETRY)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(ring(n)).link_to(f"nats://{t}.seq").finish())
    b.configure(Reading, "in", lambda r: r.buffer(ring(n)).link_from(f"nats://{t}.seq").finish()
                .tap(collector(got)))
    async with raw_client(private_nats.url) as nc:  # file storage: survives the restart
        await nc.jetstream().add_stream(name=t, subjects=[f"{t}.>"])
    async with b.build() as db:
        await conn.wait_connected(5)
        p = db.producer(Reading, "out")

        async def produce() -> None:  # about 5k values/s, before, during and after the outage
            for i in range(n):
                p.produce(Reading("s", i, 0.0))
                if i % 10 == 9:
                    await asyncio.sleep(0.002)

        task = asyncio.create_task(produce())
        await wait_until(lambda: len(got) >= 200, what="the stream flowing")
        in_flight = conn.unacked
        await asyncio.to_thread(private_nats.kill)
        await wait_until(lambda: conn.state == "disconnected", what="disconnect noticed")
        await asyncio.sleep(0.1)
        await asyncio.to_thread(private_nats.start)
        await conn.wait_connected(10)
        await asyncio.wait_for(task, 20)
        await wait_until(lambda: len(got) >= n, timeout=20, what=f"{n} values, got {len(got)}")
        await wait_until(lambda: conn.unacked == 0, what="every publish acknowledged")
        await asyncio.sleep(0.3)
        out = next(s for s in db.link_statistics() if s.direction == "out")
    seqs = [v.seq for v in got]
    assert seqs == list(range(n)), (in_flight, len(seqs), len(set(seqs)))
    assert out.sent == n and out.failed == 0 and out.dropped_lag == 0
    assert conn.statistics().reconnects == 1
    async with raw_client(private_nats.url) as nc:
        info = await nc.jetstream().stream_info(t)
    assert info.state.messages == n  # resent duplicates were dropped by the stream
