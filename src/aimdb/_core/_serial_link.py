"""Write-only ``aimdb://`` links over a byte stream (UART TX, pipe); MicroPython-safe.

A microcontroller often reaches its gateway through one serial line it can only write to
reliably. :class:`SerialLink` mirrors records to a peer aimdb instance over such a line
with the remote protocol's *notifications* (requests without an ``id``, never answered):
one ``hello`` at start and again every ``hello_every`` seconds (so a peer that restarts
picks the stream up again), then one ``record.set`` frame per value. The peer serves the
stream with :meth:`aimdb.remote.RemoteServer.serve_stream` and must declare the target
records writable.
"""

import json as _json

from .._compat import TYPE_CHECKING
from ._builder import key_problem
from ._connector import Connector

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._connector import ConnectorRoutes

PROTOCOL_VERSION = "1.3"
"""Remote-access protocol version (``MAJOR.MINOR``); the one definition, also used by
:mod:`aimdb.remote` (this module is importable on MicroPython, that one is not)."""


class SerialLink(Connector):
    """Connector for ``link_to("aimdb://KEY")`` over a write-only byte stream.

    Every outbound route's values are encoded with the link's codec (JSON by default)
    and written as ``{"method":"record.set","params":{"key":KEY,"value":...}}`` lines,
    in produce order per record. Nothing is ever read back: values the peer rejects are
    counted on the peer (``notification_errors``), not here. A value that cannot be
    encoded, or whose write raises, counts in the route's ``failed``; values a slow line
    lost in the ring count in ``dropped_lag``.

    Args:
        write: ``write(frame: bytes)``, called with whole newline-terminated frames.
            It may block briefly (a UART or pipe write); it must not be a coroutine.
        name: client name sent in ``hello``.
        token: the peer's token, if it has one.
        hello_every: seconds between repeated ``hello`` frames (``0`` sends one only).

    Attributes:
        frames: frames written so far, ``hello`` frames included.
        write_errors: writes that raised (the frame is lost; a value's loss also
            counts in its route's ``failed``).
    """

    scheme = "aimdb"

    def __init__(
        self,
        write: "Callable[[bytes], Any]",
        *,
        name: str = "aimdb-serial",
        token: "str | None" = None,
        hello_every: float = 5.0,
    ) -> None:
        self._write = write
        self.name = name
        self.token = token
        self.hello_every = hello_every
        self.frames = 0
        self.write_errors = 0

    def validate_link(self, spec: "Any") -> "list[str]":
        """Only ``link_to`` to one exact record key is possible on a write-only line."""
        if spec.direction != "out":
            return ["a SerialLink is write-only: use link_to, not link_from"]
        problem = key_problem(spec.address)  # the peer's record key: the same rules as ours
        if problem is not None:
            return ["a SerialLink address must be one record key: " + problem]
        return []

    def hello_frame(self) -> bytes:
        """Return the ``hello`` notification this link sends."""
        params: dict[str, Any] = {"version": PROTOCOL_VERSION, "client": self.name}
        if self.token is not None:
            params["token"] = self.token
        return _json.dumps({"method": "hello", "params": params}).encode() + b"\n"

    def _send(self, frame: bytes) -> bool:
        try:
            self._write(frame)
        except Exception:
            self.write_errors += 1
            return False
        self.frames += 1
        return True

    async def run(self, routes: "ConnectorRoutes") -> None:
        """Write ``hello``, then every outbound value, until cancelled."""
        rt = routes.runtime
        self._send(self.hello_frame())
        group = rt.open_task_group()
        await group.start()
        try:
            for route in routes.outbound:
                group.spawn("aimdb.serial[" + route.key + "]", self._pump, route)
            while True:
                if self.hello_every > 0:
                    await rt.sleep(self.hello_every)
                    self._send(self.hello_frame())
                else:
                    await rt.sleep(3600)
        finally:
            await group.aclose()

    async def _pump(self, route: "Any") -> None:
        stats = route.stats
        head = b'{"method":"record.set","params":{"key":' + _json.dumps(route.address).encode() + b',"value":'
        while True:
            values = await route.next_batch(32)  # counts a lagging reader's loss itself
            if values is None:
                return
            for value in values:
                try:
                    payload = route.encode(value)
                except Exception as exc:
                    stats.failed += 1
                    stats.last_error = str(exc)
                    continue
                if self._send(head + payload + b"}}\n"):
                    stats.sent += 1
                    stats.bytes += len(payload)
                else:
                    stats.failed += 1
                    stats.last_error = "write failed"
