"""The connector interface: how links reach brokers (MicroPython-safe).

A connector is one object registered on the builder (``builder.with_connector(c)``) and
selected by URL scheme. At start the database hands it the routes of every link with its
scheme (:class:`ConnectorRoutes`) by calling ``await connector.run(routes)`` in a task of
its own; ``run`` works until cancelled. A connector may also define a synchronous
``bind(routes)``, called with the same routes before ``start()`` returns (before ``run``
is first scheduled), for state that must exist as soon as the database is started.
Outbound routes carry a reader subscribed before any source started; inbound routes
carry ``deliver(payload)``, which decodes into the record's type, counts and logs bad
payloads and produces good ones. At stop, after the records' buffers closed (outbound
readers drain what is left), the database awaits ``connector.shutdown(timeout)`` when the
connector has it, then cancels ``run``.
"""

from .._compat import TYPE_CHECKING, get_logger, wall_seconds
from .._errors import BufferClosed, BufferLagged, ConfigProblem, DeserializeError, TypeMismatch
from ._buffers import RingReader
from ._stats import Statistics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from typing import Any

    from ..abc import Connector as ConnectorContract
    from ..abc import RuntimeBackend
    from ._buffers import Reader
    from ._database import AimDb
    from ._links import LinkSpec
    from ._tasks import SupervisedTask

_log: "Any" = get_logger("aimdb")


class LinkStatistics(Statistics):
    """A snapshot of one link's counters (``route.statistics()``, ``db.link_statistics()``).

    Attributes:
        url: the link URL.
        direction: ``"out"`` or ``"in"``.
        state: ``"idle"`` before the connector started; while the task that serves the
            link runs, the connector's connection state (``"connecting"``,
            ``"connected"``, ``"disconnected"``, ``"failed"``, ``"closed"``; connectors
            without a connection report ``"running"``); otherwise that task's state
            (``"restarting"`` after it raised, ``"failed"``, ``"done"``, ``"stopped"``),
            so a link whose pump is down never reports ``"connected"``. Evaluated when
            the snapshot is taken.
        sent: values published (outbound).
        received: values delivered into the record (inbound).
        bytes: payload bytes sent or received.
        failed: values that were not sent (outbound: did not encode, refused by the
            broker, lost when the send step raised) or payloads rejected (inbound).
        dropped_lag: values the outbound reader lost because the broker was too slow
            (those it has not been told about yet included: a link that stopped reading
            shows its loss at once).
        errors: exceptions raised by the task serving the link (each logged once with its
            traceback and handled by the connector's ``on_error`` policy).
        last_error: text of the most recent error, or ``None``.
        last_error_at: wall-clock time (seconds since the epoch) of ``last_error``, or ``None``.
    """

    __slots__ = (  # noqa: RUF023 - in the order of as_dict()
        "url",
        "direction",
        "state",
        "sent",
        "received",
        "bytes",
        "failed",
        "dropped_lag",
        "errors",
        "last_error",
        "last_error_at",
    )

    if TYPE_CHECKING:
        url: str
        direction: str
        state: str
        sent: int
        received: int
        bytes: int
        failed: int
        dropped_lag: int
        errors: int
        last_error: str | None
        last_error_at: float | None

    def __init__(self, counters: "LinkCounters") -> None:
        self._init(
            {
                "url": counters.url,
                "direction": counters.direction,
                "state": counters.state,
                "sent": counters.sent,
                "received": counters.received,
                "bytes": counters.bytes,
                "failed": counters.failed,
                "dropped_lag": counters.dropped_lag,
                "errors": counters.errors,
                "last_error": counters.last_error,
                "last_error_at": counters.last_error_at,
            }
        )


class LinkCounters:
    """The live counters of one link (``route.stats``), updated by the connector serving it.

    The fields mean what those of :class:`LinkStatistics` mean; users read a snapshot
    (``route.statistics()``), connectors count here.
    """

    __slots__ = (
        "_dropped_lag",
        "_lag_reader",
        "bytes",
        "conn_state",
        "direction",
        "errors",
        "failed",
        "last_error",
        "last_error_at",
        "received",
        "sent",
        "task",
        "url",
    )

    def __init__(self, url: str, direction: str) -> None:
        self.url = url
        self.direction = direction
        self.conn_state = "idle"
        self.task: SupervisedTask | None = None
        self.sent = 0
        self.received = 0
        self.bytes = 0
        self.failed = 0
        self._dropped_lag = 0
        self._lag_reader: RingReader[Any] | None = None
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    @property
    def dropped_lag(self) -> int:
        """Values the link's reader lost to lag (see :class:`LinkStatistics`)."""
        r = self._lag_reader
        return self._dropped_lag + (r.unseen_lag if r is not None else 0)

    def count_lag(self, n: int, text: str) -> None:
        """Count ``n`` values the reader reported lost (``BufferLagged``), with its message."""
        self._dropped_lag += n
        self.error(text)

    @property
    def state(self) -> str:
        """The link's state (see :class:`LinkStatistics`)."""
        task = self.task
        if task is not None and task.state not in ("running", "starting"):
            return task.state
        return self.conn_state

    def error(self, text: str) -> None:
        """Keep ``text`` as ``last_error``, stamped with the wall-clock time."""
        self.last_error = text
        self.last_error_at = wall_seconds()

    def reset(self) -> None:
        """Zero every counter."""
        self.sent = self.received = self.bytes = self.failed = self.errors = 0
        self._dropped_lag = -(self._lag_reader.unseen_lag if self._lag_reader is not None else 0)
        self.last_error = None
        self.last_error_at = None

    def __repr__(self) -> str:
        return "<LinkCounters " + self.direction + " " + self.url + ">"


class _Route:
    """What both directions of a link have: statistics that see the task serving it."""

    __slots__ = ()

    if TYPE_CHECKING:
        stats: LinkCounters

    def statistics(self) -> LinkStatistics:
        """Return a snapshot of the link's counters (see :class:`LinkStatistics`)."""
        return LinkStatistics(self.stats)

    def _task_failed(self, exc: BaseException) -> None:
        # the task was logged by its supervisor; count it where the link's user looks
        self.stats.errors += 1
        self.stats.error(repr(exc))


class OutboundRoute(_Route):
    """One ``link_to``: values of ``key`` to publish at ``address``.

    Attributes:
        key: record key.
        type: record type.
        spec: the :class:`LinkSpec` (options such as ``qos``, ``retain``).
        address: destination address (topic) without the scheme.
        reader: reader of the record's buffer, subscribed before any source started.
        encode: ``fn(value) -> bytes`` (the link's serializer or codec).
        stats: the live :class:`LinkCounters` the connector updates (users read
            :meth:`statistics`).
    """

    __slots__ = ("_ring", "address", "encode", "key", "reader", "settled", "spec", "stats", "type")

    def __init__(
        self,
        key: str,
        tp: "Any",
        spec: "LinkSpec",
        reader: "Reader[Any]",
        encode: "Callable[[Any], bytes]",
    ) -> None:
        self.key = key
        self.type = tp
        self.spec = spec
        self.address = spec.address
        self.reader = reader
        self.encode = encode
        self.stats = LinkCounters(spec.url, "out")
        self._ring = isinstance(reader, RingReader)  # keeps every value, not only the newest
        if isinstance(reader, RingReader):
            self.stats._lag_reader = reader
        #: how many values of the batch being sent have a known fate (written, failed or
        #: carried over); a connector's send step advances it, see :meth:`send_raised`
        self.settled = 0

    def address_for(self, value: "Any") -> str:
        """Return the destination address for ``value`` (topic provider, or the fixed address)."""
        tp = self.spec.topic_provider
        return tp(value) if tp is not None else self.address

    def value_failed(self, reason: str) -> None:
        """Count one value that was not sent and will not be; log why.

        For a value that did not encode, had an invalid address or was refused by the
        broker: adds 1 to ``stats.failed``, keeps ``reason`` in ``stats.last_error`` and
        logs a warning. The connector goes on with the next value.
        """
        self.stats.failed += 1
        self.stats.error(reason)
        _log.warning("value of %r not sent to %s: %s", self.key, self.spec.url, reason)

    def send_raised(self, values: "list[Any]", exc: BaseException) -> None:
        """Account for a batch whose send step raised unexpectedly.

        The values of ``values`` past :attr:`settled` were neither sent nor kept: they
        are counted in ``stats.failed``; the exception is counted in ``stats.errors``,
        kept in ``stats.last_error`` and logged once with its traceback (call this
        inside the ``except`` block). The connector then goes on with the next batch.
        """
        lost = max(0, len(values) - self.settled)
        self.stats.failed += lost
        self.stats.errors += 1
        self.stats.error(repr(exc))
        _log.exception(
            "sending %d value(s) of %r to %s raised %r; %d value(s) lost",
            len(values),
            self.key,
            self.spec.url,
            exc,
            lost,
            extra={"record_key": self.key, "stage": "link_to"},
        )

    def abandon(self, unsent: int, stopping: bool) -> None:
        """Account for values the route's pump will never send, as it ends.

        ``unsent`` values were taken from the reader and not sent (carried over a
        connection loss, or the rest of a batch): they count in ``stats.failed``. When the
        database is ``stopping``, what the reader still holds counts there too, and what it
        lost without being told so far in ``dropped_lag``; one warning says how many.
        (When the pump is only restarted, the reader keeps its values for the next one.)
        """
        left = 0
        if stopping:
            r = self.reader
            if isinstance(r, RingReader):
                lag = r.unseen_lag
                if lag:
                    self.stats.count_lag(lag, str(lag) + " values overwritten before they were sent")
                    r.report_unseen_lag()
            left = r.pending()
        lost = unsent + left
        if lost:
            self.stats.failed += lost
            self.stats.error(str(lost) + " value(s) not sent before the link's pump ended")
            _log.warning(
                "%s: %d value(s) of %r not sent before the link's pump ended", self.spec.url, lost, self.key
            )

    async def next_batch(self, limit: int, carry: "list[Any] | None" = None) -> "list[Any] | None":
        """Wait for the next 1..``limit`` values of the record, in order.

        ``carry`` holds values taken earlier but not sent because the connection went
        away: they are returned at once, before anything newer, except when the record
        keeps only its newest value (SingleLatest, Mailbox) and a newer one has arrived
        since; the carried values are stale then and the newer one is returned instead.

        A ring reader that fell behind (``BufferLagged``) is counted in
        ``stats.dropped_lag`` (its text in ``stats.last_error``) and the wait goes on with
        the oldest value still held. Returns ``None`` once the record's buffer is closed and
        nothing is left to send.
        """
        if carry and (self._ring or not self.reader.pending()):
            return carry
        while True:
            try:
                return await self.reader.recv_batch(limit)
            except BufferLagged as exc:
                self.stats.count_lag(exc.missed, str(exc))
            except BufferClosed:
                return None

    def __repr__(self) -> str:
        return "<OutboundRoute " + repr(self.key) + " -> " + self.spec.url + ">"


class InboundRoute(_Route):
    """One ``link_from``: payloads from ``address`` into record ``key``.

    Attributes:
        key: record key.
        type: record type.
        spec: the :class:`LinkSpec`.
        address: source address (may contain wildcards such as MQTT ``+``/``#``).
        stats: the live :class:`LinkCounters` (users read :meth:`statistics`).
    """

    __slots__ = ("_buf", "_check", "_decode", "address", "key", "spec", "stats", "type")

    def __init__(
        self,
        key: str,
        tp: "Any",
        spec: "LinkSpec",
        buf: "Any",
        decode: "Callable[[bytes], Any]",
        check: bool,
    ) -> None:
        self.key = key
        self.type = tp
        self.spec = spec
        self.address = spec.address
        self._buf = buf
        self._decode = decode
        self._check = check
        self.stats = LinkCounters(spec.url, "in")

    def decode(self, payload: bytes) -> "Any":
        """Decode ``payload`` into the record type; raises ``DeserializeError`` when it does not fit."""
        try:
            value = self._decode(payload)
        except DeserializeError:
            raise
        except Exception as exc:
            raise DeserializeError(repr(exc), self.key, len(payload)) from exc
        if self._check and not isinstance(value, self.type):
            raise DeserializeError(
                str(TypeMismatch(self.key, self.type, type(value))), self.key, len(payload)
            )
        return value

    def deliver(self, payload: bytes, source: "str | None" = None) -> bool:
        """Decode ``payload`` and produce it into the record.

        A payload that does not decode is logged (with ``source``, e.g. the topic, and the
        record key), counted in ``stats.failed`` and dropped. Nothing is raised, so one bad
        message never disturbs the connection or other records: a record whose buffer is
        closed (the database is stopping) takes nothing, and an unexpected error while
        producing (e.g. from a buffer listener) is logged with its traceback. Returns True
        when produced.
        """
        try:
            value = self.decode(payload)
        except DeserializeError as exc:
            self.stats.failed += 1
            self.stats.error(exc.reason)
            _log.warning(
                "dropped bad payload for %r from %s (%d bytes): %s",
                self.key,
                source or self.spec.url,
                len(payload),
                exc.reason,
                extra={"record_key": self.key, "stage": "link_from"},
            )
            return False
        try:
            self._buf.produce(value)
        except BufferClosed:
            return False
        except Exception:
            _log.exception("delivering %s to %r failed", source or self.spec.url, self.key)
            return False
        self.stats.received += 1
        self.stats.bytes += len(payload)
        return True

    def __repr__(self) -> str:
        return "<InboundRoute " + self.spec.url + " -> " + repr(self.key) + ">"


class ConnectorRoutes:
    """What a connector's ``bind`` and ``run`` receive: its routes, the runtime, the database.

    Attributes:
        outbound: every :class:`OutboundRoute` with this connector's scheme.
        inbound: every :class:`InboundRoute` with this connector's scheme.
        runtime: the database's runtime backend (sleep, clock, waiters).
        db: the database.
        connector: the connector these routes belong to.
    """

    __slots__ = ("connector", "db", "inbound", "outbound", "runtime")

    def __init__(
        self,
        outbound: "list[OutboundRoute]",
        inbound: "list[InboundRoute]",
        runtime: "RuntimeBackend",
        db: "AimDb",
        connector: "ConnectorContract",
    ) -> None:
        self.outbound = outbound
        self.inbound = inbound
        self.runtime = runtime
        self.db = db
        self.connector = connector

    def spawn(
        self,
        name: str,
        fn: "Callable[..., Awaitable[Any]]",
        *args: "Any",
        route: "OutboundRoute | None" = None,
    ) -> "SupervisedTask":
        """Run ``await fn(*args)`` as a supervised task of the database (e.g. a link's pump).

        The task belongs to the database's task group: it is cancelled at shutdown, and
        when ``fn`` raises, the exception is logged once with its traceback and handled
        by the connector's ``on_error`` policy (``"restart"`` with backoff by default).
        With ``route``, the failure is also counted in that route's statistics
        (``errors``, ``last_error``, ``last_error_at``) and the route's ``state`` follows
        the task (a link whose pump is down is never ``"connected"``).
        """
        from ._tasks import SupervisedTask

        task = SupervisedTask(
            self.db,
            name,
            fn,
            args,
            kind="link",
            policy=self.connector.on_error,
            key=route.key if route is not None else "",
            on_failure=route._task_failed if route is not None else None,
        )
        if route is not None:
            route.stats.task = task
        return self.db._spawn(task)

    def set_state(self, state: str) -> None:
        """Show the connector's connection ``state`` on every route's statistics."""
        for r in self.outbound:
            r.stats.conn_state = state
        for q in self.inbound:
            q.stats.conn_state = state

    def _attach(self, task: "SupervisedTask") -> None:
        """Make the connector's own task the one that serves the inbound routes."""
        for q in self.inbound:
            q.stats.task = task

    def _connector_failed(self, exc: BaseException) -> None:
        """The connector's ``run`` raised: count it on every inbound route it serves."""
        for q in self.inbound:
            q._task_failed(exc)


def runtime_problems(connectors: "Iterable[ConnectorContract]", runtime: str) -> "list[ConfigProblem]":
    """Return a problem for each connector that cannot run on the runtime called ``runtime``."""
    out: list[ConfigProblem] = []
    for c in connectors:
        supported = c.runtimes
        if supported is not None and runtime not in supported:
            out.append(
                ConfigProblem(
                    "",
                    "unsupported_runtime",
                    "connector for scheme "
                    + repr(c.scheme)
                    + " runs on "
                    + ", ".join(supported)
                    + ", not on "
                    + runtime,
                )
            )
    return out


class Connector:
    """Base class of connectors: what the database expects of one (see ``aimdb.abc.Connector``).

    Subclasses set :attr:`scheme` and implement :meth:`run`; they may override
    :meth:`validate_link` (called by ``build()`` for each link with this scheme),
    :meth:`bind` (called at start, before ``run``) and :meth:`shutdown` (bounded flush
    at stop).

    Attributes:
        scheme: the URL scheme this connector serves (``"mqtt"``).
        runtimes: names of the runtime backends the connector can run on
            (``("asyncio",)``), or ``None`` for every runtime. ``build()`` (and
            ``start()``, once the runtime is known) refuse a connector that cannot run
            on the database's runtime.
        on_error: policy for the connector's tasks (its ``run`` and the tasks it spawns
            through :meth:`ConnectorRoutes.spawn`) when they raise: ``"restart"`` (with
            backoff, the default), ``"log"`` (the task ends) or ``"stop"`` (the database
            stops and ``run()`` re-raises a ``StageFailed``).
        always_run: start ``run`` even when no link uses this connector.
    """

    scheme = ""
    runtimes: "tuple[str, ...] | None" = None
    on_error = "restart"
    always_run = False

    def validate_link(self, spec: "LinkSpec") -> "list[str]":
        """Return problems with ``spec`` (empty when fine); reported by ``build()``."""
        return []

    def config_problems(self) -> "list[str]":
        """Return problems with the connector's own settings (empty when fine); reported by ``build()``."""
        return []

    def bind(self, routes: ConnectorRoutes) -> None:
        """Receive the routes at start, before ``run`` is first scheduled (default: nothing)."""
        return None

    async def run(self, routes: ConnectorRoutes) -> None:
        """Serve the routes until cancelled."""
        raise NotImplementedError

    async def shutdown(self, timeout: float) -> None:
        """Flush and disconnect within ``timeout`` seconds (default: nothing to do)."""
        return None
