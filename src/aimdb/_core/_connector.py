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

from .._compat import TYPE_CHECKING, get_logger
from .._errors import BufferClosed, BufferLagged, DeserializeError, TypeMismatch
from ._buffers import RingReader

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._buffers import Reader
    from ._links import LinkSpec

_log: "Any" = get_logger("aimdb")


class LinkStatistics:
    """Counters of one link (route).

    Attributes:
        url: the link URL.
        direction: ``"out"`` or ``"in"``.
        sent: values published (outbound).
        received: values delivered into the record (inbound).
        bytes: payload bytes sent or received.
        failed: publishes that failed (outbound) or payloads rejected (inbound: bad payload).
        dropped_lag: values the outbound reader lost because the broker was too slow.
        last_error: text of the most recent error, or ``None``.
    """

    __slots__ = ("bytes", "direction", "dropped_lag", "failed", "last_error", "received", "sent", "url")

    def __init__(self, url: str, direction: str) -> None:
        self.url = url
        self.direction = direction
        self.sent = 0
        self.received = 0
        self.bytes = 0
        self.failed = 0
        self.dropped_lag = 0
        self.last_error: str | None = None

    def as_dict(self) -> "dict[str, Any]":
        """Return the counters as a plain dict (for JSON)."""
        return {
            "url": self.url,
            "direction": self.direction,
            "sent": self.sent,
            "received": self.received,
            "bytes": self.bytes,
            "failed": self.failed,
            "dropped_lag": self.dropped_lag,
            "last_error": self.last_error,
        }

    def reset(self) -> None:
        """Zero every counter."""
        self.sent = self.received = self.bytes = self.failed = self.dropped_lag = 0
        self.last_error = None

    def __repr__(self) -> str:
        return "LinkStatistics(" + repr(self.as_dict()) + ")"


class OutboundRoute:
    """One ``link_to``: values of ``key`` to publish at ``address``.

    Attributes:
        key: record key.
        type: record type.
        spec: the :class:`LinkSpec` (options such as ``qos``, ``retain``).
        address: destination address (topic) without the scheme.
        reader: reader of the record's buffer, subscribed before any source started.
        encode: ``fn(value) -> bytes`` (the link's serializer or codec).
        stats: :class:`LinkStatistics` to update.
    """

    __slots__ = ("_ring", "address", "encode", "key", "reader", "spec", "stats", "type")

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
        self.stats = LinkStatistics(spec.url, "out")
        self._ring = isinstance(reader, RingReader)  # keeps every value, not only the newest

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
        self.stats.last_error = reason
        _log.warning("value of %r not sent to %s: %s", self.key, self.spec.url, reason)

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
                self.stats.dropped_lag += exc.missed
                self.stats.last_error = str(exc)
            except BufferClosed:
                return None

    def __repr__(self) -> str:
        return "<OutboundRoute " + repr(self.key) + " -> " + self.spec.url + ">"


class InboundRoute:
    """One ``link_from``: payloads from ``address`` into record ``key``.

    Attributes:
        key: record key.
        type: record type.
        spec: the :class:`LinkSpec`.
        address: source address (may contain wildcards such as MQTT ``+``/``#``).
        stats: :class:`LinkStatistics`.
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
        self.stats = LinkStatistics(spec.url, "in")

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
            self.stats.last_error = exc.reason
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
    """What a connector's ``run`` receives: its routes, the runtime and a spawn helper.

    Attributes:
        outbound: every :class:`OutboundRoute` with this connector's scheme.
        inbound: every :class:`InboundRoute` with this connector's scheme.
        runtime: the database's runtime backend (sleep, clock, waiters).
        db: the database.
    """

    __slots__ = ("db", "inbound", "outbound", "runtime")

    def __init__(
        self,
        outbound: "list[OutboundRoute]",
        inbound: "list[InboundRoute]",
        runtime: "Any",
        db: "Any",
    ) -> None:
        self.outbound = outbound
        self.inbound = inbound
        self.runtime = runtime
        self.db = db


class Connector:
    """Base class for connectors (optional: any object with ``scheme`` and ``run`` works).

    Subclasses set :attr:`scheme` and implement :meth:`run`; they may override
    :meth:`validate_link` (called by ``build()`` for each link with this scheme) and
    :meth:`shutdown` (bounded flush at stop).
    """

    scheme = ""

    def validate_link(self, spec: "LinkSpec") -> "list[str]":
        """Return problems with ``spec`` (empty when fine); reported by ``build()``."""
        return []

    async def run(self, routes: ConnectorRoutes) -> None:
        """Serve the routes until cancelled."""
        raise NotImplementedError

    async def shutdown(self, timeout: float) -> None:
        """Flush and disconnect within ``timeout`` seconds (default: nothing to do)."""
        return None
