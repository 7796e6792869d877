"""Async client of the remote-access protocol (used by the CLI, the sync client and links)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from .._aio import wait_for
from .._errors import AimDbError, PermissionDenied, ProtocolError
from . import _protocol as P
from ._discovery import socket_files
from ._history import HistoryPage, TimeBound, page_from_reply, to_ns

CLIENT_MAX_FRAME = 64 * 1024 * 1024
CLIENT_MAX_DEPTH = 64
_log = logging.getLogger("aimdb.remote.client")
_CLIENT_QUEUE = 65536


class RemoteError(AimDbError):
    """An error reply from a server, or a connection problem, as seen by a client.

    Attributes:
        code: the protocol error code (``"permission_denied"``, ``"not_found"`` ...) or
            ``"connection_failed"`` / ``"connection_closed"`` / ``"timeout"`` locally.
        details: extra data the server sent, or ``None``.
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        self.code = code
        self.details = details
        super().__init__(message)


class RemotePermissionDenied(RemoteError, PermissionDenied):
    """The server refused the request (``permission_denied`` or ``auth_failed``).

    Also a :class:`aimdb.PermissionDenied` (and so a :class:`PermissionError`); ``key`` is
    the record key when the request named one, else ``""``.
    """

    def __init__(self, code: str, message: str, details: Any = None, key: str = "") -> None:
        AimDbError.__init__(self, message)  # not the other bases' __init__: they take other arguments
        self.code = code
        self.details = details
        self.key = key
        self.reason = message


class RemoteProtocolError(RemoteError, ProtocolError):
    """The server rejected the frame itself; also a :class:`aimdb.ProtocolError`.

    Codes: malformed frame, unknown method, bad parameters, missing handshake,
    incompatible version, frame too large.
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        AimDbError.__init__(self, message)  # not ProtocolError's __init__: it would reset ``code``
        self.code = code
        self.details = details


_PERMISSION_CODES = frozenset({"permission_denied", "auth_failed"})
_PROTOCOL_CODES = frozenset(
    {
        "parse_error",
        "invalid_request",
        "frame_too_large",
        "frame_too_deep",
        "handshake_required",
        "version_mismatch",
        "method_not_found",
        "invalid_params",
    }
)


def error_from_reply(error: Any, key: str = "") -> RemoteError:
    """Build the typed exception for an ``error`` object of a reply.

    ``permission_denied``/``auth_failed`` give :class:`RemotePermissionDenied`, protocol-level
    codes :class:`RemoteProtocolError`, every other code a plain :class:`RemoteError`.
    """
    e = error if isinstance(error, dict) else {}
    code, message, details = str(e.get("code")), str(e.get("message")), e.get("details")
    if code in _PERMISSION_CODES:
        if not key and isinstance(details, dict) and isinstance(details.get("key"), str):
            key = details["key"]
        return RemotePermissionDenied(code, message, details, key)
    if code in _PROTOCOL_CODES:
        return RemoteProtocolError(code, message, details)
    return RemoteError(code, message, details)


class _Incoming(msgspec.Struct):
    id: Any = None
    result: Any = msgspec.UNSET
    error: Any = None
    event: Any = None
    sub: Any = None
    seq: int = 0
    key: str = ""
    value: msgspec.Raw = msgspec.Raw(b"null")
    ts: int = 0


_in_decoder = msgspec.json.Decoder(_Incoming)


class Event:
    """One value pushed by a subscription.

    Attributes:
        key: record key.
        raw: the value as JSON bytes.
        seq: per-subscription sequence number (1, 2, ...).
        gap: events lost right before this one (slow client or ring lag); 0 normally.
        snapshot: True for the late-joiner snapshot sent right after subscribing.
        ts: server wall-clock time in ns when the value was picked up.
    """

    __slots__ = ("_value", "gap", "key", "raw", "seq", "snapshot", "ts")

    def __init__(self, key: str, raw: bytes, seq: int, gap: int, snapshot: bool, ts: int) -> None:
        self.key = key
        self.raw = raw
        self.seq = seq
        self.gap = gap
        self.snapshot = snapshot
        self.ts = ts
        self._value: Any = msgspec.UNSET

    @property
    def value(self) -> Any:
        """The value decoded as plain JSON data (dicts, lists, numbers ...)."""
        if self._value is msgspec.UNSET:
            self._value = msgspec.json.decode(self.raw)
        return self._value

    def as_dict(self) -> dict[str, Any]:
        """Return the event as a plain dict."""
        return {
            "key": self.key,
            "value": self.value,
            "seq": self.seq,
            "gap": self.gap,
            "snapshot": self.snapshot,
            "ts": self.ts,
        }

    def __repr__(self) -> str:
        return f"Event({self.as_dict()!r})"


class Subscription:
    """Client side of a subscription: ``async for event in sub`` yields :class:`Event`.

    Attributes:
        id: the server's subscription id.
        keys: record keys matched at subscribe time.
        snapshot: number of snapshot events that come first.
        missed: events lost so far: the gaps the server reported plus :attr:`dropped`.
        dropped: events this client dropped (the oldest first) because the application
            did not take them and 65,536 were waiting.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.id = ""
        self.keys: list[str] = []
        self.snapshot = 0
        self.queue_size = 0
        self.missed = 0
        self.dropped = 0
        self._last_seq = 0
        self._events: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._closed = False

    def _push(self, inc: _Incoming) -> None:
        gap = inc.seq - self._last_seq - 1 if inc.seq > self._last_seq else 0
        self._last_seq = max(self._last_seq, inc.seq)
        if len(self._events) >= _CLIENT_QUEUE:  # the application does not read: drop oldest
            self._events.popleft()
            self.dropped += 1
            self.missed += 1
        if gap > 0:
            self.missed += gap
        self._events.append(
            Event(inc.key, bytes(inc.value), inc.seq, max(gap, 0), inc.event == "snapshot", inc.ts)
        )
        self._wake.set()

    def _end(self) -> None:
        self._closed = True
        self._wake.set()

    async def next(self, timeout: float | None = None) -> Event:
        """Return the next event.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            RemoteError: the subscription ended (``connection_closed``).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise RemoteError("connection_closed", "the subscription ended (connection closed)")
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
            else:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError("no event within the timeout")
                try:
                    await wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    raise TimeoutError("no event within the timeout") from None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.next()
            except RemoteError:
                return

    async def close(self) -> dict[str, Any]:
        """Unsubscribe; returns the server's counters (``delivered``, ``dropped``)."""
        if self._closed:
            return {"sub": self.id}
        self._client._subs.pop(self.id, None)
        self._end()
        result: dict[str, Any] = await self._client.call("record.unsubscribe", {"sub": self.id})
        return result


def _nested_too_deep(frame: bytes, inc: _Incoming, max_depth: int) -> bool:
    """Whether a decoded reply nests deeper than ``max_depth`` (the frame object is level 1).

    Event values stay undecoded (``msgspec.Raw``); the record's codec checks them. Costs
    two byte counts unless the frame has more than ``max_depth`` opening brackets.
    """
    if frame.count(b"[") + frame.count(b"{") <= max_depth:
        return False
    stack: list[tuple[Any, int]] = [(inc.result, 2), (inc.error, 2)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def _read_loop_ended(task: asyncio.Task[None]) -> None:
    """The client's read loop ended: a failure (a bug, not a connection problem) is logged once."""
    if not task.cancelled() and task.exception() is not None:
        _log.error("remote client read loop failed", exc_info=task.exception())


class AsyncClient:
    """An asyncio client of one aimdb server.

    Create with :meth:`connect` (or :meth:`from_streams` for any byte stream), use as an
    async context manager or call :meth:`aclose`. Methods raise :class:`RemoteError` for
    error replies and connection problems. Requests may be issued concurrently.

    Frames from the server that are not valid JSON, longer than ``max_frame`` bytes or
    nested deeper than ``max_depth`` are skipped, counted in :attr:`bad_frames` and
    logged once per connection; the connection goes on. When the server announces an
    ``idle_timeout``, the client sends a blank keep-alive line whenever it sent nothing
    for a third of it, so an open client is never closed as idle.

    Attributes:
        bad_frames: frames from the server skipped as malformed, too large or too deep.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: Any,
        *,
        endpoint: str = "stream",
        max_frame: int = CLIENT_MAX_FRAME,
        max_depth: int = CLIENT_MAX_DEPTH,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.endpoint = endpoint
        self.max_frame = max_frame
        self.max_depth = max_depth
        self.bad_frames = 0
        self._last_sent = 0.0
        self._keepalive: asyncio.TimerHandle | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._pending_subs: dict[int, Subscription] = {}
        self._subs: dict[str, Subscription] = {}
        self._closed = False
        self._close_error: RemoteError | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name="aimdb.remote.client")
        self._task.add_done_callback(_read_loop_ended)
        self.server_info: dict[str, Any] = {}
        self.timeout = 10.0

    # -------------------------------------------------------------- connect

    @classmethod
    async def connect(
        cls,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        client_name: str = "aimdb-python",
        timeout: float = 5.0,
        max_frame: int = CLIENT_MAX_FRAME,
        max_depth: int = CLIENT_MAX_DEPTH,
    ) -> AsyncClient:
        """Connect to ``endpoint`` and perform the ``hello`` handshake.

        ``endpoint`` is ``unix://PATH``, ``tcp://HOST:PORT`` (or a bare path / HOST:PORT);
        ``None`` uses ``$AIMDB_CONNECT`` or else the only local instance found.
        ``max_frame`` and ``max_depth`` limit the frames accepted from the server.

        Raises:
            RemoteError: cannot connect (``connection_failed``), the server refused the
                connection or the handshake (``too_many_connections``, ``auth_failed``,
                ``version_mismatch``), or ``timeout``.
        """
        ep = await resolve_endpoint(endpoint, timeout=timeout)
        try:
            if ep.kind == "unix":
                opened = asyncio.open_unix_connection(ep.path, limit=_READ_LIMIT)
            else:
                opened = asyncio.open_connection(ep.host, ep.port, limit=_READ_LIMIT)
            reader, writer = await wait_for(opened, timeout)
        except asyncio.TimeoutError:
            raise RemoteError("timeout", f"connecting to {ep} timed out") from None
        except OSError as exc:
            raise RemoteError("connection_failed", f"cannot connect to {ep}: {exc.strerror or exc}") from None
        client = cls(reader, writer, endpoint=str(ep), max_frame=max_frame, max_depth=max_depth)
        return await cls._greet(client, token, client_name, timeout)

    @classmethod
    async def from_streams(
        cls,
        reader: asyncio.StreamReader,
        writer: Any,
        *,
        token: str | None = None,
        client_name: str = "aimdb-python",
        timeout: float = 5.0,
        max_frame: int = CLIENT_MAX_FRAME,
        max_depth: int = CLIENT_MAX_DEPTH,
    ) -> AsyncClient:
        """Speak the protocol over an already open byte stream and perform ``hello``.

        Raises:
            RemoteError: the server refused the handshake, or ``timeout``.
        """
        client = cls(reader, writer, max_frame=max_frame, max_depth=max_depth)
        return await cls._greet(client, token, client_name, timeout)

    @staticmethod
    async def _greet(client: AsyncClient, token: str | None, client_name: str, timeout: float) -> AsyncClient:
        """Perform ``hello`` on a new client; close it when that fails."""
        client.timeout = timeout
        try:
            await client.hello(token=token, client_name=client_name)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed

    async def aclose(self) -> None:
        """Close the connection; pending calls fail with ``connection_closed``.

        Raises:
            asyncio.CancelledError: the caller was cancelled while the connection closed
                (it is closed all the same).
        """
        try:
            self._writer.close()
        except (ConnectionError, OSError, RuntimeError) as exc:  # already gone
            _log.debug("closing %s: %r", self.endpoint, exc)
        self._task.cancel()
        try:
            await asyncio.wait((self._task,))
        finally:
            self._finish(RemoteError("connection_closed", "connection closed"))

    async def wait_closed(self) -> None:
        """Wait until the connection ends (the server closed it, or :meth:`aclose`).

        Raises:
            asyncio.CancelledError: the caller was cancelled (the connection stays open).
        """
        await asyncio.wait((self._task,))

    # -------------------------------------------------------------- plumbing

    def _finish(self, err: RemoteError) -> None:
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._close_error is None:
            self._close_error = err
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self._close_error)
        self._pending.clear()
        for sub in self._subs.values():
            sub._end()
        self._subs.clear()

    def _bad_frame(self, what: str) -> None:
        self.bad_frames += 1
        if self.bad_frames == 1:
            _log.warning(
                "%s sent a bad frame (%s); skipped (further ones are only counted)", self.endpoint, what
            )

    def _decode(self, frame: bytes) -> _Incoming | None:
        try:
            inc = _in_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self._bad_frame(f"{P.PARSE_ERROR}: {exc}")
            return None
        except RecursionError:
            self._bad_frame(P.FRAME_TOO_DEEP)
            return None
        if _nested_too_deep(frame, inc, self.max_depth):
            self._bad_frame(f"{P.FRAME_TOO_DEEP}: deeper than {self.max_depth} levels")
            return None
        return inc

    async def _read_loop(self) -> None:
        decoder = P.FrameDecoder(self.max_frame)
        err = RemoteError("connection_closed", f"connection to {self.endpoint} closed by the server")
        try:
            while True:
                data = await self._reader.read(1 << 16)
                if not data:
                    break
                for item in decoder.feed(data):
                    if isinstance(item, P.FrameError):
                        self._bad_frame(f"{item.code}: {item.message}")
                        continue
                    inc = self._decode(item)
                    if inc is not None:
                        self._dispatch(inc)
        except (ConnectionError, OSError) as exc:
            err = RemoteError("connection_closed", f"connection to {self.endpoint} lost: {exc}")
        finally:
            self._finish(err)

    def _dispatch(self, inc: _Incoming) -> None:
        if inc.event is not None:
            sub = self._subs.get(inc.sub) if isinstance(inc.sub, str) else None
            if sub is not None:
                sub._push(inc)
            return
        if inc.id is None:
            if isinstance(inc.error, dict):  # connection-level error (limit, bad frame ...)
                e = inc.error
                self._close_error = error_from_reply(e)
                if not self._pending:
                    return
                # Fail the oldest pending request: the server answered it with id null.
                fut = self._pending.pop(min(self._pending))
                if not fut.done():
                    fut.set_exception(self._close_error)
            return
        fut2 = self._pending.pop(inc.id, None) if isinstance(inc.id, int) else None
        if fut2 is None or fut2.done():
            return
        if isinstance(inc.error, dict):
            e = inc.error
            self._pending_subs.pop(inc.id, None)
            fut2.set_exception(error_from_reply(e))
            return
        result = None if inc.result is msgspec.UNSET else inc.result
        psub = self._pending_subs.pop(inc.id, None)
        if psub is not None and isinstance(result, dict):
            # Register before any later frame is dispatched: events may follow at once.
            psub.id = str(result.get("sub"))
            psub.keys = list(result.get("keys") or [])
            psub.snapshot = int(result.get("snapshot") or 0)
            psub.queue_size = int(result.get("queue") or 0)
            self._subs[psub.id] = psub
        fut2.set_result(result)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Send one request and return its ``result``.

        Raises:
            RemoteError: an error reply (its ``code``), a closed connection or a timeout.
        """
        return await self._call(method, params, timeout=timeout)

    async def _call(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        sub: Subscription | None = None,
    ) -> Any:
        if self._closed:
            raise self._close_error or RemoteError("connection_closed", "connection closed")
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        if sub is not None:
            self._pending_subs[rid] = sub
        frame: dict[str, Any] = {"id": rid, "method": method}
        if params:
            frame["params"] = params
        t = self.timeout if timeout is None else timeout
        try:
            self._writer.write(P.encode(frame))
            self._last_sent = asyncio.get_running_loop().time()
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            # The server may have said why (e.g. too_many_connections) before closing:
            # let the read loop deliver that, briefly.
            with contextlib.suppress(asyncio.TimeoutError, RemoteError):
                await wait_for(asyncio.shield(fut), min(t, 1.0))
            self._pending.pop(rid, None)
            self._pending_subs.pop(rid, None)
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                raise fut.exception() from None  # type: ignore[misc]
            raise self._close_error or RemoteError(
                "connection_closed", f"connection to {self.endpoint} lost: {exc}"
            ) from None
        try:
            return await wait_for(fut, t)
        except asyncio.TimeoutError:
            self._pending.pop(rid, None)
            self._pending_subs.pop(rid, None)
            raise RemoteError("timeout", f"no reply to {method} within {t:g} s") from None

    # -------------------------------------------------------------- methods

    async def hello(self, *, token: str | None = None, client_name: str = "aimdb-python") -> dict[str, Any]:
        """Perform the handshake; stores and returns the server's description."""
        params: dict[str, Any] = {"version": P.PROTOCOL_VERSION, "client": client_name}
        if token is not None:
            params["token"] = token
        info: dict[str, Any] = await self._call("hello", params)
        self.server_info = info
        limits = info.get("limits")
        idle = limits.get("idle_timeout") if isinstance(limits, dict) else None
        if (
            isinstance(idle, (int, float))
            and not isinstance(idle, bool)
            and idle > 0
            and self._keepalive is None
        ):
            self._keep_alive(idle / 3)
        return info

    def _keep_alive(self, interval: float) -> None:
        """Send a blank line when nothing was sent for ``interval`` seconds; re-arm."""
        self._keepalive = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_sent >= interval:
            try:
                self._writer.write(b"\n")
            except (ConnectionError, OSError, RuntimeError) as exc:  # the read loop sees the end
                _log.debug("keep-alive to %s: %r", self.endpoint, exc)
                return
            self._last_sent = now
        self._keepalive = loop.call_at(self._last_sent + interval, self._keep_alive, interval)

    async def ping(self) -> float:
        """Round-trip a ``ping``; returns the time taken in seconds."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await self._call("ping", None)
        return loop.time() - t0

    async def list(self, pattern: str | None = None) -> builtins.list[dict[str, Any]]:
        """Return the metadata and statistics of every (matching) record."""
        res = await self._call("record.list", {"pattern": pattern} if pattern else None)
        records: builtins.list[dict[str, Any]] = res["records"]
        return records

    async def get(self, key: str) -> Any:
        """Return the current value of ``key`` as JSON data.

        Raises:
            RemoteError: ``not_found`` or ``no_value``.
        """
        res = await self._call("record.get", {"key": key})
        return res["value"]

    async def set(self, key: str, value: Any) -> Any:
        """Write ``value`` (JSON data, or a ``msgspec.Raw``) to ``key``; returns the stored value.

        Raises:
            RemoteError: ``permission_denied``, ``not_found`` or ``invalid_value``.
        """
        res = await self._call("record.set", {"key": key, "value": value})
        return res["value"]

    async def subscribe(
        self, pattern: str, *, snapshot: bool = True, queue: int | None = None
    ) -> Subscription:
        """Subscribe to a key or ``*``/``#`` pattern; returns a :class:`Subscription`.

        With ``snapshot`` (default) the current value of every matching record that has
        one comes first (``event.snapshot`` True).
        """
        params: dict[str, Any] = {"pattern": pattern, "snapshot": snapshot}
        if queue is not None:
            params["queue"] = queue
        sub = Subscription(self)
        await self._call("record.subscribe", params, sub=sub)
        return sub

    async def drain(self, key: str, limit: int | None = None) -> builtins.list[Any]:
        """Return the values produced since this connection's previous drain of ``key``."""
        params: dict[str, Any] = {"key": key}
        if limit is not None:
            params["limit"] = limit
        res = await self._call("record.drain", params)
        values: builtins.list[Any] = res["values"]
        return values

    async def history(
        self,
        key: str,
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> HistoryPage:
        """Return stored values of persisted record ``key`` (``record.history``).

        Rows with ``since <= ts < until`` by the server's clock, oldest first (newest
        first with ``newest_first``), at most ``limit`` of them (``None``: the server's
        ``max_history``, 1000 by default); ``page.more`` says the limit cut the result.

        Args:
            key: record key.
            since: earliest time included: integer ns since the epoch, a ``datetime``
                (naive is local time) or a ``timedelta`` meaning that long ago; ``None``:
                no bound.
            until: first time excluded, same forms; ``None``: no bound.
            limit: most rows (1 up to the server's ``max_history``).
            newest_first: newest rows first (and the newest kept when the limit cuts).

        Raises:
            TypeError: ``since`` or ``until`` has another type.
            RemoteError: ``not_found``, ``not_persisted``, ``invalid_params`` (a
                ``limit`` above ``max_history``), ``persistence_error`` or
                ``shutting_down``.
        """
        params: dict[str, Any] = {"key": key, "newest_first": newest_first}
        for name, bound in (("since", since), ("until", until)):
            ns = to_ns(bound, name)
            if ns is not None:
                params[name] = ns
        if limit is not None:
            params["limit"] = limit
        return page_from_reply(await self._call("record.history", params))

    async def graph(self) -> dict[str, Any]:
        """Return the dependency graph (``nodes``, ``edges``, ``order``)."""
        res: dict[str, Any] = await self._call("graph", None)
        return res

    async def stats(self, key: str | None = None) -> dict[str, Any]:
        """Return statistics of one record, or of every record plus the server's."""
        res: dict[str, Any] = await self._call("stats", {"key": key} if key else None)
        return res

    async def reset_stats(self) -> None:
        """Zero the server's statistics (needs ``allow_reset`` on the server)."""
        await self._call("stats.reset", None)


_READ_LIMIT = 1 << 16


async def connect(
    endpoint: str | None = None,
    *,
    token: str | None = None,
    client_name: str = "aimdb-python",
    timeout: float = 5.0,
) -> AsyncClient:
    """Shorthand for :meth:`AsyncClient.connect`."""
    return await AsyncClient.connect(endpoint, token=token, client_name=client_name, timeout=timeout)


# ------------------------------------------------------------------ discovery


async def probe(path: str, *, timeout: float = 5.0, token: str | None = None) -> dict[str, Any]:
    """Probe the Unix socket ``path``; returns ``{"endpoint", "alive", ...hello fields}``.

    ``alive`` says whether a process listens on the socket. A socket nobody listens on
    (a stale file) is refused at once: ``alive: False``, with ``error`` and ``code``. A
    server that answers ``hello`` within ``timeout`` seconds is described by its ``hello``
    fields (``name``, ``pid``, ``protocol`` ...). A server that accepts the connection but
    does not answer in time (busy, or stopped) is ``alive: True`` with ``code``
    ``"timeout"``; one that refuses the handshake (say ``auth_failed``) is ``alive: True``
    with that code.
    """
    ep = "unix://" + path
    try:
        client = await AsyncClient.connect(ep, token=token, timeout=timeout, client_name="aimdb-probe")
    except RemoteError as exc:
        alive = exc.code != "connection_failed"
        return {"endpoint": ep, "alive": alive, "error": str(exc), "code": exc.code}
    try:
        return {"endpoint": ep, "alive": True, **client.server_info}
    finally:
        await client.aclose()


async def list_instances(*, timeout: float = 5.0, token: str | None = None) -> list[dict[str, Any]]:
    """Probe every socket in the runtime directory (concurrently) and describe each (see :func:`probe`).

    Stale socket files answer at once; ``timeout`` bounds the wait for a live server
    that is slow to answer.
    """
    files = socket_files()
    return list(await asyncio.gather(*(probe(str(p), timeout=timeout, token=token) for p in files)))


async def resolve_endpoint(endpoint: str | None, *, timeout: float = 5.0) -> P.Endpoint:
    """Turn ``endpoint`` / ``$AIMDB_CONNECT`` / local discovery into an :class:`Endpoint`.

    Discovery probes every socket in the runtime directory (:func:`list_instances`, with
    ``timeout``) and picks the only one a process listens on, also when that process is
    too busy to answer the probe in time (the connection then gets its own timeout).

    Raises:
        RemoteError: ``invalid_endpoint``, or ``no_instance`` / ``ambiguous`` when
            discovery finds no or several live local instances.
    """
    text = endpoint or os.environ.get("AIMDB_CONNECT") or None
    if text:
        try:
            return P.parse_endpoint(text)
        except ValueError as exc:
            raise RemoteError("invalid_endpoint", str(exc)) from None
    alive = [i for i in await list_instances(timeout=timeout) if i.get("alive")]
    if not alive:
        raise RemoteError(
            "no_instance", "no running aimdb instance found locally; use --connect or AIMDB_CONNECT"
        )
    if len(alive) > 1:
        names = ", ".join(f"{i.get('name', '?')} ({i['endpoint']})" for i in alive)
        raise RemoteError("ambiguous", f"several instances are running: {names}; choose one with --connect")
    return P.parse_endpoint(str(alive[0]["endpoint"]))
