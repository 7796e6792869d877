"""The asyncio backend (also used with uvloop, which is an asyncio event loop)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._aio import wait_for as _wait_for


class _Waiter:
    """One-shot wake-up: a future that ``wake()`` resolves (idempotent)."""

    __slots__ = ("_fut",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._fut: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        fut = self._fut
        if not fut.done():
            fut.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        return self._fut


class _TaskHandle:
    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task

    @property
    def name(self) -> str:
        return self._task.get_name()

    def cancel(self) -> None:
        self._task.cancel()

    def done(self) -> bool:
        return self._task.done()

    async def join(self) -> None:
        if not self._task.done():
            await asyncio.wait([self._task])


class _TaskGroup:
    """Tasks spawned for one database; ``aclose`` cancels and awaits whatever is left."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        return None

    def spawn(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> _TaskHandle:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(fn(*args), name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _TaskHandle(task)

    def tasks(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks)

    async def aclose(self) -> None:
        while self._tasks:
            pending = list(self._tasks)
            for t in pending:
                t.cancel()
            await asyncio.wait(pending)


def _nothing() -> None:
    return None


class AsyncioBackend:
    """Runtime contract implemented on asyncio (and uvloop)."""

    name = "asyncio"
    cancelled_exc: type[BaseException] = asyncio.CancelledError

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int | None:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def new_waiter(self) -> _Waiter:
        return _Waiter(asyncio.get_running_loop())

    def open_task_group(self) -> _TaskGroup:
        return _TaskGroup()

    async def wait_for(self, fn: Callable[[], Awaitable[Any]], timeout: float) -> bool:
        try:
            await _wait_for(fn(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return False
        return True

    def logger(self) -> logging.Logger:
        return logging.getLogger("aimdb")

    def on_interrupt(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn`` on the first Ctrl-C (SIGINT) instead of interrupting; returns an undo.

        Only on the main thread of a loop that supports signal handlers (elsewhere it does
        nothing). After the first SIGINT the default handling is back, so a second Ctrl-C
        interrupts as usual.
        """
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return _nothing
        loop = asyncio.get_running_loop()

        def handler() -> None:
            loop.remove_signal_handler(signal.SIGINT)
            fn()

        try:
            loop.add_signal_handler(signal.SIGINT, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            return _nothing

        def undo() -> None:
            loop.remove_signal_handler(signal.SIGINT)

        return undo

    def __repr__(self) -> str:
        return "<aimdb runtime backend 'asyncio'>"


backend = AsyncioBackend()
