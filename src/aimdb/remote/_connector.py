"""``aimdb://`` links: mirror records between aimdb instances over the remote protocol.

``link_from("aimdb://station.1.temperature")`` subscribes to that record (or pattern)
on the peer and produces every value into the local record; ``link_to("aimdb://hub.cmd")``
writes every local value to the peer with ``record.set`` (the peer must allow it). The
peer is the connector's endpoint: ``AimdbConnector("tcp://127.0.0.1:7433")``,
``AimdbConnector("unix:///run/peer.sock")`` or any byte stream via ``opener``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .._aio import wait_for
from .._compat import backoff_delay
from .._core._builder import key_problem
from .._core._connector import Connector
from . import _protocol as P
from ._client import CLIENT_MAX_DEPTH, CLIENT_MAX_FRAME, AsyncClient, RemoteError

_log = logging.getLogger("aimdb.remote.link")

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, Any]]]


class AimdbConnector(Connector):
    """Connector for the ``aimdb`` scheme (instance-to-instance links).

    Connects to the peer, subscribes every inbound route's address (a key or ``*``/``#``
    pattern, with the late-joiner snapshot) and pushes every outbound route's values with
    ``record.set``. On any connection problem it reconnects with exponential backoff and
    jitter and re-subscribes. While disconnected outbound values wait in the record's
    reader, so a ring resends its backlog (up to capacity) and SingleLatest only its
    newest value.

    Args:
        endpoint: ``unix://PATH`` or ``tcp://HOST:PORT`` of the peer (ignored with ``opener``).
        token: the peer's token, if it has one.
        opener: ``async () -> (reader, writer)`` opening any byte stream (pipe, serial
            port ...) instead of a socket.
        backoff: ``(first delay, maximum delay)`` in seconds between reconnects.
        timeout: seconds for connecting and for each request.
        name: client name sent in ``hello``.
        max_frame: largest frame accepted from the peer, in bytes.
        max_depth: deepest nesting accepted in a reply from the peer. Frames from the
            peer that are malformed, too large or too deep are skipped, counted
            (``bad_frames`` in :meth:`statistics`) and logged once per connection.
    """

    scheme = "aimdb"
    runtimes = ("asyncio",)

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        opener: Opener | None = None,
        backoff: tuple[float, float] = (0.1, 5.0),
        timeout: float = 5.0,
        name: str = "aimdb-link",
        max_frame: int = CLIENT_MAX_FRAME,
        max_depth: int = CLIENT_MAX_DEPTH,
    ) -> None:
        if endpoint is None and opener is None:
            raise ValueError("AimdbConnector needs an endpoint or an opener")
        if endpoint is not None and opener is None:
            P.parse_endpoint(endpoint)  # raises ValueError early on a bad endpoint
        self.endpoint = endpoint
        self.token = token
        self.opener = opener
        self.backoff = backoff
        self.timeout = timeout
        self.name = name
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._bad_frames = 0  # of connections that ended
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self._connected = asyncio.Event()
        self._client: AsyncClient | None = None
        self._routes: Any = None
        self._pending: dict[Any, list[Any]] = {}
        self._closing = False

    # -------------------------------------------------------------- build-time

    def validate_link(self, spec: Any) -> list[str]:
        """An outbound address must be an exact key; inbound may be a pattern."""
        addr = spec.address
        if not addr or any(not seg for seg in addr.split(".")):
            return [f"aimdb link address must be a dot-separated record key, got {addr!r}"]
        if spec.direction == "out":
            if P.is_pattern(addr):
                return ["an aimdb link_to address must be one record key, not a pattern"]
            problem = key_problem(addr)  # the peer's record key: the same rules as ours
            if problem is not None:
                return ["an aimdb link_to address must be one record key: " + problem]
        return []

    # -------------------------------------------------------------- state

    @property
    def connected(self) -> bool:
        """Whether the connector currently has a working session with the peer."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; returns False on timeout."""
        try:
            await wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def statistics(self) -> dict[str, Any]:
        """Return the link's connection counters as a dict.

        Keys: ``endpoint``, ``connected``, ``connects``, ``disconnects``, ``bad_frames``
        (frames from the peer skipped as malformed, too large or too deep, over every
        connection) and ``last_error``.
        """
        client = self._client
        return {
            "endpoint": self.endpoint or "stream",
            "connected": self.connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "bad_frames": self._bad_frames + (client.bad_frames if client is not None else 0),
            "last_error": self.last_error,
        }

    # -------------------------------------------------------------- run

    async def _open(self) -> AsyncClient:
        if self.opener is not None:
            reader, writer = await wait_for(self.opener(), self.timeout)
            return await AsyncClient.from_streams(
                reader,
                writer,
                token=self.token,
                client_name=self.name,
                timeout=self.timeout,
                max_frame=self.max_frame,
                max_depth=self.max_depth,
            )
        return await AsyncClient.connect(
            self.endpoint,
            token=self.token,
            client_name=self.name,
            timeout=self.timeout,
            max_frame=self.max_frame,
            max_depth=self.max_depth,
        )

    async def run(self, routes: Any) -> None:
        """Serve ``routes`` until cancelled, reconnecting as needed."""
        pending: dict[Any, list[Any]] = {}  # per route: values taken from its reader, not yet sent
        self._routes = routes
        self._pending = pending
        attempt = 0
        first, cap = self.backoff
        while True:
            try:
                client = await self._open()
            except (RemoteError, OSError, asyncio.TimeoutError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if attempt == 0:
                    _log.warning(
                        "aimdb link to %s: %s (retrying)", self.endpoint or "stream", self.last_error
                    )
                delay = backoff_delay(first, cap, attempt)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self._client = client
            self.connects += 1
            try:
                await self._session(client, routes, pending)
            except (RemoteError, OSError) as exc:
                if self._closing:  # our own shutdown closed the session
                    return
                self.last_error = str(exc)
                _log.warning("aimdb link to %s lost: %s", self.endpoint or "stream", exc)
            finally:
                self._connected.clear()
                self._client = None
                self._bad_frames += client.bad_frames
                self.disconnects += 1
                await client.aclose()
            delay = first * (0.5 + 0.5 * random.random())
            await asyncio.sleep(delay)

    async def _session(self, client: AsyncClient, routes: Any, pending: dict[Any, list[Any]]) -> None:
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        try:
            by_addr: dict[str, list[Any]] = {}
            for r in routes.inbound:
                by_addr.setdefault(r.address, []).append(r)
            for addr, rs in by_addr.items():
                sub = await client.subscribe(addr, snapshot=True)
                tasks.append(loop.create_task(self._inbound(sub, rs), name=f"aimdb.link.in[{addr}]"))
            for r in routes.outbound:
                out = self._outbound(client, r, pending)
                tasks.append(loop.create_task(out, name=f"aimdb.link.out[{r.key}]"))
            self._connected.set()
            closed = loop.create_task(client.wait_closed())
            try:
                done, _ = await asyncio.wait([closed, *tasks], return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            for t in done:
                if t is not closed and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            if client.closed:
                raise RemoteError("connection_closed", "peer closed the connection")
        finally:
            for t in tasks:
                t.cancel()
            if tasks:  # their errors were raised above; a cancellation of ours propagates
                await asyncio.wait(tasks)

    async def _inbound(self, sub: Any, routes: list[Any]) -> None:
        async for ev in sub:  # the server sends only the keys the routes' address matched
            source = "aimdb://" + ev.key
            for r in routes:
                r.deliver(ev.raw, source)
        raise RemoteError("connection_closed", "subscription ended")

    async def _outbound(self, client: AsyncClient, route: Any, pending: dict[Any, list[Any]]) -> None:
        """Send ``route``'s values one request each; what is not acknowledged stays in ``pending``.

        Values taken from the reader but not yet answered (the connection was lost, or the
        session was cancelled) stay in ``pending[route]`` and go first on the next session,
        unless :meth:`~aimdb.links.OutboundRoute.next_batch` finds them stale.
        """
        warned = False
        while True:
            values = await route.next_batch(64, pending.pop(route, None))
            if values is None:
                await asyncio.Event().wait()  # record closed: park until cancelled
                return
            done = 0
            try:
                for value in values:
                    try:
                        payload = route.encode(value)
                    except Exception as exc:
                        route.value_failed(repr(exc))
                        done += 1
                        continue
                    try:
                        await client.set(route.address, msgspec.Raw(payload))
                    except RemoteError as exc:
                        if exc.code in ("connection_closed", "timeout"):
                            raise
                        route.stats.failed += 1
                        route.stats.last_error = str(exc)
                        if not warned:
                            warned = True
                            _log.warning("aimdb link %s refused by the peer: %s", route.spec.url, exc)
                    else:
                        route.stats.sent += 1
                        route.stats.bytes += len(payload)
                    done += 1
            finally:
                if done < len(values):
                    pending[route] = values[done:]

    async def shutdown(self, timeout: float) -> None:
        """Let outbound values still pending go out (within ``timeout``), then disconnect."""
        loop = asyncio.get_running_loop()
        self._closing = True
        deadline = loop.time() + timeout * 0.8
        routes = self._routes
        while routes is not None and self.connected and loop.time() < deadline:
            if not self._pending and not any(r.reader.pending() for r in routes.outbound):
                break
            await asyncio.sleep(0.01)
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await wait_for(client.aclose(), timeout)
