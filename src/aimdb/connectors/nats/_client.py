"""The boundary to nats-py: its types and errors aimdb uses, and its pending buffer.

Importing this module fails with a clear :class:`ImportError` when nats-py is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

try:
    import nats.errors as nats_errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aimdb.connectors.nats needs nats-py: install it with pip install 'aimdb[nats]'"
    ) from _exc

__all__ = ("GONE", "Client", "Msg", "Subscription", "abort", "nats_errors", "written")

# errors of a connection that is gone or going: the values are kept for the next one
GONE = (
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.ConnectionDrainingError,
)


async def written(nc: Client, limit: int, alive: Callable[[], bool]) -> bool:
    """Wait until at most ``limit`` bytes wait in the pending buffer of ``nc``.

    nats-py's ``publish()`` and ``subscribe()`` append to that buffer; its flusher task
    writes the buffer to the socket when it next runs. This polls ``pending_data_size``:
    after one pass of the event loop (the flusher has usually run then), then every 1 ms,
    doubling to 50 ms. Returns False as soon as ``alive()`` is false (the connection
    went), else True.
    """
    delay = 0.0
    while nc.pending_data_size > limit:
        if not alive():
            return False
        await asyncio.sleep(delay)
        delay = min(0.05, max(0.001, delay * 2))
    return alive()


def abort(nc: Client) -> None:
    """Abort the socket of ``nc`` (a reset) once its ``close()`` ended or was cut short.

    nats-py closes its asyncio transport gracefully, which keeps the socket open until the
    data still buffered is written: for a server that does not read (a stalled one),
    forever. After a completed close nothing is buffered and this changes nothing. nats-py
    has no public way to drop the socket, so this reaches the stream writer of its
    transport; a client without one is left alone.
    """
    transport = getattr(nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    if writer is not None:
        writer.transport.abort()
