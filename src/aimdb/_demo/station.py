"""A weather station of the demo mesh: the same code on CPython (asyncio, trio) and MicroPython.

A station owns two records, ``station.<name>.temperature`` and ``station.<name>.humidity``
(rings of 64), fed by sources that walk plausibly at ``hz`` values per second, and links
both to its hub with ``link_to("aimdb://<key>")`` (or to an MQTT broker). Every value
carries the wall-clock time of its ``produce`` (``ts_ns``) and a per-record sequence
number (``seq``), so the hub can measure latency and count what went missing.
"""

import math
import sys
import time

from aimdb import AimDbBuilder, BufferCfg
from aimdb._compat import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from aimdb.abc import Connector

_dataclass: "Any"
try:  # CPython: dataclasses, so msgspec decodes into them; MicroPython has none
    from dataclasses import dataclass as _dataclass
except ImportError:
    _dataclass = None

_now_ns = time.time_ns  # wall clock, comparable across processes (ms resolution on the WebAssembly port)


class Temperature:
    """Air temperature at a station."""

    celsius: float
    ts_ns: int
    seq: int

    def __init__(self, celsius: float, ts_ns: int = 0, seq: int = 0) -> None:
        self.celsius = celsius
        self.ts_ns = ts_ns
        self.seq = seq


class Humidity:
    """Relative humidity at a station, in percent."""

    percent: float
    ts_ns: int
    seq: int

    def __init__(self, percent: float, ts_ns: int = 0, seq: int = 0) -> None:
        self.percent = percent
        self.ts_ns = ts_ns
        self.seq = seq


class DewPoint:
    """Dew point derived by the hub from one station's temperature and humidity."""

    celsius: float
    ts_ns: int

    def __init__(self, celsius: float, ts_ns: int = 0) -> None:
        self.celsius = celsius
        self.ts_ns = ts_ns


if _dataclass is not None:
    Temperature = _dataclass(init=False)(Temperature)  # type: ignore[misc]
    Humidity = _dataclass(init=False)(Humidity)  # type: ignore[misc]
    DewPoint = _dataclass(init=False)(DewPoint)  # type: ignore[misc]


def dew_point(t: Temperature, h: Humidity) -> DewPoint:
    """Magnus formula (b=17.62, c=243.12 °C; about ±0.35 °C from -45 to 60 °C).

    Humidity is clamped to 1..100 %; the result carries the newer of the two timestamps.
    """
    b, c = 17.62, 243.12
    rh = min(max(h.percent, 1.0), 100.0)
    gamma = math.log(rh / 100.0) + b * t.celsius / (c + t.celsius)
    return DewPoint(round(c * gamma / (b - gamma), 2), max(t.ts_ns, h.ts_ns))


class Walk:
    """A bounded random walk with its own small generator (same sequence on every port)."""

    def __init__(self, seed: int, start: float, lo: float, hi: float, step: float) -> None:
        self.state = (seed * 2654435761 + 12345) & 0x7FFFFFFF or 1
        self.value = start
        self.lo = lo
        self.hi = hi
        self.step = step

    def next(self) -> float:
        """Advance one step and return the new value (rounded to 0.01)."""
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        u = self.state / 0x7FFFFFFF * 2.0 - 1.0
        self.value = min(self.hi, max(self.lo, self.value + u * self.step))
        return round(self.value, 2)


def walk_source(walk: Walk, kind: type, hz: float) -> "Any":
    """Return a source producing ``kind(value, ts_ns, seq)`` from ``walk`` at ``hz``."""

    async def source(ctx: "Any", producer: "Any") -> None:
        seq = 0
        async for _ in ctx.time.ticker(1.0 / hz):
            seq += 1
            producer.produce(kind(walk.next(), _now_ns(), seq))

    return source


# Station name -> (seed, start temperature, start humidity).
CLIMATES = {"alpine": (1, 4.0, 70.0), "coast": (2, 16.0, 80.0), "valley": (3, 22.0, 45.0)}


def topic(prefix: str, name: str, field: str) -> str:
    """MQTT topic of a station's record in ``--mqtt`` mode: ``<prefix>/<name>/<field>``."""
    return prefix + "/" + name + "/" + field


def build_station(
    name: str, hz: float, connector: "Connector", topic_prefix: "str | None" = None
) -> AimDbBuilder:
    """Declare a station: two walking sensors, each linked out through ``connector``.

    With ``topic_prefix`` the links go to ``mqtt://<prefix>/<name>/<field>``; otherwise to
    the hub's records with ``aimdb://station.<name>.<field>``.
    """
    seed, t0, h0 = CLIMATES.get(name, (len(name), 15.0, 60.0))
    b = AimDbBuilder(shutdown_timeout=1.0)
    b.with_connector(connector)
    fields = (
        ("temperature", Temperature, Walk(seed, t0, -30.0, 45.0, 0.15)),
        ("humidity", Humidity, Walk(seed + 100, h0, 5.0, 100.0, 0.6)),
    )
    for field, kind, walk in fields:
        key = "station." + name + "." + field
        url = "mqtt://" + topic(topic_prefix, name, field) if topic_prefix else "aimdb://" + key
        (
            b.configure(kind, key)
            .buffer(BufferCfg.SpmcRing(capacity=64))
            .source(walk_source(walk, kind, hz))
            .link_to(url)
            .finish()
        )
    return b


IMPLEMENTATION_PREFIX = "implementation: "
"""Start of the stderr line in which a station names the interpreter it runs on."""


def implementation() -> str:
    """This interpreter's name and version, e.g. ``micropython 1.27.0`` or ``cpython 3.12.3``."""
    impl = sys.implementation
    return impl.name + " " + ".".join(str(n) for n in tuple(impl.version)[:3])


async def run_station(
    name: str, hz: float, connector: "Connector", topic_prefix: "str | None" = None
) -> None:
    """Build the station and run it until cancelled.

    First writes one line to stderr naming the interpreter it really runs on
    (:data:`IMPLEMENTATION_PREFIX` + :func:`implementation`), which the hub reports.
    """
    print(IMPLEMENTATION_PREFIX + implementation(), file=sys.stderr)
    await build_station(name, hz, connector, topic_prefix).run()
