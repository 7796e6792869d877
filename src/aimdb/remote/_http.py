"""The HTTP listener: the remote protocol over WebSocket (``/ws``), ``/metrics`` and the dashboard's files.

One aiohttp application per listener. ``GET /ws`` upgrades to a WebSocket after the
Origin check (a browser page from a foreign origin gets HTTP 403 before any upgrade; a
request without ``Origin`` is a non-browser client and is let through). ``GET /metrics``
answers with the Prometheus text format when a renderer is given. Every other ``GET``
serves a file of the static folder (``/`` is its ``index.html``).

The same listener serves a database (:class:`~aimdb.remote.RemoteServer` with
``RemoteConfig(http=...)``) and relays for ``aimdb dashboard`` (:mod:`._relay`): what
happens on an accepted WebSocket is the ``on_websocket`` callback's job.

This module imports aiohttp; import it only when an HTTP listener is configured.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from . import _protocol as P
from ._transport import WS_MESSAGE_TOO_BIG

try:
    from aiohttp import WSMsgType, web
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the HTTP listener (WebSocket, /metrics, dashboard) needs aiohttp: pip install 'aimdb[dashboard]'"
    ) from exc

_log = logging.getLogger("aimdb.remote")

_SHUTDOWN_TIMEOUT = 2.0  # seconds aiohttp waits for running handlers when the listener closes
_TOO_LARGE = P.error_frame(None, P.FRAME_TOO_LARGE, "message longer than max_frame; closing").rstrip(b"\n")
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of ``/metrics`` (the Prometheus text exposition format 0.0.4)."""

OnWebSocket = Callable[[web.WebSocketResponse, web.Request], Awaitable[None]]
"""Serves one accepted, prepared WebSocket until the connection should end."""


class ProtocolWebSocket(web.WebSocketResponse):
    """A WebSocket that tells the peer why before closing for an oversized message.

    aiohttp closes a WebSocket whose message exceeds ``max_msg_size`` by itself (code
    1009) without reading the message; this sends the protocol's ``frame_too_large``
    error frame first, so a client sees the same error as on a socket.
    """

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        """Close the WebSocket (for code 1009, after a ``frame_too_large`` error frame)."""
        if code == WS_MESSAGE_TOO_BIG and not self.closed:
            with suppress(ConnectionError, RuntimeError):
                await self.send_frame(_TOO_LARGE, WSMsgType.TEXT)
        return await super().close(code=code, message=message, drain=drain)


def _norm(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class OriginPolicy:
    """Which browser origins may open ``/ws``.

    Always allowed: the listener's own origin ``http://HOST:PORT`` and, for a loopback or
    wildcard host, ``http://localhost:PORT``, ``http://127.0.0.1:PORT`` and
    ``http://[::1]:PORT``. Also allowed: every entry of ``extra`` (compared without case
    and trailing slash; ``"*"`` allows any origin). A request without ``Origin`` is
    allowed (browsers always send one on a WebSocket upgrade).

    Args:
        extra: further allowed origins (``RemoteConfig.allowed_origins``).
    """

    __slots__ = ("_allowed", "_any")

    def __init__(self, extra: Sequence[str]) -> None:
        self._any = any(o.strip() == "*" for o in extra)
        self._allowed = {_norm(o) for o in extra if o.strip() != "*"}

    def bind(self, host: str, port: int) -> None:
        """Add the listener's own origins once its port is known."""
        shown = f"[{host}]" if ":" in host else host
        self._allowed.add(_norm(f"http://{shown}:{port}"))
        if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""):
            for h in ("localhost", "127.0.0.1", "[::1]"):
                self._allowed.add(f"http://{h}:{port}")

    def allows(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header (``None``: none) may upgrade."""
        return origin is None or self._any or _norm(origin) in self._allowed


class HttpListener:
    """An aiohttp server on ``HOST:PORT`` with ``/ws``, optional ``/metrics`` and static files.

    Args:
        address: ``"HOST:PORT"`` (port 0 picks a free port).
        on_websocket: serves each accepted WebSocket (see :data:`OnWebSocket`).
        allowed_origins: further origins allowed to open ``/ws`` (see :class:`OriginPolicy`).
        max_msg_size: largest WebSocket message accepted, in bytes.
        static_dir: folder served at ``/`` (``None`` or missing: no files served).
        metrics: renders the ``/metrics`` body (``None``: no ``/metrics``).
        on_origin_refused: called with the refused origin for each 403 (for counting).
    """

    def __init__(
        self,
        address: str,
        *,
        on_websocket: OnWebSocket,
        allowed_origins: Sequence[str] = (),
        max_msg_size: int = P.DEFAULT_MAX_FRAME,
        static_dir: str | None = None,
        metrics: Callable[[], bytes] | None = None,
        on_origin_refused: Callable[[str], None] | None = None,
    ) -> None:
        ep = P.parse_endpoint(address if "://" in address else "tcp://" + address)
        self._host = ep.host or "127.0.0.1"
        self._port = ep.port or 0
        self._on_websocket = on_websocket
        self._origins = OriginPolicy(allowed_origins)
        self._max_msg_size = max_msg_size
        self._static_dir = static_dir
        self._metrics = metrics
        self._on_origin_refused = on_origin_refused
        self._refusals_logged = 0
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    @property
    def url(self) -> str | None:
        """``http://HOST:PORT/`` of the bound listener (the real port for port 0), else ``None``."""
        if self.address is None:
            return None
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._serve_metrics)
        d = self._static_dir
        if d is not None and os.path.isdir(d):
            index = os.path.join(d, "index.html")

            async def serve_index(request: web.Request) -> web.StreamResponse:
                return web.FileResponse(index)  # a missing file is answered with 404

            app.router.add_get("/", serve_index)
            app.router.add_static("/", d, follow_symlinks=False)
        elif d is not None:
            _log.warning("HTTP listener: static folder %s does not exist; serving no files", d)
        return app

    async def start(self) -> None:
        """Bind the listener.

        Raises:
            OSError: the address could not be bound.
        """
        runner = web.AppRunner(self._app(), shutdown_timeout=_SHUTDOWN_TIMEOUT, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=512)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        name = runner.addresses[0] if runner.addresses else (self._host, self._port)
        self.address = (str(name[0]), int(name[1]))
        self._origins.bind(self._host, self.address[1])
        if self._host != self.address[0]:
            self._origins.bind(self.address[0], self.address[1])

    async def aclose(self) -> None:
        """Stop listening; running handlers get a bounded time, then are cancelled. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        return web.Response(body=self._metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not self._origins.allows(origin):
            assert origin is not None
            if self._on_origin_refused is not None:
                self._on_origin_refused(origin)
            self._refusals_logged += 1
            if self._refusals_logged <= 1:  # once: a foreign page may retry in a loop
                _log.warning("HTTP listener: WebSocket from origin %r refused (not allowed)", origin)
            raise web.HTTPForbidden(text=f"origin {origin!r} is not allowed; see allowed_origins")
        ws = ProtocolWebSocket(max_msg_size=self._max_msg_size, autoping=True)
        await ws.prepare(request)
        await self._on_websocket(ws, request)
        return ws
