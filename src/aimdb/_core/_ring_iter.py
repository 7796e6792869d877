"""Fast ``async for`` over a ring reader (CPython only: MicroPython has no async generators).

Takes every pending value as one slice and hands them out one by one, moving the reader's
cursor per value, so leaving the loop early loses nothing and lag stays exact: every value
is either delivered or counted in ``BufferLagged.missed``.

``delivered`` stays exact too without a per-value counter: the buffer counts the slice
when it is taken, and while it is handed out the reader is listed in the buffer's
``_owing`` with the slice's end (``_owe_end``), so the statistics subtract the values not
yet handed out (``_owe_end - _cursor``). After an early ``break`` the correction stays
until the reader is used again (every other read path settles it first, subtracting the
rest for good) or this iteration is closed.
"""

from typing import Any

from ._buffers import RingBuffer, RingReader, _log_lag


async def ring_iter(r: "RingReader[Any]") -> Any:
    """Yield ``r``'s values until its buffer closes; lag is skipped and counted."""
    b: RingBuffer[Any] = r._buf  # type: ignore[assignment]
    ring = b._ring
    cap = b._cap
    me = object()  # this iteration, as the owner of the reader's slice
    try:
        while True:
            c = r._cursor
            h = b._head
            n = h - c
            if n > 0:
                if n > cap:
                    _log_lag(r._lag(b, h))
                    continue
                if r._owner is not me:  # first slice, or another read path settled ours
                    if r._owner is not None:
                        r._settle()  # an earlier iteration over this reader was left early
                    r._owner = me
                    b._owing.append(r)
                s = c % cap
                e = s + n
                batch = ring[s:e] if e <= cap else ring[s:] + ring[: e - cap]
                r._owe_end = h
                b._delivered += n
                for v in batch:
                    c += 1
                    r._cursor = c
                    yield v
                continue
            if b._closed:
                return
            await b._wait()
    finally:
        if r._owner is me:
            r._settle()
