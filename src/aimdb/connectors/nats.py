"""NATS connector on nats-py: ``link_to("nats://subject")`` publishes, ``link_from`` subscribes.

::

    from aimdb.connectors import NatsConnector

    conn = NatsConnector("nats://127.0.0.1:4222", name="edge-1")
    builder.with_connector(conn)
    builder.configure(Temperature, "temp", lambda r: r.buffer(BufferCfg.SpmcRing(256))
                      .link_to("nats://sensors.kitchen.temp").finish())
    builder.configure(SetPoint, "setpoint", lambda r: r.buffer(BufferCfg.Mailbox())
                      .link_from("nats://cmd.*.set").finish())

Needs ``pip install 'aimdb[nats]'`` (nats-py) and asyncio or uvloop.

Behaviour:

* Core NATS (the default) is at most once. Outbound: one task per ``link_to`` route takes
  every pending value from the record's reader at once and publishes them without waiting
  (nats-py writes them to the socket in one go). ``sent`` counts values handed to the
  connection. At most ``pending_bytes`` wait in nats-py's outgoing buffer; beyond that the
  task stops reading, so a slow or stalled server makes the ring reader lag (counted in
  ``dropped_lag``) and memory stays bounded; producers are never blocked.
* While disconnected a route does not publish at all (nats-py's reconnect buffer is not
  used), so what is sent after the reconnect follows the buffer kind: a ring sends its
  backlog in order (up to its capacity; the overflow is counted as lag), SingleLatest
  only the latest value, Mailbox only the newest command.
* Inbound: one subscription per distinct subject (``*`` and ``>`` wildcards work); NATS
  delivers a message once per matching subscription, and each subscription feeds the
  routes declared with exactly that subject, so a message reaches every record whose
  subject matches, once each. A payload that does not decode is logged with subject and
  record key, counted in the route's ``failed`` and dropped.
* JetStream (``jetstream=True``, or ``.option("jetstream", True)`` per link): outbound values
  are published with a reply subject and a ``Nats-Msg-Id`` header; ``sent`` counts the
  stream's acknowledgements. At most ``max_inflight`` publishes wait for theirs; those not
  acknowledged when the connection drops are published again after the reconnect (the
  stream drops duplicates by message id). An error answer (no stream captures the subject,
  ...) or no answer within ``ack_timeout`` counts as ``failed``.
* JetStream inbound: one pull consumer per distinct subject on the stream that captures it
  (created before the connector reports connected). The connector keeps one pull request
  for up to ``batch_size`` messages open, so a message arrives as soon as the stream has it
  and waits in the stream while nobody asks. Each message is acknowledged after it was
  delivered (a bad payload too: it would never decode). JetStream delivers at least once
  (after a server crash it sends again what it had not recorded as acknowledged); the
  connector remembers the stream sequences of the last 65536 messages per subject and
  drops such redeliveries (counted in ``duplicates_dropped``). With ``durable`` the
  consumer is durable and a restarted instance resumes after the last acknowledged
  message; ``start`` (``"latest"``/``"earliest"``) applies when the consumer is created.
  The stream must exist; until it does, the link's ``last_error`` says so and the
  connector tries again every 2 s.
* Connecting: the first connection (and a new one when the server closed a connection for
  good, e.g. refusing credentials after a reconnect) is made by the reconnect loop of
  :class:`~aimdb.connectors.BaseConnector`. Once connected, nats-py reconnects by itself,
  with the delays of the :class:`~aimdb.connectors.ReconnectPolicy`, and renews the
  subscriptions; ``state``, statistics and ``wait_connected()`` follow its
  disconnected/reconnected/closed callbacks. When the policy's ``max_attempts``
  consecutive reconnects fail, the connector gives up (state ``failed``). Errors are
  translated to :class:`~aimdb.ConnectionFailed` / :class:`~aimdb.PublishError` with the
  nats-py error as ``__cause__``.

Link options: ``.option("jetstream", True | False)`` (default: the connector's
``jetstream``), ``.with_topic_provider(fn)`` (subject per value), codecs and
(de)serializers as for every link.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import ssl as _ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ParamSpec

try:
    import nats.errors as _nerr
    from nats.aio.client import Client as _Client
    from nats.aio.msg import Msg as _Msg
    from nats.js.api import AckPolicy as _AckPolicy
    from nats.js.api import ConsumerConfig as _ConsumerConfig
    from nats.js.api import DeliverPolicy as _DeliverPolicy
    from nats.js.errors import NotFoundError as _NotFoundError
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aimdb.connectors.nats needs nats-py: install it with pip install 'aimdb[nats]'"
    ) from _exc

from .._aio import wait_for
from .._core._connector import ConnectorRoutes, InboundRoute, LinkStatistics, OutboundRoute
from .._core._links import LinkSpec
from .._errors import ConnectionFailed, ConnectorTimeout
from ._base import BaseConnector, ReconnectPolicy, _reason, parse_endpoint, translate_error

__all__ = ("NatsConnector",)

_log = logging.getLogger("aimdb.connectors.nats")
_P = ParamSpec("_P")

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# stream sequences remembered per JetStream subject to drop redeliveries of delivered messages
_SEEN_WINDOW = 65536
# seconds before a task of the connector that raised starts again
_RESTART_PAUSE = 0.5
# seconds a JetStream pull request waits on the server for messages
_PULL_EXPIRES = 2.0
# errors of a connection that is gone or going: the values are kept for the next one
_GONE = (
    _nerr.ConnectionClosedError,
    _nerr.ConnectionReconnectingError,
    _nerr.OutboundBufferLimitError,
    _nerr.ConnectionDrainingError,
)


def _subject_problem(subject: str, wildcards: bool) -> str | None:
    """Return what is wrong with a NATS subject, or ``None`` when it is fine.

    Args:
        subject: the subject (``sensors.kitchen.temp``).
        wildcards: True for a subscription (``*`` for one token, ``>`` for the rest, each a
            whole token, ``>`` last); False for a publish subject, which takes none.
    """
    if not subject:
        return "empty NATS subject"
    if _BAD_CHARS.search(subject):
        return "NATS subject " + repr(subject) + " contains whitespace or control characters"
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if not token:
            return "NATS subject " + repr(subject) + " has an empty token (leading, trailing or double '.')"
        if "*" in token or ">" in token:
            if not wildcards:
                return (
                    "NATS subject " + repr(subject) + " has a wildcard ('*' or '>'): "
                    "a link_to publishes to one concrete subject"
                )
            if token not in ("*", ">"):
                return "NATS subject " + repr(subject) + ": '*' and '>' must be whole tokens"
            if token == ">" and i != len(tokens) - 1:
                return "NATS subject " + repr(subject) + ": '>' must be the last token"
    return None


def _consumer_name(durable: str, subject: str) -> str:
    digest = hashlib.sha1(subject.encode()).hexdigest()[:8]
    return durable + "-" + _NAME_UNSAFE.sub("_", subject).strip("_")[:64] + "-" + digest


def _note_problem(
    url: str, stats: list[Any], text: str, level: int = logging.WARNING, then: str = ""
) -> None:
    """Set ``text`` as the last error of every statistics object in ``stats``.

    The problem is logged (with ``then`` appended, e.g. what happens next) only when it is
    news to one of them, so a problem that repeats is logged once, when it starts.
    """
    if any(st.last_error != text for st in stats):
        _log.log(level, "%s: %s%s", url, text, then)
    for st in stats:
        st.last_error = text


async def _written(nc: _Client, limit: int, alive: Callable[[], bool]) -> bool:
    """Wait until at most ``limit`` bytes wait in nats-py's pending buffer of ``nc``.

    Its flusher task writes the buffer to the socket; this polls (1 ms, doubling to 50 ms).
    Returns False as soon as ``alive()`` is false (the connection went).
    """
    delay = 0.001
    while nc.pending_data_size > limit:
        if not alive():
            return False
        await asyncio.sleep(delay)
        delay = min(0.05, delay * 2)
    return alive()


class _JsIn:
    """The JetStream pull consumer of one ``link_from`` subject."""

    __slots__ = (
        "client",
        "done",
        "ephemeral",
        "inbox",
        "next_subject",
        "order",
        "received",
        "retry_at",
        "routes",
        "seen",
        "sub",
        "subject",
    )

    def __init__(self, subject: str, routes: list[InboundRoute]) -> None:
        self.subject = subject
        self.routes = routes
        self.client: _Client | None = None  # the connection the consumer's inbox is on
        self.inbox = ""
        self.sub: Any = None  # the inbox subscription
        self.next_subject = ""
        self.done = asyncio.Event()  # the open pull request is over
        self.received = 0
        self.retry_at = 0.0
        self.seen: set[int] = set()  # stream sequences delivered (the last _SEEN_WINDOW)
        self.order: deque[int] = deque()
        self.ephemeral = "aimdb-" + uuid.uuid4().hex[:20]  # the name without ``durable``


class _Pending:
    """A JetStream publish waiting for its acknowledgement."""

    __slots__ = ("msg_id", "payload", "sent_at", "stats", "subject")

    def __init__(self, subject: str, payload: bytes, msg_id: str, stats: Any) -> None:
        self.subject = subject
        self.payload = payload
        self.msg_id = msg_id
        self.stats = stats
        self.sent_at = time.monotonic()


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
        internal_errors: exceptions raised in the connector's own nats-py callbacks and
            tasks (a bug, or e.g. a record refusing a value it decoded). Each is logged once,
            with its traceback, and kept in ``last_error`` of the links concerned; the
            callback goes on with the next message, a task starts again after 0.5 s.

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
        if durable is not None and (not durable or _NAME_UNSAFE.search(durable)):
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
        self.duplicates_dropped = 0
        self.internal_errors = 0

        self._nc: _Client | None = None
        self._connecting: _Client | None = None
        self._core: dict[str, list[InboundRoute]] = {}
        self._js_states: dict[str, _JsIn] = {}
        self._need_acks = False
        self._ack_prefix = ""
        self._msg_prefix = uuid.uuid4().hex[:16]
        self._seq = 0
        self._unacked: dict[int, _Pending] = {}
        self._window_waiters: list[asyncio.Future[None]] = []
        self._pumps: list[asyncio.Task[Any]] = []
        self._closed_ev: asyncio.Event | None = None
        self._client_err: BaseException | None = None
        self._attempt = 0
        self._gave_up = False
        self._resyncs = 0  # reconnects handled by _on_reconnected (the newest one wins)

    # ------------------------------------------------------------ public

    @property
    def unacked(self) -> int:
        """JetStream publishes waiting for the stream's acknowledgement."""
        return len(self._unacked)

    def consumer_name(self, subject: str) -> str | None:
        """Return the name of the durable JetStream consumer for ``subject`` (``None`` without ``durable``).

        The name is ``<durable>-<subject>-<hash>``: in the subject (its first 64 characters
        after this), each run of characters other than letters, digits, ``_`` and ``-``
        becomes one ``_``, and the first 8 hex digits of the subject's SHA-1 keep two
        subjects from sharing a consumer (``cmd.*.set`` gives ``<durable>-cmd_set-<hash>``).
        """
        return None if self.durable is None else _consumer_name(self.durable, subject)

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
                p = _subject_problem(spec.address, wildcards=False)
                if p is not None:
                    problems.append(p)
        else:
            p = _subject_problem(spec.address, wildcards=True)
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
        self._js_states = {subject: _JsIn(subject, routes) for subject, routes in js_in.items()}
        self._need_acks = any(self._uses_js(r.spec) for r in routes.outbound)
        self._pumps = [
            self._spawn(
                self._keep("sending " + repr(r.key), [r.stats],
                           partial(self._pump, r, self._uses_js(r.spec))),
                "aimdb.nats.out[" + r.key + "]",
            )
            for r in routes.outbound
        ]
        for st in self._js_states.values():
            stats = [r.stats for r in st.routes]
            self._spawn(
                self._keep("pulling " + repr(st.subject), stats, partial(self._pull, st)),
                "aimdb.nats.in[" + st.subject + "]",
            )

    # ------------------------------------------------------------ faults of the connector's own code

    def _fault(self, what: str, exc: Exception, stats: list[LinkStatistics]) -> None:
        """Count and log (with traceback) an unexpected error in a callback or task of ours."""
        self.internal_errors += 1
        text = what + " failed: " + _reason(exc)
        for st in stats:
            st.last_error = text
        _log.error("%s: %s", self.url, text, exc_info=exc)

    def _guarded(
        self, what: str, stats: list[LinkStatistics], fn: Callable[_P, Awaitable[None]]
    ) -> Callable[_P, Awaitable[None]]:
        """Wrap a nats-py callback: an error in it is ours to report, not nats-py's to pass on.

        nats-py hands an exception of a subscription callback to ``error_cb`` and one of a
        connection callback to the task that called it (its reconnect task would end).
        """

        async def call(*args: _P.args, **kwargs: _P.kwargs) -> None:
            try:
                await fn(*args, **kwargs)
            except Exception as exc:
                self._fault(what, exc, stats)

        return call

    async def _keep(
        self, what: str, stats: list[LinkStatistics], work: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``work()`` until it returns; when it raises, report it and run it again."""
        while True:
            try:
                await work()
                return
            except Exception as exc:
                self._fault(what, exc, stats)
            await asyncio.sleep(_RESTART_PAUSE)

    def _deliver(self, routes: list[InboundRoute], msg: _Msg) -> None:
        """Decode ``msg`` into every route; one route's failure does not keep it from the others."""
        for r in routes:
            try:
                r.deliver(msg.data, msg.subject)  # reports a bad payload itself
            except Exception as exc:
                what = "delivering a message on " + repr(msg.subject) + " to " + repr(r.key)
                self._fault(what, exc, [r.stats])

    # ------------------------------------------------------------ connection

    async def _connect(self) -> None:
        nc = _Client()
        self._connecting = nc
        self._client_err = None
        self._gave_up = False
        self._closed_ev = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            await self._on_error(nc, exc)

        async def on_disconnected() -> None:
            await self._on_disconnected(nc)

        async def on_reconnected() -> None:
            await self._on_reconnected(nc)

        async def on_closed() -> None:
            if nc is self._nc and self._closed_ev is not None:
                self._closed_ev.set()

        everyone = self.link_statistics()

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
                error_cb=self._guarded("the error callback", everyone, on_error),
                disconnected_cb=self._guarded("the disconnected callback", everyone, on_disconnected),
                reconnected_cb=self._guarded("the reconnected callback", everyone, on_reconnected),
                closed_cb=self._guarded("the closed callback", everyone, on_closed),
                # one attempt here (nats-py tries a refused server twice in a row); the
                # reconnect policy of the connector spaces the next ones
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=max(1, round(self.connect_timeout)),
                **opts,
            )
        except _nerr.NoServersError:
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
            await nc.subscribe(subject, cb=self._deliverer(subject, routes))
        if self._need_acks:
            self._ack_prefix = nc.new_inbox() + "."  # acknowledgements come to <prefix><token>
            outbound = [r.stats for r in self._routes.outbound] if self._routes is not None else []
            on_ack = self._guarded("handling a JetStream acknowledgement", outbound, self._on_ack)
            await nc.subscribe(self._ack_prefix + "*", cb=on_ack)
        for st in self._js_states.values():
            await self._open_consumer(nc, st)
        await self._sync(nc)
        await self._resend(nc)

    async def _sync(self, nc: _Client) -> None:
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
        if not await _written(nc, 0, lambda: nc.is_connected):
            raise _nerr.ConnectionClosedError
        await nc.flush(max(1, round(self.connect_timeout)))

    def _deliverer(self, subject: str, routes: list[InboundRoute]) -> Callable[[_Msg], Awaitable[None]]:
        """The callback of a core subscription: decode into every route of the subject."""

        async def on_msg(msg: _Msg) -> None:
            self._deliver(routes, msg)

        return on_msg

    # ------------------------------------------------------------ JetStream consumers

    async def _open_consumer(self, nc: _Client, st: _JsIn) -> bool:
        """Create (or find) the pull consumer of ``st``, and its inbox on ``nc`` unless it is there.

        Returns False, with the problem on the routes' statistics, when it failed (the
        pull task tries again later); connection loss propagates.
        """
        jsm = nc.jsm()
        try:
            stream = self.stream or await jsm.find_stream_name_by_subject(st.subject)
            # an ephemeral consumer keeps its name for the connector's life, so that after a
            # lost pull request the one that still exists is found again, not replaced
            name = self.consumer_name(st.subject) or st.ephemeral
            exists = False
            try:
                await jsm.consumer_info(stream, name)
                exists = True
            except _NotFoundError:
                pass
            if not exists:
                config = _ConsumerConfig(
                    name=name,
                    durable_name=name if self.durable is not None else None,
                    deliver_policy=_DeliverPolicy.NEW if self.start == "latest" else _DeliverPolicy.ALL,
                    ack_policy=_AckPolicy.EXPLICIT,
                    filter_subject=st.subject,
                    inactive_threshold=None if self.durable is not None else 60.0,
                )
                await jsm.add_consumer(stream, config)
            if st.client is not nc or st.sub is None:  # a new inbox (nats-py renews it on a reconnect)
                old, st.sub = st.sub, None
                if old is not None:  # the inbox of the consumer before (on this or a closed client)
                    try:
                        await old.unsubscribe()
                    except Exception as exc:
                        _log.debug("%s: unsubscribing %s: %r", self.url, st.subject, exc)
                st.inbox = nc.new_inbox()
                what = "the pull consumer of " + repr(st.subject)
                on_msg = self._guarded(what, [r.stats for r in st.routes], self._puller(st))
                st.sub = await nc.subscribe(st.inbox, cb=on_msg)
        except _GONE:
            raise
        except Exception as exc:
            st.client = None  # the pull task opens it again
            text = "JetStream consumer for " + repr(st.subject) + " failed: " + _reason(exc)
            if isinstance(exc, _NotFoundError):
                text += " (no stream captures this subject: create one)"
            _note_problem(self.url, [r.stats for r in st.routes], text, logging.ERROR, "; retrying")
            st.retry_at = time.monotonic() + 2.0
            return False
        st.client = nc
        st.next_subject = "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + name
        st.done.set()
        return True

    async def _pull(self, st: _JsIn) -> None:
        """Keep one pull request of ``batch_size`` messages open on the consumer of ``st``."""
        request = json.dumps({"batch": self.batch_size, "expires": int(_PULL_EXPIRES * 1e9)}).encode()
        backoff = 0.0
        while True:
            nc = await self._wait_ready()
            if st.client is not nc:
                wait = st.retry_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(min(wait, 0.5))
                    continue
                try:
                    if not await self._open_consumer(nc, st):
                        continue
                except _GONE:
                    continue
            st.done.clear()
            st.received = 0
            asked = time.monotonic()
            try:
                await nc.publish(st.next_subject, request, reply=st.inbox)
            except _GONE:
                continue
            try:
                await wait_for(st.done.wait(), _PULL_EXPIRES + 1.0)
            except (asyncio.TimeoutError, TimeoutError):
                # Not even the server's "request timeout" came back: the request was lost with
                # a connection, or the consumer is gone (the server ignores pulls on a missing
                # consumer). Open it again: that finds it, or creates it.
                if st.client is nc and st.received == 0:
                    st.client = None
                continue
            if st.received == 0 and time.monotonic() - asked < 0.05:
                # refused at once (e.g. not a pull consumer): do not hammer the server
                backoff = min(2.0, max(0.05, backoff * 2))
                await asyncio.sleep(backoff)
            else:
                backoff = 0.0

    def _puller(self, st: _JsIn) -> Callable[[_Msg], Awaitable[None]]:
        """The callback of a pull consumer's inbox: messages and the request's end."""
        routes = st.routes
        seen, order = st.seen, st.order

        async def on_msg(msg: Any) -> None:
            headers = msg.headers
            status = headers.get("Status") if headers else None
            if status:
                if status == "100":
                    return  # idle heartbeat
                text = str(headers.get("Description", "")).lower()
                if status == "503" or (status == "409" and "deleted" in text):
                    _log.warning(
                        "%s: JetStream consumer for %r is gone; creating it again", self.url, st.subject
                    )
                    st.client = None
                elif status not in ("404", "408") and not (
                    status == "409" and any(w in text for w in ("timeout", "shutdown", "leadership"))
                ):
                    problem = "JetStream pull on " + repr(st.subject) + ": " + status + " " + text
                    _note_problem(self.url, [r.stats for r in routes], problem)
                st.done.set()  # this pull request is over
                return
            st.received += 1
            if st.received >= self.batch_size:
                st.done.set()
            try:
                seq: int | None = msg.metadata.sequence.stream
            except Exception:
                seq = None
            if seq is not None:
                if seq in seen:
                    self.duplicates_dropped += 1
                    await self._ack(msg)
                    return
                seen.add(seq)
                order.append(seq)
                if len(order) > _SEEN_WINDOW:
                    seen.discard(order.popleft())
            self._deliver(routes, msg)
            await self._ack(msg)

        return on_msg

    async def _ack(self, msg: Any) -> None:
        try:
            await msg.ack()
        except Exception as exc:
            _log.debug("%s: ack of a message on %s failed: %r", self.url, msg.subject, exc)

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
            if self._unacked:
                self._expire_acks()
        if self._gave_up:
            err = self._last_exc if isinstance(self._last_exc, ConnectionFailed) else None
            text = "gave up after " + str(self._attempt) + " reconnect attempts"
            failed = ConnectionFailed(self.url, text + (": " + err.reason if err is not None else ""))
            failed.__cause__ = err
            self._record_error(failed)
            _log.error("%s: %s", self.url, failed)
            self._set_state("failed")
            self._wake_window()
            await asyncio.Event().wait()  # stays failed until the database stops
        err_text = _reason(self._client_err) if self._client_err is not None else "connection closed"
        return err_text

    async def _on_error(self, nc: _Client, exc: Exception) -> None:
        if isinstance(exc, _nerr.SlowConsumerError):
            self.slow_consumer_drops += 1
            if self.slow_consumer_drops == 1 or self.slow_consumer_drops % 1000 == 0:
                _log.warning(
                    "%s: subscription %s too slow, nats-py dropped messages (%d so far)",
                    self.url,
                    getattr(exc, "subject", "?"),
                    self.slow_consumer_drops,
                )
            return
        if nc is not self._nc and nc is not self._connecting:
            return  # a client we are done with
        self._client_err = exc
        if nc is not self._nc or self._closing:
            return
        if self.stats.state != "disconnected":
            if isinstance(exc, (OSError, asyncio.TimeoutError, _nerr.StaleConnectionError)):
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
                close = self._guarded("closing the connection", [], nc.close)
                self._spawn(close(), "aimdb.nats.give-up")
            return
        delay = self.reconnect.delay(self._attempt)
        nc.options["reconnect_time_wait"] = delay
        _log.warning("%s: %s; retrying in %.2fs (attempt %d)", self.url, err, delay, self._attempt)

    async def _on_disconnected(self, nc: _Client) -> None:
        if nc is not self._nc or self._closing or self.stats.state != "connected":
            return
        self.stats.disconnects += 1
        self.stats.connected_since = None
        text = "connection lost" + (": " + _reason(self._client_err) if self._client_err else "")
        self._record_error(ConnectionFailed(self.url, text))
        _log.warning("%s: %s; reconnecting", self.url, text)
        self._set_state("disconnected")
        self._wake_window()

    async def _on_reconnected(self, nc: _Client) -> None:
        if nc is not self._nc or self._closing or self.stats.state != "disconnected":
            return
        self._attempt = 0
        nc.options["reconnect_time_wait"] = self.reconnect.delay(1)
        self._resyncs += 1
        turn = self._resyncs
        try:
            # nats-py has replayed the subscriptions (written ahead of its own PING); a
            # JetStream consumer may be gone (e.g. an ephemeral one after a server restart)
            for st in self._js_states.values():
                await self._open_consumer(nc, st)
            await self._resend(nc)
            await self._sync(nc)
        except _GONE:
            return  # lost again: nats-py reconnects and calls this again
        except _nerr.TimeoutError as exc:
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
        for st in self._js_states.values():
            st.done.set()  # a pull request may be lost with the old connection: ask again

    async def _close(self) -> None:
        # A client whose connect failed gets a short time: after a failed TLS upgrade
        # nats-py's close() waits forever for the plain stream (its socket is closed already).
        clients = [(c, t) for c, t in ((self._nc, 5.0), (self._connecting, 0.5)) if c is not None]
        self._nc = None
        self._connecting = None
        for st in self._js_states.values():
            st.client = None
            st.done.set()
        self._wake_window()
        for nc, timeout in clients:
            try:
                await wait_for(nc.close(), timeout)
            except Exception as exc:
                _log.debug("%s: closing: %r", self.url, exc)

    # ------------------------------------------------------------ JetStream acknowledgements

    async def _on_ack(self, msg: Any) -> None:
        try:
            token = int(msg.subject.rsplit(".", 1)[1])
        except (IndexError, ValueError):
            return
        entry = self._unacked.pop(token, None)
        if entry is None:
            return  # late or duplicate answer
        stats = entry.stats
        error: str | None = None
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            error = "no JetStream stream captures subject " + repr(entry.subject) + " (no responders)"
        else:
            try:
                answer = json.loads(msg.data)
                if isinstance(answer, dict) and "error" in answer:
                    e = answer["error"]
                    error = (
                        "JetStream refused publish to "
                        + repr(entry.subject)
                        + ": "
                        + str(e.get("description", e) if isinstance(e, dict) else e)
                    )
            except ValueError:
                error = "JetStream answered publish to " + repr(entry.subject) + " with "
                error += repr(msg.data[:80])
        if error is None:
            stats.sent += 1
            stats.bytes += len(entry.payload)
        else:
            stats.failed += 1
            _note_problem(self.url, [stats], error)
        if self._window_waiters and len(self._unacked) < self.max_inflight:
            self._wake_window()

    def _expire_acks(self) -> None:
        now = time.monotonic()
        late = [t for t, e in self._unacked.items() if now - e.sent_at > self.ack_timeout]
        for t in late:
            e = self._unacked.pop(t)
            e.stats.failed += 1
            text = "no JetStream acknowledgement within " + str(self.ack_timeout) + "s for " + repr(e.subject)
            _note_problem(self.url, [e.stats], text)
        if late:
            self._wake_window()

    async def _resend(self, nc: _Client) -> None:
        """Publish again, in order, what the last connection did not see acknowledged."""
        if not self._unacked:
            return
        prefix = self._ack_prefix
        for token, e in list(self._unacked.items()):
            e.sent_at = time.monotonic()
            await nc.publish(
                e.subject, e.payload, reply=prefix + str(token), headers={"Nats-Msg-Id": e.msg_id}
            )

    def _wake_window(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _wait_window(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._window_waiters.append(fut)
        await fut

    # ------------------------------------------------------------ outbound

    def _ready(self) -> _Client | None:
        nc = self._nc
        if nc is None or not nc.is_connected or self.stats.state != "connected":
            return None
        return nc

    async def _wait_ready(self) -> _Client:
        while True:
            nc = self._ready()
            if nc is not None:
                return nc
            if self.stats.state == "connected":
                await asyncio.sleep(0.01)  # nats-py noticed the loss first; the callback follows
            else:
                await self._wait_connected_quietly()

    async def _wait_drained(self, nc: _Client) -> bool:
        """Wait until nats-py's outgoing buffer is below ``pending_bytes``; False if the connection went."""
        return await _written(nc, self.pending_bytes, lambda: self._ready() is nc)

    async def _pump(self, route: OutboundRoute, js: bool) -> None:
        stats = route.stats
        provider = route.spec.topic_provider
        fixed = route.address if provider is None else None
        encode = route.encode
        carry: list[Any] = []
        while True:
            if self._ready() is None:
                await self._wait_ready()
            taken = await route.next_batch(self.batch_size, carry)
            if taken is None:
                return
            values, carry = taken, []
            nc = self._ready()
            if nc is None:
                carry = values
                continue
            nbytes = 0
            for i, value in enumerate(values):
                try:
                    payload = encode(value)
                    if not isinstance(payload, bytes):
                        payload = bytes(payload)
                    if fixed is not None:
                        subject = fixed
                    else:
                        subject = provider(value)  # type: ignore[misc]
                        problem = _subject_problem(subject, wildcards=False)
                        if problem is not None:
                            raise ValueError(problem)
                    if len(payload) > nc.max_payload:
                        raise ValueError(
                            "payload of "
                            + str(len(payload))
                            + " bytes exceeds the server's max_payload of "
                            + str(nc.max_payload)
                        )
                except Exception as exc:
                    route.value_failed(repr(exc))
                    continue
                if nc.pending_data_size > self.pending_bytes and not await self._wait_drained(nc):
                    carry = values[i:]
                    break
                if js and len(self._unacked) >= self.max_inflight:
                    while len(self._unacked) >= self.max_inflight and self._ready() is nc:
                        await self._wait_window()
                    if self._ready() is not nc:
                        carry = values[i:]
                        break
                if not nc.is_connected:
                    carry = values[i:]
                    break
                try:
                    if js:
                        self._seq += 1
                        token = self._seq
                        msg_id = self._msg_prefix + "-" + str(token)
                        # registered first: kept (and sent again) if the connection goes now
                        self._unacked[token] = _Pending(subject, payload, msg_id, stats)
                        await nc.publish(
                            subject,
                            payload,
                            reply=self._ack_prefix + str(token),
                            headers={"Nats-Msg-Id": msg_id},
                        )
                    else:
                        await nc.publish(subject, payload)
                        stats.sent += 1
                        nbytes += len(payload)
                except _GONE:
                    carry = values[i + 1 :] if js else values[i:]
                    break
                except Exception as exc:
                    if js:
                        self._unacked.pop(token, None)
                    route.value_failed(str(translate_error(exc, self.url, "publish")))
            stats.bytes += nbytes

    async def shutdown(self, timeout: float) -> None:
        """Flush within ``timeout``, then disconnect.

        Publishes what the readers still hold, waits until the server has read it (a
        PING/PONG round trip) and, for JetStream, for the acknowledgements; then closes
        the connection. Values that cannot be sent in time (e.g. while disconnected) are
        dropped.
        """
        deadline = time.monotonic() + max(0.0, timeout) * 0.9
        pumps = [t for t in self._pumps if not t.done()]
        if pumps and self.connected:
            await asyncio.wait(pumps, timeout=max(0.0, deadline - time.monotonic()))
        nc = self._ready()
        if nc is not None:
            try:
                left = max(0.01, deadline - time.monotonic())
                await wait_for(nc.flush(max(1, round(left + 0.5))), left)
            except Exception as exc:
                _log.warning("%s: flush at shutdown: %r", self.url, exc)
        while self._unacked and self._ready() is not None and time.monotonic() < deadline:
            try:
                await wait_for(self._wait_window(), max(0.0, deadline - time.monotonic()))
            except (asyncio.TimeoutError, TimeoutError):
                break
        self._closing = True
        await self._close()

