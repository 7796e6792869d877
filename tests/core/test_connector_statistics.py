"""``db.connector_statistics()``: one typed snapshot per registered connector, on every runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import ConnectorStatistics as BrokerConnectorStatistics
from aimdb.connectors import MqttConnector
from aimdb.links import ConnectorStatistics
from aimdb.testing import MemoryConnector


@dataclass
class Temp:
    celsius: float


class Broken(MemoryConnector):
    """A connector whose ``run`` raises at once (policy ``log``: its task ends failed)."""

    on_error = "log"

    async def run(self, routes: Any) -> None:
        raise RuntimeError("the line is down")


def _builder(*connectors: Any) -> AimDbBuilder:
    b = AimDbBuilder()
    for c in connectors:
        b.with_connector(c)
    b.configure(
        Temp, "out", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4)).link_to("memory://sensors/t").finish()
    )
    b.configure(Temp, "in", lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("broken://cmd").finish())
    return b


async def test_connectors_without_counters_show_their_task(rt: Any) -> None:
    mem, spare, broken = MemoryConnector(), MemoryConnector("spare"), Broken("broken")
    db = _builder(mem, spare, broken).build()
    assert db.connectors() == [mem, spare, broken]
    before = db.connector_statistics()
    assert list(before) == ["memory", "spare", "broken"]
    assert {s.state for s in before.values()} == {"idle"}
    async with db:
        for _ in range(200):
            if db.connector_statistics()["broken"].state == "failed":
                break
            await rt.sleep(0.005)
        snap = db.connector_statistics()
        assert all(type(s) is ConnectorStatistics for s in snap.values())
        m = snap["memory"]
        assert m.as_dict() == {
            "connected_since": None,
            "connects": 0,
            "disconnects": 0,
            "errors": 0,
            "failed_attempts": 0,
            "last_error": None,
            "last_error_at": None,
            "reconnects": 0,
            "state": "running",
            "url": "memory://",
        }
        assert snap["spare"].state == "idle"  # no link uses it: the database never ran it
        b = snap["broken"]
        assert (b.state, b.errors, b.url) == ("failed", 1, "broken://")
        assert b.last_error is not None and "the line is down" in b.last_error
        assert b.last_error_at is not None
    after = db.connector_statistics()
    assert after["memory"].state == "stopped"
    assert after["broken"].state == "failed"


def test_a_connector_with_counters_gives_its_own_snapshot_without_credentials() -> None:
    mqtt = MqttConnector("mqtt://sensor:hunter2@127.0.0.1:1", password="also-secret")
    b = AimDbBuilder().with_connector(mqtt)
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("mqtt://t").finish())
    db = b.build()
    snap = db.connector_statistics()
    assert list(snap) == ["mqtt"]
    s = snap["mqtt"]
    assert BrokerConnectorStatistics is ConnectorStatistics and isinstance(s, ConnectorStatistics)
    assert s == mqtt.statistics()
    assert (s.url, s.state, s.connects) == ("mqtt://127.0.0.1:1", "idle", 0)
    text = repr(s.as_dict())
    assert "hunter2" not in text and "sensor" not in text and "also-secret" not in text
