"""The trio backend: the runtime contract implemented on trio (CPython only).

Selected automatically when a database starts inside ``trio.run`` (see
:func:`aimdb._backends.current_backend`) or explicitly with
``AimDbBuilder(runtime="trio")``.

Design notes (see ``docs/design/020-trio-backend.md``):

* A waiter is a bare ``wait_task_rescheduled``/``reschedule`` pair, not a
  ``trio.Event``: no parking lot, one object per wait. ``wake()`` may run before
  anything waits (then ``wait()`` returns at once) and may be called several times
  (a waiter registered in several buffers' lists is woken by whichever produces
  first). A cancelled wait aborts cleanly; a later ``wake()`` is then a no-op.
* A task group's tasks live in one nursery owned by a trio system task, so groups
  may be opened and closed in any order (a nursery entered by hand in the caller
  would have to be exited in strict LIFO order). ``aclose()`` is shielded. Every
  spawned task runs in its own :class:`trio.CancelScope`, so ``handle.cancel()``
  cancels that task only. A task that raises is logged, like an unretrieved asyncio
  task exception, instead of tearing down its siblings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import copy_context
from typing import Any

import trio
from trio.lowlevel import (
    Abort,
    Task,
    current_task,
    reschedule,
    spawn_system_task,
    wait_task_rescheduled,
)

_log = logging.getLogger("aimdb")


class _Waiter:
    """One-shot wake-up for one waiting task (idempotent ``wake()``)."""

    __slots__ = ("_task", "_woken")

    def __init__(self) -> None:
        self._task: Task | None = None
        self._woken = False

    def wake(self) -> None:
        """Wake the waiting task (or make the next ``wait()`` return at once); idempotent."""
        if self._woken:
            return
        self._woken = True
        task = self._task
        if task is not None:
            self._task = None
            reschedule(task)

    def _abort(self, raise_cancel: Any) -> Abort:
        # Cancelled while parked: forget the task so a later wake() does nothing.
        self._task = None
        return Abort.SUCCEEDED

    async def wait(self) -> None:
        """Return once :meth:`wake` has been called; raises ``trio.Cancelled`` when cancelled."""
        if self._woken:
            return
        self._task = current_task()
        await wait_task_rescheduled(self._abort)


class _TaskHandle:
    """A task spawned in a :class:`_TaskGroup`, cancellable on its own."""

    __slots__ = ("_done", "_finished", "_scope", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._scope = trio.CancelScope()
        self._done = False
        self._finished = trio.Event()

    def cancel(self) -> None:
        """Cancel this task only (also before it started running); idempotent."""
        self._scope.cancel()

    def done(self) -> bool:
        """Whether the task has finished (returned, raised or was cancelled)."""
        return self._done

    async def join(self) -> None:
        """Wait until the task has finished."""
        if not self._done:
            await self._finished.wait()

    def __repr__(self) -> str:
        return "<trio task " + repr(self.name) + (" done" if self._done else "") + ">"


class _TaskGroup:
    """Tasks spawned for one database, in one nursery owned by a host task.

    The nursery lives in a trio *system* task rather than in the task that calls
    :meth:`start`, so groups may be closed in any order (a manually entered nursery
    must be exited in strict LIFO order with every other nursery and cancel scope of
    the calling task). :meth:`aclose` is shielded: it returns only once every task
    of the group has finished, even when the caller is being cancelled.
    """

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._handles: set[_TaskHandle] = set()
        self._close_requested = trio.Event()
        self._exited = trio.Event()
        self._started = False

    async def start(self) -> None:
        """Start the group's host task; returns once tasks can be spawned."""
        if self._started:
            raise RuntimeError("task group already started")
        self._started = True
        ready = trio.Event()
        spawn_system_task(self._host, ready, name="aimdb.task_group", context=copy_context())
        await ready.wait()

    async def _host(self, ready: trio.Event) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                ready.set()
                await self._close_requested.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._exited.set()

    def spawn(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> _TaskHandle:
        """Start ``await fn(*args)`` as a task called ``name``; return its handle.

        The task inherits a copy of the caller's context variables.

        Raises:
            RuntimeError: the group is not started or already closed.
        """
        nursery = self._nursery
        if nursery is None or self._close_requested.is_set():
            raise RuntimeError("task group is not running")
        h = _TaskHandle(name)
        self._handles.add(h)
        nursery.start_soon(self._run, h, fn, args, name=name)
        return h

    async def _run(self, h: _TaskHandle, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            with h._scope:
                await fn(*args)
        except Exception:
            _log.error("task %s raised", h.name, exc_info=True)
        finally:
            h._done = True
            self._handles.discard(h)
            h._finished.set()

    def tasks(self) -> list[_TaskHandle]:
        """Return the handles of the tasks still running."""
        return list(self._handles)

    async def aclose(self) -> None:
        """Cancel every task still running and wait until all of them have finished.

        Shielded from the caller's cancellation; idempotent; a no-op before ``start``.
        """
        if not self._started:
            return
        self._close_requested.set()
        with trio.CancelScope(shield=True):
            await self._exited.wait()


class TrioBackend:
    """Runtime contract implemented on trio.

    ``monotonic_ns()`` reads trio's clock inside ``trio.run`` (so a test's
    ``MockClock`` drives stage timing consistently with ``sleep``) and falls back to
    :func:`time.monotonic_ns` outside a trio run.
    """

    name = "trio"
    cancelled_exc: type[BaseException] = trio.Cancelled

    def monotonic_ns(self) -> int:
        """Return the monotonic clock in nanoseconds (trio's clock inside ``trio.run``)."""
        try:
            return int(trio.current_time() * 1_000_000_000)
        except RuntimeError:
            return time.monotonic_ns()

    def wall_ns(self) -> int | None:
        """Return wall-clock nanoseconds since the Unix epoch."""
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (zero is a checkpoint)."""
        await trio.sleep(max(seconds, 0.0))

    def new_waiter(self) -> _Waiter:
        """Return a fresh one-shot waiter."""
        return _Waiter()

    def open_task_group(self) -> _TaskGroup:
        """Return a new, not yet started task group."""
        return _TaskGroup()

    async def wait_for(self, fn: Callable[[], Awaitable[Any]], timeout: float) -> bool:  # noqa: ASYNC109
        """Run ``await fn()`` for at most ``timeout`` seconds; return whether it finished."""
        with trio.move_on_after(max(timeout, 0.0)):
            await fn()
            return True
        return False

    def logger(self) -> logging.Logger:
        """Return the ``aimdb`` stdlib logger."""
        return _log

    def on_interrupt(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Nothing: under trio a Ctrl-C raises ``KeyboardInterrupt`` in the main task, as trio does."""
        return _nothing

    def __repr__(self) -> str:
        return "<aimdb runtime backend 'trio'>"


def _nothing() -> None:
    return None


backend = TrioBackend()
