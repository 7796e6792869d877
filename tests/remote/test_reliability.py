"""No client can break the server: time limits, nesting limits, cancellation, owned tasks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import AimdbConnector, AsyncClient, RemoteConfig, RemoteError

from ._helpers import Raw, Temp, aio, builder, served, short_tmpdir, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"


def nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` levels deep."""
    return b"[" * depth + b"]" * depth


# ------------------------------------------------------------------ idle and handshake limits


@aio
async def test_silent_clients_after_hello_are_closed_and_free_their_slots() -> None:
    async with served(max_connections=4, idle_timeout=0.5) as (_, server):
        squatters = [await Raw.open(server.unix_path) for _ in range(4)]
        for raw in squatters:
            assert "result" in await raw.hello()
        with pytest.raises(RemoteError) as ei:
            await AsyncClient.connect("unix://" + server.unix_path)
        assert ei.value.code == "too_many_connections"
        for raw in squatters:
            r = await raw.line(timeout=10)
            assert r["id"] is None and r["error"]["code"] == "idle_timeout"
            assert await raw.closed(timeout=5)
        assert await wait_until(lambda: server.statistics().connections == 0, 5)
        async with await AsyncClient.connect("unix://" + server.unix_path) as c:  # a slot is free again
            assert await c.ping() >= 0
        assert server.statistics().idle_closed == 4


@aio
async def test_subscriber_being_sent_events_and_keep_alives_are_not_idle() -> None:
    async with served(builder(ticking=True), idle_timeout=1.0) as (_, server):
        watcher = await Raw.open(server.unix_path)
        await watcher.hello()
        assert "result" in await watcher.call("record.subscribe", {"pattern": "sensor.tick"})
        pinger = await Raw.open(server.unix_path)
        await pinger.hello()
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5
        events = 0
        while loop.time() < end:
            msg = await watcher.line(timeout=5)
            assert "error" not in msg, msg
            events += "event" in msg
            await pinger.send_bytes(b"\n")  # a blank line is a keep-alive
        assert events > 10
        assert "result" in await pinger.call("ping")
        pinger.close()
        assert server.statistics().idle_closed == 0
        # The library client sends keep-alives by itself (a third of the announced limit).
        async with await AsyncClient.connect("unix://" + server.unix_path) as c:
            assert c.server_info["limits"]["idle_timeout"] == 1.0
            await asyncio.sleep(2.5)
            assert await c.ping() >= 0
        assert server.statistics().idle_closed == 0
        watcher.close()


@aio
async def test_handshake_time_is_bounded_and_counted() -> None:
    async with served(handshake_timeout=0.3) as (_, server):
        raw = await Raw.open(server.unix_path)
        await raw.send_bytes(b'{"id":1,"method":"ping"}\n')  # activity does not extend the handshake
        assert (await raw.line())["error"]["code"] == "handshake_required"
        r = await raw.line(timeout=5)
        assert r["id"] is None and r["error"]["code"] == "handshake_required"
        assert await raw.closed()
        assert server.statistics().handshake_timeouts == 1


def test_time_limits_are_validated() -> None:
    assert RemoteConfig().idle_timeout == 300.0 and RemoteConfig().handshake_timeout == 10.0
    assert RemoteConfig(idle_timeout=None).problems() == []
    assert "idle_timeout" in " ".join(RemoteConfig(idle_timeout=0).problems())
    assert "handshake_timeout" in " ".join(RemoteConfig(handshake_timeout=-1).problems())
    assert "max_depth" in " ".join(RemoteConfig(max_depth=10_000).problems())


# ------------------------------------------------------------------ nesting limits


@aio
async def test_frame_nested_too_deep_gets_an_error_and_the_session_lives() -> None:
    async with served() as (_, server):
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        await raw.send_bytes(nested(1024) + b"\n")  # 2 KB of nested arrays
        r = await raw.line()
        assert r["id"] is None and r["error"]["code"] == "frame_too_deep"
        deep_params = b'{"id":5,"method":"ping","params":{"a":' + nested(40) + b"}}\n"
        await raw.send_bytes(deep_params)
        assert (await raw.line())["error"]["code"] == "frame_too_deep"
        assert (await raw.call("ping"))["result"]["pong"] is True
        st = server.statistics()
        assert st.frames_too_deep == 2 and st.bad_frames == 2
        raw.close()


@aio
async def test_max_depth_is_configurable() -> None:
    async with served(max_depth=4) as (_, server):
        raw = await Raw.open(server.unix_path)
        assert (await raw.hello())["result"]["limits"]["max_depth"] == 4
        ok = await raw.call("ping", {"a": [[1]]})  # frame 1, params 2, a 3, [1] 4
        assert ok["result"]["pong"] is True
        too = await raw.call("ping", {"a": [[[1]]]})
        assert too["error"]["code"] == "frame_too_deep"
        assert (await raw.call("ping"))["result"]["pong"] is True
        raw.close()


async def _bad_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A peer that answers hello and subscribe, then sends garbage, a too deep frame and one event."""
    try:
        await _bad_peer_session(reader, writer)
    finally:
        writer.close()


async def _bad_peer_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readline()
        if not line:
            return
        req = json.loads(line)
        if req["method"] == "hello":
            writer.write(json.dumps({"id": req["id"], "result": {"protocol": "1.1"}}).encode() + b"\n")
        elif req["method"] == "record.subscribe":
            sub = {"sub": "s1", "keys": ["station.1.temp"], "snapshot": 0, "queue": 8}
            writer.write(json.dumps({"id": req["id"], "result": sub}).encode() + b"\n")
            writer.write(b"\x00garbage{{{\n")
            writer.write(b'{"id":99,"result":' + nested(3000) + b"}\n")
            event = {
                "event": "update",
                "sub": "s1",
                "seq": 1,
                "key": "station.1.temp",
                "value": {"celsius": 5.0},
            }
            writer.write(json.dumps(event).encode() + b"\n")
        await writer.drain()


@aio
async def test_link_reader_skips_garbage_and_too_deep_frames_counted() -> None:
    with short_tmpdir() as d:
        path = os.path.join(d, "peer.sock")
        peer = await asyncio.start_unix_server(_bad_peer, path)
        conn = AimdbConnector("unix://" + path, backoff=(0.02, 0.1))
        b = AimDbBuilder().with_connector(conn)
        b.configure(
            Temp,
            "mirror.temp",
            lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).link_from("aimdb://station.1.temp").finish(),
        )
        try:
            async with b.build() as db:
                rd = db.buffer("mirror.temp").subscribe()
                assert await asyncio.wait_for(rd.recv(), 5) == Temp(5.0)
                st = conn.statistics()
                assert st.bad_frames == 2 and st.connects == 1 and st.state == "connected"
        finally:
            peer.close()
            await peer.wait_closed()


# ------------------------------------------------------------------ cancellation is never swallowed


class BlockingWriter:
    """A stream writer whose ``drain`` waits until released (a peer that does not read)."""

    def __init__(self, blocked: bool = True) -> None:
        self.data = bytearray()
        self.in_drain = asyncio.Event()
        self.release = asyncio.Event()
        if not blocked:
            self.release.set()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        self.in_drain.set()
        await self.release.wait()

    def close(self) -> None:
        self.closed = True


HELLO = b'{"id":1,"method":"hello","params":{"version":"1.1"}}\n'


async def _stuck_session(server: object) -> tuple[asyncio.Task[None], BlockingWriter]:
    """A session that ended reading and now waits for its writer to flush (never)."""
    reader = asyncio.StreamReader()
    reader.feed_data(HELLO)
    writer = BlockingWriter()
    task = asyncio.get_running_loop().create_task(server.serve_stream(reader, writer))  # type: ignore[attr-defined]
    await asyncio.wait_for(writer.in_drain.wait(), 5)
    reader.feed_eof()
    await asyncio.sleep(0.05)  # the reader saw EOF: the session is in its closing path
    return task, writer


async def _cancel_in_session_flush(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    task, _ = await _stuck_session(server)
    return task


async def _cancel_while_server_closes(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    task, _ = await _stuck_session(server)
    # The closing server must not turn the caller's cancellation into a normal return.
    closer = asyncio.get_running_loop().create_task(server.aclose())  # type: ignore[attr-defined]
    after.append(closer)
    await asyncio.sleep(0.05)
    assert not closer.done()
    return task


async def _cancel_in_refusal_drain(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    occupant = await Raw.open(server.unix_path)  # type: ignore[attr-defined]
    await occupant.hello()
    after.append(asyncio.sleep(0, occupant.close()))
    reader = asyncio.StreamReader()
    writer = BlockingWriter()
    task = asyncio.get_running_loop().create_task(server.serve_stream(reader, writer))  # type: ignore[attr-defined]
    await asyncio.wait_for(writer.in_drain.wait(), 5)
    return task


async def _cancel_in_refusal_discard(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    occupant = await Raw.open(server.unix_path)  # type: ignore[attr-defined]
    await occupant.hello()
    after.append(asyncio.sleep(0, occupant.close()))
    reader = asyncio.StreamReader()  # never EOF: the refusal waits for the peer to hang up
    writer = BlockingWriter(blocked=False)
    task = asyncio.get_running_loop().create_task(server.serve_stream(reader, writer))  # type: ignore[attr-defined]
    await asyncio.wait_for(writer.in_drain.wait(), 5)
    await asyncio.sleep(0.05)
    return task


async def _cancel_in_server_aclose(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    await _stuck_session(server)
    task = asyncio.get_running_loop().create_task(server.aclose())  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)  # waiting for the stuck session to end
    return task


async def _cancel_in_client_aclose(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    client = await AsyncClient.connect("unix://" + server.unix_path)  # type: ignore[attr-defined]
    task = asyncio.get_running_loop().create_task(client.aclose())
    await asyncio.sleep(0)  # aclose now waits for its read task to end
    return task


async def _cancel_in_client_wait_closed(server: object, after: list[Awaitable[object]]) -> asyncio.Task[None]:
    client = await AsyncClient.connect("unix://" + server.unix_path)  # type: ignore[attr-defined]
    after.append(client.aclose())
    task = asyncio.get_running_loop().create_task(client.wait_closed())
    await asyncio.sleep(0.05)
    return task


CANCEL_POINTS: dict[str, Callable[[object, list[Awaitable[object]]], Awaitable[asyncio.Task[None]]]] = {
    "session-flush": _cancel_in_session_flush,
    "session-flush-while-server-closes": _cancel_while_server_closes,
    "refusal-drain": _cancel_in_refusal_drain,
    "refusal-discard": _cancel_in_refusal_discard,
    "server-aclose": _cancel_in_server_aclose,
    "client-aclose": _cancel_in_client_aclose,
    "client-wait-closed": _cancel_in_client_wait_closed,
}


@pytest.mark.parametrize("point", list(CANCEL_POINTS))
@aio
async def test_cancellation_at_each_await_of_the_close_paths_propagates(point: str) -> None:
    async with served(max_connections=1 if point.startswith("refusal") else 16) as (_, server):
        after: list[Awaitable[object]] = []
        task = await CANCEL_POINTS[point](server, after)
        assert not task.done()
        task.cancel()
        await asyncio.wait([task], timeout=5)
        assert task.done(), "the cancelled task is still running"
        assert task.cancelled(), f"the cancellation was swallowed: {task!r}"
        if point == "server-aclose":
            assert server.unix_path is not None and not os.path.exists(server.unix_path)
        if point.startswith("session"):
            assert await wait_until(lambda: server.statistics().connections == 0, 5)
        for aw in after:
            await asyncio.wait_for(aw, 10)


# ------------------------------------------------------------------ every task has an owner


@aio
async def test_a_failing_feed_task_is_logged_once_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aimdb.remote import _fanout

    real_pump = _fanout.Feed.pump

    def pump(self: _fanout.Feed) -> None:
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("aimdb.remote.feed") and self.subs:
            raise RuntimeError("boom in the feed")
        real_pump(self)

    monkeypatch.setattr(_fanout.Feed, "pump", pump)
    caplog.set_level(logging.ERROR, "aimdb.remote")
    async with served() as (db, server):
        async with await AsyncClient.connect("unix://" + server.unix_path) as c:
            await c.subscribe("station.1.temp")
            db.producer(Temp, "station.1.temp").produce(Temp(1.0))
            assert await wait_until(lambda: server.statistics().failures == 1, 5)
            st = server.statistics()
            assert "boom in the feed" in (st.last_error or "") and st.last_error_at is not None
            assert await c.ping() >= 0  # the session is unaffected
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "aimdb.remote.feed[station.1.temp]" in failures[0].getMessage()


@aio
async def test_a_failing_writer_ends_its_session_only_logged_once_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aimdb.remote import _fanout

    def take(self: _fanout.Subscription, n: int) -> bytes:
        raise RuntimeError("boom in the writer")

    monkeypatch.setattr(_fanout.Subscription, "take", take)
    caplog.set_level(logging.ERROR, "aimdb.remote")
    async with served() as (db, server):
        db.producer(Temp, "station.1.temp").produce(Temp(1.0))
        other = await AsyncClient.connect("unix://" + server.unix_path)
        victim = await Raw.open(server.unix_path)
        await victim.hello()
        await victim.send_bytes(
            b'{"id":2,"method":"record.subscribe","params":{"pattern":"station.1.temp"}}\n'
        )
        assert await victim.closed(timeout=5)
        assert await wait_until(lambda: server.statistics().connections == 1, 5)
        st = server.statistics()
        assert st.failures == 1 and "boom in the writer" in (st.last_error or "")
        assert await other.ping() >= 0
        await other.aclose()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info is not None


def test_server_statistics_is_an_object_with_as_dict() -> None:
    from aimdb.remote import RemoteServerStatistics

    assert "failures" in RemoteServerStatistics.__slots__


# ------------------------------------------------------------------ one list of methods


def test_one_method_table_used_by_dispatch_and_docs() -> None:
    from aimdb.remote import ERROR_CODES, METHODS, _methods

    assert tuple(_methods.HANDLERS) == METHODS
    doc = (DOCS / "remote-protocol.md").read_text()
    table = re.findall(r"^\| `([a-z.]+)` \|", doc, flags=re.M)
    assert [m for m in table if m in METHODS] == list(METHODS)
    for code in ERROR_CODES:
        assert f"| `{code}` |" in doc, code


def test_nesting_check_ignores_brackets_in_strings_and_stops_early() -> None:
    from aimdb.remote._protocol import parse_frame, too_deep

    assert not too_deep(b'{"a":[[1]]}', 3) and too_deep(b'{"a":[[[1]]]}', 3)
    assert not too_deep(b'{"a":"[[[[[[[[[[{{{{{{"}', 2)
    assert not too_deep(b'{"a":"\\"[[[[[[[[[[[["}', 2)  # an escaped quote does not end the string
    assert too_deep(b'{"a":"\\\\","b":[[[[[1]]]]]}', 3)  # an escaped backslash does
    assert not too_deep(b"[{}, {}, {}, {}, {}, {}]", 2)  # width is not depth
    deep = parse_frame(nested(100_000))  # far beyond any recursion limit: no RecursionError
    assert not isinstance(deep, dict) and deep.code == "frame_too_deep"
    ok = parse_frame(b'{"id":1,"method":"ping","params":{"s":"' + b"[" * 100 + b'"}}')
    assert isinstance(ok, dict) and ok["params"]["s"] == "[" * 100


@aio
async def test_a_peer_that_never_reads_is_closed_for_good_after_the_idle_limit() -> None:
    import socket
    from dataclasses import dataclass

    @dataclass
    class Blob:
        data: str

    b = AimDbBuilder()
    b.configure(Blob, "fast.blob", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)))
    async with served(b, idle_timeout=0.5) as (db, server):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.unix_path)
        sock.setblocking(False)
        fds_with_session = len(os.listdir("/proc/self/fd")) + 1  # + the server's end, accepted next
        hello = b'{"id":1,"method":"hello","params":{"version":"1.1"}}\n'
        await asyncio.get_running_loop().sock_sendall(
            sock, hello + b'{"id":2,"method":"record.subscribe","params":{"pattern":"fast.blob"}}\n'
        )
        assert await wait_until(lambda: server.statistics().subscriptions == 1, 5)
        producer = db.producer(Blob, "fast.blob")
        for _ in range(200):  # ~2 MB: far more than the socket buffers hold
            for _ in range(10):
                producer.produce(Blob("x" * 1000))
            await asyncio.sleep(0.005)
        assert await wait_until(lambda: server.statistics().idle_closed == 1, 10)
        # Its end of the connection is released although it never took the pending bytes.
        assert await wait_until(lambda: len(os.listdir("/proc/self/fd")) == fds_with_session - 1, 5)
        assert server.statistics().connections == 0
        sock.close()


@aio
async def test_events_the_client_drops_for_an_application_that_does_not_read_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aimdb.remote import _client

    monkeypatch.setattr(_client, "_CLIENT_QUEUE", 4)
    async with served() as (db, server):
        async with await AsyncClient.connect("unix://" + server.unix_path) as c:
            sub = await c.subscribe("station.1.log", snapshot=False)
            producer = db.producer(Temp, "station.1.log")
            for i in range(6):
                producer.produce(Temp(float(i)))
            assert await wait_until(lambda: sub.dropped == 2, 5)
            got = [(await sub.next(2)).value["celsius"] for _ in range(4)]
            assert got == [2.0, 3.0, 4.0, 5.0]
            assert sub.dropped == 2 and sub.missed == 2


@aio
async def test_serve_stream_applies_the_idle_limit_unless_told_not_to() -> None:
    async with served(idle_timeout=0.3) as (_, server):
        loop = asyncio.get_running_loop()
        limited_line, quiet_line = asyncio.StreamReader(), asyncio.StreamReader()
        limited_out, quiet_out = BlockingWriter(blocked=False), BlockingWriter(blocked=False)
        limited = loop.create_task(server.serve_stream(limited_line, limited_out, peer="limited"))
        quiet = loop.create_task(server.serve_stream(quiet_line, quiet_out, peer="uart", idle_limit=False))
        limited_line.feed_data(HELLO)
        quiet_line.feed_data(HELLO)
        await asyncio.wait_for(limited, 5)  # closed as idle
        assert b'"idle_timeout"' in bytes(limited_out.data)
        await asyncio.sleep(0.6)
        assert not quiet.done()  # a dedicated line may stay quiet
        assert json.loads(bytes(quiet_out.data).splitlines()[0])["result"]["limits"]["idle_timeout"] is None
        quiet_line.feed_eof()
        await asyncio.wait_for(quiet, 5)
        assert server.statistics().idle_closed == 1


@aio
async def test_events_dropped_for_a_slow_client_stay_counted_after_it_left() -> None:
    async with served() as (db, server):
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        assert "result" in await raw.call("record.subscribe", {"pattern": "station.1.log", "queue": 2})
        producer = db.producer(Temp, "station.1.log")
        for i in range(8):  # the feed takes all eight in one turn: six do not fit the queue
            producer.produce(Temp(float(i)))
        assert await wait_until(lambda: server.statistics().events_dropped == 6, 5)
        raw.close()
        assert await wait_until(lambda: server.statistics().connections == 0, 5)
        assert server.statistics().events_dropped == 6


@aio
async def test_trickling_bytes_of_a_line_that_never_ends_is_not_activity() -> None:
    async with served(idle_timeout=0.5) as (_, server):
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        closed = False
        while loop.time() < end and not closed:
            try:
                await raw.send_bytes(b"x")  # one byte every 50 ms, never a newline
            except ConnectionError:
                break
            await asyncio.sleep(0.05)
            closed = server.statistics().idle_closed == 1
        assert closed
        r = await raw.line(timeout=5)
        assert r["error"]["code"] == "idle_timeout"
        raw.close()
