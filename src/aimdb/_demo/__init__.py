"""The weather-mesh demo (``aimdb demo``): stations on asyncio, trio and MicroPython, one hub.

:mod:`aimdb._demo.station` is the station code shared by every runtime (MicroPython-safe);
the hub, the optional MQTT gateway and process supervision are CPython-only and imported
on first use.
"""


def main(argv: "list[str]") -> int:
    """Run ``aimdb demo`` with ``argv`` (without the program name); returns the exit code."""
    from ._hub import main as _main

    return _main(argv)
