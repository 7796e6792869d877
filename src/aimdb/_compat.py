"""Portability shims shared by the MicroPython-safe core.

Nothing here imports ``typing`` at run time on MicroPython. On CPython the real
``typing.Generic`` is used so that ``Producer[Temperature]`` works in annotations
and type checkers see proper generics.
"""

import sys

TYPE_CHECKING = False

IS_MICROPYTHON = sys.implementation.name == "micropython"

if TYPE_CHECKING:
    from typing import Any
    from typing import Generic as Generic
    from typing import TypeVar as TypeVar
else:
    try:
        from typing import Generic, TypeVar
    except ImportError:  # MicroPython: annotations are ignored, subscripts become no-ops

        class _GenericFactory:
            def __getitem__(self, item):
                return object

        Generic = _GenericFactory()

        def TypeVar(name, *constraints, **kwargs):
            return name


class _Subscriptable:
    """MicroPython stand-in for ``SomeGeneric[T]`` used as a base class: returns the class."""

    def __init__(self, cls: type) -> None:
        self._cls = cls

    def __getitem__(self, item: object) -> type:
        return self._cls


def subscriptable(cls: "type") -> "object":
    """Return ``cls`` so that ``subscriptable(Base)[T]`` works as a base class everywhere.

    On CPython this is ``cls`` itself (a real ``Generic``); on MicroPython, where classes
    cannot be subscripted, an object whose ``[T]`` returns ``cls``.
    """
    if IS_MICROPYTHON:
        return _Subscriptable(cls)
    return cls


try:
    from time import monotonic_ns as _monotonic_ns
except ImportError:  # pragma: no cover - MicroPython without monotonic_ns
    _monotonic_ns = None  # type: ignore[assignment]

try:
    from time import time_ns as _time_ns
except ImportError:  # pragma: no cover
    _time_ns = None  # type: ignore[assignment]


def monotonic_ns() -> int:
    """Return a monotonic clock reading in nanoseconds."""
    if _monotonic_ns is not None:
        return _monotonic_ns()
    import time  # pragma: no cover - MicroPython

    return int(time.ticks_us()) * 1000  # pragma: no cover


def wall_ns() -> "int | None":
    """Return wall-clock nanoseconds since the Unix epoch, or ``None`` when unknown."""
    if _time_ns is not None:
        return _time_ns()
    try:  # pragma: no cover - MicroPython
        import time

        return int(time.time() * 1_000_000_000)
    except Exception:  # pragma: no cover
        return None


def wall_seconds() -> "float | None":
    """Return wall-clock seconds since the Unix epoch, or ``None`` when unknown."""
    ns = wall_ns()
    return ns / 1e9 if ns is not None else None


try:
    from random import random as _random
except ImportError:  # pragma: no cover

    def _random() -> float:
        return 0.5


def backoff_delay(
    first: float,
    cap: float,
    attempt: int,
    multiplier: float = 2.0,
    low: float = 0.5,
    high: float = 1.0,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    The one backoff formula of aimdb (stage and service restarts, reconnects of every
    connector): ``first * multiplier ** attempt``, at most ``cap``, times a random factor
    in ``[low, high]`` so that many peers do not retry in step. Any number of attempts
    gives a delay (the growth stops at the cap instead of overflowing).
    """
    try:
        grown = first * multiplier ** min(attempt, 1024)
    except OverflowError:  # a float power past ~1e308: far beyond any cap
        grown = cap
    return min(cap, grown) * (low + (high - low) * _random())


class _PrintLogger:
    """Minimal stand-in for :class:`logging.Logger` where ``logging`` is absent."""

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40

    def __init__(self, name: str) -> None:
        self.name = name
        self.level = self.WARNING

    def setLevel(self, level: int) -> None:
        self.level = level

    def isEnabledFor(self, level: int) -> bool:
        return level >= self.level

    def _log(self, level: int, name: str, msg: str, args: "tuple[object, ...]", **kw: object) -> None:
        if level < self.level:
            return
        if args:
            try:
                msg = msg % args
            except Exception:
                msg = msg + " " + repr(args)
        extra = kw.get("extra")
        prefix = ""
        if isinstance(extra, dict) and "record_key" in extra:
            prefix = "[" + str(extra.get("record_key")) + ":" + str(extra.get("stage", "")) + "] "
        print(name + ": " + self.name + ": " + prefix + msg)
        if kw.get("exc_info"):
            exc = sys.exc_info()[1] if hasattr(sys, "exc_info") else None
            if exc is not None and hasattr(sys, "print_exception"):
                getattr(sys, "print_exception")(exc)  # noqa: B009

    def debug(self, msg: str, *args: object, **kw: object) -> None:
        self._log(10, "DEBUG", msg, args, **kw)

    def info(self, msg: str, *args: object, **kw: object) -> None:
        self._log(20, "INFO", msg, args, **kw)

    def warning(self, msg: str, *args: object, **kw: object) -> None:
        self._log(30, "WARNING", msg, args, **kw)

    def error(self, msg: str, *args: object, **kw: object) -> None:
        self._log(40, "ERROR", msg, args, **kw)

    def exception(self, msg: str, *args: object, **kw: object) -> None:
        kw["exc_info"] = True
        self._log(40, "ERROR", msg, args, **kw)


def get_logger(name: str = "aimdb") -> "Any":
    """Return the stdlib logger ``name`` on CPython, a print-based one elsewhere."""
    try:
        import logging
    except ImportError:  # pragma: no cover - MicroPython
        return _PrintLogger(name)
    return logging.getLogger(name)
