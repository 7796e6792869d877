"""Connection-level counters of a connector, live and as a snapshot (MicroPython-safe).

:class:`ConnectorCounters` is what a connector counts in (``connector.stats``);
:class:`ConnectorStatistics` is the frozen snapshot users read
(``connector.statistics()``, ``db.connector_statistics()``).
"""

from .._compat import TYPE_CHECKING
from ._stats import Statistics

#: connection states of a connector that keeps connection counters, in their usual order
CONNECTION_STATES = ("idle", "connecting", "connected", "disconnected", "failed", "closed")

#: the fields of a connector's counters, live (ConnectorCounters) and snapshot (ConnectorStatistics)
_CONNECTOR_FIELDS = (
    "connected_since",
    "connects",
    "disconnects",
    "errors",
    "failed_attempts",
    "last_error",
    "last_error_at",
    "reconnects",
    "state",
    "url",
)


class ConnectorCounters:
    """The live connection-level counters of one connector (``connector.stats``).

    The fields mean what those of :class:`ConnectorStatistics` mean; the connector counts
    here, users read a snapshot (``connector.statistics()``).
    """

    __slots__ = _CONNECTOR_FIELDS

    if TYPE_CHECKING:
        connected_since: float | None
        connects: int
        disconnects: int
        errors: int
        failed_attempts: int
        last_error: str | None
        last_error_at: float | None
        reconnects: int
        state: str
        url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self.state = "idle"
        self.connects = 0
        self.reconnects = 0
        self.failed_attempts = 0
        self.disconnects = 0
        self.errors = 0
        self.last_error = None
        self.last_error_at = None
        self.connected_since = None

    def __repr__(self) -> str:
        return "<ConnectorCounters " + self.url + " " + self.state + ">"


class ConnectorStatistics(Statistics):
    """A snapshot of one connector's connection-level counters (``connector.statistics()``).

    Attributes:
        url: the connector URL (without credentials).
        state: one of ``idle``, ``connecting``, ``connected``, ``disconnected``,
            ``failed``, ``closed``. A connector without a connection of its own (one
            that keeps no such counters) is shown by ``db.connector_statistics()`` with
            the state of the task that runs it instead: ``running``, ``restarting``,
            ``done``, ``failed`` or ``stopped`` (``idle`` before the database started it).
        connects: successful connections (the first one included).
        reconnects: successful connections after the first.
        failed_attempts: connection attempts that failed.
        disconnects: established connections that were lost.
        errors: exceptions raised inside the connector's own callbacks (e.g. while
            routing a received message); each is logged once with its traceback and
            costs only the message it was handling.
        last_error: text of the most recent connection error, or ``None``.
        last_error_at: wall-clock time (``time.time()``) of ``last_error``, or ``None``.
        connected_since: wall-clock time of the current connection, or ``None``.
    """

    __slots__ = _CONNECTOR_FIELDS

    if TYPE_CHECKING:
        connected_since: float | None
        connects: int
        disconnects: int
        errors: int
        failed_attempts: int
        last_error: str | None
        last_error_at: float | None
        reconnects: int
        state: str
        url: str

    def __init__(self, counters: ConnectorCounters) -> None:
        self._init(
            {
                "connected_since": counters.connected_since,
                "connects": counters.connects,
                "disconnects": counters.disconnects,
                "errors": counters.errors,
                "failed_attempts": counters.failed_attempts,
                "last_error": counters.last_error,
                "last_error_at": counters.last_error_at,
                "reconnects": counters.reconnects,
                "state": counters.state,
                "url": counters.url,
            }
        )
