"""Fast ``async for`` over a ring reader (CPython only: MicroPython has no async generators).

Takes every pending value as one slice and hands them out one by one, moving the reader's
cursor and the buffer's ``delivered`` counter per value handed out, so leaving the loop
early loses nothing, counts nothing twice, and lag stays exact: every value is either
delivered or counted in ``BufferLagged.missed``.
"""

from typing import Any

from ._buffers import RingBuffer, RingReader, _log_lag


async def ring_iter(r: "RingReader[Any]") -> Any:
    """Yield ``r``'s values until its buffer closes; lag is skipped and counted."""
    b: RingBuffer[Any] = r._buf  # type: ignore[assignment]
    ring = b._ring
    cap = b._cap
    while True:
        c = r._cursor
        h = b._head
        n = h - c
        if n > 0:
            if n > cap:
                _log_lag(r._lag(b, h))
                continue
            s = c % cap
            e = s + n
            batch = ring[s:e] if e <= cap else ring[s:] + ring[: e - cap]
            for v in batch:
                # Counted as the value is handed out: a ``break`` after it leaves both
                # the cursor and ``delivered`` exact (the rest of the slice stays pending).
                c += 1
                r._cursor = c
                b._delivered += 1
                yield v
            continue
        if b._closed:
            return
        await b._wait()
