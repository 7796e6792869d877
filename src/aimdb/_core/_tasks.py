"""Supervised tasks: every task a database runs has an owner that sees its end (MicroPython-safe).

Stages, connector loops, link pumps and services all run as a :class:`SupervisedTask` in
the database's task group. When the task's function raises, the supervisor logs the
exception once with its traceback, counts it (``failures``, ``last_error``,
``last_error_at``) and applies the task's ``on_error`` policy:

* ``"restart"``: wait (exponential backoff with jitter, reset after a run that lasted
  longer than the cap) and call the function again;
* ``"log"``: the task ends (state ``"failed"``);
* ``"stop"``: the database stops and ``run()`` re-raises a :class:`~aimdb.StageFailed`.

A cancellation is never caught: it ends the task with state ``"stopped"``. A
``BufferClosed`` raised while the database stops ends the task quietly (it read a buffer
that shutdown closed).
"""

from .._compat import TYPE_CHECKING, backoff_delay, get_logger, wall_seconds
from .._errors import BufferClosed, StageFailed
from ._stats import Statistics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    from ._database import AimDb

_log: "Any" = get_logger("aimdb")

#: what a supervised task does when its function raises
ON_ERROR_POLICIES = ("log", "restart", "stop")

#: the states of a supervised task, in the order a task usually goes through them
TASK_STATES = ("starting", "running", "restarting", "done", "failed", "stopped")


class TaskStatistics(Statistics):
    """A snapshot of one supervised task (taken by :meth:`SupervisedTask.statistics`).

    Attributes:
        name: task name (``"aimdb[temp].source"``, ``"aimdb.mqtt.out[temp]"`` ...).
        key: record key the task serves, or ``""`` (connectors, services).
        kind: ``"stage"``, ``"connector"``, ``"link"`` or ``"service"``.
        policy: ``on_error`` policy: ``"log"``, ``"restart"`` or ``"stop"``.
        state: one of ``starting``, ``running``, ``restarting`` (waiting to be called
            again after a failure), ``done`` (returned), ``failed`` (raised, not
            restarted) and ``stopped`` (cancelled).
        starts: how often the function was called (the first call included).
        failures: how often it raised.
        restarts: how often it was called again after raising.
        last_error: ``repr`` of the most recent exception, or ``None``.
        last_error_at: wall-clock time (seconds since the epoch) of ``last_error``, or
            ``None`` (also where the platform has no wall clock).
    """

    __slots__ = (
        "failures",
        "key",
        "kind",
        "last_error",
        "last_error_at",
        "name",
        "policy",
        "restarts",
        "starts",
        "state",
    )

    if TYPE_CHECKING:
        failures: int
        key: str
        kind: str
        last_error: str | None
        last_error_at: float | None
        name: str
        policy: str
        restarts: int
        starts: int
        state: str

    def __init__(self, task: "SupervisedTask") -> None:
        self._init(
            {
                "name": task.name,
                "key": task.key,
                "kind": task.kind,
                "policy": task.policy,
                "state": task.state,
                "starts": task.starts,
                "failures": task.failures,
                "restarts": task.restarts,
                "last_error": task.last_error,
                "last_error_at": task.last_error_at,
            }
        )


class SupervisedTask:
    """One task of a database, run under an ``on_error`` policy (see the module docstring).

    Created by the database (``db.add_service``, connector routes' ``spawn``, stages);
    users receive it to read :meth:`statistics`, to :meth:`cancel` it or to wait for its
    end with :meth:`join`.

    Attributes:
        name: task name.
        key: record key the task serves, or ``""``.
        kind: ``"stage"``, ``"connector"``, ``"link"`` or ``"service"``.
        policy: ``"log"``, ``"restart"`` or ``"stop"``.
        state: see :class:`TaskStatistics`.
    """

    def __init__(
        self,
        db: "AimDb",
        name: str,
        fn: "Callable[..., Awaitable[Any]] | None",
        args: "tuple[Any, ...]",
        *,
        kind: str,
        policy: str,
        key: str = "",
        on_failure: "Callable[[BaseException], Any] | None" = None,
    ) -> None:
        if policy not in ON_ERROR_POLICIES:
            raise ValueError("on_error must be one of " + ", ".join(ON_ERROR_POLICIES) + ": " + repr(policy))
        self.db = db
        self.name = name
        self.key = key
        self.kind = kind
        self.policy = policy
        self.state = "starting"
        self.starts = 0
        self.failures = 0
        self.restarts = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.handle: Any = None
        self._fn = fn
        self._args = args
        self._on_failure = on_failure

    # ------------------------------------------------------------ public

    @property
    def running(self) -> bool:
        """True while the function is being run (not while waiting to restart)."""
        return self.state == "running"

    def statistics(self) -> TaskStatistics:
        """Return a snapshot of the task's counters and state."""
        return TaskStatistics(self)

    def cancel(self) -> None:
        """Cancel the task (no effect once it ended)."""
        if self.handle is not None:
            self.handle.cancel()

    def done(self) -> bool:
        """True once the task ended (returned, failed for good or was cancelled)."""
        return self.handle is not None and self.handle.done()

    async def join(self) -> None:
        """Wait until the task ended."""
        if self.handle is not None:
            await self.handle.join()

    # ------------------------------------------------------------ to override

    async def _body(self) -> None:
        """One call of the task's function (subclasses run something else)."""
        assert self._fn is not None
        await self._fn(*self._args)

    def _stage_name(self) -> str:
        """The name a ``StageFailed`` of this task carries."""
        return self.name

    def _log_failure(self, exc: BaseException) -> None:
        """Log ``exc`` once, with its traceback (called inside the ``except`` block)."""
        _log.exception(
            "task %s raised %r (on_error=%s)",
            self.name,
            exc,
            self.policy,
            extra={"record_key": self.key, "stage": self.name},
        )

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Run the function under the policy until it returns, fails for good or is cancelled."""
        db = self.db
        rt = db._rt
        attempt = 0
        try:
            while True:
                self.state = "running"
                self.starts += 1
                t0 = rt.monotonic_ns()
                try:
                    await self._body()
                    self.state = "done"
                    return
                except BaseException as exc:
                    if db._is_cancellation(exc):
                        raise
                    if isinstance(exc, BufferClosed) and db.state != "running":
                        self.state = "done"
                        return
                    self.failures += 1
                    self.last_error = repr(exc)
                    self.last_error_at = wall_seconds()
                    self._log_failure(exc)
                    if self._on_failure is not None:
                        self._on_failure(exc)
                    if self.policy == "stop":
                        self.state = "failed"
                        db._fail(StageFailed(self.key, self._stage_name(), exc), exc)
                        return
                    if self.policy != "restart" or db.state != "running":
                        self.state = "failed"
                        return
                first, cap = db._restart_backoff
                if rt.monotonic_ns() - t0 > cap * 1_000_000_000:
                    attempt = 0  # it ran well for a while: start the backoff afresh
                self.state = "restarting"
                await rt.sleep(backoff_delay(first, cap, attempt))
                attempt += 1
                self.restarts += 1
        except BaseException:
            if self.state in ("running", "restarting", "starting"):
                self.state = "stopped"
            raise

    def __repr__(self) -> str:
        return "<SupervisedTask " + self.name + " " + self.state + ">"
