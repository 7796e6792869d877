"""Broker faults in the middle of a steady stream: SIGKILL and restart, SIGSTOP and SIGCONT.

One database publishes a numbered sequence at ``RATE`` values/s into a ring record
(``seq.ring``, capacity ``RING``) and, through a transform, a SingleLatest record
(``seq.latest``); both are linked out (``link_to``).  A receiver reads both topics back:
a second aimdb database (``link_from``) for MQTT and NATS, an independent aiokafka consumer
for Kafka.  The broker is killed, stays down for ``outage`` seconds (1, 3, 7) and starts
again on the same port; or it is stopped (SIGSTOP) for 3 s and continued, keeping its memory
and its connections (then nothing is lost in any broker, so the accounting below is exact
for all three).

What is asserted, for the ring: every value the receiver never got is accounted for,
exactly::

    lost == dropped_lag + failed + lost_in_broker

``dropped_lag`` and ``failed`` are the out link's statistics; ``lost_in_broker`` is what the
broker had taken responsibility for (acknowledged to the publisher) but not yet handed to
the receiver when it was killed, and does not keep across a crash:

* MQTT, QoS 1: Mosquitto keeps messages in memory only (its persistence file is written at
  shutdown, at ``autosave_interval`` or on SIGUSR1), so what it acknowledged (PUBACK) and
  had not delivered dies with it; what it had not acknowledged the connector sends again.
  The receiver has a persistent session (``clean_session=False``, QoS 1) that the broker
  saved to its persistence file (SIGUSR1) before the stream started, holding no message:
  after the restart the subscription is back before anybody reconnects, so nothing the
  publisher sends again is dropped for want of a subscriber, and no stale message comes
  back from the file.  With QoS 0 nothing is exact: publishes in the sockets' buffers at
  the kill are lost without anybody having counted them.
* NATS JetStream: the stream's file store writes a message before acknowledging it and
  survives a kill, the durable consumer resumes: nothing is lost in the broker.
* Kafka (Tansu 0.6, in-memory storage, the only one available here): a restart comes back
  empty, so every acknowledged value the consumer had not fetched is gone (acknowledgements
  arrive in order on one partition: what was acknowledged before the kill is the prefix
  ``range(sent)``).  Worse, the topics are created again by the first writes after the
  return, and while that happens Tansu acknowledges writes whose offsets it then reuses:
  values the producer retried after the return are acknowledged and never readable (seen:
  up to about 1000 in a 3 s outage).  So for Kafka the receiver side is not exact: the
  test asserts that the link accounts for every value (``sent + failed + dropped_lag ==
  produced``, as for the others) and that the receiver lost at least what was counted, and
  reports what the broker lost beyond that.

For SingleLatest: the newest value, produced after the broker's return, arrives.

The reconnect time (from the moment the port accepts again, or from SIGCONT, to the
connector's ``connected``; "not noticed" when the state never left ``connected``) is printed
in the "fault figures" summary; the issue's target is a median of at most ``TARGET`` s for
outages up to 10 s.  Asserted is only liveness: reconnected within ``LIVENESS`` s, three times
the target (the default policy keeps its delay at most 2 s, ±20 % jitter, for the first minute
of an outage).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import KafkaConnector, MqttConnector, NatsConnector, ReconnectPolicy
from tests.brokers.fixtures import brokers
from tests.connectors._util import collector, wait_until

pytestmark = [pytest.mark.runtimes("asyncio"), pytest.mark.timeout(90), pytest.mark.slow]

RATE = 500  # values per second
TICK = 0.01  # the source produces RATE * TICK values per tick
RING = 1000  # capacity of the published ring: 2 s of values
# (fault, seconds out): SIGKILL and a restart on the same port after 1, 3 and 7 s; SIGSTOP for 3 s
CASES = [("kill", 1.0), ("kill", 3.0), ("kill", 7.0), ("stall", 3.0)]
TARGET = 2.0  # the target: median reconnect time after the broker's return
LIVENESS = 3 * TARGET  # asserted: 3x the target (the default policy caps its delay at 2 s for a minute)
FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)  # receivers only


@dataclass
class Seq:
    seq: int


class Stream:
    """The publishing side: ``seq.ring`` (source, ring) and ``seq.latest`` (SingleLatest).

    The source waits for ``go``, then produces ``Seq(0), Seq(1) ...`` at ``RATE`` per second
    (drift-free) until ``stop`` is set, then sets ``finished``; ``produced`` is how many it
    produced.
    """

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.stop = False
        self.finished = asyncio.Event()
        self.produced = 0

    async def _source(self, ctx: Any, producer: Any) -> None:
        await self.go.wait()
        ticker = ctx.time.ticker(TICK)
        t0 = ctx.time.now_ns()
        while not self.stop:
            await ticker.tick()
            due = (ctx.time.now_ns() - t0) * RATE // 1_000_000_000
            while self.produced < due:
                producer.produce(Seq(self.produced))
                self.produced += 1
        self.finished.set()

    def build(self, conn: Any, ring_url: str, latest_url: str, options: Callable[[Any], Any]) -> Any:
        b = AimDbBuilder().with_connector(conn)
        b.configure(Seq, "seq.ring", lambda r: options(
            r.buffer(BufferCfg.SpmcRing(capacity=RING)).source(self._source).link_to(ring_url)).finish())
        b.configure(Seq, "seq.latest", lambda r: options(
            r.buffer(BufferCfg.SingleLatest()).transform(Seq, "seq.ring", lambda v: v).link_to(latest_url))
            .finish())
        return b


class Receiver:
    """What read the two topics back: ``ring()`` and ``latest()`` are the seqs seen so far."""

    def ring(self) -> set[int]:
        raise NotImplementedError

    def latest(self) -> set[int]:
        raise NotImplementedError

    async def settle(self) -> None:
        """Return once everything sent before the kill that can still arrive has arrived."""

    async def restarted(self) -> None:
        """The broker is back (the receiver may need a new client)."""


class DbReceiver(Receiver):
    """A second aimdb database linking both topics in (``link_from``) into big rings."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._ring: list[Seq] = []
        self._latest: list[Seq] = []

    @asynccontextmanager
    async def running(
        self, ring_url: str, latest_url: str, options: Callable[[Any], Any]
    ) -> AsyncIterator[Any]:
        b = AimDbBuilder().with_connector(self.conn)
        b.configure(Seq, "rx.ring", lambda r: options(
            r.buffer(BufferCfg.SpmcRing(capacity=1 << 15)).link_from(ring_url)).finish()
            .tap(collector(self._ring)))
        b.configure(Seq, "rx.latest", lambda r: options(
            r.buffer(BufferCfg.SpmcRing(capacity=1 << 12)).link_from(latest_url)).finish()
            .tap(collector(self._latest)))
        async with b.build() as db:
            await self.conn.wait_connected(10)
            yield db

    def ring(self) -> set[int]:
        return {v.seq for v in self._ring}

    def latest(self) -> set[int]:
        return {v.seq for v in self._latest}

    async def settle(self) -> None:
        await wait_until(lambda: self.conn.state != "connected", what="the receiver's disconnect")
        await _stable(lambda: len(self._ring))


class KafkaReader(Receiver):
    """An independent aiokafka consumer of partition 0 of both topics, from the beginning.

    In-memory Tansu comes back empty and reuses offsets from 0: ``restarted()`` starts a new
    consumer from the beginning of the new log (an old one would keep its position).
    """

    def __init__(self, address: str, ring_topic: str, latest_topic: str) -> None:
        self.address = address
        self.topics = {ring_topic: "ring", latest_topic: "latest"}
        self.got: dict[str, set[int]] = {"ring": set(), "latest": set()}
        self._task: asyncio.Task[None] | None = None

    def ring(self) -> set[int]:
        return self.got["ring"]

    def latest(self) -> set[int]:
        return self.got["latest"]

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.address, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        consumer.assign([TopicPartition(t, 0) for t in self.topics])
        await consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._consume(consumer), name="kafka-reader")

    async def _consume(self, consumer: Any) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    into = self.got[self.topics[tp.topic]]
                    into.update(s for s in (json.loads(r.value)["seq"] for r in records) if s >= 0)
        finally:
            await asyncio.wait_for(consumer.stop(), 10)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task], timeout=15)
        assert task.done(), "the Kafka reader did not stop"
        if not task.cancelled() and task.exception() is not None:
            raise AssertionError("the Kafka reader failed") from task.exception()

    async def settle(self) -> None:
        await _stable(lambda: len(self.got["ring"]))
        await self.stop()

    async def restarted(self) -> None:
        await self.start()


async def _stable(count: Callable[[], int], quiet: float = 0.3, timeout: float = 10.0) -> None:
    """Wait until ``count()`` has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the receiver did not settle"
        await asyncio.sleep(0.02)
        if count() != last:
            last, since = count(), time.monotonic()


def _start_timed(broker: Any) -> float:
    """Start ``broker`` again; return the monotonic time its port first accepted connections.

    A watcher polls the port every 10 ms while ``broker.start()`` runs (which itself polls
    more coarsely and also waits for the protocol's greeting).
    """
    opened: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if brokers.port_open(broker.host, broker.port, timeout=0.2):
                opened.append(time.monotonic())
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, name="port-watch", daemon=True)
    watcher.start()
    try:
        broker.start()
    finally:
        watcher.join(10)
        done.set()
    assert opened, "the restarted broker's port was not seen open"
    return opened[0]


@dataclass
class Figures:
    broker: str
    fault: str
    outage: float
    reconnect: float | None  # seconds from port open to connected; None: loss never noticed
    produced: int
    lost: int
    lag: int
    failed: int
    in_broker: int

    def line(self) -> str:
        rc = "not noticed" if self.reconnect is None else f"{self.reconnect:5.2f} s"
        back = "the port opened" if self.fault == "kill" else "SIGCONT"
        return (f"{self.broker:6} {self.fault:5} {self.outage:3.0f} s: reconnect {rc} after {back}"
                f" (target median <= {TARGET:.0f} s); ring: produced {self.produced}, lost {self.lost}"
                f" = dropped_lag {self.lag} + failed {self.failed} + lost in the broker {self.in_broker}")


async def fault_mid_stream(
    name: str,
    broker: Any,
    conn: Any,
    db: Any,
    stream: Stream,
    receiver: Receiver,
    fault: str,
    outage: float,
    *,
    custody: Callable[[Any], set[int]] = lambda ring_stats: set(),
    exact: bool = True,
    returned: Callable[[], Awaitable[None]] | None = None,
) -> Figures:
    """Run the stream, put ``broker`` out for ``outage`` s, bring it back, check, return figures.

    ``fault`` is ``"kill"`` (SIGKILL, then started again on the same port) or ``"stall"``
    (SIGSTOP, then SIGCONT: the broker keeps its memory and its connections).
    ``custody(ring_stats)`` is called while a killed broker is down and returns the ring
    values it had acknowledged before it died (and may have lost with it).  The link must
    account for every value produced (``sent + failed + dropped_lag``); with ``exact`` the
    receiver must have got every value but those counted and those ``custody`` lost, without
    it (a broker that also loses values it acknowledged after its return) the figures only
    say how many more the broker lost.  ``returned``, when given, runs as soon as a killed
    broker accepts connections again.
    """
    def out_link(suffix: str) -> Any:
        """A new snapshot of the outbound link whose URL ends with ``suffix``."""
        return next(s for s in db.link_statistics() if s.direction == "out" and s.url.endswith(suffix))

    def ring_stats() -> Any:
        return out_link("ring")

    stream.go.set()
    await wait_until(lambda: len(receiver.ring()) >= RATE, timeout=20, what="one second of the stream")
    st = ring_stats()
    assert st.dropped_lag == 0 and st.failed == 0, st

    async def down_until(deadline: float) -> bool:
        """Wait until ``deadline``; True when the connector left ``connected`` meanwhile."""
        noticed = False
        while time.monotonic() < deadline:
            noticed = noticed or conn.state != "connected"
            await asyncio.sleep(0.01)
        return noticed or conn.state != "connected"

    t_down = time.monotonic()
    before: set[int] = set()
    in_custody: set[int] = set()
    if fault == "stall":
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            noticed = await down_until(t_down + outage)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        t_back = time.monotonic()
    else:
        await asyncio.to_thread(broker.kill)
        await receiver.settle()
        noticed = await down_until(t_down + outage)
        before = set(receiver.ring())
        in_custody = custody(ring_stats())
        t_back = await asyncio.to_thread(_start_timed, broker)
        if returned is not None:
            await returned()
    await conn.wait_connected(LIVENESS)
    reconnect = max(0.0, time.monotonic() - t_back) if noticed else None
    if fault == "kill":
        await receiver.restarted()

    resumed = ring_stats().sent
    await wait_until(lambda: ring_stats().sent >= resumed + RATE // 2, timeout=20,
                     what="half a second of values sent after the return", detail=ring_stats)
    stream.stop = True
    await asyncio.wait_for(stream.finished.wait(), 5)
    last = stream.produced - 1
    def accounted(st: Any) -> int:
        return st.sent + st.failed + st.dropped_lag

    await wait_until(lambda: accounted(ring_stats()) == stream.produced,
                     timeout=30, what="every value sent, failed or counted as lag",
                     detail=lambda: (stream.produced, ring_stats(), conn.statistics()))
    await wait_until(lambda: last in receiver.latest(), timeout=30, what="the newest value in SingleLatest",
                     detail=lambda: (out_link("latest"), conn.statistics()))
    await wait_until(lambda: not exact or last in receiver.ring(), timeout=30, what="the last ring value",
                     detail=lambda: (len(receiver.ring()), ring_stats()))

    missing = set(range(stream.produced)) - receiver.ring()
    lost_in_broker = in_custody - before
    st = ring_stats()
    counted = st.dropped_lag + st.failed
    fig = Figures(name, fault, outage, reconnect, stream.produced, len(missing), st.dropped_lag,
                  st.failed, len(missing) - counted if not exact else len(lost_in_broker))
    assert lost_in_broker <= missing, "a value the broker lost arrived after all"
    if exact:
        assert len(missing) == counted + len(lost_in_broker), (fig, sorted(missing)[:20])
    else:
        assert len(missing) >= counted + len(lost_in_broker), (fig, sorted(missing)[:20])
    assert out_link("latest").dropped_lag == 0
    if fault == "kill" and outage >= 3:
        assert noticed, "the connector did not notice a broker down for 3 s"
    return fig


# ------------------------------------------------------------------------------ MQTT


def _mqtt_custody(conn: MqttConnector) -> Callable[[Any], set[int]]:
    """Ring values Mosquitto acknowledged: sent, minus those still awaiting their PUBACK."""

    def custody(ring_stats: Any) -> set[int]:
        waiting = {json.loads(pkt[pkt.index(b"{"):])["seq"]
                   for pkt, stats in conn.unacknowledged() if stats.url == ring_stats.url}
        return set(range(ring_stats.sent)) - waiting

    return custody


@pytest.mark.parametrize(("fault", "outage"), CASES)
async def test_mqtt_broker_fault_mid_stream(
    rt: Any, private_mosquitto_factory: Any, unique_topic: str, fault: str, outage: float, fault_figures: Any
) -> None:
    broker = private_mosquitto_factory(persistence=True)
    ring_url, latest_url = f"mqtt://{unique_topic}/ring", f"mqtt://{unique_topic}/latest"

    def qos1(link: Any) -> Any:
        return link.qos(1)

    rx = DbReceiver(MqttConnector(broker.url, client_id="aimdb-rx-" + uuid.uuid4().hex[:8],
                                  clean_session=False, reconnect=FAST))
    async with rx.running(ring_url, latest_url, qos1):
        # the receiver's session (subscriptions, no message) into the persistence file
        db_file = broker.workdir / "mosquitto.db"
        os.kill(broker.pid, signal.SIGUSR1)
        await wait_until(db_file.exists, what="Mosquitto's persistence file")
        await asyncio.sleep(0.2)  # written in full
        conn = MqttConnector(broker.url)
        stream = Stream()
        async with stream.build(conn, ring_url, latest_url, qos1).build() as db:
            await conn.wait_connected(10)
            fig = await fault_mid_stream("mqtt", broker, conn, db, stream, rx, fault, outage,
                                         custody=_mqtt_custody(conn))
    fault_figures(fig.line())


# ------------------------------------------------------------------------------ NATS


@pytest.mark.parametrize(("fault", "outage"), CASES)
async def test_nats_server_fault_mid_stream(
    rt: Any, private_nats: Any, unique_topic: str, fault: str, outage: float, fault_figures: Any
) -> None:
    import nats

    t = unique_topic
    nc = await nats.connect(private_nats.url, allow_reconnect=False)
    try:
        await nc.jetstream().add_stream(name=t, subjects=[f"{t}.>"])  # file storage
    finally:
        await nc.close()
    ring_url, latest_url = f"nats://{t}.ring", f"nats://{t}.latest"
    rx = DbReceiver(NatsConnector(private_nats.url, jetstream=True, durable="rx", start="earliest",
                                  reconnect=FAST))
    async with rx.running(ring_url, latest_url, lambda link: link):
        conn = NatsConnector(private_nats.url, jetstream=True)
        stream = Stream()
        async with stream.build(conn, ring_url, latest_url, lambda link: link).build() as db:
            await conn.wait_connected(10)
            fig = await fault_mid_stream("nats", private_nats, conn, db, stream, rx, fault, outage)
    fault_figures(fig.line())


# ------------------------------------------------------------------------------ Kafka


@pytest.mark.parametrize(("fault", "outage"), CASES)
async def test_kafka_broker_fault_mid_stream(
    rt: Any, private_tansu: Any, unique_topic: str, fault: str, outage: float, fault_figures: Any
) -> None:
    t = private_tansu
    ring_topic, latest_topic = f"{unique_topic}-ring", f"{unique_topic}-latest"

    for topic in (ring_topic, latest_topic):
        await asyncio.to_thread(t.create_topic, topic, 1)

    async def touch_topics() -> None:
        """Make in-memory Tansu, back empty, create both topics again (as a fresh producer does).

        A producer that knew the topics before gets "unknown error" for them and waits, while
        ``tansu topic create`` racing with a producer's writes corrupts the partition: one
        message (``seq`` -1, skipped by the reader) from a fresh client creates them, with 4
        partitions; the links write to partition 0.
        """
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(bootstrap_servers=t.address)
        await producer.start()
        try:
            for topic in (ring_topic, latest_topic):
                for attempt in range(20):  # "unknown error" while the connector's writes create it
                    try:
                        await asyncio.wait_for(producer.send_and_wait(topic, b'{"seq": -1}', partition=0), 15)
                        break
                    except KafkaError:
                        if attempt == 19:
                            raise
                        await asyncio.sleep(0.1)
        finally:
            await producer.stop()
    rx = KafkaReader(t.address, ring_topic, latest_topic)
    await rx.start()
    try:
        conn = KafkaConnector(t.url)
        stream = Stream()

        async with stream.build(conn, f"kafka://{ring_topic}", f"kafka://{latest_topic}",
                                lambda link: link.partition(0)).build() as db:  # see the module doc
            await conn.wait_connected(20)
            fig = await fault_mid_stream(
                "kafka", t, conn, db, stream, rx, fault, outage,
                custody=lambda ring_stats: set(range(ring_stats.sent)),
                exact=fault == "stall",  # a stalled Tansu keeps its memory
                returned=touch_topics)
    finally:
        await rx.stop()
    fault_figures(fig.line())


# ------------------------------------------------------------------ a stall that lasts
#
# A broker that stops reading (SIGSTOP) while far more is offered than sockets and client
# buffers hold: the link blocks, its ring overwrites.  Every value must still be accounted
# for, while the broker is stopped and after the database was stopped during the stall, and
# no connection may outlive the database.  Today none of the three holds (marked xfail).

BLOB = b"x" * 65536
OFFERED = 2000  # 128 MiB of 64 KiB values: far beyond what sockets and client buffers hold
STALL_RING = 64


def _stall_connector(kind: str, broker: Any) -> Any:
    if kind == "mqtt":
        return MqttConnector(broker.url, keepalive=0)  # QoS 0: ``sent`` = handed to the socket
    return NatsConnector(broker.url, pending_bytes=512 * 1024)  # core NATS, at most once


class StalledLink:
    """What ``_offered_while_stalled`` yields: the database and (once it has stopped)
    ``leaked``, the connections to the broker still open then."""

    def __init__(self) -> None:
        self.db: Any = None
        self.leaked: list[str] = []


def _abort_leftovers(port: int, run: StalledLink) -> None:
    """Note in ``run.leaked`` every socket of this loop still connected to ``port``, and abort it.

    Aborting keeps a leak (a bug the test reports) from surfacing later as a ResourceWarning
    in whatever test the garbage collector happens to run in.
    """
    loop = asyncio.get_running_loop()
    for transport in list(getattr(loop, "_transports", {}).values()):
        peer = transport.get_extra_info("peername")
        if peer and peer[1] == port and getattr(transport, "_sock", None) is not None:
            run.leaked.append(repr(transport))
            transport.abort()


@asynccontextmanager
async def _offered_while_stalled(kind: str, broker: Any, topic: str) -> AsyncIterator[StalledLink]:
    """A 64-value ring of 64 KiB blobs linked out; the broker SIGSTOPped, ``OFFERED`` produced.

    Yields while the broker is still stopped; the database stops when the block ends, then
    the connections it left open are noted and aborted, and the broker is continued.
    """
    conn = _stall_connector(kind, broker)
    link = f"mqtt://{topic}/blob" if kind == "mqtt" else f"nats://{topic}.blob"
    b = AimDbBuilder().with_connector(conn)
    b.configure(bytes, "blob", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=STALL_RING)).link_to(link)
                .with_serializer(lambda v: v).finish())
    run = StalledLink()
    async with AsyncExitStack() as stack:  # on exit: the database stops, leftovers, SIGCONT
        stack.callback(os.kill, broker.pid, signal.SIGCONT)
        stack.callback(_abort_leftovers, broker.port, run)
        run.db = db = await stack.enter_async_context(b.build())
        await conn.wait_connected(5)
        os.kill(broker.pid, signal.SIGSTOP)
        p = db.producer(bytes, "blob")
        for _ in range(OFFERED):
            p.produce(BLOB)
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)  # the link takes what it can
        yield run


@pytest.mark.parametrize("kind", ["mqtt", "nats"])
async def test_values_overwritten_during_a_stall_are_counted_at_once(
    rt: Any, private_mosquitto: Any, private_nats: Any, unique_topic: str, kind: str
) -> None:
    broker = private_mosquitto if kind == "mqtt" else private_nats
    async with _offered_while_stalled(kind, broker, unique_topic) as run:
        st = run.db.link_statistics()[0]
        sent, lag = st.sent, st.dropped_lag
        buffer = run.db.statistics()["blob"]["buffer"]
    # what the link never took (``delivered`` counts what it took, sent or in hand) and the
    # ring no longer holds was overwritten: it must already show
    assert sent <= buffer["delivered"]
    assert lag >= OFFERED - buffer["delivered"] - STALL_RING, (st, buffer)
    assert buffer["dropped"] >= OFFERED - buffer["delivered"] - STALL_RING, buffer


@pytest.mark.parametrize("kind", ["mqtt", "nats"])
async def test_stopped_during_a_stall_every_value_is_accounted_for(
    rt: Any, private_mosquitto: Any, private_nats: Any, unique_topic: str, kind: str
) -> None:
    broker = private_mosquitto if kind == "mqtt" else private_nats
    async with _offered_while_stalled(kind, broker, unique_topic) as run:
        pass
    # the database has stopped (its connector's flush timed out against the stopped broker)
    st = run.db.link_statistics()[0]  # a snapshot taken after the stop
    assert st.sent + st.failed + st.dropped_lag == OFFERED, st


@pytest.mark.parametrize("kind", ["mqtt", "nats"])
async def test_stopped_during_a_stall_no_connection_outlives_the_database(
    rt: Any, private_mosquitto: Any, private_nats: Any, unique_topic: str, kind: str
) -> None:
    broker = private_mosquitto if kind == "mqtt" else private_nats
    async with _offered_while_stalled(kind, broker, unique_topic) as run:
        pass
    assert run.leaked == []
