"""The context handed to every stage: key, stage name, time and logging (MicroPython-safe)."""

from .._compat import TYPE_CHECKING, get_logger

if TYPE_CHECKING:
    from typing import Any


class Ticker:
    """Drift-free periodic ticks: the n-th tick is due at ``start + n * period``.

    ``await ticker.tick()`` sleeps until the next due time and returns the tick number; when
    the caller fell behind by whole periods those ticks are skipped (counted in
    :attr:`missed`) rather than fired in a burst. ``async for n in ticker`` loops forever.
    """

    def __init__(self, time: "TimeApi", period: float) -> None:
        if not period > 0:
            raise ValueError("period must be positive, got " + repr(period))
        self._time = time
        self._period_ns = int(period * 1_000_000_000)
        self._start = time.now_ns()
        self._n = 0
        self.missed = 0

    async def tick(self) -> int:
        """Sleep until the next tick is due and return its number (1, 2, ...)."""
        self._n += 1
        due = self._start + self._n * self._period_ns
        now = self._time.now_ns()
        if now > due + self._period_ns:
            behind = (now - due) // self._period_ns
            self.missed += behind
            self._n += behind
            due = self._start + self._n * self._period_ns
        while due > now:  # loop: some timers (uvloop: 1 ms resolution) fire slightly early
            await self._time.sleep((due - now) / 1_000_000_000)
            now = self._time.now_ns()
        return self._n

    def __aiter__(self) -> "Ticker":
        return self

    async def __anext__(self) -> int:
        return await self.tick()


class TimeApi:
    """Clock access for stages (``ctx.time``), backed by the database's runtime."""

    __slots__ = ("_rt",)

    def __init__(self, rt: "Any") -> None:
        self._rt = rt

    def now_ns(self) -> int:
        """Monotonic clock in nanoseconds (only differences are meaningful)."""
        return self._rt.monotonic_ns()  # type: ignore[no-any-return]

    def wall_ns(self) -> "int | None":
        """Wall-clock nanoseconds since the Unix epoch, or ``None`` when the runtime has no clock."""
        return self._rt.wall_ns()  # type: ignore[no-any-return]

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` on the database's runtime."""
        await self._rt.sleep(seconds)

    def ticker(self, period: float) -> Ticker:
        """Return a drift-free :class:`Ticker` firing every ``period`` seconds."""
        return Ticker(self, period)


class StageLog:
    """Logger of one stage: forwards to logger ``aimdb`` with ``record_key`` and ``stage``.

    Messages are prefixed with ``key/stage:``; on CPython the ``logging.LogRecord`` also
    carries ``record_key`` and ``stage`` attributes.
    """

    __slots__ = ("_extra", "_log", "_prefix")

    def __init__(self, key: str, stage: str) -> None:
        self._log: Any = get_logger("aimdb")
        self._extra = {"record_key": key, "stage": stage}
        self._prefix = key + "/" + stage + ": "

    def debug(self, msg: str, *args: object) -> None:
        """Log at DEBUG."""
        self._log.debug(self._prefix + msg, *args, extra=self._extra)

    def info(self, msg: str, *args: object) -> None:
        """Log at INFO."""
        self._log.info(self._prefix + msg, *args, extra=self._extra)

    def warning(self, msg: str, *args: object) -> None:
        """Log at WARNING."""
        self._log.warning(self._prefix + msg, *args, extra=self._extra)

    def error(self, msg: str, *args: object) -> None:
        """Log at ERROR."""
        self._log.error(self._prefix + msg, *args, extra=self._extra)

    def exception(self, msg: str, *args: object) -> None:
        """Log at ERROR with the current exception's traceback."""
        self._log.error(self._prefix + msg, *args, extra=self._extra, exc_info=True)


class Context:
    """What a stage receives as ``ctx``.

    Attributes:
        key: the record key the stage belongs to.
        stage: the stage name (``"source"``, ``"tap:show"``, ``"transform"`` ...).
        time: clock, sleep and periodic ticks (:class:`TimeApi`).
        log: logger carrying the record key and stage (:class:`StageLog`).
        db: the running database (for looking up other records' producers/consumers).
    """

    __slots__ = ("db", "key", "log", "stage", "time")

    def __init__(self, db: "Any", key: str, stage: str, time: TimeApi) -> None:
        self.db = db
        self.key = key
        self.stage = stage
        self.time = time
        self.log = StageLog(key, stage)

    def __repr__(self) -> str:
        return "<Context " + repr(self.key) + " " + self.stage + ">"
