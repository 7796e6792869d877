"""Shared machinery of the broker connectors (CPython, asyncio).

* :class:`Endpoint` / :func:`parse_endpoint`: the connector URL
  (``scheme://[user[:password]@]host[:port]``).
* :class:`ReconnectPolicy`: exponential backoff with jitter, optional attempt limit.
* :class:`ConnectorStatistics`: a snapshot of the connection state, connects, reconnects,
  last error (the live counters are :class:`ConnectorCounters`, ``connector.stats``).
* :class:`BaseConnector`: the connect / serve / reconnect loop, connection state and
  :meth:`BaseConnector.wait_connected`; a transport implements ``_connect``, ``_serve``,
  ``_start_routes`` and ``_close``.
* :func:`translate_error`: the one place where library and OS errors become aimdb's
  :class:`~aimdb.ConnectionFailed`, :class:`~aimdb.PublishError` or
  :class:`~aimdb.ConnectorTimeout` (the original stays the ``__cause__``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .._aio import wait_for as _wait_for
from .._compat import backoff_delay
from .._core._connector import Connector, ConnectorRoutes, LinkStatistics, OutboundRoute
from .._core._connector_stats import ConnectorCounters, ConnectorStatistics
from .._core._links import LinkUrl
from .._core._tasks import SupervisedTask
from .._errors import AimDbError, ConnectionFailed, ConnectorError, ConnectorTimeout, PublishError

__all__ = [
    "BaseConnector",
    "ConnectorStatistics",
    "Endpoint",
    "InflightWindow",
    "ReconnectPolicy",
    "parse_endpoint",
    "translate_error",
]

_log = logging.getLogger("aimdb.connectors")


class Endpoint:
    """A parsed connector URL.

    Attributes:
        scheme: ``"mqtt"``, ``"mqtts"``, ``"kafka"`` ...
        host: host name or address (IPv6 without brackets).
        port: port number (the scheme's default when the URL has none).
        username: user name from the URL, or ``None``.
        password: password from the URL, or ``None``.
        tls: True for TLS schemes (``mqtts``, ``kafka+ssl``).
        params: query parameters.
        url: the URL without credentials (safe to log).
        hostport: ``host:port`` with an IPv6 host in brackets (``[::1]:1883``).
    """

    __slots__ = ("host", "hostport", "params", "password", "port", "scheme", "tls", "url", "username")

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        params: dict[str, str] | None = None,
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.tls = tls
        self.params = dict(params or {})
        self.hostport = ("[" + host + "]" if ":" in host else host) + ":" + str(port)
        self.url = scheme + "://" + self.hostport

    def __repr__(self) -> str:
        return "Endpoint(" + repr(self.url) + ")"


def parse_endpoint(url: str, default_ports: dict[str, int], tls_schemes: tuple[str, ...] = ()) -> Endpoint:
    """Parse ``url`` into an :class:`Endpoint`.

    Args:
        url: ``scheme://[user[:password]@]host[:port]`` (a trailing ``/`` is allowed).
        default_ports: accepted schemes and their default ports.
        tls_schemes: schemes that imply TLS.

    Raises:
        ValueError: the URL is malformed, has an unknown scheme, no host, or a path.
    """
    u = LinkUrl.parse_endpoint(url)
    if u.scheme not in default_ports:
        raise ValueError(
            "unsupported scheme " + repr(u.scheme) + " in " + repr(url) + " (expected "
            + " or ".join(sorted(default_ports)) + ")"
        )
    if not u.host:
        raise ValueError("no host in connector URL " + repr(url))
    if u.address.strip("/"):
        raise ValueError(
            "a connector URL names the broker only (scheme://host:port), not a topic: " + repr(url)
        )
    port = u.port if u.port is not None else default_ports[u.scheme]
    return Endpoint(u.scheme, u.host, port, u.username, u.password, u.scheme in tls_schemes, u.params)


class ReconnectPolicy:
    """When to try again after a failed or lost connection.

    The n-th consecutive failed attempt waits ``min(cap, initial_delay * multiplier **
    (n - 1))`` seconds, spread by ``±jitter`` (a fraction) so a fleet of clients does not
    reconnect in lock-step. ``cap`` is ``max_delay`` while the outage is short, so a broker
    that comes back after a restart is found again within about ``max_delay`` seconds;
    once the outage has lasted ``dead_after`` seconds the broker is probably gone for a
    while and the delay keeps growing up to ``dead_max_delay``. A connection that the
    broker drops again within ``stable_after`` seconds does not reset the count: the
    delay keeps growing across short-lived connections instead of retrying at the
    fastest rate forever.

    Args:
        initial_delay: seconds before the first retry.
        max_delay: upper bound of the delay during a short outage.
        multiplier: growth factor per failed attempt.
        jitter: relative spread, 0 to 1 (0.2 means ±20 %).
        max_attempts: consecutive failed attempts after which the connector gives up
            (state ``"failed"``; ``wait_connected`` raises the last ``ConnectionFailed``);
            ``None`` retries forever.
        dead_after: seconds of outage after which the delay may exceed ``max_delay``.
        dead_max_delay: upper bound of the delay after ``dead_after`` seconds of outage.
        stable_after: seconds a connection must last for the next loss to count as a new
            outage (the attempt count starts afresh).
    """

    __slots__ = (
        "dead_after",
        "dead_max_delay",
        "initial_delay",
        "jitter",
        "max_attempts",
        "max_delay",
        "multiplier",
        "stable_after",
    )

    def __init__(
        self,
        initial_delay: float = 0.1,
        max_delay: float = 2.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        max_attempts: int | None = None,
        *,
        dead_after: float = 60.0,
        dead_max_delay: float = 30.0,
        stable_after: float = 5.0,
    ) -> None:
        if initial_delay < 0 or max_delay < 0 or multiplier < 1 or not 0 <= jitter <= 1:
            raise ValueError("bad reconnect policy")
        if dead_after < 0 or dead_max_delay < 0 or stable_after < 0:
            raise ValueError("bad reconnect policy: negative dead_after, dead_max_delay or stable_after")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.multiplier = multiplier
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.dead_after = dead_after
        self.dead_max_delay = max(dead_max_delay, max_delay)
        self.stable_after = stable_after

    def delay(self, attempt: int, outage: float = 0.0) -> float:
        """Seconds to wait after the ``attempt``-th consecutive failure (1-based), jittered.

        ``outage`` is how long the connection has been down, in seconds.
        """
        cap = self.dead_max_delay if outage >= self.dead_after else self.max_delay
        j = self.jitter
        return backoff_delay(self.initial_delay, cap, max(0, attempt - 1), self.multiplier, 1.0 - j, 1.0 + j)

    def gives_up(self, attempt: int) -> bool:
        """True when ``attempt`` consecutive failures exhaust the policy."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    def __repr__(self) -> str:
        return (
            "ReconnectPolicy(initial_delay=" + repr(self.initial_delay) + ", max_delay="
            + repr(self.max_delay) + ", multiplier=" + repr(self.multiplier) + ", jitter="
            + repr(self.jitter) + ", max_attempts=" + repr(self.max_attempts) + ", dead_after="
            + repr(self.dead_after) + ", dead_max_delay=" + repr(self.dead_max_delay)
            + ", stable_after=" + repr(self.stable_after) + ")"
        )


_K = TypeVar("_K")
_V = TypeVar("_V")


class InflightWindow(Generic[_K, _V]):
    """Publishes sent and not yet acknowledged, in send order, at most :attr:`limit` of them.

    The in-flight window of MQTT QoS 1/2 publishes and of NATS JetStream's acknowledged
    publishes. A pump compares ``len(window)`` with :attr:`limit` before
    sending and awaits :meth:`wait_change` while no room is left; every acknowledgement
    (:meth:`pop`) and every loss of the connection (:meth:`wake`) wakes the waiters, which
    check again.

    Args:
        limit: most entries in flight (at least 1).
    """

    __slots__ = ("_items", "_waiters", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: dict[_K, _V] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add(self, key: _K, value: _V) -> None:
        """Keep ``value`` in flight under ``key`` (after the ones already there)."""
        self._items[key] = value

    def get(self, key: _K) -> _V | None:
        """The entry of ``key``, or ``None``."""
        return self._items.get(key)

    def pop(self, key: _K) -> _V | None:
        """Remove and return the entry of ``key`` (``None`` when unknown); wakes the waiters."""
        value = self._items.pop(key, None)
        if self._waiters:
            self.wake()
        return value

    def items(self) -> list[tuple[_K, _V]]:
        """The entries in flight, oldest first."""
        return list(self._items.items())

    def wake(self) -> None:
        """Wake every task in :meth:`wait_change` (an ack, a lost connection, shutdown)."""
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def wait_change(self) -> None:
        """Wait for the next :meth:`pop` or :meth:`wake`; callers check their condition again."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def __repr__(self) -> str:
        return "<InflightWindow " + str(len(self._items)) + "/" + str(self.limit) + ">"


def translate_error(exc: BaseException, url: str, during: str = "connect") -> AimDbError:
    """Map a library or OS error to aimdb's connector errors; the original is ``__cause__``.

    Args:
        exc: the error raised by the client library or the OS.
        url: connector URL (no credentials) for the message.
        during: ``"connect"`` (gives :class:`ConnectionFailed`), ``"publish"``
            (:class:`PublishError`) or anything else (:class:`ConnectorError`).

    Returns:
        ``exc`` itself when it already is an aimdb error, else the translated error.
        Time-outs always become :class:`ConnectorTimeout`.
    """
    if isinstance(exc, AimDbError):
        return exc
    reason = _reason(exc)
    out: AimDbError
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        out = ConnectorTimeout(during + " to " + url + " timed out" + (": " + reason if reason else ""), url)
    elif during == "connect":
        out = ConnectionFailed(url, reason)
    elif during == "publish":
        out = PublishError("publish via " + url + " failed: " + reason, url)
    else:
        out = ConnectorError(during + " via " + url + " failed: " + reason, url)
    out.__cause__ = exc
    return out


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    name = type(exc).__name__
    if text.startswith(name):  # some libraries name the class in the message already
        return text
    return name + ": " + text if text else name


class RepeatedFailureLog:
    """Logs a failure that keeps repeating once, then at growing intervals.

    The first failure with a given text is logged in full; the same text again is only
    counted, and logged as ``still failing (N times)`` when the count reaches 10, 100,
    1000, ... A different text is logged in full at once. :meth:`recovered` logs how many
    attempts failed in all (when any were not logged) and starts over.
    """

    def __init__(self, logger: logging.Logger, url: str) -> None:
        self._log = logger
        self._url = url
        self._text: str | None = None
        self._same = 0
        self._total = 0
        self._report_at = 10

    def failed(self, text: str, retry_in: float) -> None:
        """Account one failed attempt with error ``text``; the next try is in ``retry_in`` s."""
        self._total += 1
        if text != self._text:
            self._text, self._same, self._report_at = text, 1, 10
            self._log.warning("%s; retrying in %.2fs (attempt %d)", text, retry_in, self._total)
            return
        self._same += 1
        if self._same >= self._report_at:
            self._report_at *= 10
            self._log.warning(
                "still failing (%d times in a row): %s; retrying in %.2fs", self._same, text, retry_in
            )

    def recovered(self) -> None:
        """The failures are over (connected): say how many attempts failed unlogged, reset."""
        if self._total > 1 and self._same > 1:
            self._log.info("%s: connected after %d failed attempts", self._url, self._total)
        self._text, self._same, self._total, self._report_at = None, 0, 0, 10


class BaseConnector(Connector):
    """Connect / serve / reconnect loop and outbound pump shared by the broker connectors.

    Subclasses implement:

    * ``async _connect() -> None``: open one connection or raise (translated by
      :func:`translate_error`, so raising the library's error is fine);
    * ``async _serve() -> str | None``: run while connected, return (or raise) when the
      connection is lost, with the reason;
    * ``async _send(route, values) -> list``: the send step of the outbound pump: send
      ``values`` (one batch of the route's record) and return the values that could not
      be sent because the connection went away (the pump waits for the next connection,
      then offers them again, see :meth:`~aimdb.links.OutboundRoute.next_batch`); advance
      ``route.settled`` as values get a known fate, so that an unexpected exception
      counts exactly the values it lost;
    * ``async _close() -> None``: drop the connection (idempotent, must not raise);
    * optionally ``_start_routes(routes)``: prepare inbound routing (called once per start).

    Every outbound route gets one pump task, and the connect loop is the connector's
    ``run``; all of them are supervised tasks of the database, so an exception in any of
    them is logged once, counted (in the link's or the task's statistics) and handled by
    :attr:`on_error` (``"restart"`` with backoff by default). An exception in the send
    step itself costs only the values of that batch (counted in the link's ``failed``);
    the pump goes on with the next batch.

    A connector instance serves one database at a time, on asyncio or uvloop.

    Args:
        endpoint: the parsed connector URL.
        reconnect: the :class:`ReconnectPolicy` (default: 0.1 s doubling to 2 s, ±20 %,
            forever, slower after a minute of outage).
        connect_timeout: seconds one connection attempt may take.
        label: how the connector names its peer in logs and statistics (default: the
            endpoint's URL without credentials).
    """

    scheme = ""
    runtimes: tuple[str, ...] | None = ("asyncio",)

    def __init__(
        self,
        endpoint: Endpoint,
        reconnect: ReconnectPolicy | None = None,
        connect_timeout: float = 10.0,
        label: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.scheme = endpoint.scheme
        self.reconnect = reconnect or ReconnectPolicy()
        self.connect_timeout = connect_timeout
        self.batch_size = 512
        self.stats = ConnectorCounters(label or endpoint.url)
        self._routes: ConnectorRoutes | None = None
        self._routes_started = False
        self._pumps: list[SupervisedTask] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected_ev: asyncio.Event | None = None
        self._change_ev: asyncio.Event | None = None
        self._last_exc: BaseException | None = None
        self._closing = False
        #: connections established so far (bumped when the state becomes "connected")
        self._generation = 0
        self._state_waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------ public

    @property
    def url(self) -> str:
        """The connector URL without credentials (or the label it was given)."""
        return self.stats.url

    @property
    def state(self) -> str:
        """Connection state (see :class:`ConnectorStatistics`)."""
        return self.stats.state

    @property
    def connected(self) -> bool:
        """True while a connection is established."""
        return self.stats.state == "connected"

    def statistics(self) -> ConnectorStatistics:
        """Return a snapshot (:class:`ConnectorStatistics`) of this connector's counters."""
        return ConnectorStatistics(self.stats)

    def link_statistics(self) -> list[LinkStatistics]:
        """Return a snapshot (:class:`~aimdb.links.LinkStatistics`) of every route this connector serves."""
        r = self._routes
        return [] if r is None else [x.statistics() for x in r.outbound] + [x.statistics() for x in r.inbound]

    async def wait_connected(self, timeout: float | None = 10.0) -> None:
        """Wait until the connector is connected.

        Args:
            timeout: seconds to wait; ``None`` waits forever.

        Raises:
            ConnectionFailed: the reconnect policy gave up (the last failure, with its reason).
            ConnectorTimeout: not connected within ``timeout``; the message and ``__cause__``
                carry the last connection error, if any.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.stats.state == "connected":
                return
            if self.stats.state == "failed" and isinstance(self._last_exc, ConnectionFailed):
                raise self._last_exc
            ev = self._events()[1]
            ev.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                msg = "not connected to " + self.url + " within " + str(timeout) + "s"
                if self.stats.last_error:
                    msg += " (last error: " + self.stats.last_error + ")"
                err = ConnectorTimeout(msg, self.url)
                raise err from self._last_exc
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await _wait_for(ev.wait(), left)

    # ------------------------------------------------------------ Connector protocol

    def bind(self, routes: ConnectorRoutes) -> None:
        """Keep the routes of the database that is starting (called before :meth:`run`)."""
        self._routes = routes
        self._routes_started = False
        self._closing = False

    async def run(self, routes: ConnectorRoutes) -> None:
        """Connect, serve the routes, and reconnect per the policy until cancelled.

        The first call starts one supervised pump task per outbound route; when ``run``
        itself is restarted after an unexpected exception, the pumps keep running.
        Returns (state ``"failed"``) when the reconnect policy gives up.
        """
        self._routes = routes
        self._events()
        if not self._routes_started:
            self._routes_started = True
            await self._start_routes(routes)
            self._pumps = [
                routes.spawn("aimdb." + self.scheme + ".out[" + r.key + "]", self._pump, r, route=r)
                for r in routes.outbound
            ]
        try:
            await self._loop_forever()
        except ConnectionFailed as exc:
            if self.stats.state != "failed":
                raise
            _log.debug("%s: run ends: %s", self.url, exc)
        finally:
            await self._close()
            if self.stats.state != "failed":
                self._set_state("closed")

    async def _loop_forever(self) -> None:
        attempt = 0
        down_since = time.monotonic()
        failures = RepeatedFailureLog(_log, self.url)
        while True:
            self._set_state("connecting")
            try:
                await _wait_for(self._connect(), self.connect_timeout)
            except Exception as exc:
                await self._close()
                err = translate_error(exc, self.url, "connect")
                if isinstance(err, ConnectorTimeout):
                    err = ConnectionFailed(self.url, "no answer within " + str(self.connect_timeout) + "s")
                    err.__cause__ = exc
                attempt += 1
                self.stats.failed_attempts += 1
                self._record_error(err)
                if self.reconnect.gives_up(attempt):
                    _log.error("%s: giving up after %d attempts: %s", self.url, attempt, err)
                    self._set_state("failed")
                    raise err from exc
                delay = self.reconnect.delay(attempt, time.monotonic() - down_since)
                failures.failed(str(err), delay)
                self._set_state("disconnected")
                await asyncio.sleep(delay)
                continue
            except BaseException:
                await self._close()
                raise
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            self.stats.connected_since = time.time()
            connected_at = time.monotonic()
            failures.recovered()
            _log.info("%s: connected", self.url)
            self._set_state("connected")
            try:
                reason = await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(translate_error(exc, self.url, "connection"))
            finally:
                self.stats.connected_since = None
            # a connector that watches its connection itself may have counted the loss already
            counted = self.stats.state != "connected"
            await self._close()
            if self._closing:
                self._set_state("closed")
                await asyncio.Event().wait()  # shutdown in progress: wait to be cancelled
            if not counted:
                self.stats.disconnects += 1
            text = "connection lost" + (": " + reason if reason else "")
            self._record_error(ConnectionFailed(self.url, text))
            self._set_state("disconnected")
            down_since = time.monotonic()
            if down_since - connected_at >= self.reconnect.stable_after:
                attempt = 0  # it was a good connection: this is a new outage
            attempt += 1
            delay = self.reconnect.delay(attempt)
            _log.warning("%s: %s; reconnecting in %.2fs", self.url, text, delay)
            await asyncio.sleep(delay)

    # ------------------------------------------------------------ the outbound pump

    async def _pump(self, route: OutboundRoute) -> None:
        """Send the route's values while connected; wait (reading nothing) while not."""
        carry: list[Any] = []
        sending: list[Any] = []
        try:
            while True:
                await self._wait_sendable()
                values = await route.next_batch(self.batch_size, carry)
                if values is None:
                    return
                carry = []
                route.settled = 0
                sending = values
                generation = self._generation
                try:
                    carry = await self._send(route, values)
                except Exception as exc:
                    route.send_raised(values, exc)
                    carry = []
                sending = []
                if carry:
                    # The connection went away under the send, maybe before the connect
                    # loop noticed (the state still says "connected"): offering the carry
                    # again now would return at once, a loop that never yields and keeps
                    # the connect loop from ever noticing. Wait for the next connection.
                    await self._wait_newer_connection(generation)
        except BaseException as exc:
            # the pump ends: at the database's stop (cancelled) or to be restarted (raised)
            stopping = not isinstance(exc, Exception)
            route.abandon(len(carry) + max(0, len(sending) - route.settled), stopping)
            raise

    async def _shut(self) -> None:
        """End of ``shutdown``: close the connection for good; the state becomes ``"closed"``."""
        self._closing = True
        await self._close()
        self._set_state("closed")

    async def _wait_pumps(self, deadline: float) -> None:
        """Wait until every pump ended (its record's buffer closed and drained), or ``deadline``."""
        for task in self._pumps:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await _wait_for(task.join(), left)

    # ------------------------------------------------------------ helpers for subclasses

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._connected_ev is None or self._change_ev is None:
            self._loop = loop
            self._connected_ev = asyncio.Event()
            self._change_ev = asyncio.Event()
            if self.stats.state == "connected":
                self._connected_ev.set()
        return self._connected_ev, self._change_ev

    def _set_state(self, state: str) -> None:
        if state == "connected" and self.stats.state != "connected":
            self._generation += 1
        self.stats.state = state
        if self._routes is not None:
            self._routes.set_state(state)
        waiters, self._state_waiters = self._state_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self._loop is None:
            return
        connected, change = self._events()
        if state == "connected":
            connected.set()
        else:
            connected.clear()
        change.set()

    async def _wait_newer_connection(self, generation: int) -> None:
        """Return once a connection newer than the ``generation``-th one is established.

        Always suspends at least once (it waits on a fresh future per state change), so
        a caller looping on it cannot starve the event loop.
        """
        while self._generation == generation or self.stats.state != "connected":
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._state_waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._state_waiters:
                    self._state_waiters.remove(fut)

    def _record_error(self, err: BaseException) -> None:
        self._last_exc = err
        self.stats.last_error = str(err)
        self.stats.last_error_at = time.time()

    def _callback_failed(self, what: str, exc: BaseException) -> None:
        """Count and log (once, with traceback) an exception raised in one of our callbacks.

        Call it inside the ``except`` block; the callback then returns normally, so the
        failure costs only what the callback was handling, never the connection.
        """
        self.stats.errors += 1
        self._record_error(exc)
        _log.exception("%s: %s raised %r", self.url, what, exc)

    def _spawn(
        self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any, route: OutboundRoute | None = None
    ) -> SupervisedTask:
        """Run ``await fn(*args)`` as a supervised task of the database (see ``ConnectorRoutes.spawn``)."""
        if self._routes is None:
            raise RuntimeError(type(self).__name__ + " is not bound to a running database")
        return self._routes.spawn(name, fn, *args, route=route)

    async def _wait_sendable(self) -> None:
        """Return once the pump may send (default: when connected)."""
        if self.stats.state != "connected":
            await self._wait_connected_quietly()

    async def _wait_connected_quietly(self) -> None:
        ev = self._events()[0]
        while self.stats.state != "connected":
            await ev.wait()

    # ------------------------------------------------------------ to implement

    async def _connect(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _serve(self) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _start_routes(self, routes: ConnectorRoutes) -> None:
        """Prepare inbound routing (default: nothing)."""
        return None

    async def _send(self, route: OutboundRoute, values: list[Any]) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    async def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return "<" + type(self).__name__ + " " + self.url + " " + self.stats.state + ">"
