"""The MicroPython backend: the runtime contract on MicroPython's ``asyncio`` subset.

MicroPython-safe by construction: no ``typing``, no task names, ``asyncio.Event`` as the
wake-up primitive, and a monotonic clock unwrapped from ``time.ticks_us`` (readings must
be taken at least every ~17 minutes, which the database's own stages easily do).
"""

import asyncio
import time

from .._compat import TYPE_CHECKING, get_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

_ticks_us = getattr(time, "ticks_us", None)
_ticks_diff = getattr(time, "ticks_diff", None)


class _Clock:
    def __init__(self) -> None:
        self._last: int = _ticks_us() if _ticks_us else 0
        self._total_us = 0

    def now_ns(self) -> int:
        if _ticks_us is None or _ticks_diff is None:  # pragma: no cover - CPython fallback
            return time.monotonic_ns()
        now = _ticks_us()
        self._total_us += _ticks_diff(now, self._last)
        self._last = now
        return self._total_us * 1000


class _Waiter:
    """One-shot wake-up built on ``asyncio.Event`` (``wake`` is idempotent)."""

    __slots__ = ("_ev",)

    def __init__(self) -> None:
        self._ev = asyncio.Event()

    def wake(self) -> None:
        self._ev.set()

    def wait(self) -> "Awaitable[Any]":
        return self._ev.wait()


class _TaskHandle:
    __slots__ = ("_done", "_task", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: Any = None
        self._done = asyncio.Event()

    def cancel(self) -> None:
        if self._task is not None and not self._done.is_set():
            self._task.cancel()

    def done(self) -> bool:
        return self._done.is_set()

    async def join(self) -> None:
        await self._done.wait()


class _TaskGroup:
    def __init__(self) -> None:
        self._handles: list[_TaskHandle] = []

    async def start(self) -> None:
        return None

    def spawn(self, name: str, fn: "Callable[..., Awaitable[Any]]", *args: "Any") -> _TaskHandle:
        h = _TaskHandle(name)

        async def runner() -> None:
            try:
                await fn(*args)
            except Exception as exc:  # a task's own error is logged, never lost silently
                get_logger("aimdb").error("task %s failed: %r", name, exc)
            finally:
                h._done.set()
                if h in self._handles:
                    self._handles.remove(h)

        self._handles.append(h)
        h._task = asyncio.create_task(runner())
        return h

    async def aclose(self) -> None:
        while self._handles:
            pending = list(self._handles)
            for h in pending:
                h.cancel()
            for h in pending:
                await h.join()


class MicroPythonBackend:
    """Runtime contract implemented on MicroPython's asyncio."""

    name = "micropython"
    cancelled_exc = asyncio.CancelledError

    def __init__(self) -> None:
        self._clock = _Clock()

    def monotonic_ns(self) -> int:
        return self._clock.now_ns()

    def wall_ns(self) -> "int | None":
        fn = getattr(time, "time_ns", None)
        if fn is None:
            return None
        t: int = fn()
        # boards without a set RTC report a time near 2000-01-01: treat as unknown
        return t if t > 1_600_000_000 * 1_000_000_000 else None

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def new_waiter(self) -> _Waiter:
        return _Waiter()

    def open_task_group(self) -> _TaskGroup:
        return _TaskGroup()

    async def wait_for(self, fn: "Callable[[], Awaitable[Any]]", timeout: float) -> bool:
        try:
            await asyncio.wait_for(fn(), max(timeout, 0))
        except asyncio.TimeoutError:
            return False
        return True

    def logger(self) -> "Any":
        return get_logger("aimdb")

    def on_interrupt(self, fn: "Callable[[], object]") -> "Callable[[], None]":
        """Nothing: MicroPython has no signal handlers."""
        return _nothing

    def __repr__(self) -> str:
        return "<aimdb runtime backend 'micropython'>"


def _nothing() -> None:
    return None


backend = MicroPythonBackend()
