"""``aimdb dashboard``: serve the dashboard page and relay its WebSocket to a running instance.

:class:`DashboardRelay` runs an HTTP listener (:mod:`._http`: static files, Origin check,
``/ws``) in a process of its own. Each accepted WebSocket gets its own connection to the
instance's Unix or TCP endpoint; frames pass unchanged in both directions (a text message
becomes one NDJSON line and back), so the handshake, token, permissions and limits are the
instance's. Flow control passes through: the relay reads the instance only as fast as the
browser takes messages, so a slow page costs events at the instance (counted there as
``events_dropped``), not memory here.

When the instance goes away (its connection ends or cannot be opened) the WebSocket is
closed with code 1012 (service restart), so the page reconnects; the relay keeps serving.
When the instance ended the session itself after an error frame (``auth_failed``,
``version_mismatch``, ``handshake_required``, ``idle_timeout``) the code is 1000: the page
got the reason, and reconnecting would only repeat it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence

from .._aio import wait_for
from . import _protocol as P
from ._http import HttpListener, ProtocolWebSocket
from ._transport import BINARY_MESSAGE, WS_MESSAGE_TOO_BIG

try:
    from aiohttp import WSMsgType, web
except ImportError as exc:  # pragma: no cover - _http raised first
    raise ImportError("aimdb dashboard needs aiohttp: pip install 'aimdb[dashboard]'") from exc

_log = logging.getLogger("aimdb.remote.relay")

WS_SERVICE_RESTART = 1012
"""Close code when the instance went away or cannot be reached (the page reconnects)."""
LINE_LIMIT = 64 * 1024 * 1024
"""Longest line accepted from the instance, in bytes (a longer one closes that WebSocket)."""
_CONNECT_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 1.0
_FINAL_ERRORS = frozenset({P.AUTH_FAILED, P.VERSION_MISMATCH, P.HANDSHAKE_REQUIRED, P.IDLE_TIMEOUT})
_BINARY = P.error_frame(None, P.PARSE_ERROR, BINARY_MESSAGE)


class RelayCounters:
    """What a relay counts (``aimdb dashboard`` prints them when it stops).

    Attributes:
        connections: WebSockets relayed since start.
        open: WebSockets relayed now.
        instance_lost: WebSockets closed with 1012 because the instance went away or
            could not be reached.
        origin_refused: WebSocket requests refused (HTTP 403) for a foreign ``Origin``.
    """

    __slots__ = ("connections", "instance_lost", "open", "origin_refused")

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.instance_lost = 0
        self.origin_refused = 0


class DashboardRelay:
    """Serves the dashboard page and relays ``/ws`` to one instance.

    Args:
        endpoint: the instance's endpoint (``unix://PATH`` or ``tcp://HOST:PORT``).
        address: ``"HOST:PORT"`` to listen on (port 0 picks a free port).
        allowed_origins: further browser origins allowed to open ``/ws``.
        static_dir: the folder served at ``/`` (``None``: no files).
        max_frame: largest message accepted from the browser, in bytes.
    """

    def __init__(
        self,
        endpoint: P.Endpoint,
        address: str = "127.0.0.1:0",
        *,
        allowed_origins: Sequence[str] = (),
        static_dir: str | None = None,
        max_frame: int = P.DEFAULT_MAX_FRAME,
    ) -> None:
        self.endpoint = endpoint
        self.counters = RelayCounters()
        self._sockets: set[web.WebSocketResponse] = set()
        self._unreachable = False
        self._http = HttpListener(
            address,
            on_websocket=self._relay,
            allowed_origins=allowed_origins,
            max_msg_size=max_frame,
            static_dir=static_dir,
            on_origin_refused=self._origin_refused,
        )

    @property
    def url(self) -> str | None:
        """``http://HOST:PORT/`` once listening."""
        return self._http.url

    async def start(self) -> None:
        """Bind the listener.

        Raises:
            OSError: the address could not be bound.
        """
        await self._http.start()

    async def aclose(self) -> None:
        """Close every relayed WebSocket (code 1001), then stop listening (bounded). Idempotent."""
        closing = [wait_for(ws.close(code=1001), _CLOSE_TIMEOUT) for ws in list(self._sockets)]
        for r in await asyncio.gather(*closing, return_exceptions=True):
            if isinstance(r, Exception):  # that page's connection is dropped by the listener's close
                _log.warning("dashboard relay: closing a WebSocket failed: %r", r)
        await self._http.aclose()

    async def serve_forever(self) -> None:
        """Start (unless started) and serve until cancelled, then close.

        Raises:
            OSError: the address could not be bound.
            asyncio.CancelledError: when cancelled (after closing).
        """
        try:
            if self.url is None:
                await self.start()
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    def _origin_refused(self, origin: str) -> None:
        self.counters.origin_refused += 1

    async def open_instance(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a connection to the instance (bounded by a 5 s timeout).

        Raises:
            OSError: the instance refused or is not there.
            asyncio.TimeoutError: it did not accept in time.
        """
        ep = self.endpoint
        if ep.kind == "unix":
            assert ep.path is not None
            conn = asyncio.open_unix_connection(ep.path, limit=LINE_LIMIT)
        else:
            conn = asyncio.open_connection(ep.host, ep.port, limit=LINE_LIMIT)
        return await wait_for(conn, _CONNECT_TIMEOUT)

    async def _relay(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        c = self.counters
        c.connections += 1
        c.open += 1
        self._sockets.add(ws)
        try:
            code = await self._relay_one(ws, str(request.remote))
        finally:
            c.open -= 1
            self._sockets.discard(ws)
        if code == WS_SERVICE_RESTART:
            c.instance_lost += 1
        if not ws.closed:
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await wait_for(ws.close(code=code), _CLOSE_TIMEOUT)

    async def _relay_one(self, ws: web.WebSocketResponse, peer: str) -> int:
        """Relay until one side ends; return the close code for the WebSocket."""
        try:
            reader, writer = await self.open_instance()
        except (OSError, asyncio.TimeoutError) as exc:
            if not self._unreachable:  # once per outage: a page retries every few seconds
                self._unreachable = True
                _log.warning("dashboard relay: cannot reach %s: %r (pages will retry)", self.endpoint, exc)
            return WS_SERVICE_RESTART
        if self._unreachable:
            self._unreachable = False
            _log.warning("dashboard relay: %s is reachable again", self.endpoint)
        up = asyncio.ensure_future(self._browser_to_instance(ws, writer))
        down = asyncio.ensure_future(self._instance_to_browser(reader, ws))
        done: set[asyncio.Future[int | None]] = set()
        try:
            done, _ = await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down):
                t.cancel()
            ended = await asyncio.gather(up, down, return_exceptions=True)
            writer.close()
            for t, r in zip((up, down), ended, strict=True):  # a direction that failed while being stopped
                if t not in done and isinstance(r, Exception):
                    _log.error("dashboard relay for %s failed while closing", peer, exc_info=r)
        for t in (down, up):  # the instance's end decides first
            if t in done and not t.cancelled():
                failure = t.exception()
                if failure is not None:
                    _log.error("dashboard relay for %s failed", peer, exc_info=failure)
                    return 1011
                result = t.result()
                if result is not None:
                    return result
        return 1000

    async def _browser_to_instance(
        self, ws: web.WebSocketResponse, writer: asyncio.StreamWriter
    ) -> int | None:
        """Forward browser messages as lines; ``None`` when the browser closed."""
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    data = msg.data.rstrip("\r\n").encode()
                    writer.write(data + b"\n")
                    await writer.drain()
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_frame(_BINARY.rstrip(b"\n"), WSMsgType.TEXT)
                elif msg.type is WSMsgType.ERROR:  # aiohttp closed it (oversized: 1009)
                    break
        except (ConnectionError, OSError):
            return WS_SERVICE_RESTART  # writing to the instance failed: it went away
        if isinstance(ws, ProtocolWebSocket) and ws.close_code == WS_MESSAGE_TOO_BIG:
            return WS_MESSAGE_TOO_BIG
        return None

    async def _instance_to_browser(
        self, reader: asyncio.StreamReader, ws: web.WebSocketResponse
    ) -> int | None:
        """Forward instance lines as messages; 1012 when the instance ended the connection."""
        final = False  # the last frame was an error after which the instance ends the session
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return 1000 if final else WS_SERVICE_RESTART
            except asyncio.LimitOverrunError:
                _log.warning(
                    "dashboard relay: a frame from the instance exceeds %d bytes; closing", LINE_LIMIT
                )
                return 1009
            except (ConnectionError, OSError):
                return WS_SERVICE_RESTART
            frame = line.rstrip(b"\r\n")
            final = frame.startswith(b'{"id"') and b'"error"' in frame and _final_error(frame)
            if frame:
                try:
                    await ws.send_frame(frame, WSMsgType.TEXT)
                except ConnectionError:
                    return None  # the browser went away


def _final_error(frame: bytes) -> bool:
    """Whether ``frame`` is an error reply after which the instance ends the session."""
    try:
        err = json.loads(frame).get("error")
    except ValueError:
        return False
    return isinstance(err, dict) and err.get("code") in _FINAL_ERRORS


async def run_dashboard(
    endpoint: P.Endpoint,
    address: str,
    *,
    allowed_origins: Sequence[str] = (),
    announce: Callable[[str], None],
    report: Callable[[RelayCounters], None] | None = None,
) -> None:
    """Serve the dashboard for ``endpoint`` on ``address`` until cancelled (``aimdb dashboard``).

    Checks first that the instance accepts connections, then binds, calls ``announce``
    with the page's URL, and serves; when it stops, ``report`` gets the relay's counters.

    Raises:
        OSError: the instance cannot be reached, or ``address`` cannot be bound.
        asyncio.CancelledError: when cancelled (after closing every relayed connection).
    """
    try:
        from ..dashboard import STATIC_DIR
    except ImportError:
        static: str | None = None
    else:
        static = STATIC_DIR
    relay = DashboardRelay(endpoint, address, allowed_origins=allowed_origins, static_dir=static)
    try:
        _, writer = await relay.open_instance()
    except asyncio.TimeoutError:
        raise OSError(
            f"instance at {endpoint} did not accept a connection in {_CONNECT_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        raise OSError(f"cannot reach the instance at {endpoint}: {exc}") from None
    writer.close()
    await relay.start()
    assert relay.url is not None
    announce(relay.url)
    try:
        await relay.serve_forever()
    finally:
        if report is not None:
            report(relay.counters)
