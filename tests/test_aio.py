"""The cancellation-safe ``wait_for`` used by every asyncio part (connectors, remote, backend)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aimdb._aio import _wait_for_pre312, wait_for
from aimdb._backends._asyncio import AsyncioBackend

Waiter = Callable[[Awaitable[Any]], Awaitable[Any]]


async def _cancel_as_inner_finishes(waiter: Waiter) -> tuple[bool, Any]:
    """Cancel a task in the loop step where the awaitable it waits on finishes.

    Returns (whether the task ended cancelled, what it returned otherwise).
    """
    ev = asyncio.Event()
    inner_done = False

    async def inner() -> str:
        nonlocal inner_done
        await ev.wait()
        inner_done = True
        return "value"

    task = asyncio.ensure_future(waiter(inner()))
    for _ in range(3):
        await asyncio.sleep(0)  # the task waits, inner waits for ev
    ev.set()  # inner's wake-up is scheduled before ours
    await asyncio.sleep(0)
    assert inner_done  # inner has finished; the task has not seen it yet
    task.cancel()
    try:
        result = await task
    except asyncio.CancelledError:
        return True, None
    return False, result


@pytest.mark.parametrize("helper", [wait_for, _wait_for_pre312], ids=["wait_for", "pre-3.12 helper"])
def test_a_cancel_is_never_lost(helper: Any) -> None:
    cancelled, result = asyncio.run(_cancel_as_inner_finishes(lambda aw: helper(aw, 5.0)))
    assert cancelled, f"the cancellation was lost; the task returned {result!r}"


def test_the_asyncio_backend_keeps_a_cancel() -> None:
    rt = AsyncioBackend()

    async def via_backend(aw: Awaitable[Any]) -> Any:
        return await rt.wait_for(lambda: aw, 5.0)

    cancelled, result = asyncio.run(_cancel_as_inner_finishes(via_backend))
    assert cancelled, f"the cancellation was lost; the backend returned {result!r}"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in the standard library from 3.12")
def test_the_race_is_real_with_the_standard_library() -> None:
    # the same scenario with asyncio.wait_for loses the cancellation before 3.12: the test
    # above would fail without the helper
    cancelled, result = asyncio.run(_cancel_as_inner_finishes(lambda aw: asyncio.wait_for(aw, 5.0)))
    assert not cancelled and result == "value"


def test_result_timeout_and_error() -> None:
    async def main() -> None:
        async def value() -> int:
            await asyncio.sleep(0)
            return 7

        for helper in (wait_for, _wait_for_pre312):
            assert await helper(value(), 1.0) == 7
            assert await helper(value(), None) == 7

        cancelled: list[bool] = []

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def boom() -> None:
            raise ValueError("boom")

        for helper in (wait_for, _wait_for_pre312):
            cancelled.clear()
            with pytest.raises(asyncio.TimeoutError):
                await helper(slow(), 0.01)
            assert cancelled == [True]  # the timed-out awaitable was cancelled and awaited
            with pytest.raises(ValueError, match="boom"):
                await helper(boom(), 1.0)

        rt = AsyncioBackend()
        assert await rt.wait_for(value, 1.0) is True
        assert await rt.wait_for(lambda: asyncio.sleep(10), 0.01) is False

    asyncio.run(main())
