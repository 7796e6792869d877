"""asyncio helpers shared by the CPython-only parts (asyncio backend, connectors, remote access, demo)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


async def _wait_for_pre312(aw: Awaitable[_T], timeout: float | None) -> _T:
    """``asyncio.wait_for`` that never loses a cancellation (what :func:`wait_for` is before 3.12).

    Before Python 3.12, ``asyncio.wait_for`` returns (or raises) the inner result when the
    caller is cancelled just as the inner awaitable finishes, and the cancellation is gone
    (CPython issue gh-86296). A connector whose connection attempts fail within
    milliseconds (a TLS certificate refused, a port closed) then kept retrying after the
    database cancelled it, and the database's shutdown waited for it forever.

    Raises:
        asyncio.TimeoutError: ``aw`` did not finish within ``timeout`` (it is cancelled).
    """
    fut = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait((fut,), timeout=timeout)
    except asyncio.CancelledError:
        fut.cancel()
        await asyncio.wait((fut,))
        if not fut.cancelled():
            fut.exception()  # retrieved: the cancellation wins
        raise
    if not done:
        fut.cancel()
        await asyncio.wait((fut,))
        if not fut.cancelled():
            return fut.result()  # finished (or failed) while being cancelled
        raise asyncio.TimeoutError
    return fut.result()


if sys.version_info >= (3, 12):
    wait_for = asyncio.wait_for  # fixed there, and cheaper (no extra task)
else:
    wait_for = _wait_for_pre312
