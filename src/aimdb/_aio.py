"""asyncio helpers shared by the CPython-only parts (asyncio backend, connectors, remote access, demo)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

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


async def first_of(main: Coroutine[Any, Any, _T], *helpers: Coroutine[Any, Any, Any]) -> _T:
    """Run ``main`` with ``helpers`` beside it; return ``main``'s result once it finishes.

    A helper that raises ends everything: the others are cancelled and awaited, and its
    exception propagates (it is never dropped). A helper that returns simply ends. When
    the caller is cancelled, every task is cancelled and awaited and the cancellation
    propagates.
    """
    loop = asyncio.get_running_loop()
    first = loop.create_task(main)
    rest = [loop.create_task(h) for h in helpers]
    tasks = [first, *rest]
    try:
        pending = set(tasks)
        while first in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not first and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        return first.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
        for t in tasks:  # mark every outcome retrieved; the one that matters was raised above
            if not t.cancelled():
                t.exception()
