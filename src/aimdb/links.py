"""Links and the connector interface: what a connector's author works with (MicroPython-safe).

A program declares links with ``reg.link_to(url)`` / ``reg.link_from(url)`` (the builders
below) and registers a connector per URL scheme with ``builder.with_connector(c)``. A
connector derives from :class:`Connector` (the contract is spelled out as a protocol in
``aimdb.abc.Connector``); at start the database hands it a :class:`ConnectorRoutes` with an
:class:`OutboundRoute` per ``link_to`` (a reader subscribed before any source started,
the encoder, :meth:`OutboundRoute.next_batch`) and an :class:`InboundRoute` per
``link_from`` (:meth:`InboundRoute.deliver` decodes and produces). Its tasks are spawned
through :meth:`ConnectorRoutes.spawn`, so the database owns and supervises them.

:class:`SerialLink` is the write-only ``aimdb://`` connector of the core (for a pipe or a
UART); the broker connectors are in ``aimdb.connectors``. :class:`ConnectorStatistics` is
the snapshot of one connector's connection counters (``db.connector_statistics()``).
"""

from ._core._connector import Connector as Connector
from ._core._connector import ConnectorRoutes as ConnectorRoutes
from ._core._connector import InboundRoute as InboundRoute
from ._core._connector import LinkStatistics as LinkStatistics
from ._core._connector import OutboundRoute as OutboundRoute
from ._core._connector_stats import ConnectorStatistics as ConnectorStatistics
from ._core._links import InboundLinkBuilder as InboundLinkBuilder
from ._core._links import LinkSpec as LinkSpec
from ._core._links import LinkUrl as LinkUrl
from ._core._links import OutboundLinkBuilder as OutboundLinkBuilder
from ._core._serial_link import SerialLink as SerialLink

__all__ = (
    "Connector",
    "ConnectorRoutes",
    "ConnectorStatistics",
    "InboundLinkBuilder",
    "InboundRoute",
    "LinkSpec",
    "LinkStatistics",
    "LinkUrl",
    "OutboundLinkBuilder",
    "OutboundRoute",
    "SerialLink",
)


def _fix_module_names() -> None:
    # reprs and tracebacks show aimdb.links.X rather than the private module paths
    g = globals()
    for name in __all__:
        obj = g.get(name)
        if isinstance(obj, type):
            try:
                obj.__module__ = "aimdb.links"
            except (AttributeError, TypeError):  # pragma: no cover - MicroPython
                pass


_fix_module_names()
