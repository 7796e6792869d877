"""``aimdb demo``: a weather mesh in one process.

Simulated stations produce temperature and humidity (random walks); an edge hub derives
the dew point of every station with a join and shows a live table (or plain log lines
with ``--headless``). Runs with nothing else installed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from aimdb import AimDb, AimDbBuilder, BufferCfg, Context, Producer


@dataclass
class Temperature:
    """Air temperature of a station."""

    celsius: float
    ts_ns: int = 0


@dataclass
class Humidity:
    """Relative humidity of a station."""

    percent: float
    ts_ns: int = 0


@dataclass
class DewPoint:
    """Dew point derived from a station's temperature and humidity."""

    celsius: float
    ts_ns: int = 0


def dew_point(t: Temperature, h: Humidity) -> DewPoint:
    """Magnus formula (b=17.62, c=243.12 °C), good to ~0.35 °C for -45..60 °C."""
    b, c = 17.62, 243.12
    rh = min(max(h.percent, 1.0), 100.0)
    gamma = math.log(rh / 100.0) + b * t.celsius / (c + t.celsius)
    return DewPoint(round(c * gamma / (b - gamma), 2), max(t.ts_ns, h.ts_ns))


def station_source(seed: int, start: float, lo: float, hi: float, step: float, kind: type, hz: float) -> Any:
    """Return a source producing a bounded random walk of ``kind`` values at ``hz``."""

    async def source(ctx: Context, producer: Producer[Any]) -> None:
        rng = random.Random(seed)
        value = start
        async for _ in ctx.time.ticker(1.0 / hz):
            value = min(hi, max(lo, value + rng.uniform(-step, step)))
            producer.produce(kind(round(value, 2), time.monotonic_ns()))

    return source


STATIONS = ("alpine", "coast", "valley")

# Latest readings as the hub's view saw them: {station: {"temperature": v, "humidity": v}}
VIEW: dict[str, dict[str, float]] = {}


def view_tap(station: str, field: str, attr: str) -> Any:
    """Return a tap that keeps the newest ``attr`` of a record in :data:`VIEW`."""

    async def tap(ctx: Context, consumer: Any) -> None:
        async for value in consumer.subscribe():
            VIEW.setdefault(station, {})[field] = getattr(value, attr)

    return tap


def build_mesh(hz: float = 10.0, stations: tuple[str, ...] = STATIONS) -> AimDbBuilder:
    """Declare the in-process mesh: per station temperature, humidity and dew point."""
    builder = AimDbBuilder()
    for i, name in enumerate(stations):
        base = f"station.{name}"
        builder.configure(Temperature, f"{base}.temperature").buffer(BufferCfg.SpmcRing(capacity=64)).source(
            station_source(i, 12.0 + 5 * i, -20.0, 45.0, 0.3, Temperature, hz)
        ).tap(view_tap(name, "temperature", "celsius"), name="view")
        builder.configure(Humidity, f"{base}.humidity").buffer(BufferCfg.SpmcRing(capacity=64)).source(
            station_source(100 + i, 55.0 + 10 * i, 5.0, 100.0, 1.0, Humidity, hz)
        ).tap(view_tap(name, "humidity", "percent"), name="view")
        builder.configure(DewPoint, f"hub.{name}.dewpoint").buffer(BufferCfg.SingleLatest()).join(
            [(Temperature, f"{base}.temperature"), (Humidity, f"{base}.humidity")], dew_point
        )
    return builder


def snapshot(db: AimDb, stations: tuple[str, ...]) -> list[dict[str, Any]]:
    """Current values, ages and rates of every station, as rows."""
    rows = []
    now = time.monotonic_ns()
    for name in stations:
        t = db.buffer(f"station.{name}.temperature")
        h = db.buffer(f"station.{name}.humidity")
        d = db.consumer(DewPoint, f"hub.{name}.dewpoint").peek()
        assert t is not None
        assert h is not None
        ts = t.statistics()
        rows.append(
            {
                "station": name,
                "temperature": VIEW.get(name, {}).get("temperature"),
                "humidity": VIEW.get(name, {}).get("humidity"),
                "dewpoint": d.celsius if d else None,
                "age_ms": (now - d.ts_ns) / 1e6 if d else None,
                "produced": ts.produced,
                "dropped": ts.dropped + h.statistics().dropped,
            }
        )
    return rows


def _render(rows: list[dict[str, Any]], elapsed: float) -> Any:
    from rich.table import Table

    table = Table(title=f"aimdb weather mesh — {elapsed:5.1f} s", expand=False)
    for col in ("station", "temp °C", "humidity %", "dew point °C", "age ms", "values", "dropped"):
        table.add_column(col, justify="right" if col != "station" else "left")
    for r in rows:
        table.add_row(
            r["station"],
            _fmt(r["temperature"]),
            _fmt(r["humidity"]),
            _fmt(r["dewpoint"]),
            _fmt(r["age_ms"], 1),
            str(r["produced"]),
            str(r["dropped"]),
        )
    return table


def _fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


async def run_demo(duration: float | None, headless: bool, hz: float) -> int:
    """Run the mesh until ``duration`` elapses (or forever) and show it."""
    stations = STATIONS
    db = build_mesh(hz, stations).build()
    start = time.monotonic()
    async with db:
        print(
            f"aimdb demo: {len(stations)} stations at {hz:g} Hz, dew point derived on the hub. Ctrl-C stops.",
            flush=True,
        )
        live = None
        if not headless:
            try:
                from rich.live import Live

                live = Live(_render(snapshot(db, stations), 0.0), refresh_per_second=4)
                live.start()
            except ImportError:
                headless = True
        try:
            while duration is None or time.monotonic() - start < duration:
                await asyncio.sleep(0.25 if live else 1.0)
                rows = snapshot(db, stations)
                if live is not None:
                    live.update(_render(rows, time.monotonic() - start))
                else:
                    for r in rows:
                        print(
                            f"{r['station']:>8}: temp={_fmt(r['temperature'])} hum={_fmt(r['humidity'])} "
                            f"dew={_fmt(r['dewpoint'])} values={r['produced']}",
                            flush=True,
                        )
        finally:
            if live is not None:
                live.stop()
    print("aimdb demo: stopped cleanly", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """Parse demo options and run it; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="aimdb demo", description="Run the weather mesh demo.")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--headless", action="store_true", help="plain log lines instead of a live table")
    parser.add_argument("--hz", type=float, default=10.0, help="samples per second per sensor")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run_demo(args.duration, args.headless or not sys.stdout.isatty(), args.hz))
    except KeyboardInterrupt:
        print("aimdb demo: interrupted, stopped", flush=True)
        return 0
