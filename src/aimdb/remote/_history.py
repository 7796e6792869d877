"""What clients get from ``record.history``: typed rows, and time bounds as exact nanoseconds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

TimeBound = int | datetime | timedelta | None
"""A history time bound: integer ns since the epoch, a ``datetime`` (naive is local time),
a ``timedelta`` meaning that long before now, or ``None`` for no bound."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class HistoryRow(NamedTuple):
    """One stored value of a record, as ``record.history`` returns it.

    Attributes:
        ts: the time the server stored it, in integer nanoseconds since the Unix epoch
            (exact: pass ``ts + 1`` as ``since`` to read on after it).
        value: the value as JSON data (objects as dicts), encoded exactly as
            ``record.get`` encodes the record's values.
    """

    ts: int
    value: Any


@dataclass(frozen=True)
class HistoryPage:
    """The reply of one ``record.history`` request.

    Attributes:
        key: the record key.
        rows: the rows, in the order asked for (oldest first unless ``newest_first``).
        more: True when more rows matched than ``limit``: the limit cut the result
            (the rows kept are the oldest ones, or the newest with ``newest_first``).
    """

    key: str
    rows: tuple[HistoryRow, ...]
    more: bool


def to_ns(bound: TimeBound, name: str) -> int | None:
    """``bound`` as integer nanoseconds since the epoch (``None`` stays ``None``).

    Raises:
        TypeError: ``bound`` is none of the :data:`TimeBound` forms.
    """
    if bound is None:
        return None
    if isinstance(bound, bool):
        raise TypeError(f"{name} must be ns since the epoch, a datetime or a timedelta, got {bound!r}")
    if isinstance(bound, int):
        return bound
    if isinstance(bound, timedelta):
        return time.time_ns() - (bound // timedelta(microseconds=1)) * 1000
    if isinstance(bound, datetime):
        aware = bound if bound.tzinfo is not None else bound.astimezone()  # naive: local time
        return ((aware - _EPOCH) // timedelta(microseconds=1)) * 1000
    raise TypeError(f"{name} must be ns since the epoch, a datetime or a timedelta, got {bound!r}")


def page_from_reply(res: dict[str, Any]) -> HistoryPage:
    """Build a :class:`HistoryPage` from a ``record.history`` result object."""
    rows = tuple(HistoryRow(int(r["ts"]), r["value"]) for r in res["rows"])
    return HistoryPage(str(res["key"]), rows, bool(res["more"]))
