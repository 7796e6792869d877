"""Prometheus metrics of a database and its remote-access server (``/metrics``).

:func:`families` turns ``db.statistics()``, ``db.connector_statistics()`` and the
server's statistics into metric
families (one table, below, says which). Two renderers share it:

* :func:`render_text` writes the Prometheus text format (0.0.4) directly; ``/metrics``
  uses it. Its output is byte for byte what ``prometheus_client.generate_latest`` writes
  for the same families (tested), at a fraction of the cost (``bench/metrics.py``).
* :class:`AimDbCollector` is a ``prometheus_client`` collector over the same families,
  for an application that exports through its own ``prometheus_client`` registry.

Every counter carries the ``_total`` suffix; record metrics are labelled ``key``, stage
metrics ``key``/``stage``/``kind``, link metrics ``key``/``url``/``direction``, connector
metrics ``scheme``/``url``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .. import AimDb
    from ..links import ConnectorStatistics
    from ._stats import RemoteServerStatistics

Labels = tuple[tuple[str, str], ...]
"""Label pairs of one sample, sorted by label name."""


class Family(NamedTuple):
    """One metric family: ``name`` (counters without ``_total``), ``kind``, ``help`` and samples."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: list[tuple[Labels, float]]


# (metric name, kind, help, field of the statistics dict)
_RECORD = (
    ("aimdb_record_produced", "counter", "Values produced into the record's buffer.", "produced"),
    (
        "aimdb_record_delivered",
        "counter",
        "Values handed to the record's readers, summed over readers.",
        "delivered",
    ),
    ("aimdb_record_dropped", "counter", "Values readers lost (ring lag, mailbox overwrites).", "dropped"),
    ("aimdb_record_occupancy", "gauge", "Values the record's buffer holds now.", "occupancy"),
    ("aimdb_record_capacity", "gauge", "Slots of the record's buffer.", "capacity"),
    ("aimdb_record_readers", "gauge", "Readers subscribed to the record's buffer now.", "readers"),
)
_STAGE = (
    ("aimdb_stage_runs", "counter", "Transform/join calls; source/tap starts.", "calls"),
    (
        "aimdb_stage_values",
        "counter",
        "Values a stage produced (source, transform, join) or received (tap).",
        "values",
    ),
    ("aimdb_stage_failures", "counter", "Exceptions a stage raised.", "errors"),
    ("aimdb_stage_restarts", "counter", "Restarts of a stage under on_error='restart'.", "restarts"),
    ("aimdb_stage_running", "gauge", "1 while the stage's task runs, else 0.", "running"),
)
_LINK = (
    ("aimdb_link_sent", "counter", "Values a link published (outbound).", "sent"),
    ("aimdb_link_received", "counter", "Values a link delivered into its record (inbound).", "received"),
    ("aimdb_link_failed", "counter", "Values a link did not send, or payloads it rejected.", "failed"),
    (
        "aimdb_link_dropped_lag",
        "counter",
        "Values an outbound link lost because its broker was too slow.",
        "dropped_lag",
    ),
    ("aimdb_link_bytes", "counter", "Payload bytes a link sent or received.", "bytes"),
    ("aimdb_link_errors", "counter", "Exceptions raised by the task serving a link.", "errors"),
)
LINK_UP_STATES = ("connected", "running")
"""Link (and connector) states for which ``aimdb_link_up`` (``aimdb_connector_up``) is 1."""
_CONNECTOR = (
    ("aimdb_connector_connects", "counter", "Successful connections of a connector.", "connects"),
    (
        "aimdb_connector_reconnects",
        "counter",
        "Successful connections of a connector after its first.",
        "reconnects",
    ),
    (
        "aimdb_connector_failed_attempts",
        "counter",
        "Connection attempts of a connector that failed.",
        "failed_attempts",
    ),
    (
        "aimdb_connector_disconnects",
        "counter",
        "Established connections of a connector that were lost.",
        "disconnects",
    ),
    ("aimdb_connector_errors", "counter", "Exceptions raised inside a connector's callbacks.", "errors"),
)
_SERVER = (
    ("aimdb_remote_connections", "gauge", "Remote-access sessions open now.", "connections"),
    ("aimdb_remote_subscriptions", "gauge", "Remote subscriptions open now.", "subscriptions"),
    ("aimdb_remote_connections_opened", "counter", "Remote-access sessions accepted.", "connections_total"),
    (
        "aimdb_remote_connections_rejected",
        "counter",
        "Connections refused (limit, shutting down).",
        "rejected",
    ),
    ("aimdb_remote_requests", "counter", "Requests and notifications handled.", "requests"),
    ("aimdb_remote_bad_frames", "counter", "Frames answered with a framing error.", "bad_frames"),
    (
        "aimdb_remote_auth_failures",
        "counter",
        "Handshakes refused for a missing or wrong token.",
        "auth_failures",
    ),
    (
        "aimdb_remote_origin_refused",
        "counter",
        "WebSocket requests refused for a foreign Origin.",
        "origin_refused",
    ),
    (
        "aimdb_remote_events_dropped",
        "counter",
        "Events dropped from full subscription queues.",
        "events_dropped",
    ),
    ("aimdb_remote_feed_lagged", "counter", "Values the server's record readers missed.", "feed_lagged"),
    ("aimdb_remote_failures", "counter", "Server tasks that ended with an unexpected error.", "failures"),
)


def families(
    records: dict[str, dict[str, Any]],
    server: RemoteServerStatistics | None = None,
    connectors: Mapping[str, ConnectorStatistics] | None = None,
) -> list[Family]:
    """Return the metric families of ``db.statistics()``, a server and ``db.connector_statistics()``.

    Records without a buffer have no record samples; ``aimdb_link_up`` is 1 for a link
    in one of :data:`LINK_UP_STATES`, and ``aimdb_link_state`` has one sample per link
    with value 1, labelled with its current ``state``. The connector families
    (``aimdb_connector_*``, labelled ``scheme`` and ``url``) follow the link families the
    same way: ``aimdb_connector_up`` is 1 in one of :data:`LINK_UP_STATES`,
    ``aimdb_connector_state`` is 1 labelled with the current state. Without
    ``connectors`` they are left out.
    """
    rec = [Family(n, k, h, []) for n, k, h, _ in _RECORD]
    stage = [Family(n, k, h, []) for n, k, h, _ in _STAGE]
    link = [Family(n, k, h, []) for n, k, h, _ in _LINK]
    link_up = Family("aimdb_link_up", "gauge", "1 while a link is connected (or running), else 0.", [])
    link_state = Family("aimdb_link_state", "gauge", "1, labelled with the link's current state.", [])
    rec_fields = [f for *_, f in _RECORD]
    stage_fields = [f for *_, f in _STAGE]
    link_fields = [f for *_, f in _LINK]
    for key, st in records.items():
        buf = st.get("buffer")
        if buf is not None:
            labels: Labels = (("key", key),)
            for fam, field in zip(rec, rec_fields, strict=True):
                fam.samples.append((labels, buf[field]))
        for s in st.get("stages", ()):
            labels = (("key", key), ("kind", s["kind"]), ("stage", s["name"]))
            for fam, field in zip(stage, stage_fields, strict=True):
                fam.samples.append((labels, float(s[field])))
        for ln in st.get("links", ()):
            labels = (("direction", ln["direction"]), ("key", key), ("url", ln["url"]))
            for fam, field in zip(link, link_fields, strict=True):
                fam.samples.append((labels, ln[field]))
            state = str(ln["state"])
            link_up.samples.append((labels, 1.0 if state in LINK_UP_STATES else 0.0))
            link_state.samples.append(((*labels[:2], ("state", state), labels[2]), 1.0))
    out = [*rec, *stage, *link, link_up, link_state]
    if connectors is not None:
        out.extend(_connector_families(connectors))
    if server is not None:
        for n, k, h, field in _SERVER:
            out.append(Family(n, k, h, [((), getattr(server, field))]))
    return out


def _connector_families(connectors: Mapping[str, ConnectorStatistics]) -> list[Family]:
    fams = [Family(n, k, h, []) for n, k, h, _ in _CONNECTOR]
    up = Family("aimdb_connector_up", "gauge", "1 while a connector is connected (or running), else 0.", [])
    state_fam = Family(
        "aimdb_connector_state", "gauge", "1, labelled with the connector's current state.", []
    )
    for scheme, st in connectors.items():
        labels: Labels = (("scheme", scheme), ("url", st.url))
        for fam, (*_, field) in zip(fams, _CONNECTOR, strict=True):
            fam.samples.append((labels, float(getattr(st, field))))
        up.samples.append((labels, 1.0 if st.state in LINK_UP_STATES else 0.0))
        state_fam.samples.append(((("scheme", scheme), ("state", st.state), ("url", st.url)), 1.0))
    return [*fams, up, state_fam]


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(v: float) -> str:
    """Format a sample value as Prometheus (Go) does: ``1.0``, ``1.5e+07``, ``+Inf``, ``NaN``."""
    d = float(v)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go uses an exponent from 1e7 on
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def render_text(fams: Iterable[Family]) -> bytes:
    """Render families in the Prometheus text format 0.0.4 (UTF-8)."""
    out: list[str] = []
    add = out.append
    label_cache: dict[Labels, str] = {}
    for fam in fams:
        name = fam.name + "_total" if fam.kind == "counter" else fam.name
        help_text = fam.help.replace("\\", "\\\\").replace("\n", "\\n")
        add(f"# HELP {name} {help_text}\n# TYPE {name} {fam.kind}\n")
        for labels, value in fam.samples:
            if labels:
                ls = label_cache.get(labels)
                if ls is None:
                    ls = label_cache[labels] = (
                        "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "}"
                    )
            else:
                ls = ""
            add(f"{name}{ls} {format_value(value)}\n")
    return "".join(out).encode()


class MetricsRenderer:
    """Renders ``/metrics`` for one database (and optionally its remote-access server).

    Args:
        db: the running database.
        server_stats: returns the server's statistics snapshot (``None``: no server metrics).
    """

    __slots__ = ("_db", "_server_stats")

    def __init__(self, db: AimDb, server_stats: Callable[[], RemoteServerStatistics] | None = None) -> None:
        self._db = db
        self._server_stats = server_stats

    def families(self) -> list[Family]:
        """The current metric families."""
        stats = self._server_stats() if self._server_stats is not None else None
        return families(self._db.statistics(), stats, self._db.connector_statistics())

    def render(self) -> bytes:
        """The ``/metrics`` body now (Prometheus text format 0.0.4)."""
        return render_text(self.families())


class AimDbCollector:
    """A ``prometheus_client`` collector over the same families as ``/metrics``.

    Register it with ``prometheus_client.REGISTRY.register(AimDbCollector(renderer))`` to
    export a database through an application's own registry.

    Args:
        source: returns the current families (e.g. ``MetricsRenderer(db).families``).
    """

    def __init__(self, source: Callable[[], list[Family]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        """Yield one ``prometheus_client`` metric family per :class:`Family`."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for fam in self._source():
            names = [k for k, _ in fam.samples[0][0]] if fam.samples else []
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            m = cls(fam.name, fam.help, labels=names)
            for labels, value in fam.samples:
                m.add_metric([v for _, v in labels], value)
            yield m
