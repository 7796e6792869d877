"""`aimdb demo` end to end: real processes, real pipes, real MicroPython, real brokers.

Each test runs the demo headless as a subprocess (its own runtime directory, so the hub's
socket never collides with anything else) and reads its log lines and final summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aimdb._demo._procs import micropython_runner

from .._prometheus import Prometheus, needs_prometheus

MPY, MPY_REASON = micropython_runner()
STATIONS = ("alpine", "coast", "valley")


class Demo:
    """A running ``python -m aimdb._demo`` with its output collected line by line."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.runtime_dir = tmp / "rt"
        full_env = {**os.environ, "AIMDB_RUNTIME_DIR": str(self.runtime_dir), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aimdb._demo", "--headless", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._cv = threading.Condition()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._cv:
                into.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_line(self, pred: Any, timeout: float = 20.0, start: int = 0) -> tuple[int, str]:
        """Wait for a stdout line satisfying ``pred``; returns (index, line)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for i in range(start, len(self.lines)):
                    if pred(self.lines[i]):
                        return i, self.lines[i]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._threads[0].is_alive()):
                    raise AssertionError(
                        "line not seen; stdout:\n" + "\n".join(self.lines[-40:]) + "\nstderr:\n"
                        + "\n".join(self.errors[-40:])
                    )  # fmt: skip
                self._cv.wait(min(left, 0.2))

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for exit; return the summary (asserting a clean stop)."""
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)  # the last lines are in
        out = "\n".join(self.lines)
        assert code == 0, out + "\n" + "\n".join(self.errors)
        assert "aimdb demo: stopped cleanly" in out
        assert "Traceback" not in "\n".join(self.errors), "\n".join(self.errors)
        assert self.lines[-2] == "aimdb demo: stopped cleanly", out
        return json.loads(self.lines[-1])  # type: ignore[no-any-return]  # pure JSON, the last line

    def interrupt(self, timeout: float = 30.0) -> dict[str, Any]:
        """Ctrl-C (SIGINT), wait for exit; return the summary (asserting a clean stop)."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)  # the last lines are in
        out, errors = "\n".join(self.lines), "\n".join(self.errors)
        assert code == 0, out + "\n" + errors
        assert "aimdb demo: interrupted, stopped" in errors and "Traceback" not in errors, errors
        return json.loads(self.lines[-1])  # type: ignore[no-any-return]  # pure JSON, the last line

    def wait_values(self, stations: tuple[str, ...], count: int, timeout: float = 60.0) -> None:
        """Wait until the hub's status lines show at least ``count`` values of each station, ``ok``."""
        for name in stations:
            self.wait_line(
                lambda s, name=name: s.startswith("[") and f" {name} " in s and s.endswith(" ok")
                and int(s.split(" values=", 1)[1].split(" ", 1)[0]) >= count,
                timeout=timeout,
            )

    def pid_of(self, station: str) -> int:
        _, line = self.wait_line(lambda s: s.startswith(f"aimdb demo: station {station} (") and " pid " in s)
        return int(line.rsplit(" ", 1)[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[Any]:
    started: list[Demo] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Demo:
        d = Demo(tmp_path / str(len(started)), *args, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def _check_every_station(summary: dict[str, Any], min_values: int = 10) -> None:
    assert set(summary["stations"]) == set(STATIONS)
    for name, st in summary["stations"].items():
        assert st["values"] >= min_values, (name, st)
        assert st["dewpoints"] >= 1, (name, st)
        assert isinstance(st["last_dewpoint"], float) and -60 < st["last_dewpoint"] < 45, (name, st)
        assert st["p99_ms"] is not None and st["p99_ms"] >= 0
    expected_valley = "micropython" if MPY is not None else "asyncio"
    assert summary["stations"]["valley"]["runtime"] == expected_valley
    assert summary["stations"]["coast"]["runtime"] == "trio"
    assert summary["stations"]["alpine"]["runtime"] == "asyncio"


def _cli(demo: Demo, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI like a user in another terminal (a generous --timeout: the machine may be loaded)."""
    env = {**os.environ, "AIMDB_RUNTIME_DIR": str(demo.runtime_dir)}
    return subprocess.run(
        [sys.executable, "-m", "aimdb._cli", "--timeout", "20", *args],
        capture_output=True, text=True, timeout=90, env=env,
    )


def test_default_mode_every_station_reaches_the_hub_and_the_cli_sees_it(demos: Any) -> None:
    if MPY is None:
        pytest.skip(f"MicroPython runner not available: {MPY_REASON}")
    d = demos()  # until interrupted: how long the CLI calls take does not matter
    d.wait_line(lambda s: s.startswith("aimdb demo: hub ") and " serves remote access on unix://" in s)
    d.wait_values(STATIONS, 10)
    # From "another terminal": the CLI finds the only instance in the runtime directory.
    listed = _cli(d, "--format", "json", "record", "list")
    assert listed.returncode == 0, listed.stderr
    keys = {r["key"] for r in json.loads(listed.stdout)}
    assert {f"station.{n}.{f}" for n in STATIONS for f in ("temperature", "humidity")} <= keys
    assert {f"hub.{n}.dewpoint" for n in STATIONS} <= keys
    watched = _cli(d, "--format", "json", "watch", "station.#", "--count", "12", "--duration", "5")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(ln) for ln in watched.stdout.splitlines() if ln.strip()]
    assert len(events) == 12 and all(e["key"].startswith("station.") for e in events)
    dew = _cli(d, "--format", "json", "record", "get", "hub.valley.dewpoint")
    assert dew.returncode == 0, dew.stderr
    value = json.loads(dew.stdout)
    assert isinstance(value.get("value", value)["celsius"], float), value
    summary = d.interrupt()
    assert summary["mode"] == "default"
    _check_every_station(summary)
    assert summary["stations"]["valley"]["link"] == "aimdb/pipe"
    assert summary["stations"]["alpine"]["link"] == "aimdb/unix"
    assert all(st["lost"] == 0 and st["lag"] == 0 for st in summary["stations"].values()), summary


def test_mqtt_mode_through_the_local_broker(demos: Any, mosquitto_url: str) -> None:
    d = demos("--duration", "7", "--mqtt", mosquitto_url)
    summary = d.finish()
    assert summary["mode"] == "mqtt"
    _check_every_station(summary)
    assert summary["stations"]["alpine"]["link"] == "mqtt"
    assert summary["stations"]["valley"]["link"] == "pipe+mqtt"


def test_kafka_mode_forwards_dew_points(demos: Any, tansu: Any) -> None:
    d = demos("--duration", "7", "--kafka", tansu.url)
    summary = d.finish()
    assert summary["kafka"]["requested"] is True and summary["kafka"]["connected"] is True, summary["kafka"]
    assert summary["kafka"]["state"] == "connected"
    assert summary["mqtt"] == {"requested": False}
    _check_every_station(summary)

    async def consume() -> dict[str, list[float]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            "aimdb-demo.dewpoint", bootstrap_servers=tansu.address, auto_offset_reset="earliest"
        )
        await consumer.start()
        got: dict[str, list[float]] = {}
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (len(got) < 3 or sum(map(len, got.values())) < 30):
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    for r in recs:
                        got.setdefault(r.key.decode(), []).append(json.loads(r.value)["celsius"])
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(consume())
    assert set(got) == set(STATIONS), got.keys()
    for name, values in got.items():
        assert all(-60 < v < 45 for v in values), name
    assert got["valley"][-1] == pytest.approx(summary["stations"]["valley"]["last_dewpoint"], abs=5)


def test_kafka_that_never_connects_is_shown_logged_once_and_fails_the_run(demos: Any) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        d = demos("--duration", "4", "--kafka", f"127.0.0.1:{port}")  # HOST:PORT is accepted
        code = d.proc.wait(60)
    for t in d._threads:
        t.join(5)
    out, err = "\n".join(d.lines), "\n".join(d.errors)
    assert code == 3, out + "\n" + err  # EXIT_BROKER: a requested broker never connected
    assert "Traceback" not in err, err
    summary = json.loads(d.lines[-1])
    kafka = summary["kafka"]
    assert kafka["requested"] is True and kafka["connected"] is False, kafka
    assert kafka["state"] == "connecting" and kafka["url"] == f"kafka://127.0.0.1:{port}", kafka
    assert kafka["failed_attempts"] >= 1 and f"127.0.0.1:{port}" in kafka["last_error"], kafka
    # the state is shown while it runs (once per change, not once per attempt)
    shown = [ln for ln in d.lines if ln.startswith(f"aimdb demo: kafka kafka://127.0.0.1:{port}: connecting")]
    assert len(shown) == 1, out
    # the repeating connection error is logged once (by the connector; aiokafka's own is quiet)
    attempts = [ln for ln in d.errors if not ln.startswith("[") and f"127.0.0.1:{port}" in ln]
    assert len(attempts) == 2, err  # the first failure, and the final "never connected" line
    assert "retrying in" in attempts[0] and "never connected during the run" in attempts[1], err
    _check_every_station(summary)


def test_ctrl_c_with_a_broker_that_never_connected_still_exits_3(demos: Any) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        d = demos("--kafka", f"kafka://127.0.0.1:{port}")  # no --duration: until interrupted
        d.wait_line(
            lambda s: s.startswith(f"aimdb demo: kafka kafka://127.0.0.1:{port}: connecting"), timeout=60
        )
        d.proc.send_signal(signal.SIGINT)
        code = d.proc.wait(30)
    for t in d._threads:
        t.join(5)
    assert code == 3, "\n".join(d.lines + d.errors)
    assert json.loads(d.lines[-1])["kafka"]["connected"] is False
    assert any("never connected during the run" in ln for ln in d.errors), d.errors


def test_killed_station_goes_stale_then_comes_back(demos: Any) -> None:
    if MPY is None:
        pytest.skip(f"MicroPython runner not available: {MPY_REASON}")
    d = demos("--duration", "14")
    pid = d.pid_of("valley")  # the MicroPython station: Node runner and its interpreter process
    i, _ = d.wait_line(lambda s: s.startswith("[") and " valley " in s and s.endswith(" ok"))
    os.killpg(pid, signal.SIGKILL)  # the station loses power: every process of it dies at once
    i, _ = d.wait_line(lambda s: "station valley is STALE" in s, start=i)
    # The others keep going while valley is stale.
    _, line = d.wait_line(lambda s: s.startswith("[") and " alpine " in s, start=i)
    assert line.endswith(" ok"), line
    d.wait_line(lambda s: "station valley exited" in s, start=0)
    d.wait_line(lambda s: "valley is back" in s, start=i)
    summary = d.finish()
    starts = [ln for ln in d.lines if ln.startswith("aimdb demo: station valley (") and " pid " in ln]
    assert len(starts) == 2 and not starts[1].endswith(f" pid {pid}"), starts
    assert summary["stations"]["valley"]["restarts"] == 1
    assert summary["stations"]["alpine"]["restarts"] == 0
    assert summary["stations"]["alpine"]["values"] >= 100
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of the killed station's process group is left


def test_ctrl_c_stops_everything_within_two_seconds(demos: Any) -> None:
    d = demos()  # no --duration: runs until interrupted
    pids = [d.pid_of(n) for n in STATIONS]
    d.wait_line(lambda s: s.startswith("[") and " coast " in s and s.endswith(" ok"))
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGINT)
    d.proc.wait(10)
    took = time.monotonic() - t0
    assert d.proc.returncode == 0
    assert took < 2.0, f"stopping took {took:.2f} s"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_without_micropython_the_station_runs_on_cpython_with_one_note(demos: Any) -> None:
    d = demos("--duration", "3", env={"AIMDB_MICROPYTHON_RUNNER": "/nonexistent/run.mjs"})
    summary = d.finish()
    notes = [ln for ln in d.lines if "MicroPython unavailable" in ln]
    assert len(notes) == 1 and "'valley' runs on CPython" in notes[0]
    assert summary["stations"]["valley"]["runtime"] == "asyncio"
    assert summary["stations"]["valley"]["values"] >= 5


@pytest.mark.parametrize("columns", [80, 160])
def test_live_table_on_a_terminal(tmp_path: Path, columns: int) -> None:
    """Without --headless on a TTY the demo draws the rich table, then stops cleanly.

    At 80 columns nothing is cut short (runtime and link are left out); wide, they are shown.
    """
    import pty
    import select

    master, slave = pty.openpty()
    env = {**os.environ, "AIMDB_RUNTIME_DIR": str(tmp_path), "LINES": "40", "TERM": "xterm"}
    env["COLUMNS"] = str(columns)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aimdb._demo", "--duration", "3"], stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(10) == 0
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    assert "aimdb weather mesh" in text and "dew °C" in text and "lost/lag" in text
    assert all(name in text for name in STATIONS)
    if columns == 80:
        assert "…" not in text, text[-2000:]
        assert (" mpy " if MPY is not None else " aio ") in text and " trio " in text, text[-2000:]
    else:
        assert "micropython" in text and "aimdb/pipe" in text
    assert "aimdb demo: stopped cleanly" in text and "Traceback" not in text


def test_stations_exit_when_the_hub_is_killed(demos: Any) -> None:
    """SIGKILL leaves the hub no chance to clean up: the stations notice and exit on their own."""
    d = demos()
    pids = [d.pid_of(n) for n in STATIONS]
    d.wait_line(lambda s: s.startswith("[") and " valley " in s and s.endswith(" ok"))
    d.proc.kill()
    d.proc.wait(10)
    deadline = time.monotonic() + 10
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _group_alive(p)]
    for p in alive:  # do not leave them behind, but fail
        os.killpg(p, signal.SIGKILL)
    assert not alive, f"station process groups still running: {alive}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of the dead hub are reaped by init; only a running member counts.
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return any(not s.startswith("Z") for s in out.split())


def test_dashboard_and_metrics_urls_are_printed_and_served(demos: Any) -> None:
    pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")
    import urllib.request

    d = demos("--duration", "4")
    _, line = d.wait_line(lambda s: s.startswith("aimdb demo: dashboard http://"))
    url = line.split("dashboard ", 1)[1].split()[0]
    assert line.endswith(f"metrics {url}metrics")
    d.wait_line(lambda s: s.startswith("[") and " alpine " in s)
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'aimdb_record_produced_total{key="station.alpine.temperature"}' in text
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
    summary = d.finish()
    assert summary["dashboard"] == url and summary["metrics"] == url + "metrics"
    off = demos("--duration", "1", "--no-http")
    summary = off.finish()
    assert summary["dashboard"] is None and summary["metrics"] is None
    assert not [ln for ln in off.lines if ln.startswith("aimdb demo: dashboard")]


@pytest.mark.slow
@needs_prometheus
def test_a_real_prometheus_scrapes_the_running_demo(demos: Any) -> None:
    pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")
    d = demos("--duration", "90")
    _, line = d.wait_line(lambda s: s.startswith("aimdb demo: dashboard http://"))
    target = line.split("dashboard http://", 1)[1].split()[0].rstrip("/")
    with Prometheus([target]) as prom:
        # The join's output counted by the demo's own hub, scraped and queried back.
        query = 'aimdb_record_produced_total{key="hub.alpine.dewpoint"} > 0'
        result = prom.wait_for(query, timeout=60)
        assert result[0]["metric"]["job"] == "aimdb"
        assert float(result[0]["value"][1]) > 0
        stages = prom.wait_for('aimdb_stage_running{key="hub.alpine.dewpoint"}')
        assert "join" in {s["metric"]["kind"] for s in stages}
    d.proc.send_signal(signal.SIGINT)  # interrupted: exit 0, the summary still the last line
    code = d.proc.wait(30)
    for t in d._threads:
        t.join(5)
    assert code == 0, "\n".join(d.lines + d.errors)
    assert json.loads(d.lines[-1])["stations"]["alpine"]["dewpoints"] >= 1
