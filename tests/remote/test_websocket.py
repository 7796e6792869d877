"""The remote protocol over WebSocket (``RemoteConfig(http=...)``), spoken with aiohttp and bare sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")

from aimdb import AimDbBuilder, BufferCfg  # noqa: E402
from aimdb.remote import RemoteServer  # noqa: E402

from ._helpers import Raw, Temp, aio, served, short_tmpdir, wait_until  # noqa: E402


class Ws:
    """A protocol speaker over an aiohttp client WebSocket."""

    def __init__(self, session: Any, ws: Any) -> None:
        self.session = session
        self.ws = ws
        self.next_id = 0

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return json.loads(msg.data)  # type: ignore[no-any-return]

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        frame: dict[str, Any] = {"id": self.next_id, "method": method}
        if params is not None:
            frame["params"] = params
        await self.send(json.dumps(frame))
        while True:
            msg = await self.message()
            if "event" not in msg:
                return msg

    async def hello(self, **extra: Any) -> dict[str, Any]:
        return await self.call("hello", {"version": "1.0", **extra})

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the server's close; return its close code."""
        for _ in range(100):
            msg = await self.ws.receive(timeout)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        return self.ws.close_code  # type: ignore[no-any-return]


@asynccontextmanager
async def ws_client(server: RemoteServer, origin: str | None = None) -> AsyncIterator[Ws]:
    headers = {"Origin": origin} if origin is not None else {}
    assert server.http_url is not None
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.http_url + "ws", headers=headers, max_msg_size=0) as ws:
            yield Ws(session, ws)


def http_served(b: AimDbBuilder | None = None, **cfg: Any) -> Any:
    cfg.setdefault("http", "127.0.0.1:0")
    return served(b, **cfg)


# ------------------------------------------------------------------ protocol over WebSocket


@aio
async def test_handshake_first_then_requests_one_frame_per_message() -> None:
    async with http_served() as (_, server):
        assert server.http_url is not None and server.http_url.startswith("http://127.0.0.1:")
        async with ws_client(server) as c:
            assert (await c.call("record.list"))["error"]["code"] == "handshake_required"
            res = (await c.hello(client="ws-test"))["result"]
            assert res["permissions"] == ["read"] and res["dashboard"] == server.http_url
            assert (await c.call("ping"))["result"]["pong"] is True
            keys = [r["key"] for r in (await c.call("record.list"))["result"]["records"]]
            assert "station.1.temp" in keys and "hidden.secret" not in keys
        assert await wait_until(lambda: server.statistics().connections == 0, 5)
        assert server.statistics().connections_total == 1


@aio
async def test_wrong_token_is_refused_and_closed() -> None:
    async with http_served(token="s3cret") as (_, server):
        async with ws_client(server) as c:
            assert (await c.hello(token="wrong"))["error"]["code"] == "auth_failed"
            assert await c.closed() == 1000
        async with ws_client(server) as c:
            assert (await c.hello(token="s3cret"))["result"]["authenticated"] is True
        assert server.statistics().auth_failures == 1


@aio
async def test_read_only_by_default_and_the_write_allow_list_applies() -> None:
    value = {"key": "config.setpoint", "value": {"celsius": 20.5}}
    async with http_served() as (_, server):
        async with ws_client(server) as c:
            await c.hello()
            assert (await c.call("record.set", value))["error"]["code"] == "permission_denied"
    async with http_served(writable=["config.setpoint"]) as (db, server):
        async with ws_client(server) as c:
            await c.hello()
            assert "result" in await c.call("record.set", value)
            other = {"key": "config.cmd", "value": {"celsius": 1.0}}
            assert (await c.call("record.set", other))["error"]["code"] == "permission_denied"
        assert db.record_statistics("config.setpoint")["buffer"]["produced"] == 1


@aio
async def test_subscription_events_arrive_one_per_message() -> None:
    async with http_served() as (db, server):
        async with ws_client(server) as c:
            await c.hello()
            sub = (await c.call("record.subscribe", {"pattern": "station.1.log"}))["result"]
            producer = db.producer(Temp, "station.1.log")
            for i in range(5):
                producer.produce(Temp(float(i)))
            got = []
            while len(got) < 5:
                msg = await c.message()
                if msg.get("event") == "update":
                    got.append(msg["value"]["celsius"])
                    assert msg["key"] == "station.1.log" and msg["sub"] == sub["sub"]
            assert got == [0.0, 1.0, 2.0, 3.0, 4.0]


@aio
async def test_static_files_and_index_are_served() -> None:
    with short_tmpdir() as d:
        with open(os.path.join(d, "index.html"), "w") as fh:
            fh.write("<p>hello page</p>")
        with open(os.path.join(d, "app.js"), "w") as fh:
            fh.write("console.log(1)")
        async with http_served(static_dir=d) as (_, server):
            url = server.http_url
            assert url is not None
            async with aiohttp.ClientSession() as s:
                async with s.get(url) as r:
                    assert r.status == 200 and "hello page" in await r.text()
                async with s.get(url + "app.js") as r:
                    assert r.status == 200 and await r.text() == "console.log(1)"
                async with s.get(url + "../../etc/passwd") as r:
                    assert r.status in (403, 404)
                async with s.get(url + "missing.css") as r:
                    assert r.status == 404


@aio
async def test_a_websocket_that_never_says_hello_is_closed_after_the_handshake_timeout() -> None:
    async with http_served(handshake_timeout=0.3) as (_, server):
        async with ws_client(server) as c:
            err = await c.message()
            assert err["id"] is None and err["error"]["code"] == "handshake_required"
            assert await c.closed() == 1000
        assert server.statistics().handshake_timeouts == 1


def test_bad_http_settings_are_configuration_problems() -> None:
    from aimdb.remote import RemoteConfig

    assert RemoteConfig(http="127.0.0.1:0").problems() == []
    assert any("http" in p for p in RemoteConfig(http="unix:///tmp/x.sock").problems())
    assert any("http" in p for p in RemoteConfig(http="127.0.0.1:notaport").problems())
    assert any("allowed_origins" in p for p in RemoteConfig(allowed_origins="http://a").problems())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http"):
        RemoteServer(None, RemoteConfig(http="nohost:"))  # type: ignore[arg-type]


# ------------------------------------------------------------------ Origin check


@aio
async def test_foreign_origin_gets_403_before_upgrade_and_is_counted() -> None:
    async with http_served(allowed_origins=["https://ops.example"]) as (_, server):
        url = server.http_url
        assert url is not None
        port = url.rstrip("/").rsplit(":", 1)[1]
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                await s.ws_connect(url + "ws", headers={"Origin": "http://evil.example"})
            assert ei.value.status == 403
        assert server.statistics().origin_refused == 1
        assert server.statistics().connections_total == 0
        for ok in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", "https://ops.example/", None):
            async with ws_client(server, origin=ok) as c:
                assert "result" in await c.hello()
        assert server.statistics().origin_refused == 1


# ------------------------------------------------------------------ bad input


@aio
async def test_oversized_message_gets_frame_too_large_then_close_1009() -> None:
    async with http_served(max_frame=1000) as (_, server):
        async with ws_client(server) as c:
            await c.hello()
            await c.send(json.dumps({"id": 1, "method": "ping", "params": {"pad": "x" * 2000}}))
            err = await c.message()
            assert err["id"] is None and err["error"]["code"] == "frame_too_large"
            assert await c.closed() == 1009
        assert server.statistics().bad_frames == 1


@aio
async def test_binary_and_malformed_messages_get_parse_error_and_the_session_goes_on() -> None:
    async with http_served() as (_, server):
        async with ws_client(server) as c:
            await c.hello()
            await c.ws.send_bytes(b'{"id": 1, "method": "ping"}')
            assert (await c.message())["error"]["code"] == "parse_error"
            await c.send('{"id": 2, "method": ')
            assert (await c.message())["error"]["code"] == "parse_error"
            await c.send("")  # a keep-alive: no answer
            assert (await c.call("ping"))["result"]["pong"] is True
        assert server.statistics().bad_frames == 2


# ------------------------------------------------------------------ a client that never reads


def _masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _stuck_client(url: str, frames: list[dict[str, Any]]) -> socket.socket:
    """Open a WebSocket on a bare socket, send ``frames`` and never read again."""
    host, port = url[len("http://") :].rstrip("/").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    for f in frames:
        sock.sendall(_masked(json.dumps(f).encode()))
    return sock


@dataclass
class Blob:
    text: str


@aio
async def test_a_client_that_never_reads_loses_events_counted_and_others_are_unaffected() -> None:
    b = AimDbBuilder()
    b.configure(Blob, "blob", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)))
    async with http_served(b) as (db, server):
        url = server.http_url
        assert url is not None
        frames = [
            {"id": 1, "method": "hello", "params": {"version": "1.0"}},
            {"id": 2, "method": "record.subscribe", "params": {"pattern": "blob", "queue": 8}},
        ]
        loop = asyncio.get_running_loop()
        stuck = await loop.run_in_executor(None, _stuck_client, url, frames)
        try:
            assert await wait_until(lambda: server.statistics().subscriptions == 1, 5)
            producer = db.producer(Blob, "blob")
            pad = "x" * 16384  # big events fill the socket buffers of the stuck client quickly
            async with ws_client(server) as other:
                await other.hello()
                sub = await other.call("record.subscribe", {"pattern": "blob"})
                assert "result" in sub
                seen = 0
                for round_ in range(200):  # bounded: until the stuck client's queue overflows
                    for _ in range(8):
                        producer.produce(Blob(pad))
                    while seen < (round_ + 1) * 8:  # the reading client gets every value
                        msg = await other.message()
                        if msg.get("event") == "update":
                            seen += 1
                    if server.statistics().events_dropped > 0:
                        break
                assert server.statistics().events_dropped > 0
                assert (await other.call("ping"))["result"]["pong"] is True
        finally:
            stuck.close()
        assert await wait_until(lambda: server.statistics().connections == 0, 10)


# ------------------------------------------------------------------ limits and shutdown


@aio
async def test_max_connections_is_shared_with_the_socket_listeners() -> None:
    async with http_served(max_connections=1) as (_, server):
        assert server.unix_path is not None
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        async with ws_client(server) as c:
            msg = await c.message()
            assert msg["error"]["code"] == "too_many_connections"
            assert await c.closed() == 1000
        raw.close()
        assert server.statistics().rejected == 1


@aio
async def test_closing_the_server_closes_websockets_with_going_away() -> None:
    async with http_served() as (_, server):
        async with ws_client(server) as c:
            await c.hello()
            closing = asyncio.get_running_loop().create_task(server.aclose())
            assert await c.closed() == 1001
            await asyncio.wait_for(closing, 10)
        assert server.http_url is None


# ------------------------------------------------------------------ aiohttp only when asked for

_NO_HTTP = """
import asyncio, sys, tempfile, os
from aimdb import AimDbBuilder
from aimdb.remote import RemoteConfig, start_server
import aimdb.connectors

async def main():
    d = tempfile.mkdtemp()
    async with AimDbBuilder().build() as db:
        await start_server(db, RemoteConfig(unix=os.path.join(d, "s.sock"), tcp="127.0.0.1:0"))
    print("aiohttp" in sys.modules, "prometheus_client" in sys.modules)

asyncio.run(main())
"""

_MISSING = """
import asyncio, sys
sys.modules["aiohttp"] = None  # as if not installed
from aimdb import AimDbBuilder
from aimdb.remote import RemoteConfig, start_server

async def main():
    async with AimDbBuilder().build() as db:
        try:
            await start_server(db, RemoteConfig(unix=None, http="127.0.0.1:0"))
        except ImportError as exc:
            print(exc)

asyncio.run(main())
"""


def test_aiohttp_is_imported_only_when_http_is_configured() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NO_HTTP], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
    out = subprocess.run([sys.executable, "-c", _MISSING], capture_output=True, text=True, timeout=60)
    assert "pip install 'aimdb[dashboard]'" in out.stdout, out.stdout + out.stderr
