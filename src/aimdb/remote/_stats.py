"""Counters of the remote-access server and their snapshot, :class:`RemoteServerStatistics`."""

from __future__ import annotations

import time
from typing import Any

from .._core._stats import Statistics

_COUNTERS = (
    "connections_total",
    "rejected",
    "subscriptions_total",
    "requests",
    "bad_frames",
    "frames_too_deep",
    "notification_errors",
    "auth_failures",
    "sets",
    "feed_lagged",
    "encode_errors",
    "events_dropped",
    "handshake_timeouts",
    "idle_closed",
    "origin_refused",
    "failures",
)


class ServerCounters:
    """The running counters one server updates (see :class:`RemoteServerStatistics`)."""

    __slots__ = (*_COUNTERS, "last_error", "last_error_at")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter and forget the last error."""
        for name in _COUNTERS:
            setattr(self, name, 0)
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def failed(self, what: str, exc: BaseException) -> None:
        """Count a task that ended with ``exc`` and remember it as the last error."""
        self.failures += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self.last_error_at = time.time()

    # Declared for the type checker; set in reset().
    connections_total: int
    rejected: int
    subscriptions_total: int
    requests: int
    bad_frames: int
    frames_too_deep: int
    notification_errors: int
    auth_failures: int
    sets: int
    feed_lagged: int
    encode_errors: int
    events_dropped: int
    handshake_timeouts: int
    idle_closed: int
    origin_refused: int
    failures: int


class RemoteServerStatistics(Statistics):
    """A snapshot of a remote-access server's counters (``RemoteServer.statistics()``).

    Attributes:
        name: the server's instance name.
        endpoints: connect strings of its listeners.
        connections: sessions open now.
        connections_total: sessions accepted since start (or the last reset).
        rejected: connections refused (``too_many_connections``, ``shutting_down``).
        subscriptions: subscriptions open now, over all sessions.
        subscriptions_total: subscriptions created.
        feeds: records with a server-side reader now (one per subscribed record).
        requests: requests and notifications handled.
        bad_frames: frames answered with a framing error (``parse_error``,
            ``frame_too_large``, ``frame_too_deep``).
        frames_too_deep: of those, frames nested deeper than ``max_depth``.
        notification_errors: notifications (frames without ``id``) that failed.
        auth_failures: ``hello`` refused for a missing or wrong token.
        sets: successful ``record.set`` calls.
        events_dropped: events dropped from full subscription queues (clients slower than
            their records), over all subscriptions since start or the last reset.
        feed_lagged: values a ring reader of the server missed (counted as gaps).
        encode_errors: values that could not be encoded for subscribers.
        handshake_timeouts: connections closed for not completing ``hello`` in time.
        idle_closed: connections closed after ``idle_timeout`` without activity.
        origin_refused: WebSocket requests refused (HTTP 403) for a foreign ``Origin``.
        failures: server tasks (sessions, feeds, writers) that ended with an unexpected
            error; each is logged once with its traceback.
        last_error: ``"<task>: <type>: <message>"`` of the newest failure, or ``None``.
        last_error_at: when it happened (seconds since the epoch), or ``None``.
    """

    __slots__ = (  # in the order of as_dict()
        "name",
        "endpoints",
        "connections",
        "subscriptions",
        "feeds",
        *_COUNTERS,
        "last_error",
        "last_error_at",
    )

    def __init__(
        self,
        name: str,
        endpoints: list[str],
        connections: int,
        subscriptions: int,
        feeds: int,
        counters: ServerCounters,
    ) -> None:
        fields: dict[str, Any] = {
            "name": name,
            "endpoints": list(endpoints),
            "connections": connections,
            "subscriptions": subscriptions,
            "feeds": feeds,
        }
        for field in _COUNTERS:
            fields[field] = getattr(counters, field)
        fields["last_error"] = counters.last_error
        fields["last_error_at"] = counters.last_error_at
        self._init(fields)

    # Declared for the type checker; set in __init__.
    name: str
    endpoints: list[str]
    connections: int
    subscriptions: int
    feeds: int
    last_error: str | None
    last_error_at: float | None
    connections_total: int
    rejected: int
    subscriptions_total: int
    requests: int
    bad_frames: int
    frames_too_deep: int
    notification_errors: int
    auth_failures: int
    sets: int
    feed_lagged: int
    encode_errors: int
    events_dropped: int
    handshake_timeouts: int
    idle_closed: int
    origin_refused: int
    failures: int
