"""The remote-access server: serves one running database to remote clients.

One :class:`RemoteServer` serves one running database over a Unix socket, TCP, any byte
stream, and (with ``RemoteConfig.http``) WebSocket. It puts together the listeners
(:mod:`._listeners`; the HTTP listener in :mod:`._http`, imported only when configured),
the sessions (:mod:`._session` over a :mod:`._transport`, requests dispatched through the
one method table of :mod:`._methods`), the subscription fan-out (:mod:`._fanout`) and the
owner of every task it starts (:mod:`._tasks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from .. import AimDb
from .._aio import wait_for
from .._core._connector import Connector
from . import _protocol as P
from ._config import AUTO, RemoteConfig
from ._fanout import FanOut
from ._listeners import Listeners
from ._records import RecordAccess
from ._session import Session
from ._stats import RemoteServerStatistics, ServerCounters
from ._tasks import TaskOwner
from ._transport import StreamTransport, StreamWriterLike, Transport, WebSocketTransport

if TYPE_CHECKING:
    from aiohttp import web

    from ._http import HttpListener

_log = logging.getLogger("aimdb.remote")

_REJECT_TIMEOUT = 1.0  # seconds for each step of refusing a connection
_CLOSE_TIMEOUT = 2.0  # seconds aclose() waits for sessions, then for tasks and listeners


class RemoteServer:
    """Serves one running database to remote clients.

    Use it through :func:`serve` (a service coroutine), :func:`start_server` (after the
    database started) or :class:`RemoteAccess` (on the builder). Directly::

        server = RemoteServer(db, RemoteConfig(tcp="127.0.0.1:0"))
        await server.start()
        ...
        await server.aclose()

    Every task the server starts (per-connection readers and writers, per-record feeds)
    is owned by it: one that fails is logged once with its traceback and counted in
    :meth:`statistics` (``failures``, ``last_error``, ``last_error_at``).

    Args:
        db: a running :class:`aimdb.AimDb` (its loop is the server's loop).
        config: the configuration (default: read-only on the default Unix socket).

    Raises:
        ValueError: the configuration is invalid (every problem listed).
    """

    def __init__(self, db: AimDb, config: RemoteConfig | None = None) -> None:
        self.db = db
        self.config = config = config if config is not None else RemoteConfig()
        problems = config.problems()
        if problems:
            raise ValueError("invalid RemoteConfig: " + "; ".join(problems))
        self.counters = ServerCounters()
        self.tasks = TaskOwner(self.counters)
        self.records = RecordAccess(db, config)
        self.fanout = FanOut(db, self.records.encoder, self.counters, self.tasks)
        self._listeners = Listeners(config, self._on_connect)
        self._http: HttpListener | None = None
        self._sessions: set[Session] = set()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._started = asyncio.Event()
        self._closed = False
        self.started_at = time.time_ns()
        """Wall-clock time (ns since the epoch) this server was created; ``hello`` reports it."""

    def reset_counters(self) -> None:
        """Zero the server's counters (``stats.reset``)."""
        self.counters.reset()

    # -------------------------------------------------------------- addresses

    @property
    def unix_path(self) -> str | None:
        """The Unix socket path, once listening."""
        return self._listeners.unix_path

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the TCP listener, once listening (the real port for port 0)."""
        return self._listeners.tcp_address

    @property
    def endpoints(self) -> list[str]:
        """Connect strings (``unix://...``, ``tcp://...``) of every listener."""
        return self._listeners.endpoints

    @property
    def http_url(self) -> str | None:
        """``http://HOST:PORT/`` of the HTTP listener once listening (``RemoteConfig.http``), else ``None``.

        The dashboard page is at this URL, the WebSocket at ``ws://HOST:PORT/ws`` and
        the metrics at ``<url>metrics``.
        """
        return self._http.url if self._http is not None else None

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
        try:
            await self._listeners.start()
            if self.config.http is not None:
                self._http = self._http_listener(self.config.http)
                await self._http.start()
        except BaseException:
            await self.aclose()
            raise
        self._started.set()
        where = [*self.endpoints, *([self.http_url] if self.http_url else [])]
        _log.info("remote access listening on %s", ", ".join(where) or "(streams only)")

    def _http_listener(self, address: str) -> HttpListener:
        from ._http import HttpListener  # aiohttp only when HTTP is configured

        cfg = self.config
        static = cfg.static_dir
        if static == AUTO:
            try:
                from ..dashboard import STATIC_DIR
            except ImportError:
                static = None
            else:
                static = STATIC_DIR
        metrics = None
        if cfg.metrics:
            from ._metrics import MetricsRenderer

            metrics = MetricsRenderer(self.db, self.statistics).render
        return HttpListener(
            address,
            on_websocket=self._on_websocket,
            allowed_origins=cfg.allowed_origins,
            max_msg_size=cfg.max_frame,
            static_dir=static,
            metrics=metrics,
            on_origin_refused=self._origin_refused,
        )

    def _origin_refused(self, origin: str) -> None:
        self.counters.origin_refused += 1

    async def _on_websocket(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        peer = f"ws:{request.remote}"
        transport = request.transport
        t = WebSocketTransport(ws, transport.abort if transport is not None else lambda: None)
        try:
            await self.serve_transport(t, peer, self.config.idle_timeout)
        except Exception as exc:  # the end of this handler is seen here: logged and counted
            self.counters.failed(f"session {peer}", exc)
            _log.error("remote session %s failed", peer, exc_info=exc)
        finally:
            if not t.aborted and not ws.closed:
                code = 1001 if self._closed and t.close_code == 1000 else t.close_code
                with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                    await wait_for(ws.close(code=code), _REJECT_TIMEOUT)

    async def serve_forever(self) -> None:
        """Start (unless started) and serve until cancelled; then close everything.

        Raises:
            OSError: a listener could not be bound.
            asyncio.CancelledError: when cancelled (after closing).
        """
        try:
            if not self._started.is_set():
                await self.start()
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, end every session and feed, remove the socket file. Idempotent.

        Sessions get a bounded time to send the replies they queued; whatever is still
        running afterwards is cancelled.

        Raises:
            asyncio.CancelledError: the caller was cancelled while waiting; everything is
                released and cancelled all the same.
        """
        if self._closed:
            return
        self._closed = True
        self._listeners.close()
        for s in list(self._sessions):
            s.stop()
        try:
            await wait_for(self._no_sessions.wait(), _CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            _log.warning("remote access: %d session(s) did not end in time", len(self._sessions))
        finally:
            for s in list(self._sessions):
                s.cleanup()
            self.fanout.close()
        await self.tasks.cancel_all(_CLOSE_TIMEOUT)
        await self._listeners.wait_closed(_CLOSE_TIMEOUT)
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> RemoteServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -------------------------------------------------------------- sessions

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername") or "unix")
        transport = StreamTransport(reader, writer, self.config.max_frame)
        try:
            await self.serve_transport(transport, peer, self.config.idle_timeout)
        except Exception as exc:  # the end of this task is seen here: logged and counted
            self.counters.failed(f"session {peer}", exc)
            _log.error("remote session %s failed", peer, exc_info=exc)

    async def serve_stream(
        self,
        reader: asyncio.StreamReader,
        writer: StreamWriterLike,
        *,
        peer: str = "stream",
        idle_limit: bool = True,
    ) -> None:
        """Serve one session over any byte stream until it ends (EOF, error, time limit or close).

        ``writer`` needs ``write(bytes)``, ``await drain()`` and ``close()`` (an
        :class:`asyncio.StreamWriter` fits; so does one over a pipe or serial port).
        The connection limit applies: a refused stream gets ``too_many_connections``
        (or ``shutting_down``) and is closed. So does ``handshake_timeout``, and, unless
        ``idle_limit`` is False, ``idle_timeout``: pass False for a dedicated line that
        may stay quiet longer (a station that sends rarely and cannot reconnect).

        Raises:
            asyncio.CancelledError: the calling task was cancelled (the session is closed
                and released first).
        """
        transport = StreamTransport(reader, writer, self.config.max_frame)
        await self.serve_transport(transport, peer, self.config.idle_timeout if idle_limit else None)

    async def serve_transport(self, transport: Transport, peer: str, idle_timeout: float | None) -> None:
        """Serve one session over ``transport`` (see :mod:`aimdb.remote._transport`) until it ends.

        Used by the stream listeners and the WebSocket endpoint alike: the connection
        limit, time limits and counters are the same. A refused connection gets
        ``too_many_connections`` (or ``shutting_down``) and is closed.

        Raises:
            asyncio.CancelledError: the calling task was cancelled (the session is closed
                and released first).
        """
        if self._closed or len(self._sessions) >= self.config.max_connections:
            await self._refuse(transport)
            return
        session = Session(self, transport, peer, idle_timeout)
        self._sessions.add(session)
        self._no_sessions.clear()
        self.counters.connections_total += 1
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            if not self._sessions:
                self._no_sessions.set()

    async def _refuse(self, transport: Transport) -> None:
        self.counters.rejected += 1
        code, msg = (
            (P.SHUTTING_DOWN, "server is shutting down")
            if self._closed
            else (P.TOO_MANY_CONNECTIONS, f"at most {self.config.max_connections} connections")
        )
        try:
            transport.write(P.error_frame(None, code, msg))
            await wait_for(transport.drain(), _REJECT_TIMEOUT)
            await transport.end_output(_REJECT_TIMEOUT)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass  # the peer is gone or slow: it is refused either way
        finally:
            transport.close(abort=False)

    # -------------------------------------------------------------- statistics

    def statistics(self) -> RemoteServerStatistics:
        """Return a snapshot of the server's counters (see :class:`RemoteServerStatistics`)."""
        sessions = self._sessions
        return RemoteServerStatistics(
            name=self.config.name,
            endpoints=self.endpoints,
            connections=len(sessions),
            subscriptions=sum(len(s.subs) for s in sessions),
            feeds=len(self.fanout.feeds),
            counters=self.counters,
        )


async def serve(db: AimDb, config: RemoteConfig | None = None) -> None:
    """Serve ``db`` until cancelled: ``db.add_service("remote", serve, db, cfg)``.

    Binds the listeners of ``config`` (default: read-only, default Unix socket), serves
    clients, and on cancellation closes every session and removes the socket file.

    Raises:
        OSError: a listener could not be bound.
        ValueError: the configuration is invalid.
    """
    await RemoteServer(db, config).serve_forever()


async def start_server(db: AimDb, config: RemoteConfig | None = None) -> RemoteServer:
    """Start serving an already running ``db`` and return the bound server.

    Call right after ``async with builder.build() as db:``. The server runs as a service
    of the database (stopped with it); listeners are bound when this returns, so
    ``server.endpoints`` is ready to print.

    Raises:
        OSError: a listener could not be bound.
        ValueError: the configuration is invalid.
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

    Raises:
        ValueError: the configuration is invalid (every problem listed).
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
            try:
                await wait_for(self.server.aclose(), timeout)
            except asyncio.TimeoutError:
                _log.warning("remote access did not close within %g s", timeout)
