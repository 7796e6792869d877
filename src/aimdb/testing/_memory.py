"""An in-memory connector for unit tests (scheme ``memory``; MicroPython-safe).

Outbound values are encoded and recorded per address in :attr:`MemoryConnector.published`;
:meth:`MemoryConnector.inject` feeds a payload to every inbound route whose address
matches exactly. It proves the link plumbing; real transports are tested against real brokers.
"""

from .._compat import TYPE_CHECKING
from .._core._connector import Connector

if TYPE_CHECKING:
    from typing import Any

    from .._core._connector import ConnectorRoutes


class MemoryConnector(Connector):
    """Connector that keeps everything in memory; see the module docstring."""

    def __init__(self, scheme: str = "memory") -> None:
        self.scheme = scheme
        self.published: dict[str, list[bytes]] = {}
        self._routes: ConnectorRoutes | None = None

    def bind(self, routes: "ConnectorRoutes") -> None:
        """Keep the routes (called by the database at start), so :meth:`inject` works at once."""
        self._routes = routes

    async def run(self, routes: "ConnectorRoutes") -> None:
        """Publish every outbound route's values into :attr:`published` until cancelled."""
        self._routes = routes
        rt = routes.runtime
        group = rt.open_task_group()
        await group.start()
        try:
            for route in routes.outbound:
                group.spawn("aimdb.memory[" + route.key + "]", self._pump, route)
            while True:
                await rt.sleep(3600)
        finally:
            await group.aclose()

    async def _pump(self, route: "Any") -> None:
        async for value in route.reader:
            payload = route.encode(value)
            self.published.setdefault(route.address_for(value), []).append(payload)
            route.stats.sent += 1
            route.stats.bytes += len(payload)

    def inject(self, address: str, payload: bytes) -> int:
        """Deliver ``payload`` to inbound routes with ``address``; returns how many accepted it."""
        if self._routes is None:
            raise RuntimeError("connector is not running")
        n = 0
        for route in self._routes.inbound:
            if route.address == address and route.deliver(payload, address):
                n += 1
        return n
