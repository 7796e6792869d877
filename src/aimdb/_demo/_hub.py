"""The demo's hub (and its MQTT gateway and CPython station entry points).

Default: the hub process serves remote access and starts three stations: ``alpine`` on
asyncio linked over the hub's Unix socket, ``coast`` on trio and ``valley`` on MicroPython,
both linked over their stdout pipe with :class:`~aimdb.links.SerialLink`. The hub mirrors their
records, derives the dew point per station with a join and shows a live table.

``--mqtt URL``: ``alpine`` publishes to the broker itself, ``coast`` and ``valley`` go
through a gateway process (pipe in, MQTT out), and the hub reads everything from the
broker. ``--kafka URL``: the hub forwards every derived dew point to Kafka.

The hub stores the station values and dew points in ``--db PATH`` (default
``<runtime dir>/<name>.db``, see :mod:`._persist`); a restarted hub shows the last
stored values at once. ``--no-persist`` turns that off.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import resource
import secrets
import shlex
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimdb import AimDbBuilder, AimDbError, BufferCfg, BufferLagged, Context
from aimdb.links import SerialLink

from ._persist import default_db_path, last_stored, open_store, persistence_summary
from ._procs import (
    StationSpec,
    Supervised,
    exit_when_stdin_closes,
    micropython_runner,
    pipe_server,
    station_command,
    stop_all,
)
from .station import IMPLEMENTATION_PREFIX, DewPoint, Humidity, Temperature, dew_point, run_station, topic

KAFKA_TOPIC = "aimdb-demo.dewpoint"
STALE_AFTER = 2.0
FIELDS = (("temperature", Temperature, "celsius"), ("humidity", Humidity, "percent"))


def plan(mqtt: bool) -> tuple[list[StationSpec], list[str]]:
    """Decide where each station runs; returns the stations and one-line notes for the user."""
    notes: list[str] = []
    specs = []
    for name, runtime in (("alpine", "asyncio"), ("coast", "trio"), ("valley", "micropython")):
        note = ""
        if runtime == "micropython":
            prefix, reason = micropython_runner()
            if prefix is None:
                runtime, note = "asyncio", f"MicroPython unavailable ({reason}); '{name}' runs on CPython"
        elif runtime == "trio":
            try:
                import trio  # noqa: F401
            except ImportError:
                runtime, note = "asyncio", f"trio is not installed; '{name}' runs on asyncio"
        if note:
            notes.append(note)
        if name == "alpine":
            transport = "mqtt" if mqtt else "socket"
        else:
            transport = "pipe"
        specs.append(StationSpec(name, runtime, transport, gateway=mqtt and transport == "pipe"))
    return specs, notes


# ---------------------------------------------------------------------------- the hub's view


@dataclass
class StationView:
    """What the hub knows about one station (updated by its taps)."""

    spec: StationSpec
    values: int = 0
    last: dict[str, float] = field(default_factory=dict)
    dewpoint: float | None = None
    dewpoints: int = 0
    last_rx: float | None = None
    last_seq: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    lag: int = 0
    restarts: int = 0
    implementation: str | None = None
    stale: bool = False
    restored: bool = False
    latencies_us: deque[int] = field(default_factory=lambda: deque(maxlen=200_000))
    rate: float = 0.0
    _rate_mark: tuple[float, int] = (0.0, 0)

    def seen(self, field_name: str, value: float, ts_ns: int, seq: int) -> None:
        """Account one value arriving at the hub."""
        now_ns = time.time_ns()
        self.values += 1
        self.last[field_name] = value
        self.last_rx = time.monotonic()
        self.latencies_us.append(max(0, (now_ns - ts_ns) // 1000))
        prev = self.last_seq.get(field_name)
        if prev is not None and seq > prev + 1:
            self.lost += seq - prev - 1
        self.last_seq[field_name] = seq  # a restarted station starts again at 1

    def age(self) -> float | None:
        """Seconds since the last value, or ``None`` before the first."""
        return None if self.last_rx is None else time.monotonic() - self.last_rx

    def update_rate(self) -> None:
        """Values per second since the previous call."""
        now = time.monotonic()
        t0, n0 = self._rate_mark
        if t0:
            self.rate = (self.values - n0) / max(now - t0, 1e-6)
        self._rate_mark = (now, self.values)

    def latency_ms(self, *qs: float, recent: int | None = None) -> list[float | None]:
        """Quantiles ``qs`` (0..1) of produce-to-hub latency in ms, from one sort.

        ``recent`` limits them to the newest samples (the live view), so refreshing the
        table does not sort the whole history every time.
        """
        samples = self.latencies_us
        if recent is not None and len(samples) > recent:
            return quantiles_ms(sorted(itertools.islice(reversed(samples), recent)), qs)
        return quantiles_ms(sorted(samples), qs)


LIVE_WINDOW = 1000
"""Latency samples per station behind the live table's and log lines' p50/p99."""


def quantiles_ms(sorted_us: list[int], qs: tuple[float, ...]) -> list[float | None]:
    """Quantiles ``qs`` (0..1) of sorted microsecond samples, in ms (``None`` when empty)."""
    n = len(sorted_us)
    return [sorted_us[min(n - 1, int(q * n))] / 1000.0 if n else None for q in qs]


def _view_tap(view: StationView, field_name: str, attr: str) -> Any:
    async def tap(ctx: Context, consumer: Any) -> None:
        reader = consumer.subscribe()
        while True:
            try:
                v = await reader.recv()
            except BufferLagged as lag:  # the hub's own view fell behind its ring
                view.lag += lag.missed
                continue
            view.seen(field_name, getattr(v, attr), v.ts_ns, v.seq)

    return tap


def _dew_tap(view: StationView) -> Any:
    async def tap(ctx: Context, consumer: Any) -> None:
        async for d in consumer.subscribe():
            view.dewpoints += 1
            view.dewpoint = d.celsius

    return tap


def _station_key(name: str) -> Any:
    key = name.encode()

    def station_key(_value: DewPoint) -> bytes:
        return key

    return station_key


def build_hub(
    views: dict[str, StationView],
    *,
    mqtt: str | None,
    kafka: str | None,
    remote: Any,
    prefix: str = "",
    brokers: dict[str, Any] | None = None,
    store: Any = None,
) -> AimDbBuilder:
    """Declare the hub: per station the two mirrored records and the dew-point join.

    The broker connectors it creates are also put into ``brokers`` (``"mqtt"``, ``"kafka"``),
    so the caller can watch their connection state. With a ``store`` (a persistence
    backend) every station record and dew point is persisted; the dew points are
    restored at start.
    """
    b = AimDbBuilder(shutdown_timeout=1.0)
    b.with_connector(remote)
    if store is not None:
        b.with_persistence(store)
    made: dict[str, Any] = {} if brokers is None else brokers
    if mqtt is not None:
        from aimdb.connectors import MqttConnector

        made["mqtt"] = MqttConnector(mqtt, client_id=f"aimdb-demo-hub-{os.getpid()}")
        b.with_connector(made["mqtt"])
    if kafka is not None:
        from aimdb.connectors import KafkaConnector

        made["kafka"] = KafkaConnector(kafka, client_id="aimdb-demo-hub", linger_ms=5)
        b.with_connector(made["kafka"])
    for name, view in views.items():
        for field_name, kind, attr in FIELDS:
            reg = b.configure(kind, f"station.{name}.{field_name}").buffer(BufferCfg.SpmcRing(capacity=256))
            reg.tap(_view_tap(view, field_name, attr), name="view")
            if store is not None:
                reg.persist()
            if mqtt is not None:
                reg.link_from("mqtt://" + topic(prefix, name, field_name)).finish()
            else:
                reg.remote(writable=True)  # stations write with record.set
        dew = b.configure(DewPoint, f"hub.{name}.dewpoint").buffer(BufferCfg.SingleLatest())
        dew.join(
            [(Temperature, f"station.{name}.temperature"), (Humidity, f"station.{name}.humidity")], dew_point
        )
        dew.tap(_dew_tap(view), name="view")
        if store is not None:
            dew.persist()  # single-latest: the newest is restored at start
        if kafka is not None:
            dew.link_to("kafka://" + KAFKA_TOPIC).key(_station_key(name)).finish()
    return b


# ---------------------------------------------------------------------------- output


@dataclass
class BrokerView:
    """A broker the user asked for (``--mqtt``, ``--kafka``) and what became of its connection."""

    kind: str
    connector: Any
    ever_connected: bool = False
    shown: str = ""

    def state(self) -> str:
        """``connected``, ``connecting`` (never connected yet), ``reconnecting`` or ``failed``."""
        raw = self.connector.stats.state
        if raw == "connected":
            self.ever_connected = True
            return "connected"
        if raw == "failed":
            return "failed"
        return "reconnecting" if self.ever_connected else "connecting"

    def line(self) -> str:
        """One short line for the table and the log: kind, URL, state, failed attempts."""
        st = self.connector.stats
        text = f"{self.kind} {self.connector.url}: {self.state()}"
        if self.state() != "connected" and st.failed_attempts:
            text += f" ({st.failed_attempts} failed attempts)"
        return text

    def summary(self) -> dict[str, Any]:
        """The broker's entry in the JSON summary."""
        st = self.connector.stats
        return {
            "requested": True,
            "url": self.connector.url,
            "state": self.state(),
            "connected": self.ever_connected,
            "failed_attempts": st.failed_attempts,
            "last_error": st.last_error,
        }


def _fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _status(view: StationView) -> str:
    if view.last_rx is None:
        return "restored" if view.restored else "waiting"
    return "STALE" if view.stale else "ok"


_SHORT_RUNTIME = {"micropython": "mpy", "asyncio": "aio"}
_NARROW_STATUS = {"waiting": "wait", "restored": "last"}

WIDE_TABLE = 110
"""Terminal columns from which the table also shows each station's runtime and link."""


def _render(
    views: dict[str, StationView],
    elapsed: float,
    header: str,
    width: int = WIDE_TABLE,
    brokers: dict[str, BrokerView] | None = None,
) -> Any:
    """Return the live table; the state of each requested broker is a line of its caption.

    Below :data:`WIDE_TABLE` columns it leaves out the link (the start-up lines name it),
    shortens the runtime (``mpy`` for MicroPython) and drops the vertical rules, so it fits
    an 80-column terminal.
    """
    from rich import box
    from rich.table import Table

    wide = width >= WIDE_TABLE
    table = Table(
        title=f"aimdb weather mesh — {elapsed:5.1f} s",
        caption="\n".join([*(b.line() for b in (brokers or {}).values()), header]),
        expand=False,
        box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
        collapse_padding=not wide,
        pad_edge=wide,
    )
    cols = ["station", "runtime", "link"] if wide else ["station", "rt"]
    cols += [
        "temp °C",
        "hum %",
        "dew °C",
        "age s",
        "values/s" if wide else "val/s",
        "p50/p99 ms",
        "lost/lag",
        "",
    ]
    for col in cols:
        table.add_column(col, justify="left" if col in ("station", "runtime", "rt", "link", "") else "right")
    for v in views.values():
        status = _status(v)
        style = "red" if status == "STALE" else ("dim" if status == "waiting" else "")
        where = (
            [v.spec.runtime, v.spec.link] if wide else [_SHORT_RUNTIME.get(v.spec.runtime, v.spec.runtime)]
        )
        table.add_row(
            v.spec.name,
            *where,
            _fmt(v.last.get("temperature")),
            _fmt(v.last.get("humidity"), 1),
            _fmt(v.dewpoint),
            _fmt(v.age(), 1),
            _fmt(v.rate, 1),
            "/".join(_fmt(x, 1) for x in v.latency_ms(0.5, 0.99, recent=LIVE_WINDOW)),
            f"{v.lost}/{v.lag}",
            status if wide else _NARROW_STATUS.get(status, status),
            style=style,
        )
    return table


def _line(v: StationView, elapsed: float) -> str:
    return (
        f"[{elapsed:6.1f}s] {v.spec.name:<7} {v.spec.runtime:<11} {v.spec.link:<10} "
        f"temp={_fmt(v.last.get('temperature'))} hum={_fmt(v.last.get('humidity'), 1)} "
        f"dew={_fmt(v.dewpoint)} age={_fmt(v.age(), 2)}s rate={v.rate:.1f}/s values={v.values} "
        f"dewpoints={v.dewpoints} lost={v.lost} lag={v.lag} "
        f"p99={_fmt(v.latency_ms(0.99, recent=LIVE_WINDOW)[0], 2)}ms {_status(v)}"
    )


def summary(views: dict[str, StationView], wall: float, cpu: float, mode: dict[str, Any]) -> dict[str, Any]:
    """Machine-readable result of a run (printed as the last line).

    Per station also ``implementation``: the interpreter the station process reported it
    runs on (``None`` if it never did).
    """
    stations = {}
    all_lat: list[int] = []
    for name, v in views.items():
        all_lat.extend(v.latencies_us)
        p50, p99 = v.latency_ms(0.5, 0.99)
        stations[name] = {
            "runtime": v.spec.runtime,
            "implementation": v.implementation,
            "link": v.spec.link,
            "values": v.values,
            "dewpoints": v.dewpoints,
            "last_dewpoint": v.dewpoint,
            "lost": v.lost,
            "lag": v.lag,
            "restarts": v.restarts,
            "p50_ms": p50,
            "p99_ms": p99,
        }
    all_lat.sort()
    q50, q99, qmax = quantiles_ms(all_lat, (0.5, 0.99, 1.0))

    return {
        **mode,
        "duration_s": round(wall, 2),
        "hub_cpu_percent": round(100.0 * cpu / max(wall, 1e-9), 2),
        "latency_ms": {"p50": q50, "p99": q99, "max": qmax, "samples": len(all_lat)},
        "stations": stations,
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------- hub


class DemoError(Exception):
    """A reason the demo cannot start, shown as one line (exit code 1)."""


EXIT_BROKER = 3
"""Exit code of a run in which a requested broker (``--mqtt``, ``--kafka``) never connected."""


def cli_command() -> str:
    """How to call ``aimdb`` from a new shell.

    ``aimdb`` when the command found on ``PATH`` without an active virtual environment is
    this installation's; otherwise the full path of this installation's ``aimdb`` (a new
    shell has no virtual environment active), else ``PYTHON -m aimdb._cli``.
    """
    here = Path(sys.executable).parent / ("aimdb.exe" if os.name == "nt" else "aimdb")
    found = shutil.which("aimdb")
    if found and not os.environ.get("VIRTUAL_ENV") and here.exists() and Path(found).samefile(here):
        return "aimdb"
    if here.exists():
        return shlex.quote(str(here))
    return f"{shlex.quote(sys.executable)} -m aimdb._cli"


async def _refuse_second_hub(name: str) -> None:
    """Raise :class:`DemoError` when an instance called ``name`` already answers locally."""
    from aimdb.remote import default_socket_path, probe

    path = default_socket_path(name)
    if path.exists() and (await probe(str(path), timeout=1.0)).get("alive"):
        raise DemoError(
            f"a demo hub named '{name}' is already running (unix://{path}); "
            f"stop it, or start this one with --name OTHER"
        )


async def run_hub(args: argparse.Namespace, outcome: list[dict[str, Any]]) -> int:
    """Run the hub and its stations until ``--duration`` elapses or it is interrupted.

    The summary of the run is appended to ``outcome`` (also when interrupted).

    Raises:
        DemoError: a hub with the same ``--name`` is already running.
    """
    from aimdb.remote import RemoteAccess, RemoteConfig

    await _refuse_second_hub(args.name)
    headless: bool = args.headless
    specs, notes = plan(args.mqtt is not None)
    views = {s.name: StationView(s) for s in specs}
    writable = () if args.mqtt else ("station.#",)
    http = http_address(args)
    if http is None and not args.no_http:
        notes.append("no dashboard: it needs aiohttp (pip install 'aimdb[dashboard]')")
    remote = RemoteAccess(RemoteConfig(name=args.name, writable=writable, max_connections=32, http=http))
    prefix = args.topic_prefix or f"aimdb-demo/{secrets.token_hex(3)}"
    connectors: dict[str, Any] = {}
    store = None
    if not args.no_persist:
        from aimdb.remote._discovery import ensure_runtime_dir

        if args.db is None:
            ensure_runtime_dir()
        db_path = Path(args.db) if args.db is not None else default_db_path(args.name)
        store, problems = open_store(db_path)
        if problems:
            raise DemoError(f"cannot persist: {problems[0]} (use --db PATH, or --no-persist)")
    restored = 0
    try:
        db = build_hub(
            views,
            mqtt=args.mqtt,
            kafka=args.kafka,
            remote=remote,
            prefix=prefix,
            brokers=connectors,
            store=store,
        ).build()
    except (ValueError, AimDbError) as exc:
        raise DemoError(f"bad broker URL: {exc}") from None
    brokers = {kind: BrokerView(kind, c) for kind, c in connectors.items()}
    if "kafka" in brokers:
        # aiokafka logs every failed connect itself; the connector reports them already (once).
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    def say(text: str) -> None:
        print(text, flush=True)

    for note in notes:
        say(f"aimdb demo: {note}")
    if args.mqtt:
        say(f"aimdb demo: stations publish to {args.mqtt} on {prefix}/<station>/<temperature|humidity>")
    start, cpu0 = time.monotonic(), _cpu()
    supervisors: list[Supervised] = []
    tasks: list[asyncio.Task[None]] = []
    logs: deque[str] = deque(maxlen=200)
    live = None
    async with db:
        try:
            server = await remote.wait_started()
        except ImportError as exc:  # --http asked for, aiohttp missing
            raise DemoError(f"{exc}; or run without --http") from None
        except OSError as exc:  # lost a race with another hub starting under the same name
            raise DemoError(f"cannot serve remote access ({exc}); start this one with --name OTHER") from None
        sock = server.unix_path
        cli = cli_command()
        say(
            f"aimdb demo: hub '{args.name}' serves remote access on unix://{sock}\n"
            f"  from another terminal:  {cli} record list\n"
            f"                          {cli} watch 'station.#'"
        )
        web = server.http_url
        if web is not None:
            say(f"aimdb demo: dashboard {web}  ·  metrics {web}metrics")
        if store is not None:
            last = await last_stored(db, [f"station.{n}.{f}" for n in views for f, _, _ in FIELDS])
            for name, v in views.items():
                for field_name, _, attr in FIELDS:
                    value = last.get(f"station.{name}.{field_name}")
                    if value is not None:
                        v.last[field_name] = getattr(value, attr)
                        v.restored = True
            restored = sum(v.restored for v in views.values())
            say(
                f"aimdb demo: storing values in {store.path} ({restored} stations restored); "
                f"history: {cli} record history hub.{specs[0].name}.dewpoint --since 1m"
            )

        def on_line(prefix: str) -> Any:
            def emit(text: str) -> None:
                name, said = prefix, text
                if prefix == "gateway" and text.startswith("[") and "] " in text:  # [station] text
                    name, said = text[1:].split("] ", 1)
                if said.startswith(IMPLEMENTATION_PREFIX) and name in views:
                    views[name].implementation = said[len(IMPLEMENTATION_PREFIX) :].strip()
                line = f"[{prefix}] {text}"
                if headless:
                    print(line, file=sys.stderr, flush=True)
                else:
                    logs.append(line)

            return emit

        def on_event(view: StationView) -> Any:
            def event(kind: str, info: dict[str, Any]) -> None:
                spec = view.spec
                if kind == "started":
                    view.restarts = info["starts"] - 1
                    say(f"aimdb demo: station {spec.name} ({spec.runtime}, {spec.link}) pid {info['pid']}")
                elif kind == "exited":
                    say(
                        f"aimdb demo: station {spec.name} exited (code {info['code']}); "
                        f"restarting in {info['restart_in']:g} s"
                    )

            return event

        for s in specs:
            if s.gateway:
                continue  # started by the gateway below
            if s.transport == "mqtt":
                argv = [*station_command(s, args.hz, args.mqtt or ""), "--topic-prefix", prefix]
            else:
                argv = station_command(s, args.hz, f"unix://{sock}" if s.transport == "socket" else "stdout")
            supervisors.append(
                Supervised(
                    s.name,
                    argv,
                    on_line(s.name),
                    pipe_server(server, s.name) if s.transport == "pipe" else None,
                    on_event(views[s.name]),
                )
            )
        if args.mqtt is not None:
            piped = [s for s in specs if s.gateway]
            if piped:
                gw = [
                    sys.executable,
                    "-m",
                    "aimdb._demo",
                    "gateway",
                    "--mqtt",
                    args.mqtt,
                    "--topic-prefix",
                    prefix,
                ]
                gw += ["--hz", f"{args.hz:g}", "--stations", ",".join(f"{s.name}:{s.runtime}" for s in piped)]
                supervisors.append(Supervised("gateway", gw, on_line("gateway")))
        mode: dict[str, Any] = {
            "mode": "mqtt" if args.mqtt else "default",
            "hz": args.hz,
            "dashboard": web,
            "metrics": web + "metrics" if web is not None else None,
        }
        if not headless:
            try:
                from rich.live import Live

                live = Live(refresh_per_second=4, transient=False)
                live.update(_render(views, 0.0, "", live.console.width, brokers))
                live.start()
            except ImportError:
                headless = True
        header = f"from another terminal: {cli} watch 'station.#'  ·  Ctrl-C stops"
        tasks = [asyncio.ensure_future(s.run()) for s in supervisors]  # ended by stop_all below
        try:
            tick = 0
            while args.duration is None or time.monotonic() - start < args.duration:
                await asyncio.sleep(0.25)
                tick += 1
                elapsed = time.monotonic() - start
                for v in views.values():
                    age = v.age()
                    stale = age is not None and age > STALE_AFTER
                    if stale != v.stale:
                        v.stale = stale
                        if stale:
                            say(f"aimdb demo: station {v.spec.name} is STALE (no value for {age:.1f} s)")
                        else:
                            say(f"aimdb demo: station {v.spec.name} is back")
                for b in brokers.values():
                    if b.state() != b.shown:  # changes only: a retrying connector flaps
                        b.shown = b.state()
                        say(f"aimdb demo: {b.line()}")
                if tick % 4 == 0:
                    for v in views.values():
                        v.update_rate()
                    if headless:
                        for v in views.values():
                            say(_line(v, elapsed))
                if live is not None:
                    live.update(_render(views, elapsed, header, live.console.width, brokers))
        finally:
            for b in brokers.values():
                b.state()  # a connection made in the last moments counts
                mode[b.kind] = b.summary()
            for kind in ("mqtt", "kafka"):
                mode.setdefault(kind, {"requested": False})
            mode["persistence"] = persistence_summary(store, restored)
            if live is not None:
                live.stop()
            await stop_all(supervisors, tasks)
            wall, cpu = time.monotonic() - start, _cpu() - cpu0
            for line in logs:
                print(line, file=sys.stderr)
            result = summary(views, wall, cpu, mode)
            outcome.append(result)
            if not headless:
                lat = result["latency_ms"]
                say(
                    f"aimdb demo: {lat['samples']} values from {len(views)} stations in {wall:.1f} s; "
                    f"produce-to-hub latency p50 {_fmt(lat['p50'])} ms, p99 {_fmt(lat['p99'])} ms; "
                    f"hub CPU {result['hub_cpu_percent']:.1f} %"
                )
    if outcome:  # the store is closed: its last commit is counted
        outcome[-1]["persistence"] = persistence_summary(store, restored)
    say("aimdb demo: stopped cleanly")
    return 0


def http_address(args: argparse.Namespace) -> str | None:
    """Return the hub's HTTP listener address, or ``None`` for none.

    ``--http`` when given; else ``127.0.0.1:0`` when aiohttp is installed; ``None`` with
    ``--no-http`` or without aiohttp (the hub then says so in one line).
    """
    if args.no_http:
        return None
    if args.http is not None:
        return str(args.http)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return None
    return "127.0.0.1:0"


def unconnected_brokers(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary entries of requested brokers that never connected during the run."""
    entries = [result.get(kind) for kind in ("mqtt", "kafka")]
    return [e for e in entries if isinstance(e, dict) and e.get("requested") and not e.get("connected")]


# ---------------------------------------------------------------------------- gateway (--mqtt)


async def run_gateway(args: argparse.Namespace) -> int:
    """Serve pipe-linked stations and republish their records to MQTT (``--mqtt`` mode)."""
    from aimdb.connectors import MqttConnector
    from aimdb.remote import RemoteAccess, RemoteConfig

    exit_when_stdin_closes()
    specs = [StationSpec(n, rt, "pipe") for n, rt in (item.split(":") for item in args.stations.split(","))]
    remote = RemoteAccess(RemoteConfig(name="aimdb-demo-gateway", unix=None, writable=("station.#",)))
    b = AimDbBuilder(shutdown_timeout=1.0).with_connector(remote)
    b.with_connector(MqttConnector(args.mqtt, client_id=f"aimdb-demo-gateway-{os.getpid()}"))
    for s in specs:
        for field_name, kind, _ in FIELDS:
            reg = b.configure(kind, f"station.{s.name}.{field_name}").buffer(BufferCfg.SpmcRing(capacity=256))
            reg.remote(writable=True)
            reg.link_to("mqtt://" + topic(args.topic_prefix, s.name, field_name)).finish()
    sups: list[Supervised] = []
    async with b.build():
        server = await remote.wait_started()
        for s in specs:

            def line(text: str, n: str = s.name) -> None:
                print(f"[{n}] {text}", file=sys.stderr, flush=True)

            def event(kind: str, info: dict[str, Any], spec: StationSpec = s) -> None:
                if kind == "started":
                    print(
                        f"station {spec.name} ({spec.runtime}, pipe to gateway) pid {info['pid']}",
                        file=sys.stderr,
                        flush=True,
                    )

            cmd = station_command(s, args.hz, "stdout")
            sups.append(Supervised(s.name, cmd, line, pipe_server(server, s.name), event))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        tasks = [asyncio.ensure_future(s.run()) for s in sups]  # ended by stop_all below
        try:
            await stop.wait()
        finally:
            await stop_all(sups, tasks)
    return 0


# ---------------------------------------------------------------------------- station (CPython)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def run_cpython_station(args: argparse.Namespace) -> int:
    """Run one station on asyncio or trio with the link named by ``--link``."""
    exit_when_stdin_closes()
    link: str = args.link
    connector: Any
    if link == "stdout":
        out = os.dup(1)
        os.dup2(2, 1)  # stray prints go to stderr; stdout carries the link only
        connector = SerialLink(lambda frame: _write_all(out, frame), name=f"station-{args.name}")
    elif link.startswith(("mqtt://", "mqtts://")):
        from aimdb.connectors import MqttConnector

        connector = MqttConnector(link, client_id=f"aimdb-demo-{args.name}-{os.getpid()}")
    else:
        from aimdb.remote import AimdbConnector

        connector = AimdbConnector(link, name=f"station-{args.name}", backoff=(0.05, 1.0))
    prefix = args.topic_prefix if link.startswith(("mqtt://", "mqtts://")) else None
    if args.runtime == "trio":
        import trio

        trio.run(run_station, args.name, args.hz, connector, prefix)
    else:
        asyncio.run(run_station(args.name, args.hz, connector, prefix))
    return 0


# ---------------------------------------------------------------------------- entry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aimdb demo",
        description="Weather mesh: three stations (asyncio, trio, MicroPython) and an edge hub.",
        epilog="Exit codes: 0 ok, 1 could not start, 2 usage error, 3 a requested broker never connected. "
        "The MicroPython station needs Node.js and 'aimdb micropython install'.",
    )
    p.add_argument(
        "--duration", type=float, default=None, help="stop after S seconds (default: run until Ctrl-C)"
    )
    p.add_argument("--headless", action="store_true", help="plain log lines instead of the live table")
    p.add_argument("--hz", type=float, default=10.0, help="samples per second per sensor (default 10)")
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="stations publish to this broker (mqtt://HOST:PORT or HOST:PORT), the hub reads from it",
    )
    p.add_argument(
        "--kafka",
        metavar="URL",
        help="the hub forwards derived dew points to this Kafka broker (kafka://HOST:PORT or HOST:PORT)",
    )
    p.add_argument("--name", default="aimdb-demo", help="instance name of the hub (remote access)")
    web = p.add_mutually_exclusive_group()
    web.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the dashboard, /ws and /metrics here (default: 127.0.0.1 on a free port "
        "when aiohttp is installed, i.e. with the 'dashboard' extra)",
    )
    web.add_argument("--no-http", action="store_true", help="no HTTP listener (no dashboard, no /metrics)")
    p.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite file the hub stores values in (default: <runtime dir>/<name>.db, beside its socket)",
    )
    p.add_argument("--no-persist", action="store_true", help="store nothing (no history, no restore)")
    p.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        help="MQTT topic prefix with --mqtt (default: aimdb-demo/<random run id>, so demos never mix)",
    )
    return p


def main(argv: list[str]) -> int:
    """Dispatch ``aimdb demo`` (hub) and its internal ``station`` / ``gateway`` roles."""
    if argv[:1] == ["station"]:
        p = argparse.ArgumentParser(prog="aimdb demo station")
        p.add_argument("name")
        p.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
        p.add_argument("--hz", type=float, default=10.0)
        p.add_argument("--link", default="stdout")
        p.add_argument("--topic-prefix", default="aimdb-demo")
        return run_cpython_station(p.parse_args(argv[1:]))
    if argv[:1] == ["gateway"]:
        p = argparse.ArgumentParser(prog="aimdb demo gateway")
        p.add_argument("--mqtt", required=True)
        p.add_argument("--hz", type=float, default=10.0)
        p.add_argument("--stations", required=True)
        p.add_argument("--topic-prefix", default="aimdb-demo")
        return asyncio.run(run_gateway(p.parse_args(argv[1:])))
    args = _parser().parse_args(argv)
    if args.hz <= 0:
        print("aimdb demo: --hz must be positive", file=sys.stderr)
        return 2
    args.headless = args.headless or not sys.stdout.isatty()
    for opt in ("mqtt", "kafka"):  # HOST:PORT is accepted for scheme://HOST:PORT
        url = getattr(args, opt)
        if url is not None and "://" not in url:
            setattr(args, opt, f"{opt}://{url}")
    outcome: list[dict[str, Any]] = []
    code = 0
    try:
        code = asyncio.run(run_hub(args, outcome))
    except KeyboardInterrupt:
        print(
            "aimdb demo: interrupted, stopped", file=sys.stderr if args.headless else sys.stdout, flush=True
        )
    except DemoError as exc:
        print(f"aimdb demo: {exc}", file=sys.stderr, flush=True)
        return 1
    never = unconnected_brokers(outcome[-1]) if outcome else []
    for b in never:  # also after Ctrl-C
        print(
            f"aimdb demo: {b['url']} never connected during the run (last error: {b['last_error']})",
            file=sys.stderr,
            flush=True,
        )
    if args.headless and outcome:
        print(json.dumps(outcome[-1]), flush=True)  # pure JSON, the last line: `| tail -1 | jq`
    return EXIT_BROKER if never and code == 0 else code
