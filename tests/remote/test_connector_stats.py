"""``stats`` (no key) carries every connector's state and counters: real MQTT connectors,
one on the machine's Mosquitto and one pointed at a closed port, seen over a real socket
and on ``/metrics``."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector, ReconnectPolicy
from aimdb.remote import AsyncClient

from ._helpers import Temp, aio, served

pytestmark = pytest.mark.timeout(60)

FAST_RETRY = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mqtt_builder(url: str, **kw: Any) -> AimDbBuilder:
    b = AimDbBuilder().with_connector(MqttConnector(url, reconnect=FAST_RETRY, **kw))
    b.configure(
        Temp,
        "plant.temp",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).link_to("mqtt://aimdb-test/connstats").finish(),
    )
    return b


async def _connectors_until(c: AsyncClient, cond: Any, tries: int = 200) -> list[dict[str, Any]]:
    """Poll ``stats`` (bounded) until ``cond(connectors)`` holds; return the last reply's list."""
    for _ in range(tries):
        connectors: list[dict[str, Any]] = (await c.stats())["connectors"]
        if cond(connectors):
            break
        await asyncio.sleep(0.05)
    return connectors


async def _metrics(url: str) -> str:
    aiohttp = pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")
    async with aiohttp.ClientSession() as s, s.get(url + "metrics") as r:
        assert r.status == 200
        return str(await r.text())


@aio
async def test_stats_shows_a_connected_mqtt_connector(mosquitto_url: str) -> None:
    async with served(_mqtt_builder(mosquitto_url), http="127.0.0.1:0") as (db, server):
        async with await AsyncClient.connect("unix://" + str(server.unix_path)) as c:
            conns = await _connectors_until(c, lambda cs: cs[0]["state"] == "connected")
        assert len(conns) == 1
        got = conns[0]
        assert got["scheme"] == "mqtt"
        assert got["url"] == "mqtt://127.0.0.1:1883"
        assert got["state"] == "connected"
        assert got["connects"] == 1 and got["failed_attempts"] == 0 and got["errors"] == 0
        assert isinstance(got["connected_since"], float)
        assert set(got) == {"scheme", *db.connector_statistics()["mqtt"].as_dict()}
        assert server.http_url is not None
        text = await _metrics(server.http_url)
        where = 'scheme="mqtt",url="mqtt://127.0.0.1:1883"'
        assert "aimdb_connector_up{" + where + "} 1.0" in text
        state = 'scheme="mqtt",state="connected",url="mqtt://127.0.0.1:1883"'
        assert "aimdb_connector_state{" + state + "} 1.0" in text
        assert "aimdb_connector_connects_total{" + where + "} 1.0" in text


@aio
async def test_stats_shows_failed_attempts_and_the_last_error_without_credentials() -> None:
    port = _closed_port()
    url = f"mqtt://plantuser:s3cr3t-pw@127.0.0.1:{port}"
    async with served(_mqtt_builder(url, password="other-pw"), http="127.0.0.1:0") as (_, server):
        async with await AsyncClient.connect("unix://" + str(server.unix_path)) as c:
            conns = await _connectors_until(c, lambda cs: cs[0]["failed_attempts"] >= 2)
            reply = await c.stats()
        got = conns[0]
        assert got["scheme"] == "mqtt" and got["url"] == f"mqtt://127.0.0.1:{port}"
        assert got["failed_attempts"] >= 2
        assert got["connects"] == 0 and got["state"] != "connected"
        assert got["last_error"] and isinstance(got["last_error_at"], float)
        assert server.http_url is not None
        text = await _metrics(server.http_url)
        assert f'aimdb_connector_up{{scheme="mqtt",url="mqtt://127.0.0.1:{port}"}} 0.0' in text
        for secret in ("s3cr3t-pw", "other-pw", "plantuser"):
            assert secret not in repr(reply), reply
            assert secret not in text
