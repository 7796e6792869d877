"""The owner of every task a remote-access server starts: sees each end, logs and counts failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from ._stats import ServerCounters

_log = logging.getLogger("aimdb.remote")


class TaskOwner:
    """Starts tasks and watches each one end.

    A task that ends with an exception (not a cancellation) is logged once, with its
    traceback, and counted in the server's ``failures``/``last_error``. Nothing started
    here is fire-and-forget: :meth:`cancel_all` cancels and awaits what is still running.

    Args:
        counters: the server counters failures are counted in.
    """

    __slots__ = ("_counters", "_tasks")

    def __init__(self, counters: ServerCounters) -> None:
        self._counters = counters
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start ``coro`` as a task named ``name`` (on the running loop) and own it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._counters.failed(task.get_name(), exc)
        _log.error("remote server task %s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self, timeout: float) -> None:
        """Cancel every running task and wait (at most ``timeout`` seconds) for them to end.

        Raises:
            asyncio.CancelledError: the caller was cancelled while waiting (the tasks are
                cancelled all the same).
        """
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
