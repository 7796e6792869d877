"""``/metrics``: the Prometheus text format, checked with prometheus_client's parser and a real Prometheus."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")
prometheus_client = pytest.importorskip("prometheus_client", reason="needs the dashboard extra")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from aimdb import AimDbBuilder, BufferCfg  # noqa: E402
from aimdb.remote._metrics import AimDbCollector, MetricsRenderer, format_value, render_text  # noqa: E402
from aimdb.testing import MemoryConnector  # noqa: E402

from .._prometheus import Prometheus, needs_prometheus  # noqa: E402
from ._helpers import aio, served, wait_until  # noqa: E402


@dataclass
class Reading:
    value: float


async def _ticks(ctx: Any, producer: Any) -> None:
    for i in range(3):
        producer.produce(Reading(float(i)))
    await ctx.time.sleep(3600)


def metered_builder() -> AimDbBuilder:
    b = AimDbBuilder()
    b.with_connector(MemoryConnector())
    b.configure(
        Reading,
        'plant"a"\\b',  # a key that needs escaping in label values
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).source(_ticks).link_to("memory://out").finish(),
    )
    b.configure(Reading, "plant.b", lambda r: r.buffer(BufferCfg.SingleLatest()))
    return b


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


@aio
async def test_metrics_parse_and_match_statistics() -> None:
    async with served(metered_builder(), http="127.0.0.1:0") as (db, server):
        key = 'plant"a"\\b'
        assert await wait_until(lambda: db.record_statistics(key)["links"][0]["sent"] == 3, 5)
        url = server.http_url
        assert url is not None
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await r.text()
        got = _samples(text)
        st = db.record_statistics(key)
        buf = st["buffer"]
        k = frozenset({("key", key)})
        assert got[("aimdb_record_produced_total", k)] == buf["produced"] == 3
        assert got[("aimdb_record_occupancy", k)] == buf["occupancy"]
        assert got[("aimdb_record_capacity", k)] == 16
        assert got[("aimdb_record_dropped_total", k)] == buf["dropped"]
        stage = frozenset({("key", key), ("stage", "source"), ("kind", "source")})
        assert got[("aimdb_stage_values_total", stage)] == st["stages"][0]["values"] == 3
        assert got[("aimdb_stage_running", stage)] == 1
        assert got[("aimdb_stage_failures_total", stage)] == 0
        link = frozenset({("key", key), ("url", "memory://out"), ("direction", "out")})
        assert got[("aimdb_link_sent_total", link)] == 3
        state = st["links"][0]["state"]
        assert got[("aimdb_link_state", link | {("state", state)})] == 1
        assert got[("aimdb_link_up", link)] == (1 if state in ("connected", "running") else 0)
        assert got[("aimdb_record_produced_total", frozenset({("key", "plant.b")}))] == 0
        assert got[("aimdb_remote_connections", frozenset())] == 0
        conn = frozenset({("scheme", "memory"), ("url", "memory://")})
        assert got[("aimdb_connector_up", conn)] == 1
        assert got[("aimdb_connector_state", conn | {("state", "running")})] == 1
        for name in ("connects", "reconnects", "failed_attempts", "disconnects", "errors"):
            assert got[(f"aimdb_connector_{name}_total", conn)] == 0, name
        assert got[("aimdb_remote_events_dropped_total", frozenset())] == 0


@aio
async def test_text_writer_is_byte_identical_to_generate_latest() -> None:
    async with served(metered_builder(), http="127.0.0.1:0") as (db, server):
        assert await wait_until(lambda: db.record_statistics("plant.b")["buffer"] is not None, 5)
        renderer = MetricsRenderer(db, server.statistics)
        fams = renderer.families()
        registry = prometheus_client.CollectorRegistry()
        registry.register(AimDbCollector(lambda: fams))
        assert render_text(fams) == prometheus_client.generate_latest(registry)


def test_value_formatting_matches_prometheus_client() -> None:
    from prometheus_client.utils import floatToGoString

    for v in (0, 1, 3, 0.5, 123456.0, 1234567.0, 12345678, 1e20, 2.5e-7, float("inf"), float("nan"), -3.0):
        assert format_value(v) == floatToGoString(v), v


@aio
async def test_metrics_can_be_turned_off() -> None:
    async with served(http="127.0.0.1:0", metrics=False) as (_, server):
        assert server.http_url is not None
        async with aiohttp.ClientSession() as s:
            async with s.get(server.http_url + "metrics") as r:
                assert r.status == 404


# ------------------------------------------------------------------ a real Prometheus server


@pytest.mark.slow
@needs_prometheus
@aio
async def test_a_real_prometheus_scrapes_the_instance() -> None:
    async with served(metered_builder(), http="127.0.0.1:0") as (_, server):
        url = server.http_url
        assert url is not None
        target = url[len("http://") :].rstrip("/")
        with Prometheus([target]) as prom:
            result = await asyncio.to_thread(prom.wait_for, 'aimdb_record_produced_total{key="plant.b"}')
            assert result[0]["metric"]["job"] == "aimdb"
            assert float(result[0]["value"][1]) == 0.0
            up = await asyncio.to_thread(prom.query, "up")
            assert up and up[0]["value"][1] == "1"
