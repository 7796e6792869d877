"""Helpers shared by the connector tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, ConnectionFailed
from aimdb.connectors import ReconnectPolicy


@dataclass
class Temp:
    celsius: float


@dataclass
class Reading:
    sensor: str
    seq: int
    value: float


@dataclass
class Command:
    action: str
    level: int


async def wait_until(
    pred: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "condition",
    detail: Callable[[], object] | None = None,
) -> None:
    """Poll ``pred`` every 5 ms until it is true; fail the test after ``timeout``.

    ``detail``, when given, is called at the timeout and its result shown in the failure.
    """
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            extra = f" ({detail()!r})" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        await asyncio.sleep(0.005)


def collector(out: list[Any]) -> Callable[[Any, Any], Any]:
    """A tap that appends every value it sees to ``out``."""

    async def tap(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            out.append(v)

    return tap


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not installed (run scripts/setup-test-env)", pytrace=False)
    return path


def mqtt_hostport(url: str) -> tuple[str, str]:
    hostport = url.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    return host, port


def mosquitto_pub(url: str, topic: str, payload: bytes, qos: int = 1, extra: list[str] | None = None) -> None:
    require("mosquitto_pub")
    host, port = mqtt_hostport(url)
    subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-q", str(qos), "-s" if payload else "-n",
         *(extra or [])],
        input=payload,
        check=True,
        timeout=10,
        capture_output=True,
    )


class MosquittoSub:
    """``mosquitto_sub`` in the background, collecting ``count`` messages (one per line)."""

    def __init__(self, url: str, topic: str, count: int) -> None:
        require("mosquitto_sub")
        host, port = mqtt_hostport(url)
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-q", "1", "-C", str(count), "-W", "15",
             "-v"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def result(self, timeout: float = 15.0) -> list[str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        assert self.proc.returncode == 0, err.decode(errors="replace")
        return out.decode().splitlines()


# ------------------------------------------------ scenarios shared by the MQTT and NATS tests


def _same(link: Any) -> Any:
    return link


def _ring(n: int) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


async def round_trip(
    pub: Any,
    sub: Any,
    link: str,
    link_options: Callable[[Any], Any] = _same,
    while_open: Callable[[], None] | None = None,
) -> tuple[Any, Any]:
    """aimdb record -> broker -> aimdb record in another database, typed, in order.

    ``pub`` and ``sub`` are two connectors to the same broker; ``link`` is the URL both
    databases link their ``Temp`` record to, ``link_options`` adds broker options to both
    links (say ``lambda ln: ln.qos(1)``).  ``while_open`` runs once the 20 values arrived,
    before the databases close, for the caller's own checks.  Checks the values, that 20
    were sent without failure and received, and that ``pub`` connected once and is closed;
    returns the out and in link statistics for the caller's further checks.
    """
    got: list[Temp] = []
    bs = AimDbBuilder().with_connector(sub)
    bs.configure(Temp, "temp", lambda r: link_options(r.buffer(_ring(64)).link_from(link)).finish()
                 .tap(collector(got)))
    bp = AimDbBuilder().with_connector(pub)
    bp.configure(Temp, "temp", lambda r: link_options(r.buffer(_ring(64)).link_to(link)).finish())
    async with bs.build() as dbs, bp.build() as dbp:
        await sub.wait_connected(5)
        await pub.wait_connected(5)
        producer = dbp.producer(Temp, "temp")
        for i in range(20):
            producer.produce(Temp(float(i)))
        await wait_until(lambda: len(got) == 20, what="20 values")
        if while_open is not None:
            while_open()
    out = {s.url: s for s in dbp.link_statistics()}[link]  # snapshots taken after the stop
    inn = {s.url: s for s in dbs.link_statistics()}[link]
    assert got == [Temp(float(i)) for i in range(20)]
    assert out.sent == 20 and out.failed == 0
    assert inn.received == 20
    assert pub.statistics().connects == 1 and pub.state == "closed"
    return out, inn


CODECS = ["msgpack", "cbor"]


async def codec_round_trip(conn: Any, link: str, codec: str) -> None:
    """A ``Reading`` sent and received on ``link`` in ``codec`` (one of ``CODECS``).

    The value comes back equal, and a raw-bytes record on the same link shows that the
    payload on the wire is that codec's encoding of the value's fields.
    """
    got: list[Reading] = []
    raw: list[bytes] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: r.buffer(_ring(64)).link_to(link).codec(codec).finish())
    b.configure(Reading, "in", lambda r: r.buffer(_ring(64)).link_from(link).codec(codec).finish()
                .tap(collector(got)))
    b.configure(bytes, "raw", lambda r: r.buffer(_ring(64)).link_from(link)
                .with_deserializer(lambda b: bytes(b)).finish().tap(collector(raw)))
    async with b.build() as db:
        await conn.wait_connected(5)
        db.producer(Reading, "out").produce(Reading("s", 7, 0.25))
        await wait_until(lambda: bool(got and raw), what="codec round trip")
    assert got == [Reading("s", 7, 0.25)]
    if codec == "msgpack":
        import msgpack

        assert msgpack.unpackb(raw[0]) == {"sensor": "s", "seq": 7, "value": 0.25}
    else:
        import cbor2

        assert cbor2.loads(raw[0]) == {"sensor": "s", "seq": 7, "value": 0.25}


async def unreachable_retries_with_backoff(connector: Callable[..., Any], scheme: str, link: str) -> None:
    """Nothing listens on the port: the connector gives up after 4 quick attempts.

    ``connector(url, reconnect=policy)`` makes the connector; ``scheme`` is its URL scheme
    and ``link`` a link for one record.  Fails within 3 s with ``ConnectionFailed`` caused
    by the ``OSError``, 4 failed attempts counted.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = connector(f"{scheme}://127.0.0.1:{port}", reconnect=ReconnectPolicy(0.01, 0.05, max_attempts=4))
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(_ring(64)).link_to(link).finish())
    t0 = time.monotonic()
    async with b.build():
        with pytest.raises(ConnectionFailed) as ei:
            await conn.wait_connected(5)
    assert time.monotonic() - t0 < 3
    assert isinstance(ei.value.__cause__, OSError)
    assert conn.statistics().failed_attempts == 4


# (buffer kind, values produced while the broker is down, seqs expected after the restart)
RESTART_CASES = [
    ("ring", 60, list(range(50, 110))),  # backlog within capacity, in order
    ("ring_overflow", 150, list(range(100, 200))),  # capacity 100: the newest 100, lag counted
    ("latest", 5, [54]),  # SingleLatest: only the latest
    ("mailbox", 5, [54]),  # Mailbox: only the newest command
]


async def restart_mid_stream(
    conn: Any,
    broker: Any,
    link: str,
    kind: str,
    produced: int,
    expected: list[int],
    *,
    disconnected: Callable[[], bool],
    link_options: Callable[[Any], Any] = _same,
    pace: float = 0.0,
    when_down: Callable[[], Awaitable[None]] | None = None,
    before_restart: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Kill the private broker, produce while it is down, start it again on the same port.

    One case of ``RESTART_CASES``: ``conn`` (a connector to ``broker``, which has ``kill()``
    and ``start()``) links an out record with the buffer ``kind`` and an in record to the
    same ``link`` (``link_options`` adds broker options to both).  Values 0..49 (ring kinds)
    or 0 (the others, each followed by a ``pace`` s pause when ``pace`` is set) arrive
    before the broker is killed; once ``disconnected()`` is true, ``when_down`` runs, values
    50.. (``produced`` of them) are produced, ``before_restart`` runs, and the broker
    starts again.  The link must reconnect by itself, re-subscribe and deliver ``expected``
    after the first values, with nothing more (no duplicate) 0.2 s later; the connector
    counts one reconnect and one disconnect, and the out link counts as lag exactly what
    the overflowing ring dropped.
    """
    cfg: Any = {
        "ring": BufferCfg.SpmcRing(capacity=100),
        "ring_overflow": BufferCfg.SpmcRing(capacity=100),
        "latest": BufferCfg.SingleLatest(),
        "mailbox": BufferCfg.Mailbox(),
    }[kind]
    got: list[Reading] = []
    b = AimDbBuilder().with_connector(conn)
    b.configure(Reading, "out", lambda r: link_options(r.buffer(cfg).link_to(link)).finish())
    b.configure(Reading, "in", lambda r: link_options(r.buffer(_ring(1000)).link_from(link)).finish()
                .tap(collector(got)))
    async with b.build() as db:
        await conn.wait_connected(5)
        p = db.producer(Reading, "out")
        first = 50 if kind.startswith("ring") else 1
        for i in range(first):
            p.produce(Reading("s", i, 0.0))
            if pace and not kind.startswith("ring"):
                await asyncio.sleep(pace)
        await wait_until(lambda: len(got) == first, what="values before the restart")
        await asyncio.to_thread(broker.kill)
        await wait_until(disconnected, what="disconnect noticed")
        if when_down is not None:
            await when_down()
        for i in range(50, 50 + produced):
            p.produce(Reading("s", i, 0.0))
        if before_restart is not None:
            await before_restart()
        await asyncio.to_thread(broker.start)
        await conn.wait_connected(10)
        await wait_until(lambda: len(got) >= first + len(expected), timeout=10, what="backlog")
        await asyncio.sleep(0.2)  # nothing more (no duplicates) may arrive
    out_stats = next(s for s in db.link_statistics() if s.direction == "out")  # after the stop
    seqs = [v.seq for v in got]
    assert seqs[:first] == list(range(first))
    assert seqs[first:] == expected
    assert conn.statistics().reconnects == 1
    assert conn.statistics().disconnects == 1
    if kind == "ring_overflow":
        assert out_stats.dropped_lag == produced - 100
    else:
        assert out_stats.dropped_lag == 0


async def stalled_broker_lags_the_reader(
    conn: Any, broker: Any, link: str, held: Callable[[], int]
) -> int:
    """A broker that stops reading: the producer never blocks, the ring reader lags (counted).

    ``conn`` links a 64-value ring of raw bytes to ``link`` on ``broker`` (a private one with
    ``pid``), which is then stopped with SIGSTOP while 2000 values of 64 KiB are offered
    (continued at the end, whatever happens).  Offering them takes under 10 s, the link
    counts lag and has sent fewer than 2000.  Returns ``held()``, what the connector holds
    unsent, read while the broker was stopped, for the caller's broker-specific bound.
    """
    b = AimDbBuilder().with_connector(conn)
    b.configure(bytes, "blob", lambda r: r.buffer(_ring(64)).link_to(link).with_serializer(lambda v: v)
                .finish())
    async with b.build() as db:
        await conn.wait_connected(5)
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            p = db.producer(bytes, "blob")
            blob = b"x" * 65536
            t0 = time.monotonic()
            for _ in range(2000):  # 128 MiB offered
                p.produce(blob)
                await asyncio.sleep(0)
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.2)
            st = db.link_statistics()[0]
            pending = held()
        finally:
            os.kill(broker.pid, signal.SIGCONT)
    assert st.dropped_lag > 0
    assert st.sent < 2000
    return pending
