# The demo's MicroPython station: the same station code as on CPython, linked to its hub
# over stdout (a write-only byte stream standing in for a UART) with SerialLink.
# Run by the hub as: node aimdb/_micropython/run.mjs --path aimdb mpy_station.py NAME HZ
import asyncio
import sys

from aimdb._demo.station import run_station
from aimdb.links import SerialLink

_out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None


def _write(frame: bytes) -> None:
    if _out is not None:
        _out.write(frame)
    else:
        sys.stdout.write(frame.decode())


name = sys.argv[1] if len(sys.argv) > 1 else "valley"
hz = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
asyncio.run(run_station(name, hz, SerialLink(_write, name="station-" + name)))  # the runner awaits it
