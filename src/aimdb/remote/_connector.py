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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .._aio import first_of, wait_for
from .._core._builder import key_problem
from .._core._connector import InboundRoute, OutboundRoute
from .._core._connector_stats import ConnectorCounters, ConnectorStatistics
from ..connectors._base import BaseConnector, Endpoint, ReconnectPolicy
from . import _protocol as P
from ._client import CLIENT_MAX_DEPTH, CLIENT_MAX_FRAME, AsyncClient, RemoteError, Subscription

_log = logging.getLogger("aimdb.remote.link")

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, Any]]]


class AimdbLinkStatistics(ConnectorStatistics):
    """A snapshot of an ``aimdb://`` link: :class:`~aimdb.connectors.ConnectorStatistics` plus ``bad_frames``.

    Attributes:
        bad_frames: frames from the peer skipped as malformed, too large or too deep, over
            every connection.
    """

    __slots__ = ("bad_frames",)

    bad_frames: int

    def __init__(self, counters: ConnectorCounters, bad_frames: int) -> None:
        super().__init__(counters)
        self._init({"bad_frames": bad_frames})


class AimdbConnector(BaseConnector):
    """Connector for the ``aimdb`` scheme (instance-to-instance links).

    Connects to the peer, subscribes every inbound route's address (a key or ``*``/``#``
    pattern, with the late-joiner snapshot) and pushes every outbound route's values with
    ``record.set``. It shares the connect / serve / reconnect loop, the outbound pump and
    the supervision of its tasks with the broker connectors
    (:class:`~aimdb.connectors.BaseConnector`): on any connection problem it reconnects per
    its :class:`~aimdb.connectors.ReconnectPolicy` and re-subscribes. While disconnected
    outbound values wait in the record's reader, so a ring resends its backlog (up to
    capacity) and SingleLatest only its newest value.

    Args:
        endpoint: ``unix://PATH`` or ``tcp://HOST:PORT`` of the peer (ignored with ``opener``).
        token: the peer's token, if it has one.
        opener: ``async () -> (reader, writer)`` opening any byte stream (pipe, serial
            port ...) instead of a socket.
        backoff: ``(first delay, maximum delay)`` in seconds between reconnects (a
            shorthand for ``reconnect=ReconnectPolicy(first, maximum)``).
        reconnect: the :class:`~aimdb.connectors.ReconnectPolicy` (wins over ``backoff``).
        timeout: seconds for connecting and for each request.
        name: client name sent in ``hello``.
        max_frame: largest frame accepted from the peer, in bytes.
        max_depth: deepest nesting accepted in a reply from the peer. Frames from the
            peer that are malformed, too large or too deep are skipped, counted
            (``bad_frames`` in :meth:`statistics`) and logged once per connection.

    Raises:
        ValueError: neither ``endpoint`` nor ``opener``, or a bad endpoint.
    """

    scheme = "aimdb"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        opener: Opener | None = None,
        backoff: tuple[float, float] | None = None,
        reconnect: ReconnectPolicy | None = None,
        timeout: float = 5.0,
        name: str = "aimdb-link",
        max_frame: int = CLIENT_MAX_FRAME,
        max_depth: int = CLIENT_MAX_DEPTH,
    ) -> None:
        if endpoint is None and opener is None:
            raise ValueError("AimdbConnector needs an endpoint or an opener")
        label = "stream"
        if opener is None and endpoint is not None:
            label = str(P.parse_endpoint(endpoint))  # raises ValueError early on a bad endpoint
        if reconnect is None and backoff is not None:
            reconnect = ReconnectPolicy(initial_delay=backoff[0], max_delay=backoff[1])
        super().__init__(Endpoint("aimdb", label, 0), reconnect, timeout, label=label)
        self.scheme = "aimdb"
        self._bad_frames = 0  # of closed connections; the open client counts its own
        self.peer = endpoint
        self.token = token
        self.opener = opener
        self.timeout = timeout
        self.name = name
        self.max_frame = max_frame
        self.max_depth = max_depth
        self.batch_size = 64
        self._client: AsyncClient | None = None
        self._subs: list[tuple[Subscription, list[InboundRoute]]] = []
        self._refused_warned: set[str] = set()

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

    def statistics(self) -> AimdbLinkStatistics:
        """Return a snapshot (:class:`AimdbLinkStatistics`) of the counters, ``bad_frames`` included."""
        client = self._client
        bad = self._bad_frames + (client.bad_frames if client is not None else 0)
        return AimdbLinkStatistics(self.stats, bad)

    # -------------------------------------------------------------- connection

    async def _open(self) -> AsyncClient:
        if self.opener is not None:
            reader, writer = await self.opener()
            return await AsyncClient.from_streams(
                reader,
                writer,
                token=self.token,
                client_name=self.name,
                timeout=self.timeout,
                max_frame=self.max_frame,
                max_depth=self.max_depth,
            )
        assert self.peer is not None
        return await AsyncClient.connect(
            self.peer,
            token=self.token,
            client_name=self.name,
            timeout=self.timeout,
            max_frame=self.max_frame,
            max_depth=self.max_depth,
        )

    async def _connect(self) -> None:
        client = await self._open()
        self._client = client
        routes = self._routes
        by_addr: dict[str, list[InboundRoute]] = {}
        for r in routes.inbound if routes is not None else []:
            by_addr.setdefault(r.address, []).append(r)
        self._subs = [(await client.subscribe(addr, snapshot=True), rs) for addr, rs in by_addr.items()]

    async def _serve(self) -> str | None:
        client = self._client
        assert client is not None
        await first_of(client.wait_closed(), *(self._inbound(sub, rs) for sub, rs in self._subs))
        return "peer closed the connection"

    async def _inbound(self, sub: Subscription, routes: list[InboundRoute]) -> None:
        async for ev in sub:  # the server sends only the keys the routes' address matched
            source = "aimdb://" + ev.key
            for r in routes:
                r.deliver(ev.raw, source)
        raise RemoteError("connection_closed", "subscription ended")

    async def _close(self) -> None:
        client, self._client = self._client, None
        self._subs = []
        if client is None:
            return
        self._bad_frames += client.bad_frames
        client.bad_frames = 0
        with contextlib.suppress(Exception):
            await wait_for(client.aclose(), self.timeout)

    # -------------------------------------------------------------- outbound

    async def _send(self, route: OutboundRoute, values: list[Any]) -> list[Any]:
        """Send ``values`` one ``record.set`` each; returns what the lost connection left unsent."""
        client = self._client
        if client is None or client.closed:
            return values
        stats = route.stats
        for i, value in enumerate(values):
            try:
                payload = route.encode(value)
            except Exception as exc:
                route.value_failed(repr(exc))
                route.settled = i + 1
                continue
            try:
                await client.set(route.address, msgspec.Raw(payload))
            except RemoteError as exc:
                if exc.code in ("connection_closed", "timeout"):
                    return values[i:]
                stats.failed += 1
                stats.error(str(exc))
                if route.key not in self._refused_warned:
                    self._refused_warned.add(route.key)
                    _log.warning("aimdb link %s refused by the peer: %s", route.spec.url, exc)
            else:
                stats.sent += 1
                stats.bytes += len(payload)
            route.settled = i + 1
        return []

    async def shutdown(self, timeout: float) -> None:
        """Let the values still in the records' readers go out (within ``timeout``), then disconnect."""
        deadline = time.monotonic() + max(0.0, timeout) * 0.8
        if self.connected:
            await self._wait_pumps(deadline)
        await self._shut()

