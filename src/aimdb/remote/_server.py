"""The remote-access server: sessions, permissions, limits and subscription fan-out.

One :class:`RemoteServer` serves one running database over a Unix socket, TCP, or any
byte stream. Requests of one connection are handled in order; replies and subscription
events share one writer task per connection. Fan-out is decoupled from producers: for
each record with at least one remote subscriber the server keeps *one* reader (a
"feed"), so a ``produce()`` costs the producer one extra wake-up at most, whatever the
number of clients; the feed encodes each value once and appends it to every matching
subscription's bounded queue. A full queue drops its oldest event; sequence numbers
keep counting, so the client sees the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import Buffer, BufferListener
from .._aio import wait_for
from .._core._connector import Connector
from .._errors import BufferClosed, BufferEmpty, BufferLagged, DeserializeError, TypeMismatch
from . import _protocol as P
from ._discovery import default_socket_path, ensure_runtime_dir, someone_listens

_log = logging.getLogger("aimdb.remote")

AUTO = "auto"
_READ_CHUNK = 64 * 1024
_REPLY_BACKLOG = 1 << 20  # bytes of unsent replies before the session stops reading


@dataclass
class RemoteConfig:
    """Configuration of a remote-access server.

    Attributes:
        name: instance name, shown by ``hello`` and used for the default socket file
            ``<runtime dir>/<name>.sock``.
        unix: Unix socket path; ``"auto"`` (default) for the default path, ``None`` for
            no Unix socket.
        tcp: ``"HOST:PORT"`` to also listen on TCP (port 0 picks a free port); ``None``
            (default) for no TCP. Use ``127.0.0.1`` unless you mean to expose it.
        token: when set, ``hello`` must carry this token (compared in constant time)
            before anything else is answered.
        writable: allow-list of record keys (or ``*``/``#`` patterns) that ``record.set``
            may write. Empty (default) means read-only. Records with a source,
            transform or join, or declared ``remote(writable=False)``, stay read-only.
        allow_reset: whether ``stats.reset`` is allowed.
        max_connections: concurrent connections; further ones get ``too_many_connections``.
        max_subscriptions: subscriptions (and drain cursors) per connection.
        max_frame: largest request frame in bytes.
        queue_size: events a subscription holds for a slow client before dropping the
            oldest (also the largest ``queue`` a client may ask for).
        handshake_timeout: seconds a new connection has to complete ``hello``.
        socket_mode: file mode of the Unix socket.
    """

    name: str = "aimdb"
    unix: str | None = AUTO
    tcp: str | None = None
    token: str | None = None
    writable: Sequence[str] = field(default_factory=tuple)
    allow_reset: bool = False
    max_connections: int = 16
    max_subscriptions: int = 32
    max_frame: int = P.DEFAULT_MAX_FRAME
    queue_size: int = 256
    handshake_timeout: float = 10.0
    socket_mode: int = 0o600

    def problems(self) -> list[str]:
        """Return what is wrong with this configuration (empty when valid)."""
        out = []
        for name in ("max_connections", "max_subscriptions", "max_frame", "queue_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                out.append(f"{name} must be a positive int, got {v!r}")
        if self.tcp is not None:
            try:
                ep = P.parse_endpoint(self.tcp if "://" in self.tcp else "tcp://" + self.tcp)
                if ep.kind != "tcp":
                    out.append(f"tcp must be HOST:PORT, got {self.tcp!r}")
            except ValueError as exc:
                out.append(str(exc))
        if isinstance(self.writable, str):
            out.append("writable must be a list of keys, not a string")
        return out


class _Event:
    __slots__ = ("key", "kind", "raw", "seq", "ts")

    def __init__(self, seq: int, kind: bytes, key: bytes, raw: bytes, ts: int) -> None:
        self.seq = seq
        self.kind = kind
        self.key = key
        self.raw = raw
        self.ts = ts


class _Subscription:
    """Server side of one ``record.subscribe``: bounded queue plus sequence numbers."""

    __slots__ = ("delivered", "dropped", "feeds", "id", "id_json", "keys", "limit", "queue", "seq", "session")

    def __init__(self, session: _Session, sub_id: str, keys: list[str], limit: int) -> None:
        self.session = session
        self.id = sub_id
        self.id_json = msgspec.json.encode(sub_id)
        self.keys = keys
        self.limit = limit
        self.queue: deque[_Event] = deque()
        self.seq = 0
        self.dropped = 0
        self.delivered = 0
        self.feeds: list[_Feed] = []

    def push(self, kind: bytes, key: bytes, raw: bytes, ts: int) -> None:
        self.seq += 1
        q = self.queue
        if len(q) >= self.limit and kind == b"update":
            q.popleft()
            self.dropped += 1
        q.append(_Event(self.seq, kind, key, raw, ts))
        self.session.wake()

    def skip(self, n: int) -> None:
        """Account for ``n`` values lost before they reached this subscription."""
        self.seq += n
        self.dropped += n

    def frame(self, ev: _Event) -> bytes:
        return b"".join(
            (
                b'{"event":"',
                ev.kind,
                b'","sub":',
                self.id_json,
                b',"seq":',
                str(ev.seq).encode(),
                b',"key":',
                ev.key,
                b',"value":',
                ev.raw,
                b',"ts":',
                str(ev.ts).encode(),
                b"}\n",
            )
        )


def _latest_value(buf: Buffer[Any] | None) -> tuple[bool, Any]:
    """Return ``(has_value, value)``: the buffer's newest held value, nothing consumed."""
    if buf is None:
        return False, None
    try:
        return True, buf.latest()
    except BufferEmpty:
        return False, None


class _Feed:
    """One server-side reader of one record, shared by every subscription to it."""

    def __init__(
        self, server: RemoteServer, key: str, buf: Buffer[Any], encode: Callable[[Any], bytes]
    ) -> None:
        self.server = server
        self.key = key
        self.key_json = msgspec.json.encode(key)
        self.buf = buf
        self.encode = encode
        self.subs: list[_Subscription] = []
        self.kind = buf.kind
        self.reader: Any = None
        self.listener: BufferListener | None = None
        self.fresh = False  # mailbox: produced into since the last pump
        self.closed = False
        if self.kind == "mailbox":
            # Subscribing a reader to a mailbox would steal commands from its consumers:
            # watch the slot instead (non-consuming). The listener runs inside produce,
            # so even a pump that runs before the feed task wakes sees the new value.
            try:
                self.listener = buf.add_listener(self._mark_fresh)
            except BufferClosed:
                self.closed = True
        else:
            self.reader = buf.subscribe()
            if self.kind == "single_latest":
                with contextlib.suppress(BufferEmpty, BufferClosed):
                    self.reader.try_recv()  # the current value is part of the snapshot
        self.task: asyncio.Task[None] | None = None

    def _mark_fresh(self) -> None:
        self.fresh = True

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"aimdb.remote.feed[{self.key}]")

    def _dispatch(self, value: Any, ts: int) -> None:
        try:
            raw = self.encode(value)
        except Exception as exc:
            self.server.encode_errors += 1
            _log.warning("cannot encode %r for remote subscribers: %s", self.key, exc)
            return
        key = self.key_json
        for s in self.subs:
            s.push(b"update", key, raw, ts)

    def pump(self) -> None:
        """Deliver everything pending to the current subscribers (synchronously)."""
        if self.closed:
            return
        ts = time.time_ns()
        if self.kind == "mailbox":
            buf = self.buf
            if self.fresh:
                self.fresh = False
                has, value = _latest_value(buf)
                if has:
                    self._dispatch(value, ts)
            if buf.closed:
                self.closed = True
            return
        reader = self.reader
        while True:
            try:
                items = reader.try_recv_batch(256)
            except BufferLagged as exc:
                self.server.lagged += exc.missed
                for s in self.subs:
                    s.skip(exc.missed)
                continue
            except BufferClosed:
                self.closed = True
                return
            if not items:
                return
            for v in items:
                self._dispatch(v, ts)

    async def _run(self) -> None:
        buf = self.buf
        while not self.closed:
            self.pump()
            if self.closed:
                break
            # Registers its wait before suspending: nothing produced after the pump above
            # is missed, and a produce costs nothing while this task is busy.
            await buf.wait_changed()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.listener is not None:
            self.buf.remove_listener(self.listener)
            self.listener = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.closed = True


class _RemoteFailure(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def _need_str(params: dict[str, Any], name: str, *aliases: str) -> str:
    for n in (name, *aliases):
        v = params.get(n)
        if v is not None:
            if not isinstance(v, str) or not v:
                raise _RemoteFailure(P.INVALID_PARAMS, f"{name!r} must be a non-empty string")
            return v
    raise _RemoteFailure(P.INVALID_PARAMS, f"missing parameter {name!r}")


def _opt_int(params: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = params.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _RemoteFailure(P.INVALID_PARAMS, f"{name!r} must be an integer in {lo}..{hi}")
    return v


class _Session:
    """One connection: handshake state, subscriptions, drain cursors, writer task."""

    def __init__(self, server: RemoteServer, reader: asyncio.StreamReader, writer: Any, peer: str) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.ready = False
        self.client = ""
        self.subs: dict[str, _Subscription] = {}
        self.drains: dict[str, Any] = {}
        self.next_sub = 0
        self.replies: deque[bytes] = deque()
        self.reply_bytes = 0
        self.closing = False
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        self.requests = 0
        self.notification_errors = 0

    # -------------------------------------------------------------- output

    def wake(self) -> None:
        self._wake.set()

    def send(self, frame: bytes) -> None:
        self.replies.append(frame)
        self.reply_bytes += len(frame)
        self._wake.set()

    async def _writer_loop(self) -> None:
        w = self.writer
        try:
            while True:
                wrote = False
                replies = self.replies
                while replies:
                    frame = replies.popleft()
                    self.reply_bytes -= len(frame)
                    w.write(frame)
                    wrote = True
                for s in list(self.subs.values()):
                    q = s.queue
                    if q:
                        n = min(len(q), 512)
                        w.write(b"".join(s.frame(q.popleft()) for _ in range(n)))
                        s.delivered += n
                        wrote = True
                if wrote:
                    self._flushed.set()
                    await w.drain()
                    continue
                self._flushed.set()
                self._wake.clear()
                if self.replies or any(s.queue for s in self.subs.values()):
                    continue
                if self.closing:
                    return
                await self._wake.wait()
        except (ConnectionError, OSError, RuntimeError):
            self.closing = True
            with contextlib.suppress(Exception):
                w.close()

    # -------------------------------------------------------------- input

    async def run(self) -> None:
        server = self.server
        cfg = server.config
        writer_task = asyncio.get_running_loop().create_task(self._writer_loop(), name="aimdb.remote.writer")
        decoder = P.FrameDecoder(cfg.max_frame)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.handshake_timeout
        try:
            while not self.closing:
                if self.ready:
                    data = await self.reader.read(_READ_CHUNK)
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        self.send(P.error_frame(None, P.HANDSHAKE_REQUIRED, "handshake timed out"))
                        break
                    try:
                        data = await wait_for(self.reader.read(_READ_CHUNK), left)
                    except asyncio.TimeoutError:
                        continue
                if not data:
                    break
                for item in decoder.feed(data):
                    if isinstance(item, P.FrameError):
                        server.bad_frames += 1
                        self.send(P.error_frame(None, item.code, item.message))
                    else:
                        self._handle(item)
                    if self.closing:
                        break
                if self.reply_bytes > _REPLY_BACKLOG:
                    self._flushed.clear()
                    await self._flushed.wait()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closing = True
            self._wake.set()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await wait_for(asyncio.shield(writer_task), 1.0)
            writer_task.cancel()
            self.cleanup()
            with contextlib.suppress(Exception):
                self.writer.close()

    def cleanup(self) -> None:
        """Release every subscription and drain cursor (idempotent)."""
        for s in list(self.subs.values()):
            self.server._unsubscribe(s)
        self.subs.clear()
        for r in self.drains.values():
            if r is not None:
                r.close()
        self.drains.clear()

    def _handle(self, frame: bytes) -> None:
        server = self.server
        obj = P.parse_frame(frame)
        if isinstance(obj, P.FrameError):
            server.bad_frames += 1
            self.send(P.error_frame(None, obj.code, obj.message))
            return
        notify = "id" not in obj  # a notification: never answered, failures only counted
        req_id = obj.get("id")
        if isinstance(req_id, (dict, list)):
            self.send(P.error_frame(None, P.INVALID_REQUEST, "'id' must be a number, string or null"))
            return
        method = obj.get("method")
        if not isinstance(method, str):
            self._fail(notify, req_id, P.INVALID_REQUEST, "missing 'method' (a string)")
            return
        params = obj.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self._fail(notify, req_id, P.INVALID_PARAMS, "'params' must be an object")
            return
        self.requests += 1
        server.requests += 1
        handler = _METHODS.get(method)
        if handler is None:
            self._fail(
                notify, req_id, P.METHOD_NOT_FOUND, f"unknown method {method!r}", {"methods": list(P.METHODS)}
            )
            return
        if not self.ready and method != "hello":
            self._fail(notify, req_id, P.HANDSHAKE_REQUIRED, "send 'hello' first")
            return
        try:
            result = handler(self, params)
        except _RemoteFailure as f:
            self._fail(notify, req_id, f.code, f.message, f.details)
            return
        except Exception as exc:  # a bug must not end the session
            _log.exception("remote method %s failed", method)
            self._fail(notify, req_id, P.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return
        if not notify:
            self.send(P.result_frame(req_id, result))

    def _fail(self, notify: bool, req_id: Any, code: str, message: str, details: Any = None) -> None:
        """Answer a failed request with an error frame; count (and log once) a failed notification."""
        if not notify:
            self.send(P.error_frame(req_id, code, message, details))
            return
        self.notification_errors += 1
        self.server.notification_errors += 1
        if self.notification_errors == 1:
            _log.warning("remote peer %s: notification failed (%s): %s", self.peer, code, message)

    # -------------------------------------------------------------- methods

    def m_hello(self, params: dict[str, Any]) -> Any:
        server = self.server
        cfg = server.config
        version = params.get("version")
        if not P.version_compatible(version):
            self.closing = True
            raise _RemoteFailure(
                P.VERSION_MISMATCH,
                f"protocol version {version!r} is not compatible with {P.PROTOCOL_VERSION}",
                {"server_version": P.PROTOCOL_VERSION},
            )
        authenticated = False
        if cfg.token is not None:
            token = params.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), cfg.token.encode()):
                server.auth_failures += 1
                self.closing = True
                raise _RemoteFailure(P.AUTH_FAILED, "missing or wrong token")
            authenticated = True
        client = params.get("client")
        self.client = client if isinstance(client, str) else ""
        self.ready = True
        writable = server.writable_keys()
        return {
            "protocol": P.PROTOCOL_VERSION,
            "server": "aimdb-python",
            "version": _aimdb_version(),
            "name": cfg.name,
            "pid": os.getpid(),
            "permissions": ["read", "write"] if writable else ["read"],
            "writable": writable,
            "authenticated": authenticated,
            "records": len(server.readable_infos()),
            "limits": {
                "max_connections": cfg.max_connections,
                "max_subscriptions": cfg.max_subscriptions,
                "max_frame": cfg.max_frame,
                "queue_size": cfg.queue_size,
            },
        }

    def m_ping(self, params: dict[str, Any]) -> Any:
        return {"pong": True, "ts": time.time_ns()}

    def m_list(self, params: dict[str, Any]) -> Any:
        server = self.server
        pattern = params.get("pattern")
        if pattern is not None and (not isinstance(pattern, str) or not pattern):
            raise _RemoteFailure(P.INVALID_PARAMS, "'pattern' must be a non-empty string")
        writable = set(server.writable_keys())
        out = []
        for info in server.readable_infos():
            if pattern is not None and not P.pattern_matches(pattern, info.key):
                continue
            d = info.as_dict()
            d.pop("remote_readable", None)
            d["writable"] = info.key in writable
            buf = server.db.buffer(info.key)
            d["has_value"] = _latest_value(buf)[0]
            d["stats"] = buf.statistics().as_dict() if buf is not None else None
            out.append(d)
        return {"records": out}

    def m_get(self, params: dict[str, Any]) -> Any:
        server = self.server
        key = _need_str(params, "key", "name", "record")
        info = server.info(key)
        has, value = _latest_value(server.db.buffer(key))
        if not has:
            raise _RemoteFailure(P.NO_VALUE, f"record {key!r} has no value yet")
        return {"key": key, "value": msgspec.Raw(server.encoder(info)(value))}

    def m_set(self, params: dict[str, Any]) -> Any:
        server = self.server
        key = _need_str(params, "key", "name")
        if "value" not in params:
            raise _RemoteFailure(P.INVALID_PARAMS, "missing parameter 'value'")
        info = server.info(key)
        server.check_writable(info)
        payload = msgspec.json.encode(params["value"])
        try:
            value = server.decoder(info)(payload)
        except (DeserializeError, TypeMismatch, ValueError) as exc:
            raise _RemoteFailure(P.INVALID_VALUE, f"value does not fit {info.type_name}: {exc}") from None
        try:
            server.producer(info).produce(value)
        except TypeMismatch as exc:
            raise _RemoteFailure(P.INVALID_VALUE, str(exc)) from None
        except BufferClosed:
            raise _RemoteFailure(P.SHUTTING_DOWN, "the database is stopping") from None
        server.sets += 1
        return {"key": key, "value": msgspec.Raw(server.encoder(info)(value))}

    def _slots_left(self) -> None:
        if len(self.subs) + len(self.drains) >= self.server.config.max_subscriptions:
            raise _RemoteFailure(
                P.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.server.config.max_subscriptions} subscriptions per connection",
            )

    def m_subscribe(self, params: dict[str, Any]) -> Any:
        server = self.server
        cfg = server.config
        pattern = _need_str(params, "pattern", "key", "name")
        snapshot = params.get("snapshot", True)
        if not isinstance(snapshot, bool):
            raise _RemoteFailure(P.INVALID_PARAMS, "'snapshot' must be true or false")
        queue = _opt_int(params, "queue", 1, cfg.queue_size) or cfg.queue_size
        self._slots_left()
        keys = []
        for info in server.readable_infos():
            if P.pattern_matches(pattern, info.key):
                if server.db.buffer(info.key) is not None:
                    keys.append(info.key)
        if not keys:
            raise _RemoteFailure(P.NOT_FOUND, f"no readable record with a buffer matches {pattern!r}")
        self.next_sub += 1
        sub = _Subscription(self, f"s{self.next_sub}", keys, queue)
        self.subs[sub.id] = sub
        # Bring existing feeds up to date first, so the snapshot is newer than any
        # update this subscription will receive.
        feeds = [server._feed(k) for k in keys]
        for f in feeds:
            f.pump()
        n_snap = 0
        if snapshot:
            ts = time.time_ns()
            for f in feeds:
                has, value = _latest_value(f.buf)
                if has:
                    try:
                        raw = f.encode(value)
                    except Exception:
                        continue
                    sub.push(b"snapshot", f.key_json, raw, ts)
                    n_snap += 1
        for f in feeds:
            f.subs.append(sub)
            sub.feeds.append(f)
        server.subscriptions_total += 1
        return {"sub": sub.id, "keys": keys, "snapshot": n_snap, "queue": queue}

    def m_unsubscribe(self, params: dict[str, Any]) -> Any:
        sub_id = _need_str(params, "sub", "subscription_id")
        sub = self.subs.pop(sub_id, None)
        if sub is None:
            raise _RemoteFailure(P.NOT_FOUND, f"no subscription {sub_id!r} on this connection")
        self.server._unsubscribe(sub)
        pending = len(sub.queue)
        sub.queue.clear()
        return {"sub": sub_id, "delivered": sub.delivered, "dropped": sub.dropped, "discarded": pending}

    def m_drain(self, params: dict[str, Any]) -> Any:
        server = self.server
        key = _need_str(params, "key", "name")
        limit = _opt_int(params, "limit", 1, 100_000) or 1000
        info = server.info(key)
        buf = server.db.buffer(key)
        if buf is None:
            raise _RemoteFailure(P.NOT_FOUND, f"record {key!r} has no buffer")
        if buf.kind == "mailbox" and key not in server.writable_keys():
            raise _RemoteFailure(
                P.PERMISSION_DENIED,
                f"draining mailbox {key!r} would take commands from its consumers; it must be writable",
            )
        reader = self.drains.get(key)
        if reader is None:
            self._slots_left()
            reader = self.drains[key] = buf.subscribe()
        lagged = 0
        values: list[Any] = []
        while len(values) < limit:
            try:
                got = reader.try_recv_batch(limit - len(values))
            except BufferLagged as exc:
                lagged += exc.missed
                continue
            except BufferClosed:
                break
            if not got:
                break
            values.extend(got)
        enc = server.encoder(info)
        raws = [msgspec.Raw(enc(v)) for v in values]
        return {"key": key, "values": raws, "count": len(raws), "lagged": lagged}

    def m_graph(self, params: dict[str, Any]) -> Any:
        server = self.server
        g = server.db.graph()
        visible = {i.key for i in server.readable_infos()}
        hidden = {n["key"] for n in g["nodes"]} - visible
        writable = set(server.writable_keys())
        nodes = []
        for n in g["nodes"]:
            if n["key"] in visible:
                n = dict(n)
                n.pop("remote_readable", None)
                n["writable"] = n["key"] in writable
                nodes.append(n)
        return {
            "nodes": nodes,
            "edges": [e for e in g["edges"] if e["from"] not in hidden and e["to"] not in hidden],
            "order": [k for k in g["order"] if k in visible],
        }

    def m_stats(self, params: dict[str, Any]) -> Any:
        server = self.server
        key = params.get("key")
        if key is not None:
            if not isinstance(key, str):
                raise _RemoteFailure(P.INVALID_PARAMS, "'key' must be a string")
            server.info(key)
            return {"key": key, "stats": server.db.record_statistics(key)}
        visible = {i.key for i in server.readable_infos()}
        recs = {k: v for k, v in server.db.statistics().items() if k in visible}
        return {"records": recs, "server": server.statistics()}

    def m_reset(self, params: dict[str, Any]) -> Any:
        server = self.server
        if not server.config.allow_reset:
            raise _RemoteFailure(P.PERMISSION_DENIED, "this server does not allow stats.reset")
        server.db.reset_statistics()
        server.reset_counters()
        return {"reset": True}


_METHODS: dict[str, Callable[[_Session, dict[str, Any]], Any]] = {
    "hello": _Session.m_hello,
    "ping": _Session.m_ping,
    "record.list": _Session.m_list,
    "record.get": _Session.m_get,
    "record.set": _Session.m_set,
    "record.subscribe": _Session.m_subscribe,
    "record.unsubscribe": _Session.m_unsubscribe,
    "record.drain": _Session.m_drain,
    "graph": _Session.m_graph,
    "stats": _Session.m_stats,
    "stats.reset": _Session.m_reset,
}


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    for _ in range(64):
        if not await reader.read(_READ_CHUNK):
            return


def _aimdb_version() -> str:
    try:
        from .. import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "?"


class RemoteServer:
    """Serves one running database to remote clients.

    Use it through :func:`serve` (a service coroutine), :func:`start_server` (after the
    database started) or :class:`RemoteAccess` (on the builder). Directly::

        server = RemoteServer(db, RemoteConfig(tcp="127.0.0.1:0"))
        await server.start()
        ...
        await server.aclose()

    Args:
        db: a running :class:`aimdb.AimDb` (its loop is the server's loop).
        config: the configuration (default: read-only on the default Unix socket).

    Raises:
        ValueError: the configuration is invalid (every problem listed).
    """

    def __init__(self, db: Any, config: RemoteConfig | None = None) -> None:
        self.db = db
        self.config = config = config if config is not None else RemoteConfig()
        problems = config.problems()
        if problems:
            raise ValueError("invalid RemoteConfig: " + "; ".join(problems))
        self._servers: list[asyncio.base_events.Server] = []
        self._sessions: set[_Session] = set()
        self._feeds: dict[str, _Feed] = {}
        self._encoders: dict[str, Callable[[Any], bytes]] = {}
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        self._producers: dict[str, Any] = {}
        self._unix_path: str | None = None
        self._unix_ino: tuple[int, int] | None = None
        self._tcp_addr: tuple[str, int] | None = None
        self._started = asyncio.Event()
        self._closed = False
        self._writable_cache: list[str] | None = None
        self.reset_counters()
        self.rejected = 0

    def reset_counters(self) -> None:
        """Zero the server's request counters."""
        self.requests = 0
        self.bad_frames = 0
        self.notification_errors = 0
        self.auth_failures = 0
        self.sets = 0
        self.lagged = 0
        self.encode_errors = 0
        self.subscriptions_total = 0
        self.connections_total = 0
        self.rejected = 0

    # -------------------------------------------------------------- addresses

    @property
    def unix_path(self) -> str | None:
        """The Unix socket path, once listening."""
        return self._unix_path

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the TCP listener, once listening (the real port for port 0)."""
        return self._tcp_addr

    @property
    def endpoints(self) -> list[str]:
        """Connect strings (``unix://...``, ``tcp://...``) of every listener."""
        out = []
        if self._unix_path:
            out.append(str(P.Endpoint("unix", path=self._unix_path)))
        if self._tcp_addr:
            out.append(str(P.Endpoint("tcp", host=self._tcp_addr[0], port=self._tcp_addr[1])))
        return out

    async def wait_started(self) -> None:
        """Wait until every listener is bound."""
        await self._started.wait()

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the configured listeners.

        Raises:
            OSError: a listener could not be bound, or another process already listens
                on the Unix socket path (the file is then left alone).
        """
        cfg = self.config
        try:
            if cfg.unix is not None:
                await self._start_unix(cfg.unix)
            if cfg.tcp is not None:
                ep = P.parse_endpoint(cfg.tcp if "://" in cfg.tcp else "tcp://" + cfg.tcp)
                srv = await asyncio.start_server(
                    self._on_connect, ep.host, ep.port, backlog=512, limit=_READ_CHUNK
                )
                self._servers.append(srv)
                sockname = srv.sockets[0].getsockname()
                self._tcp_addr = (str(sockname[0]), int(sockname[1]))
        except BaseException:
            await self.aclose()
            raise
        self._started.set()
        _log.info("remote access listening on %s", ", ".join(self.endpoints) or "(streams only)")

    async def _start_unix(self, path_cfg: str) -> None:
        if path_cfg == AUTO:
            ensure_runtime_dir()
            path = str(default_socket_path(self.config.name))
        else:
            path = path_cfg
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{path} exists and is not a socket; not replacing it")
            if someone_listens(path):
                raise OSError(f"another process is listening on {path}")
            os.unlink(path)  # stale socket of a process that is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, self.config.socket_mode)
            sock.listen(512)
            sock.setblocking(False)
            srv = await asyncio.start_unix_server(self._on_connect, sock=sock, backlog=512, limit=_READ_CHUNK)
        except BaseException:
            sock.close()
            raise
        self._servers.append(srv)
        self._unix_path = path
        st2 = os.stat(path)
        self._unix_ino = (st2.st_dev, st2.st_ino)

    async def serve_forever(self) -> None:
        """Start (unless started) and serve until cancelled; then close everything."""
        try:
            if not self._started.is_set():
                await self.start()
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, end every session and feed, remove the socket file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for srv in self._servers:
            srv.close()
        tasks = []
        for s in list(self._sessions):
            s.closing = True
            if s.task is not None and s.task is not asyncio.current_task():
                s.task.cancel()
                tasks.append(s.task)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for s in list(self._sessions):
            s.cleanup()
        for f in list(self._feeds.values()):
            f.close()
        self._feeds.clear()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await wait_for(srv.wait_closed(), 1.0)
        self._servers.clear()
        if self._unix_path is not None and self._unix_ino is not None:
            try:
                st = os.stat(self._unix_path)
                if (st.st_dev, st.st_ino) == self._unix_ino:
                    os.unlink(self._unix_path)
            except OSError:
                pass

    async def __aenter__(self) -> RemoteServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -------------------------------------------------------------- sessions

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        await self.serve_stream(reader, writer, peer=str(peer or "unix"))

    async def serve_stream(self, reader: asyncio.StreamReader, writer: Any, *, peer: str = "stream") -> None:
        """Serve one session over any byte stream until it ends (EOF, error or close).

        ``writer`` needs ``write(bytes)``, ``await drain()`` and ``close()`` (an
        :class:`asyncio.StreamWriter` fits; so does one over a pipe or serial port).
        The connection limit applies.
        """
        if self._closed or len(self._sessions) >= self.config.max_connections:
            self.rejected += 1
            code, msg = (
                (P.SHUTTING_DOWN, "server is shutting down")
                if self._closed
                else (P.TOO_MANY_CONNECTIONS, f"at most {self.config.max_connections} connections")
            )
            with contextlib.suppress(Exception):
                writer.write(P.error_frame(None, code, msg))
                await wait_for(writer.drain(), 1.0)
                if writer.can_write_eof():
                    writer.write_eof()
                # Read what the client already sent until it hangs up (bounded), so
                # closing does not reset the connection before it read the reply.
                await wait_for(_discard_until_eof(reader), 1.0)
            with contextlib.suppress(Exception):
                writer.close()
            return
        session = _Session(self, reader, writer, peer)
        session.task = asyncio.current_task()
        self._sessions.add(session)
        self.connections_total += 1
        try:
            await session.run()
        except asyncio.CancelledError:
            session.cleanup()
            if not self._closed:
                raise
        finally:
            self._sessions.discard(session)
            session.cleanup()

    # -------------------------------------------------------------- records

    def readable_infos(self) -> list[Any]:
        return [i for i in self.db.records() if i.remote_readable]

    def info(self, key: str) -> Any:
        try:
            info = self.db.record(key)
        except LookupError:
            info = None
        if info is None or not info.remote_readable:
            raise _RemoteFailure(P.NOT_FOUND, f"no record {key!r}")
        return info

    def writable_keys(self) -> list[str]:
        """Keys ``record.set`` may write: allow-listed, passive or linked, with a buffer."""
        if self._writable_cache is None:
            allow = list(self.config.writable)
            out = []
            if allow:
                for info in self.readable_infos():
                    if not info.remote_writable or info.buffer_kind == "none":
                        continue
                    if any(P.pattern_matches(a, info.key) for a in allow):
                        out.append(info.key)
            self._writable_cache = out
        return self._writable_cache

    def check_writable(self, info: Any) -> None:
        if info.writer_kind in ("source", "transform", "join"):
            raise _RemoteFailure(
                P.PERMISSION_DENIED,
                f"record {info.key!r} is written by its {info.writer_kind}; remote writes are refused",
                {"key": info.key},
            )
        if not self.config.writable:
            raise _RemoteFailure(P.PERMISSION_DENIED, "this server is read-only", {"key": info.key})
        if info.key not in self.writable_keys():
            reason = (
                "declared without remote(writable=True)"
                if not info.remote_writable
                else "not in the server's write allow-list"
            )
            raise _RemoteFailure(
                P.PERMISSION_DENIED, f"record {info.key!r} is not writable: {reason}", {"key": info.key}
            )

    def encoder(self, info: Any) -> Callable[[Any], bytes]:
        enc = self._encoders.get(info.key)
        if enc is None:
            from .._core._codec import json_codec

            enc = self._encoders[info.key] = json_codec.encoder(info.type, info.key)
        return enc

    def decoder(self, info: Any) -> Callable[[bytes], Any]:
        dec = self._decoders.get(info.key)
        if dec is None:
            from .._core._codec import json_codec

            dec = self._decoders[info.key] = json_codec.decoder(info.type, info.key)
        return dec

    def producer(self, info: Any) -> Any:
        p = self._producers.get(info.key)
        if p is None:
            p = self._producers[info.key] = self.db.producer(info.type, info.key)
        return p

    def _feed(self, key: str) -> _Feed:
        f = self._feeds.get(key)
        if f is None or (f.closed and not f.subs):
            info = self.db.record(key)
            f = self._feeds[key] = _Feed(self, key, self.db.buffer(key), self.encoder(info))
            f.start()
        return f

    def _unsubscribe(self, sub: _Subscription) -> None:
        for f in sub.feeds:
            with contextlib.suppress(ValueError):
                f.subs.remove(sub)
            if not f.subs:
                f.close()
                if self._feeds.get(f.key) is f:
                    del self._feeds[f.key]
        sub.feeds.clear()

    # -------------------------------------------------------------- statistics

    def statistics(self) -> dict[str, Any]:
        """Return server counters: connections, subscriptions, feeds, requests, errors."""
        subs = sum(len(s.subs) for s in self._sessions)
        dropped = sum(sub.dropped for s in self._sessions for sub in s.subs.values())
        return {
            "name": self.config.name,
            "endpoints": self.endpoints,
            "connections": len(self._sessions),
            "connections_total": self.connections_total,
            "rejected": self.rejected,
            "subscriptions": subs,
            "subscriptions_total": self.subscriptions_total,
            "feeds": len(self._feeds),
            "requests": self.requests,
            "bad_frames": self.bad_frames,
            "notification_errors": self.notification_errors,
            "auth_failures": self.auth_failures,
            "sets": self.sets,
            "events_dropped": dropped,
            "feed_lagged": self.lagged,
            "encode_errors": self.encode_errors,
        }


async def serve(db: Any, config: RemoteConfig | None = None) -> None:
    """Serve ``db`` until cancelled: ``db.add_service("remote", serve, db, cfg)``.

    Binds the listeners of ``config`` (default: read-only, default Unix socket), serves
    clients, and on cancellation closes every session and removes the socket file.
    """
    await RemoteServer(db, config).serve_forever()


async def start_server(db: Any, config: RemoteConfig | None = None) -> RemoteServer:
    """Start serving an already running ``db`` and return the bound server.

    Call right after ``async with builder.build() as db:``. The server runs as a service
    of the database (stopped with it); listeners are bound when this returns, so
    ``server.endpoints`` is ready to print.

    Raises:
        OSError: a listener could not be bound.
    """
    server = RemoteServer(db, config)
    await server.start()
    db.add_service("aimdb.remote", server.serve_forever)
    return server


class RemoteAccess(Connector):
    """Remote access declared on the builder: ``builder.with_connector(RemoteAccess(cfg))``.

    The database starts the server together with its connectors and stops it at
    shutdown. ``await access.wait_started()`` returns the bound :class:`RemoteServer`.
    Links may not use its scheme (``aimdb-remote``).
    """

    scheme = "aimdb-remote"
    runtimes = ("asyncio",)
    always_run = True

    def __init__(self, config: RemoteConfig | None = None) -> None:
        self.config = config if config is not None else RemoteConfig()
        problems = self.config.problems()
        if problems:
            raise ValueError("invalid RemoteConfig: " + "; ".join(problems))
        self.server: RemoteServer | None = None
        self._ready: asyncio.Event | None = None
        self._error: BaseException | None = None

    def validate_link(self, spec: Any) -> list[str]:
        """Links cannot target the remote-access server itself."""
        return ["'aimdb-remote' is the remote-access server, not a link target; use 'aimdb://'"]

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    async def run(self, routes: Any) -> None:
        """Serve ``routes.db`` until cancelled (called by the database)."""
        server = self.server = RemoteServer(routes.db, self.config)
        try:
            await server.start()
        except BaseException as exc:
            self._error = exc
            self._event().set()
            raise
        self._event().set()
        await server.serve_forever()

    async def wait_started(self, timeout: float = 5.0) -> RemoteServer:
        """Wait until the server is listening and return it.

        Raises:
            OSError: binding failed (the original error).
            TimeoutError: the database did not start the server in time.
        """
        try:
            await wait_for(self._event().wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError("remote access did not start (is the database running?)") from None
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self.server

    async def shutdown(self, timeout: float) -> None:
        """Close the server (bounded by ``timeout``)."""
        if self.server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(self.server.aclose(), timeout)

