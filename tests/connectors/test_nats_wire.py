"""NatsConnector: the server has every subscription when ``wait_connected()`` returns.

A recording TCP proxy sits between the connector and a real nats-server on 127.0.0.1 and
keeps what the connector sent on each connection. A PONG answers the PINGs in order, so
the connector's last PING before it reported connected is the one whose PONG it waited
for; every SUB it sent must precede that PING on the wire (the server then had them when
it answered). Beside that: a stress test of fresh connectors receiving what a plain
nats-py client publishes right after ``wait_connected()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import NatsConnector, ReconnectPolicy

from ._util import Reading, collector, wait_until

nats = pytest.importorskip("nats")
pytest.importorskip("nats.aio.client")

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(120)]

FAST_RETRY = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.0)


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that records the client->server bytes of each connection.

    ``cut()`` closes every open connection and holds new ones (accepted, not yet connected
    upstream) until ``resume()``: a refused connection would leak a writer in nats-py.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.sent: list[bytearray] = []  # per connection, in accept order
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._closed = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        await self._open.wait()
        if self._closed:
            cw.close()
            return
        sr, sw = await asyncio.open_connection(*self.upstream)
        record = bytearray()
        self.sent.append(record)
        self._writers += [cw, sw]
        for src, dst, rec in ((cr, sw, record), (sr, cw, None)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst, rec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, rec: bytearray | None
    ) -> None:
        try:
            while data := await src.read(65536):
                if rec is not None:
                    rec += data
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def cut(self) -> None:
        self._open.clear()
        for w in self._writers:
            w.close()
        self._writers.clear()

    def resume(self) -> None:
        self._open.set()

    async def close(self) -> None:
        self._closed = True
        self.cut()
        self._open.set()  # held connections are closed
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):  # a pipe's own failure, not its cancellation
                raise outcome


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[RecordingProxy]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    proxy = RecordingProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def operations(wire: bytes) -> list[tuple[str, list[str]]]:
    """Split client->server NATS protocol into (OP, arguments); payloads are skipped."""
    ops: list[tuple[str, list[str]]] = []
    pos = 0
    while True:
        end = wire.find(b"\r\n", pos)
        if end < 0:
            return ops
        words = wire[pos:end].decode("utf-8", "replace").split()
        pos = end + 2
        op = words[0].upper() if words else ""
        if op in ("PUB", "HPUB"):
            pos += int(words[-1]) + 2  # the payload (headers included) and its CRLF
        ops.append((op, words[1:]))


def subs_before_last_ping(wire: bytes) -> tuple[list[str], list[str]]:
    """Return the subjects subscribed before and after the last PING on ``wire``."""
    ops = operations(wire)
    last_ping = max(i for i, (op, _) in enumerate(ops) if op == "PING")
    before = [args[0] for op, args in ops[:last_ping] if op == "SUB"]
    after = [args[0] for op, args in ops[last_ping:] if op == "SUB"]
    return before, after


def ring(n: int = 64) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


async def test_core_subscriptions_precede_the_ping_that_reports_connected(
    rt: Any, nats_url: str, unique_topic: str
) -> None:
    t = unique_topic
    subjects = [f"{t}.a", f"{t}.b.*", f"{t}.c.>"]
    async with proxy_to(nats_url) as proxy:
        conn = NatsConnector(proxy.url, reconnect=FAST_RETRY)
        b = AimDbBuilder().with_connector(conn)
        for i, s in enumerate(subjects):
            b.configure(Reading, f"in{i}", lambda r, s=s: r.buffer(ring()).link_from(f"nats://{s}").finish())
        async with b.build():
            await conn.wait_connected(10)
            before, after = subs_before_last_ping(bytes(proxy.sent[0]))
            assert sorted(before) == sorted(subjects), (before, after)
            assert after == []

            # after a reconnect (nats-py replays the subscriptions; the connector syncs again)
            proxy.cut()
            await wait_until(lambda: conn.state != "connected", what="disconnect noticed")
            proxy.resume()
            await conn.wait_connected(10)
            assert len(proxy.sent) == 2
            before, after = subs_before_last_ping(bytes(proxy.sent[1]))
            assert sorted(before) == sorted(subjects), (before, after)
            assert after == []


async def test_jetstream_consumers_precede_the_ping_that_reports_connected(
    rt: Any, private_nats: Any, unique_topic: str
) -> None:
    """Pull consumers (their inbox subscriptions) and the ack inbox too; a consumer deleted
    while the connection was down exists again when the connector reports connected."""
    t = unique_topic
    got: list[Reading] = []
    async with proxy_to(private_nats.url) as proxy, contextlib.AsyncExitStack() as stack:
        raw = nats.aio.client.Client()
        await raw.connect(private_nats.url, allow_reconnect=False)
        stack.push_async_callback(raw.close)
        js = raw.jetstream()
        await js.add_stream(name=t, subjects=[f"{t}.>"])
        conn = NatsConnector(proxy.url, jetstream=True, reconnect=FAST_RETRY)
        b = AimDbBuilder().with_connector(conn)
        b.configure(Reading, "in", lambda r: r.buffer(ring()).link_from(f"nats://{t}.in").finish()
                    .tap(collector(got)))
        b.configure(Reading, "in2", lambda r: r.buffer(ring()).link_from(f"nats://{t}.in2").finish())
        b.configure(Reading, "out", lambda r: r.buffer(ring()).link_to(f"nats://{t}.out").finish())
        db = await stack.enter_async_context(b.build())
        await conn.wait_connected(10)
        wire = bytes(proxy.sent[0])
        before, after = subs_before_last_ping(wire)
        assert after == [], (before, after)
        inboxes = {c.inbox for c in conn._consumers}
        assert inboxes <= set(before) and len(inboxes) == 2
        assert any(s.endswith(".*") and s.startswith("_INBOX.") for s in before)  # acks

        # the consumer is deleted while the connection is down: created again before
        # wait_connected() returns, so a value published right after it arrives
        proxy.cut()
        await wait_until(lambda: conn.state != "connected", what="disconnect noticed")
        names = [c.name for c in await js.consumers_info(t)]
        for name in names:
            await js.delete_consumer(t, name)
        proxy.resume()
        await conn.wait_connected(10)
        await js.publish(f"{t}.in", json.dumps({"sensor": "x", "seq": 1, "value": 0.0}).encode())
        await wait_until(lambda: len(got) == 1, timeout=10, what="value after the reconnect",
                         detail=lambda: db.link_statistics())
        before, after = subs_before_last_ping(bytes(proxy.sent[-1]))
        assert after == [], (before, after)


async def test_values_published_right_after_wait_connected_arrive(
    rt: Any, nats_url: str, unique_topic: str
) -> None:
    """200 fresh connectors; 10 values each, published by a plain client right after connect."""
    trials, per_trial = 200, 10
    pub = nats.aio.client.Client()
    await pub.connect(nats_url, allow_reconnect=False)
    lost: list[tuple[int, int]] = []
    try:
        for trial in range(trials):
            subject = f"{unique_topic}.{trial}"
            got: list[Reading] = []
            conn = NatsConnector(nats_url)
            b = AimDbBuilder().with_connector(conn)
            b.configure(Reading, "in", lambda r, s=subject: r.buffer(ring()).link_from(f"nats://{s}").finish()
                        .tap(collector(got)))
            async with b.build():
                await conn.wait_connected(10)
                for i in range(per_trial):
                    await pub.publish(subject, json.dumps({"sensor": "s", "seq": i, "value": 0.0}).encode())
                await pub.flush()
                with contextlib.suppress(AssertionError):
                    await wait_until(lambda: len(got) == per_trial, timeout=5)
                if len(got) != per_trial:
                    lost.append((trial, per_trial - len(got)))
    finally:
        await pub.close()
    assert lost == [], f"(trial, values lost) {lost}"
