"""The NATS connector: the connection, core NATS subscriptions and publishing.

JetStream (acknowledged publishes, pull consumers) is in :mod:`._jetstream`, the guard
of the connector's own callbacks and tasks in :mod:`._guard`; the behaviour is described
in :mod:`aimdb.connectors.nats`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..._aio import wait_for
from ..._core._connector import ConnectorRoutes, InboundRoute, OutboundRoute
from ..._core._links import LinkSpec
from ..._errors import ConnectionFailed, ConnectorTimeout
from .._base import BaseConnector, ReconnectPolicy, _reason, parse_endpoint, translate_error
from ._client import GONE, Client, Msg, abort, nats_errors, written
from ._guard import Guard
from ._jetstream import PublishAcks, PullConsumer
from ._subjects import NAME_UNSAFE, consumer_name, subject_problem

__all__ = ("NatsConnector",)

_log = logging.getLogger("aimdb.connectors.nats")


class NatsConnector(BaseConnector):
    """Mirror records to and from NATS subjects (core NATS or JetStream).

    Args:
        url: server URL, ``nats://host[:port]`` (default port 4222) or ``tls://host[:port]``
            (TLS). Credentials may be given as ``nats://user:pw@host`` or, for a token,
            ``nats://token@host``.
        name: connection name shown by the server's monitoring.
        username: user name (overrides the URL's).
        password: password (overrides the URL's).
        token: authorization token (overrides a token in the URL).
        user_credentials: path of a ``.creds`` file (JWT and NKey; needs the ``nkeys`` package).
        tls: ``True``/``False`` or an ``ssl.SSLContext``; default: on for ``tls://``.
        tls_hostname: host name to verify the server certificate against.
        jetstream: JetStream for links that do not set ``.option("jetstream", ...)``.
        durable: JetStream: make ``link_from`` consumers durable, one per subject, named
            from this prefix (see :meth:`consumer_name`); ``None`` uses ephemeral consumers,
            which the server drops 60 s after the last pull or when it restarts; a new one
            then starts as ``start`` says (with ``"latest"``, what came in between is skipped).
        start: JetStream: where a new consumer starts, ``"latest"`` (new messages only) or
            ``"earliest"`` (everything in the stream).
        stream: JetStream: the stream that ``link_from`` consumers read (default: looked up
            from the subject).
        ack_timeout: JetStream: seconds to wait for a publish acknowledgement while connected;
            a publish without one counts as ``failed`` and is not sent again.
        max_inflight: JetStream: most publishes awaiting acknowledgement at a time.
        batch_size: most values taken from one reader at a time.
        pending_bytes: most bytes waiting in nats-py's outgoing buffer before a route stops
            reading (backpressure).
        ping_interval: seconds between keep-alive pings; after ``max_outstanding_pings``
            unanswered pings the connection counts as lost.
        max_outstanding_pings: see ``ping_interval``.
        options: more keyword arguments for ``nats.aio.client.Client.connect``
            (e.g. ``nkeys_seed``, ``inbox_prefix``, ``tls_handshake_first``).
        reconnect: :class:`~aimdb.connectors.ReconnectPolicy`: delays between connection
            attempts, of the first connection and of nats-py's reconnects alike.
        connect_timeout: seconds one connection attempt (TCP, TLS, handshake, subscriptions)
            may take.

    Attributes:
        slow_consumer_drops: messages nats-py dropped because a subscription's queue was full.
        duplicates_dropped: JetStream messages delivered again after they had been delivered
            (redeliveries after a server crash), acknowledged and dropped.

    An exception raised in one of the connector's own nats-py callbacks (a bug, or e.g. a
    record refusing a value it decoded) is counted in ``statistics().errors``, logged once
    with its traceback and kept in ``last_error`` of the links concerned; the callback
    goes on with the next message. One raised in a route's task (publishing, pulling) is
    the database's to supervise: counted in the link's ``errors``, the task restarted
    (values it had taken and not handed over count as ``failed``).

    Raises:
        ValueError: bad URL or option.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        name: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        user_credentials: str | None = None,
        tls: bool | _ssl.SSLContext | None = None,
        tls_hostname: str | None = None,
        jetstream: bool = False,
        durable: str | None = None,
        start: str = "latest",
        stream: str | None = None,
        ack_timeout: float = 5.0,
        max_inflight: int = 1024,
        batch_size: int = 512,
        pending_bytes: int = 1024 * 1024,
        ping_interval: float = 20.0,
        max_outstanding_pings: int = 2,
        options: dict[str, Any] | None = None,
        reconnect: ReconnectPolicy | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        ep = parse_endpoint(url, {"nats": 4222, "tls": 4222}, ("tls",))
        super().__init__(ep, reconnect, connect_timeout)
        self.scheme = "nats"
        if start not in ("latest", "earliest"):
            raise ValueError("start must be 'latest' or 'earliest'")
        if durable is not None and (not durable or NAME_UNSAFE.search(durable)):
            raise ValueError("durable must be a non-empty name of letters, digits, '_' and '-'")
        if max_inflight < 1 or batch_size < 1 or pending_bytes < 1:
            raise ValueError("max_inflight, batch_size and pending_bytes must be at least 1")
        if ack_timeout <= 0 or ping_interval <= 0 or max_outstanding_pings < 1:
            raise ValueError("ack_timeout and ping_interval must be positive, max_outstanding_pings >= 1")
        self.name = name
        url_token = ep.username if ep.username and ep.password is None else None  # nats://token@host
        self.username = username if username is not None else (None if url_token else ep.username)
        self.password = password if password is not None else ep.password
        self.token = token if token is not None else url_token
        self.user_credentials = user_credentials
        self.tls: bool | _ssl.SSLContext = ep.tls if tls is None else tls
        self.tls_hostname = tls_hostname
        self.jetstream = jetstream
        self.durable = durable
        self.start = start
        self.stream = stream
        self.ack_timeout = ack_timeout
        self.max_inflight = max_inflight
        self.batch_size = batch_size
        self.pending_bytes = pending_bytes
        self.ping_interval = ping_interval
        self.max_outstanding_pings = max_outstanding_pings
        self.options: dict[str, Any] = dict(options or {})
        self._server = ("tls" if self.tls else "nats") + "://" + ep.hostport
        self.slow_consumer_drops = 0
        self._guard = Guard(self.url, self._callback_failed)

        self._nc: Client | None = None
        self._connecting: Client | None = None
        self._core: dict[str, list[InboundRoute]] = {}
        self._consumers: list[PullConsumer] = []
        self._need_acks = False
        self._acks = PublishAcks(self.url, max_inflight, ack_timeout)
        # the name of an ephemeral consumer, kept for the connector's life so that after a
        # lost pull request the one that still exists is found again, not replaced
        self._ephemeral = "aimdb-" + uuid.uuid4().hex[:20]
        self._closed_ev: asyncio.Event | None = None
        self._client_err: BaseException | None = None
        self._attempt = 0
        self._gave_up = False
        self._resyncs = 0  # reconnects handled by _on_reconnected (the newest one wins)

    # ------------------------------------------------------------ public

    @property
    def unacked(self) -> int:
        """JetStream publishes waiting for the stream's acknowledgement."""
        return len(self._acks)

    @property
    def duplicates_dropped(self) -> int:
        """JetStream redeliveries dropped (see the class's attributes)."""
        return sum(c.duplicates_dropped for c in self._consumers)

    def consumer_name(self, subject: str) -> str | None:
        """Return the name of the durable JetStream consumer for ``subject`` (``None`` without ``durable``).

        The name is ``<durable>-<subject>-<hash>``: in the subject (its first 64 characters
        after this), each run of characters other than letters, digits, ``_`` and ``-``
        becomes one ``_``, and the first 8 hex digits of the subject's SHA-1 keep two
        subjects from sharing a consumer (``cmd.*.set`` gives ``<durable>-cmd_set-<hash>``).
        """
        return None if self.durable is None else consumer_name(self.durable, subject)

    def validate_link(self, spec: LinkSpec) -> list[str]:
        """Check a link's subject and options; returns problems for ``build()`` to report."""
        problems: list[str] = []
        for name, value in spec.options.items():
            if name == "jetstream":
                if not isinstance(value, bool):
                    problems.append("NATS option jetstream must be True or False")
            else:
                problems.append("unknown NATS link option " + repr(name))
        if spec.direction == "out":
            if spec.topic_provider is None:
                p = subject_problem(spec.address, wildcards=False)
                if p is not None:
                    problems.append(p)
        else:
            p = subject_problem(spec.address, wildcards=True)
            if p is not None:
                problems.append(p)
            if spec.topic_provider is not None:
                problems.append("a topic provider only applies to link_to")
        return problems

    # ------------------------------------------------------------ routes

    def _uses_js(self, spec: LinkSpec) -> bool:
        return bool(spec.options.get("jetstream", self.jetstream))

    async def _start_routes(self, routes: ConnectorRoutes) -> None:
        self._core = {}
        js_in: dict[str, list[InboundRoute]] = {}
        for r in routes.inbound:
            table = js_in if self._uses_js(r.spec) else self._core
            table.setdefault(r.address, []).append(r)
        self._consumers = [
            PullConsumer(
                subject,
                subject_routes,
                name=self.consumer_name(subject) or self._ephemeral,
                durable=self.durable is not None,
                stream=self.stream,
                start=self.start,
                batch_size=self.batch_size,
                guard=self._guard,
                ready=self._wait_ready,
            )
            for subject, subject_routes in js_in.items()
        ]
        self._need_acks = any(self._uses_js(r.spec) for r in routes.outbound)
        for c in self._consumers:  # a supervised task of the database each (restarted if it raises)
            self._spawn("aimdb.nats.in[" + c.subject + "]", c.run)

    # ------------------------------------------------------------ connection

    async def _connect(self) -> None:
        nc = Client()
        self._connecting = nc
        self._client_err = None
        self._gave_up = False
        self._closed_ev = asyncio.Event()
        # the live counters of every route: where the errors of the callbacks count
        rs = self._routes
        everyone = [r.stats for r in rs.outbound] + [r.stats for r in rs.inbound] if rs is not None else []

        async def on_error(exc: Exception) -> None:
            await self._on_error(nc, exc)

        async def on_disconnected() -> None:
            await self._on_disconnected(nc)

        async def on_reconnected() -> None:
            try:
                await self._on_reconnected(nc)
            except Exception as exc:
                # connected for nats-py, not for us: start over with a new connection (the
                # closed callback ends _serve, the connector's loop connects again)
                self._guard.report("the reconnected callback", exc, everyone)
                close = self._guard.callback("closing the connection", [], nc.close)
                self._spawn("aimdb.nats.restart", close)

        async def on_closed() -> None:
            if nc is self._nc and self._closed_ev is not None:
                self._closed_ev.set()

        opts: dict[str, Any] = {
            "name": self.name,
            "user": self.username,
            "password": self.password,
            "token": self.token,
            "user_credentials": self.user_credentials,
            "tls_hostname": self.tls_hostname,
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": self.max_outstanding_pings,
            # above our own limit plus a payload: nats-py would force a flush (and wait) there
            "pending_size": self.pending_bytes + 8 * 1024 * 1024,
            "flush_timeout": max(1.0, self.connect_timeout),
            **self.options,
        }
        if self.tls:
            opts["tls"] = self.tls if isinstance(self.tls, _ssl.SSLContext) else _ssl.create_default_context()
        opts = {k: v for k, v in opts.items() if v is not None}
        try:
            await nc.connect(
                servers=[self._server],
                error_cb=self._guard.callback("the error callback", everyone, on_error),
                disconnected_cb=self._guard.callback("the disconnected callback", everyone, on_disconnected),
                reconnected_cb=on_reconnected,  # guarded itself
                closed_cb=self._guard.callback("the closed callback", everyone, on_closed),
                # one attempt here (nats-py tries a refused server twice in a row); the
                # reconnect policy of the connector spaces the next ones
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=max(1, round(self.connect_timeout)),
                **opts,
            )
        except nats_errors.NoServersError:
            if self._client_err is not None:
                raise self._client_err from None
            raise
        # from now on nats-py reconnects by itself, spaced by the policy (see _on_error)
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = self.reconnect.delay(1)
        self._nc = nc
        self._connecting = None
        self._attempt = 0
        for subject, routes in self._core.items():
            await nc.subscribe(subject, cb=self._deliverer(routes))
        if self._need_acks:
            outbound = [r.stats for r in self._routes.outbound] if self._routes is not None else []
            await self._acks.subscribe(nc, self._guard, outbound)
        for c in self._consumers:
            await c.open(nc)
        await self._sync(nc)
        await self._acks.resend(nc)

    async def _sync(self, nc: Client) -> None:
        """Return once the server has processed everything sent on ``nc`` so far.

        nats-py's ``subscribe()`` (like ``publish()``) appends its SUB to the client's
        pending buffer and only kicks the flusher task, which writes the buffer to the
        socket when it next runs; ``flush()`` however writes its PING straight to the
        socket. Called right after ``subscribe()``, ``flush()`` thus puts the PING on the
        wire ahead of the SUBs still pending: the server answers PONG before it has read
        them, and a value published elsewhere right after that PONG finds no subscriber.
        So first wait until the flusher has written the pending buffer (in order), then
        PING: its PONG proves the server has read every SUB before it.

        Raises:
            nats.errors.ConnectionClosedError: the connection went while waiting.
            nats.errors.FlushTimeoutError: no PONG within ``connect_timeout``.
        """
        if not await written(nc, 0, lambda: nc.is_connected):
            raise nats_errors.ConnectionClosedError
        await nc.flush(max(1, round(self.connect_timeout)))

    def _deliverer(self, routes: list[InboundRoute]) -> Callable[[Msg], Awaitable[None]]:
        """The callback of a core subscription: decode into every route of the subject."""

        async def on_msg(msg: Msg) -> None:
            self._guard.deliver(routes, msg)

        return on_msg

    async def _serve(self) -> str | None:
        closed = self._closed_ev
        assert closed is not None
        while not closed.is_set():
            try:
                await wait_for(closed.wait(), 0.5)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            if self._ready() is None:
                continue
            if len(self._acks):
                self._acks.expire()
        if self._gave_up:
            err = self._last_exc if isinstance(self._last_exc, ConnectionFailed) else None
            text = "gave up after " + str(self._attempt) + " reconnect attempts"
            failed = ConnectionFailed(self.url, text + (": " + err.reason if err is not None else ""))
            failed.__cause__ = err
            self._record_error(failed)
            _log.error("%s: %s", self.url, failed)
            self._set_state("failed")
            self._acks.wake()
            await asyncio.Event().wait()  # stays failed until the database stops
        err_text = _reason(self._client_err) if self._client_err is not None else "connection closed"
        return err_text

    async def _on_error(self, nc: Client, exc: Exception) -> None:
        if isinstance(exc, nats_errors.SlowConsumerError):
            self.slow_consumer_drops += 1
            if self.slow_consumer_drops == 1 or self.slow_consumer_drops % 1000 == 0:
                _log.warning(
                    "%s: subscription %s too slow, nats-py dropped messages (%d so far)",
                    self.url,
                    exc.subject,
                    self.slow_consumer_drops,
                )
            return
        if nc is not self._nc and nc is not self._connecting:
            return  # a client we are done with
        self._client_err = exc
        if nc is not self._nc or self._closing:
            return
        if self.stats.state != "disconnected":
            if isinstance(exc, (OSError, asyncio.TimeoutError, nats_errors.StaleConnectionError)):
                _log.debug("%s: %r", self.url, exc)  # a loss: nats-py reconnects, that is logged
            else:  # e.g. a permissions violation reported by the server
                _log.warning("%s: %s", self.url, _reason(exc))
                self.stats.last_error = _reason(exc)
                self.stats.last_error_at = time.time()
            return
        # a failed reconnect attempt of nats-py
        self._attempt += 1
        self.stats.failed_attempts += 1
        err = translate_error(exc, self.url, "connect")
        if isinstance(err, ConnectorTimeout):
            err = ConnectionFailed(self.url, "no answer: " + _reason(exc))
            err.__cause__ = exc
        self._record_error(err)
        if self.reconnect.gives_up(self._attempt):
            if not self._gave_up:
                self._gave_up = True
                close = self._guard.callback("closing the connection", [], nc.close)
                self._spawn("aimdb.nats.give-up", close)
            return
        delay = self.reconnect.delay(self._attempt)
        nc.options["reconnect_time_wait"] = delay
        _log.warning("%s: %s; retrying in %.2fs (attempt %d)", self.url, err, delay, self._attempt)

    async def _on_disconnected(self, nc: Client) -> None:
        if nc is not self._nc or self._closing or self.stats.state != "connected":
            return
        self.stats.disconnects += 1
        self.stats.connected_since = None
        text = "connection lost" + (": " + _reason(self._client_err) if self._client_err else "")
        self._record_error(ConnectionFailed(self.url, text))
        _log.warning("%s: %s; reconnecting", self.url, text)
        self._set_state("disconnected")
        self._acks.wake()

    async def _on_reconnected(self, nc: Client) -> None:
        if nc is not self._nc or self._closing or self.stats.state != "disconnected":
            return
        self._attempt = 0
        nc.options["reconnect_time_wait"] = self.reconnect.delay(1)
        self._resyncs += 1
        turn = self._resyncs
        try:
            # nats-py has replayed the subscriptions (written ahead of its own PING); a
            # JetStream consumer may be gone (e.g. an ephemeral one after a server restart)
            for c in self._consumers:
                await c.open(nc)
            await self._acks.resend(nc)
            await self._sync(nc)
        except GONE:
            return  # lost again: nats-py reconnects and calls this again
        except nats_errors.TimeoutError as exc:
            # no PONG: nats-py's keep-alive pings find the connection dead and reconnect
            err = ConnectionFailed(self.url, "no answer after reconnecting: " + _reason(exc))
            err.__cause__ = exc
            self._record_error(err)
            _log.warning("%s: %s", self.url, err)
            return
        if turn != self._resyncs or nc is not self._nc or self._closing or not nc.is_connected:
            return  # a newer reconnect (or the shutdown) took over while this one waited
        self.stats.connects += 1
        self.stats.reconnects += 1
        self.stats.connected_since = time.time()
        _log.info("%s: reconnected", self.url)
        self._set_state("connected")
        for c in self._consumers:
            c.ask_again()  # a pull request may be lost with the old connection

    async def _close(self) -> None:
        # A client whose connect failed gets a short time: after a failed TLS upgrade
        # nats-py's close() waits forever for the plain stream (its socket is closed already).
        clients = [(c, t) for c, t in ((self._nc, 5.0), (self._connecting, 0.5)) if c is not None]
        self._nc = None
        self._connecting = None
        for c in self._consumers:
            c.forget_client()
        self._acks.wake()
        for nc, timeout in clients:
            try:
                await wait_for(nc.close(), timeout)
            except Exception as exc:
                _log.debug("%s: closing: %r", self.url, exc)
            finally:
                # nats-py closes its transport gracefully: with data still buffered for a
                # server that does not read, the socket would stay open; drop it for sure
                abort(nc)

    # ------------------------------------------------------------ outbound

    def _ready(self) -> Client | None:
        nc = self._nc
        if nc is None or not nc.is_connected or self.stats.state != "connected":
            return None
        return nc

    async def _wait_ready(self) -> Client:
        while True:
            nc = self._ready()
            if nc is not None:
                return nc
            if self.stats.state == "connected":
                await asyncio.sleep(0.01)  # nats-py noticed the loss first; the callback follows
            else:
                await self._wait_connected_quietly()

    async def _wait_drained(self, nc: Client) -> bool:
        """Wait until nats-py's outgoing buffer is below ``pending_bytes``; False if the connection went."""
        return await written(nc, self.pending_bytes, lambda: self._ready() is nc)

    async def _wait_sendable(self) -> None:
        if self._ready() is None:
            await self._wait_ready()

    async def _send(self, route: OutboundRoute, values: list[Any]) -> list[Any]:
        """The pump's send step: publish ``values`` on the current connection (see ``_send_batch``)."""
        nc = self._ready()
        if nc is None:
            return values
        return await self._send_batch(route, self._uses_js(route.spec), nc, values)

    async def _send_batch(self, route: OutboundRoute, js: bool, nc: Client, values: list[Any]) -> list[Any]:
        """Publish ``values`` on ``nc``; return those to send on the next connection.

        A value that does not encode or is refused is counted as failed (``value_failed``).
        ``route.settled`` follows the values handed over, so that an error of the
        connector's own code (it propagates to the pump, which counts it) costs exactly
        the values not handed over yet.
        """
        stats = route.stats
        nbytes = 0
        try:
            for i, value in enumerate(values):
                route.settled = i
                message = self._message(route, nc, value)
                if message is None:
                    continue
                subject, payload = message
                if nc.pending_data_size > self.pending_bytes and not await self._wait_drained(nc):
                    return values[i:]
                if js and self._acks.full:
                    while self._acks.full and self._ready() is nc:
                        await self._acks.wait()
                    if self._ready() is not nc:
                        return values[i:]
                if not nc.is_connected:
                    return values[i:]
                try:
                    if js:
                        await self._acks.publish(nc, subject, payload, stats)
                    else:
                        await nc.publish(subject, payload)
                        stats.sent += 1
                        nbytes += len(payload)
                except GONE:
                    return values[i + 1 :] if js else values[i:]  # JetStream: kept for resending
                except Exception as exc:
                    route.value_failed(str(translate_error(exc, self.url, "publish")))
            route.settled = len(values)
            return []
        finally:
            stats.bytes += nbytes

    def _message(self, route: OutboundRoute, nc: Client, value: Any) -> tuple[str, bytes] | None:
        """Return the subject and payload of ``value``; ``None``, counted as failed, when it has none."""
        try:
            payload = route.encode(value)
            if not isinstance(payload, bytes):
                payload = bytes(payload)
            provider = route.spec.topic_provider
            if provider is None:
                subject = route.address
            else:
                subject = provider(value)
                problem = subject_problem(subject, wildcards=False)
                if problem is not None:
                    raise ValueError(problem)
            if len(payload) > nc.max_payload:
                raise ValueError(
                    "payload of " + str(len(payload)) + " bytes exceeds the server's max_payload of "
                    + str(nc.max_payload)
                )
        except Exception as exc:
            route.value_failed(repr(exc))
            return None
        return subject, payload

    async def shutdown(self, timeout: float) -> None:
        """Flush within ``timeout``, then disconnect.

        Publishes what the readers still hold, waits until the server has read it (a
        PING/PONG round trip after nats-py's buffer is written) and, for JetStream, for
        the acknowledgements; then closes the connection. Values that cannot be sent in
        time (e.g. while disconnected) are dropped; JetStream publishes still without an
        acknowledgement count as ``failed``.
        """
        deadline = time.monotonic() + max(0.0, timeout) * 0.9
        if self.connected:
            await self._wait_pumps(deadline)
        nc = self._ready()
        if nc is not None:
            try:
                for c in self._consumers:
                    await c.stop()
                await wait_for(self._sync(nc), max(0.01, deadline - time.monotonic()))
            except Exception as exc:
                _log.warning("%s: flush at shutdown: %r", self.url, exc)
        while len(self._acks) and self._ready() is not None and time.monotonic() < deadline:
            try:
                await wait_for(self._acks.wait(), max(0.0, deadline - time.monotonic()))
            except (asyncio.TimeoutError, TimeoutError):
                break
        # counted before closing: the database's own deadline may cut the close short
        self._acks.abandon("JetStream publish not acknowledged before the connector stopped")
        await self._shut()


