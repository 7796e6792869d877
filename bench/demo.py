"""Demo end to end: the weather mesh's latency and hub CPU beside a plain-Python floor.

One command runs, one after the other, each in fresh processes::

    python bench/demo.py                    # 30 s per run (about 4 minutes), writes the docs
    python bench/demo.py --quick            # 8 s per run, prints only
    python bench/demo.py --no-mqtt          # skip the runs through the broker
    python bench/demo.py --json out.json    # also write the tables as a results file

Writing the docs also writes ``bench/results/demo.json``; ``python bench/plots.py`` then
redraws the plot on the page from it.

Runs (``hz`` is samples per second per sensor; the demo has 3 stations x 2 sensors):

1. floor, pipe: a plain child Python process writes ``{"ts_ns": time.time_ns(), "seq": n}``
   JSON lines to its stdout, evenly paced at 3 x 2 x hz lines/s; a plain asyncio parent
   reads them (``StreamReader.readline`` + ``json.loads``). No aimdb anywhere.
2. floor, MQTT: the same lines published by a plain paho-mqtt client (QoS 0, its network
   thread) to the broker and received by an aiomqtt subscriber in an asyncio parent.
3. ``python -m aimdb._demo --headless --duration S`` at 10 Hz (default mode: asyncio
   station over the hub's Unix socket, trio and MicroPython stations over stdout pipes).
4. the same with ``--mqtt URL`` (stations publish through the broker, the hub reads it).
5. headroom: the pipe floor and the default demo at 100 Hz.

Latency is wall clock (``time.time_ns``) from the producer to the reader, across processes.
For the demo it is what the hub itself records (produce in the station -> the hub's view tap)
and prints as its last line (the headless JSON summary); the floor uses the same quantile rule
(``sorted[int(q * n)]``) and, like the demo, keeps every sample from the first on. CPU % is
user + system CPU time of the reading process (the hub, or the floor's parent) over its wall
time. The MQTT runs use the broker given by ``--mqtt`` (default ``mqtt://127.0.0.1:1883``)
and are skipped with a note when it does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DOCS,
    RESULTS,
    ROOT,
    command_line,
    load_average,
    machine_info,
    table,
    write_between_markers,
    write_results,
)

from aimdb._demo._hub import _cpu, quantiles_ms

DOC = ROOT / "docs" / "benchmarks-demo.md"
SCRIPT = Path(__file__).resolve()
STATIONS = 3
SENSORS = 2
DEFAULT_TARGET_MS = 5.0
MQTT_TARGET_MS = 50.0


def _broker(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 1883


# ================================================================ floor: child (writer)


def floor_child(args: argparse.Namespace) -> int:
    """Write ``rate`` timestamped JSON lines per second for ``duration`` s (stdout or MQTT)."""
    total = int(args.rate * args.duration)
    period = 1.0 / args.rate
    client: Any = None
    if args.mqtt:
        import threading

        import paho.mqtt.client as mqtt

        connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"aimdb-bench-pub-{os.getpid()}")
        client.on_connect = lambda *a: connected.set()
        host, port = _broker(args.mqtt)
        client.connect(host, port)
        client.loop_start()
        if not connected.wait(10):
            print("floor child: no CONNACK from the broker", file=sys.stderr)
            return 1
        topic = args.topic

        def send(line: bytes) -> None:
            client.publish(topic, line, qos=0)

    else:

        def send(line: bytes) -> None:
            view = memoryview(line + b"\n")
            while view:
                view = view[os.write(1, view) :]

    dumps, time_ns, monotonic, sleep = json.dumps, time.time_ns, time.monotonic, time.sleep
    t0 = monotonic()
    for n in range(1, total + 1):
        delay = t0 + (n - 1) * period - monotonic()
        if delay > 0:
            sleep(delay)
        send(dumps({"ts_ns": time_ns(), "seq": n}).encode())
    if client is not None:
        client.publish(args.topic, b'{"end": true}', qos=0)
        time.sleep(0.2)
        client.loop_stop()
        client.disconnect()
    return 0


# ================================================================ floor: parent (reader)


class Tally:
    """Latencies (µs) and sequence gaps of what the parent received."""

    def __init__(self) -> None:
        self.lat_us: list[int] = []
        self.last_seq = 0
        self.lost = 0

    def seen(self, msg: dict[str, Any]) -> None:
        now = time.time_ns()
        self.lat_us.append(max(0, (now - msg["ts_ns"]) // 1000))
        seq = msg["seq"]
        if seq > self.last_seq + 1:
            self.lost += seq - self.last_seq - 1
        self.last_seq = seq

    def result(self, expected: int, wall: float, cpu: float) -> dict[str, Any]:
        data = sorted(self.lat_us)
        p50, p99, top = quantiles_ms(data, (0.5, 0.99, 1.0))  # the hub's own quantile rule
        return {
            "latency_ms": {"p50": p50, "p99": p99, "max": top, "samples": len(data)},
            "lost": self.lost + max(0, expected - self.last_seq),
            "cpu_percent": round(100.0 * cpu / max(wall, 1e-9), 2),
            "duration_s": round(wall, 2),
        }


def _child_argv(args: argparse.Namespace, topic: str = "") -> list[str]:
    argv = [
        sys.executable,
        str(SCRIPT),
        "_floor-child",
        "--rate",
        f"{args.rate:g}",
        "--duration",
        f"{args.duration:g}",
    ]
    if args.mqtt:
        argv += ["--mqtt", args.mqtt, "--topic", topic]
    return argv


async def floor_parent_pipe(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    start, cpu0 = time.monotonic(), _cpu()
    proc = await asyncio.create_subprocess_exec(*_child_argv(args), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    readline, loads = proc.stdout.readline, json.loads
    while True:
        line = await readline()
        if not line:
            break
        tally.seen(loads(line))
    await proc.wait()
    return tally.result(int(args.rate * args.duration), time.monotonic() - start, _cpu() - cpu0)


async def floor_parent_mqtt(args: argparse.Namespace) -> dict[str, Any]:
    import aiomqtt

    tally = Tally()
    topic = f"aimdb-bench/floor/{uuid.uuid4().hex}"
    host, port = _broker(args.mqtt)
    start, cpu0 = time.monotonic(), _cpu()
    async with aiomqtt.Client(host, port, identifier=f"aimdb-bench-sub-{os.getpid()}") as client:
        await client.subscribe(topic, qos=0)
        proc = await asyncio.create_subprocess_exec(*_child_argv(args, topic))
        loads = json.loads

        async def receive() -> None:
            async for message in client.messages:
                msg = loads(message.payload)  # type: ignore[arg-type,unused-ignore]
                if "end" in msg:
                    return
                tally.seen(msg)

        try:
            await asyncio.wait_for(receive(), args.duration + 30)
        except asyncio.TimeoutError:
            print("floor parent: no end marker from the publisher", file=sys.stderr)
        await proc.wait()
    return tally.result(int(args.rate * args.duration), time.monotonic() - start, _cpu() - cpu0)


def floor_parent(args: argparse.Namespace) -> int:
    signal.alarm(int(args.duration) + 60)
    res = asyncio.run(floor_parent_mqtt(args) if args.mqtt else floor_parent_pipe(args))
    print("floor summary: " + json.dumps(res), flush=True)
    return 0


# ================================================================ the runs, from the main process


def run_floor(rate: float, duration: float, mqtt: str | None) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(SCRIPT),
        "_floor-parent",
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{duration:g}",
    ]
    if mqtt:
        argv += ["--mqtt", mqtt]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=duration + 90)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("floor summary: "):
            res: dict[str, Any] = json.loads(line[len("floor summary: ") :])
            return res
    raise RuntimeError(f"floor run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


def run_demo(duration: float, hz: float, mqtt: str | None) -> dict[str, Any]:
    """Run the demo hub (and so its stations) once; return its summary plus what it said."""
    with tempfile.TemporaryDirectory(prefix="aimdb-bench-demo-") as runtime_dir:
        env = dict(os.environ, AIMDB_RUNTIME_DIR=runtime_dir)
        argv = [
            sys.executable,
            "-m",
            "aimdb._demo",
            "--headless",
            "--duration",
            f"{duration:g}",
            "--hz",
            f"{hz:g}",
        ]
        if mqtt:
            argv += ["--mqtt", mqtt]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=duration + 120)
    lines = proc.stdout.splitlines()
    try:  # headless, the summary is the last line, pure JSON
        summary: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"demo run failed (exit {proc.returncode}): {proc.stderr[-2000:]}") from None
    summary["clean"] = len(lines) >= 2 and lines[-2] == "aimdb demo: stopped cleanly"
    # notes (fallbacks), stale/back/exited events: whatever the hub says beyond the routine lines
    prefix = "aimdb demo: "
    said = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    summary["events"] = [
        text
        for text in said
        if not (
            text.startswith("hub serving")
            or text == "stopped cleanly"
            or (text.startswith("station ") and " pid " in text)
        )
    ]
    return summary


async def _demo_topic_messages(url: str, seconds: float) -> int:
    import aiomqtt

    host, port = _broker(url)
    n = 0
    async with aiomqtt.Client(host, port, identifier=f"aimdb-bench-probe-{os.getpid()}") as client:
        await client.subscribe("aimdb-demo/#", qos=0)

        async def count() -> None:
            nonlocal n
            async for _ in client.messages:
                n += 1

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(count(), seconds)
    return n


def wait_demo_topics_quiet(url: str, patience: float) -> bool:
    """Wait (up to ``patience`` s) until nobody else publishes to the demo's topics.

    The demo's MQTT topics (``aimdb-demo/<station>/<field>``) are fixed, so a second demo on
    the same broker (a test run, say) would mix its values into the hub's figures.
    """
    deadline = time.monotonic() + patience
    while True:
        if asyncio.run(_demo_topic_messages(url, 1.5)) == 0:
            return True
        if time.monotonic() > deadline:
            return False
        print("another publisher is active on aimdb-demo/#; waiting", flush=True)
        time.sleep(5.0)


def broker_reachable(url: str) -> bool:
    try:
        with socket.create_connection(_broker(url), timeout=2.0):
            return True
    except OSError:
        return False


# ================================================================ report


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per run (default 30)")
    ap.add_argument("--quick", action="store_true", help="8 s per run; do not write the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update the docs")
    ap.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker for the MQTT runs")
    ap.add_argument("--no-mqtt", action="store_true", help="skip the runs through the broker")
    ap.add_argument(
        "--private-broker",
        action="store_true",
        help="start a private Mosquitto on a free port for the MQTT runs instead of using --mqtt",
    )
    ap.add_argument("--no-headroom", action="store_true", help="skip the 100 Hz runs")
    ap.add_argument("--json", type=Path, help="also write the tables to this results file")
    args = ap.parse_args()

    started = time.perf_counter()
    info = machine_info()
    header = "Command: `" + command_line() + "`\n\n" + table(["machine", ""], list(info.items())) + "\n"
    print(header, flush=True)

    mqtt_note = ""
    mqtt: str | None = None
    broker: Any = None
    if args.no_mqtt:
        mqtt_note = "MQTT runs skipped (`--no-mqtt`)."
    elif args.private_broker:
        sys.path.insert(0, str(ROOT / "scripts"))
        from brokers import PrivateMosquitto

        broker = PrivateMosquitto()
        broker.start()
        mqtt = broker.url
        mqtt_note = "MQTT runs through a private Mosquitto started for this run (`--private-broker`, QoS 0)."
    elif not broker_reachable(args.mqtt):
        mqtt_note = "MQTT runs skipped: the broker given by `--mqtt` did not accept a connection."
    else:
        mqtt = args.mqtt
        mqtt_note = f"MQTT runs through the broker at `{mqtt}` (QoS 0)."
    if mqtt_note:
        print(mqtt_note, flush=True)
    try:
        _main(args, header, started, mqtt, mqtt_note)
    finally:
        if broker is not None:
            broker.stop()


def _main(args: argparse.Namespace, header: str, started: float, mqtt: str | None, mqtt_note: str) -> None:
    duration = 8.0 if args.quick else args.duration
    hz, hz_high = 10.0, 100.0

    # (label, kind, hz, result); kind "floor" or "demo"
    runs: list[tuple[str, str, float, dict[str, Any]]] = []

    def step(label: str, kind: str, rate_hz: float, fn: Any) -> dict[str, Any]:
        t = time.perf_counter()
        res: dict[str, Any] = fn()
        lat = res["latency_ms"]
        cpu = res.get("hub_cpu_percent", res.get("cpu_percent"))
        print(
            f"{label}: p50 {_ms(lat['p50'])} ms, p99 {_ms(lat['p99'])} ms, max {_ms(lat['max'])} ms, "
            f"{lat['samples']} samples, CPU {cpu} % ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
        runs.append((label, kind, rate_hz, res))
        return res

    lines_per_s = STATIONS * SENSORS * hz
    step(
        f"floor: JSON lines over a pipe, {lines_per_s:g}/s",
        "floor",
        hz,
        lambda: run_floor(lines_per_s, duration, None),
    )
    if mqtt:
        step(
            f"floor: paho -> Mosquitto -> aiomqtt, {lines_per_s:g}/s",
            "floor",
            hz,
            lambda: run_floor(lines_per_s, duration, mqtt),
        )
    demo_default = step(f"demo, default, {hz:g} Hz", "demo", hz, lambda: run_demo(duration, hz, None))
    demo_mqtt = None
    if mqtt:
        if not wait_demo_topics_quiet(mqtt, 180.0):
            mqtt_note += (
                " Another publisher was active on the demo's topics (`aimdb-demo/#`) on this broker "
                "when the `--mqtt` run started; its values may be mixed into that run."
            )
        demo_mqtt = step(f"demo --mqtt, {hz:g} Hz", "demo", hz, lambda: run_demo(duration, hz, mqtt))
        expected = SENSORS * hz * duration
        for name, st in demo_mqtt["stations"].items():
            if st["values"] > 1.05 * expected or st["lost"] > 0:
                demo_mqtt["events"].append(
                    f"station {name}: {st['values']} values (at most {expected:.0f} expected), "
                    f"{st['lost']} lost; a second publisher on the demo's topics would show like this"
                )
    demo_high = None
    if not args.no_headroom:
        high = STATIONS * SENSORS * hz_high
        step(
            f"floor: JSON lines over a pipe, {high:g}/s",
            "floor",
            hz_high,
            lambda: run_floor(high, duration, None),
        )
        demo_high = step(
            f"demo, default, {hz_high:g} Hz", "demo", hz_high, lambda: run_demo(duration, hz_high, None)
        )

    sections: list[str] = []

    def emit(title: str, body: str) -> None:
        text = "### " + title + "\n\n" + body + "\n"
        print(text, flush=True)
        sections.append(text)

    # ---- overview
    rows = []
    for label, kind, rate_hz, res in runs:
        lat = res["latency_ms"]
        if kind == "demo":
            lost = sum(s["lost"] for s in res["stations"].values())
            cpu = res["hub_cpu_percent"]
        else:
            lost, cpu = res["lost"], res["cpu_percent"]
        rows.append(
            [
                label,
                f"{STATIONS * SENSORS * rate_hz:g}",
                f"{res['duration_s']:.1f}",
                f"{lat['samples']:,}",
                lost,
                _ms(lat["p50"]),
                _ms(lat["p99"]),
                _ms(lat["max"]),
                f"{cpu:.2f}",
            ]
        )
    emit(
        f"All runs ({duration:g} s each)",
        "Latency in ms from the producer's `time.time_ns()` to the reader, every sample of the run. "
        "`values/s` is the offered rate (3 stations x 2 sensors x hz for the demo). `CPU %` is the "
        "reading process only: the hub for the demo, the asyncio parent for the floor. "
        "`s` is the reader's wall time (the demo's includes station start-up and shutdown, so "
        "it sees fewer samples than rate x duration).\n\n"
        + table(
            ["run", "values/s", "s", "samples", "lost", "p50 ms", "p99 ms", "max ms", "CPU %"],
            rows,
            name="runs",
        )
        + ("\n\n" + mqtt_note if mqtt_note else ""),
    )

    # ---- per station
    rows = []
    for label, kind, _rate, res in runs:
        if kind != "demo":
            continue
        for name, s in res["stations"].items():
            rows.append(
                [
                    label,
                    name,
                    s["runtime"],
                    s["link"],
                    f"{s['values']:,}",
                    s["lost"],
                    s["restarts"],
                    _ms(s["p50_ms"]),
                    _ms(s["p99_ms"]),
                ]
            )
    emit(
        "Demo per station",
        '`aimdb/unix`: `link_to("aimdb://...")` over the hub\'s Unix socket; `aimdb/pipe`: '
        "`SerialLink` over the station's stdout into the hub; `mqtt`: the station publishes to the "
        "broker; `pipe+mqtt`: stdout pipe into the gateway process, which republishes to the "
        "broker. The MicroPython station's `time.time_ns()` has 1 ms resolution, so its figures "
        "carry up to 1 ms of clock granularity.\n\n"
        + table(
            ["run", "station", "runtime", "link", "values", "lost", "restarts", "p50 ms", "p99 ms"],
            rows,
            name="stations",
        ),
    )

    events = [(label, e) for label, kind, _r, res in runs if kind == "demo" for e in res["events"]]
    unclean = [label for label, kind, _r, res in runs if kind == "demo" and not res["clean"]]
    if events or unclean:
        body = "\n".join(f"- {label}: {e}" for label, e in events)
        body += "".join(f"\n- {label}: did not end with `stopped cleanly`" for label in unclean)
        emit("Demo messages", body.strip())

    # ---- targets
    verdicts: list[list[str]] = []
    p99 = demo_default["latency_ms"]["p99"]
    verdicts.append(
        [
            f"default mode, {hz:g} Hz: p99 < {DEFAULT_TARGET_MS:g} ms",
            _ms(p99) + " ms",
            "PASS" if p99 is not None and p99 < DEFAULT_TARGET_MS else "MISS",
        ]
    )
    if demo_mqtt is not None:
        p99m = demo_mqtt["latency_ms"]["p99"]
        verdicts.append(
            [
                f"--mqtt, {hz:g} Hz: p99 < {MQTT_TARGET_MS:g} ms",
                _ms(p99m) + " ms",
                "PASS" if p99m is not None and p99m < MQTT_TARGET_MS else "MISS",
            ]
        )
    else:
        verdicts.append([f"--mqtt, {hz:g} Hz: p99 < {MQTT_TARGET_MS:g} ms", "not run", "-"])
    verdicts.append(
        [f"hub CPU, default mode, {hz:g} Hz (no target)", f"{demo_default['hub_cpu_percent']:.2f} %", "-"]
    )
    if demo_mqtt is not None:
        verdicts.append(
            [f"hub CPU, --mqtt, {hz:g} Hz (no target)", f"{demo_mqtt['hub_cpu_percent']:.2f} %", "-"]
        )
    if demo_high is not None:
        verdicts.append(
            [
                f"hub CPU, default mode, {hz_high:g} Hz (no target)",
                f"{demo_high['hub_cpu_percent']:.2f} %",
                "-",
            ]
        )
    emit("Targets", table(["target", "measured", "result"], verdicts, name="targets"))

    elapsed = time.perf_counter() - started
    footer = f"Total run time {elapsed:.0f} s; load average at the end: {load_average()}.\n"
    print(footer)

    commit = machine_info()["aimdb commit"]
    source = f"{command_line()} at aimdb {commit}, {time.strftime('%Y-%m-%d')}"
    if args.json:
        write_results(args.json, "benchmarks-demo.md", source)
    if args.quick or args.no_write:
        return
    write_results(RESULTS / "demo.json", "benchmarks-demo.md", source)
    intro = (
        "# Demo benchmark (end to end)\n\n"
        "Produced by `bench/demo.py`; everything below the command line is written by the script. "
        "It runs the weather-mesh demo (`python -m aimdb._demo --headless`) in its default mode and "
        "with `--mqtt`, and beside it a floor without aimdb: a plain Python child writing "
        "timestamped JSON lines at the same total rate, read by a plain asyncio parent (over its "
        "stdout pipe, and through the same Mosquitto with paho-mqtt and aiomqtt). The runs go one "
        "after the other, each in fresh processes. Single runs on a shared machine: expect the "
        "tails (p99, max) to move between runs.\n\n"
        "![Latency of every run: p50, p99 and max in ms](images/bench-demo.svg)\n\n"
        "The plot is drawn by `python bench/plots.py` from `bench/results/demo.json`, which this "
        "script writes with the tables below.\n\n"
    )
    DOC.write_text(intro + header + "\n" + "\n".join(sections) + "\n" + footer, encoding="utf-8")
    print("wrote docs/benchmarks-demo.md")

    def row(label: str, res: dict[str, Any] | None) -> list[str]:
        if res is None:
            return [label, "not run", "-", "-", "-"]
        lat = res["latency_ms"]
        return [label, _ms(lat["p50"]), _ms(lat["p99"]), _ms(lat["max"]), f"{res['hub_cpu_percent']:.2f}"]

    floor_pipe = runs[0][3]
    head = [
        row(f"demo, default, {hz:g} Hz", demo_default),
        row(f"demo --mqtt, {hz:g} Hz", demo_mqtt),
    ]
    if demo_high is not None:
        head.append(row(f"demo, default, {hz_high:g} Hz", demo_high))
    fl = floor_pipe["latency_ms"]
    head.append(
        [
            f"floor: plain JSON lines over a pipe, {lines_per_s:g}/s",
            _ms(fl["p50"]),
            _ms(fl["p99"]),
            _ms(fl["max"]),
            f"{floor_pipe['cpu_percent']:.2f}",
        ]
    )
    body = (
        "Command: `" + command_line() + "` (details, per-station figures and the MQTT floor: "
        "[benchmarks-demo.md](benchmarks-demo.md)). Station produce -> hub view, wall clock, "
        f"3 stations x 2 sensors, {duration:g} s per run; CPU % is the hub process (the reading "
        "parent for the floor).\n\n"
        + table(["run", "p50 ms", "p99 ms", "max ms", "CPU %"], head)
        + "\n\n"
        + table(["target", "measured", "result"], verdicts)
        + "\n"
    )
    write_between_markers(DOCS, "bench:demo", body, "Demo (end to end)")
    print("updated docs/benchmarks.md")


def _role(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/demo.py " + argv[0])
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--mqtt", default=None)
    p.add_argument("--topic", default="")
    args = p.parse_args(argv[1:])
    return floor_child(args) if argv[0] == "_floor-child" else floor_parent(args)


if __name__ == "__main__":
    if sys.argv[1:2] in (["_floor-child"], ["_floor-parent"]):
        sys.exit(_role(sys.argv[1:]))
    main()
