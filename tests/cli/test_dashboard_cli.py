"""``aimdb dashboard`` in a subprocess, relaying to an instance in another subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")

INSTANCE = """
import asyncio, sys
from dataclasses import dataclass
from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import RemoteConfig, start_server

@dataclass
class Temp:
    celsius: float

async def tick(ctx, producer):
    n = 0
    while True:
        n += 1
        producer.produce(Temp(float(n)))
        await ctx.time.sleep(0.02)

async def main():
    b = AimDbBuilder()
    b.configure(Temp, "plant.temp", lambda r: r.buffer(BufferCfg.SingleLatest()).source(tick))
    async with b.build() as db:
        await start_server(db, RemoteConfig(name="dash-test", unix=sys.argv[1], token="t0k"))
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def _readline(p: subprocess.Popen[str], needle: str) -> str:
    assert p.stdout is not None
    for _ in range(50):  # bounded: a few lines at most come before it
        line = p.stdout.readline()
        if not line:
            break
        if needle in line:
            return line
    err = p.stderr.read() if p.stderr is not None and p.poll() is not None else ""
    raise AssertionError(f"{needle!r} never printed (exit {p.poll()}): {err}")


def _stop(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()
    p.communicate(timeout=10)


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="aimdb-d-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def _hello_and_one_event(url: str) -> tuple[Any, Any, dict[str, Any]]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url + "ws")
    await ws.send_str(json.dumps({"id": 1, "method": "hello", "params": {"version": "1.0", "token": "t0k"}}))
    hello = json.loads((await ws.receive(10)).data)
    assert hello["result"]["name"] == "dash-test", hello
    await ws.send_str(json.dumps({"id": 2, "method": "record.subscribe", "params": {"pattern": "plant.#"}}))
    for _ in range(100):  # the reply, then events of the ticking source
        msg = json.loads((await ws.receive(10)).data)
        if msg.get("event") == "update":
            return session, ws, msg
    raise AssertionError("no event arrived")


async def _closed_code(ws: Any) -> int:
    for _ in range(1000):  # bounded: events may still be queued before the close
        msg = await ws.receive(10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            break
    return int(ws.close_code)


def test_dashboard_relays_to_an_instance_and_closes_1012_when_it_dies(workdir: str) -> None:
    sock = os.path.join(workdir, "db.sock")
    inst = subprocess.Popen(
        [sys.executable, "-c", INSTANCE, sock], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    dash = None
    try:
        _readline(inst, "ready")
        dash = subprocess.Popen(
            [sys.executable, "-m", "aimdb._cli", "dashboard", "--connect", "unix://" + sock, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = _readline(dash, "dashboard: ")
        url = line.split("dashboard: ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")

        async def scenario() -> None:
            async with aiohttp.ClientSession() as s:
                async with s.get(url) as r:
                    assert r.status == 200 and "dashboard" in (await r.text()).lower()
                with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                    await s.ws_connect(url + "ws", headers={"Origin": "http://evil.example"})
                assert ei.value.status == 403
                async with s.ws_connect(url + "ws") as bad:  # refused by the instance: no reconnect loop
                    await bad.send_str(
                        json.dumps({"id": 1, "method": "hello", "params": {"version": "1.0", "token": "no"}})
                    )
                    assert json.loads((await bad.receive(10)).data)["error"]["code"] == "auth_failed"
                    assert await _closed_code(bad) == 1000
            session, ws, event = await _hello_and_one_event(url)
            assert event["key"] == "plant.temp"
            try:
                inst.send_signal(signal.SIGKILL)
                assert await _closed_code(ws) == 1012
            finally:
                await ws.close()
                await session.close()
            async with aiohttp.ClientSession() as s:  # the relay keeps serving; the page would retry
                async with s.ws_connect(url + "ws") as ws2:
                    assert await _closed_code(ws2) == 1012

        asyncio.run(asyncio.wait_for(scenario(), 60))
        dash.send_signal(signal.SIGINT)
        _, err = dash.communicate(timeout=15)
        assert dash.returncode in (0, 130), err
        assert "Traceback" not in err, err
        assert "relaying 3 connection(s); 2 closed because the instance was gone, 1 refused" in err, err
    finally:
        _stop(inst)
        if dash is not None:
            _stop(dash)


def test_dashboard_without_an_instance_fails_in_one_line(workdir: str) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "aimdb._cli",
            "dashboard",
            "--connect",
            "unix://" + os.path.join(workdir, "none.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 1
    assert p.stderr.startswith("error: cannot reach the instance"), p.stderr
    assert "Traceback" not in p.stderr
