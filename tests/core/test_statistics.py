"""One statistics shape: every ``statistics()`` returns a frozen :class:`Statistics` snapshot.

Every statistics class of the public API derives from the one base, its ``as_dict()`` has
exactly the fields its docstring documents, assigning an attribute raises, and a snapshot
taken earlier does not move when the counters do (take one, make the counters move, take
another, compare).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import aimdb
from aimdb import AimDbBuilder, BufferCfg
from aimdb._core._stats import Statistics
from aimdb.connectors import ConnectorStatistics, MqttConnector
from aimdb.links import LinkStatistics, SerialLink
from aimdb.persistence import PersistStatistics, SqliteBackend, SqliteStatistics
from aimdb.remote import AimdbConnector, RemoteConfig, RemoteServer, RemoteServerStatistics
from aimdb.remote._connector import AimdbLinkStatistics
from aimdb.sync import SyncConsumerStatistics, SyncProducerStatistics, attach

from ..remote._helpers import short_tmpdir

pytestmark = pytest.mark.timeout(60)

#: every statistics class a user can get from a ``statistics()`` call
CLASSES: list[type] = [
    aimdb.BufferStatistics,
    aimdb.StageStatistics,
    aimdb.TaskStatistics,
    LinkStatistics,
    ConnectorStatistics,
    AimdbLinkStatistics,
    RemoteServerStatistics,
    SyncProducerStatistics,
    SyncConsumerStatistics,
    PersistStatistics,
    SqliteStatistics,
]

PUBLIC_MODULES = ["aimdb", "aimdb.links", "aimdb.connectors", "aimdb.remote", "aimdb.sync",
                  "aimdb.persistence"]


@dataclass
class Temp:
    celsius: float


def documented_fields(cls: type) -> set[str]:
    """The names in the ``Attributes:`` sections of ``cls`` and of its statistics bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Statistics or not (isinstance(klass, type) and issubclass(klass, Statistics)):
            continue
        doc = inspect.cleandoc(klass.__doc__ or "")
        section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
        names.update(re.findall(r"^    (\w+):", section, re.MULTILINE))
    return names


def check(snapshot: Any, cls: type) -> None:
    """``snapshot`` is a frozen ``cls`` whose ``as_dict()`` keys are the documented fields."""
    assert type(snapshot) is cls
    assert isinstance(snapshot, Statistics)
    d = snapshot.as_dict()
    assert set(d) == documented_fields(cls), cls.__name__
    assert list(d) == list(dict.fromkeys(d))
    for name in d:
        with pytest.raises(AttributeError):
            setattr(snapshot, name, 0)
    with pytest.raises(AttributeError):
        snapshot.something_new = 1


def test_every_public_statistics_class_is_a_statistics_snapshot() -> None:
    found = set()
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", ()):
            if name.endswith("Statistics"):
                found.add(getattr(mod, name))
    assert found <= set(CLASSES), found - set(CLASSES)
    for cls in CLASSES:
        assert issubclass(cls, Statistics), cls
        assert documented_fields(cls), cls  # it documents its fields
        # no own copies of what the base does
        for method in ("as_dict", "__repr__", "__eq__", "__setattr__"):
            assert method not in vars(cls), (cls, method)


@pytest.mark.runtimes("asyncio")  # the remote server and the aimdb:// connector are asyncio's
async def test_snapshots_do_not_move_with_the_counters(rt: Any) -> None:
    written: list[bytes] = []
    seen: list[Temp] = []

    async def tap(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            seen.append(v)

    with short_tmpdir() as d:
        station = AimDbBuilder().with_connector(SerialLink(written.append, hello_every=0))
        station.configure(
            Temp,
            "t",
            lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)).tap(tap).persist().link_to("aimdb://t"),
        )
        station.with_persistence(SqliteBackend(Path(d) / "s.db"))
        hub_conn = AimdbConnector("unix://" + os.path.join(d, "s.sock"), backoff=(0.02, 0.1))
        hub = AimDbBuilder().with_connector(hub_conn)
        hub.configure(Temp, "mirror", lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("aimdb://t"))
        async with station.build() as db:
            server = RemoteServer(db, RemoteConfig(unix=os.path.join(d, "s.sock")))
            async with server:
                p = db.producer(Temp, "t")
                p.produce(Temp(1.0))
                await _until(lambda: len(seen) == 1 and db.link_statistics()[0].sent == 1)
                await _until(lambda: db.persistence_statistics().as_dict()["written"] == 1)  # type: ignore[union-attr]

                def take() -> dict[str, Any]:
                    return {
                        "buffer": db.buffer("t").statistics(),  # type: ignore[union-attr]
                        "stage": db.stage_statistics("t")[0],
                        "task": next(t for t in db.tasks() if t.kind == "stage"),
                        "link": db.link_statistics()[0],
                        "route_link": MqttConnector("mqtt://127.0.0.1:1").statistics(),
                        "connector": hub_conn.statistics(),
                        "server": server.statistics(),
                        "persist": db._persister.feeds["t"].statistics(),  # type: ignore[union-attr]
                        "store": db.persistence_statistics(),
                    }

                before = take()
                frozen = {k: v.as_dict() for k, v in before.items()}
                for name, cls in [
                    ("buffer", aimdb.BufferStatistics),
                    ("stage", aimdb.StageStatistics),
                    ("task", aimdb.TaskStatistics),
                    ("link", LinkStatistics),
                    ("route_link", ConnectorStatistics),
                    ("connector", AimdbLinkStatistics),
                    ("server", RemoteServerStatistics),
                    ("persist", PersistStatistics),
                    ("store", SqliteStatistics),
                ]:
                    check(before[name], cls)

                # the counters move on: more values, and a hub connecting to the server
                for i in range(2, 6):
                    p.produce(Temp(float(i)))
                async with hub.build() as hdb:
                    await hub_conn.wait_connected(10)
                    await _until(lambda: hdb.buffer("mirror").peek() == Temp(5.0))  # type: ignore[union-attr]
                    await _until(lambda: len(seen) == 5 and db.link_statistics()[0].sent == 5)
                    await _until(lambda: db.persistence_statistics().as_dict()["written"] == 5)  # type: ignore[union-attr]
                    after = take()
                    assert after["connector"].connects == 1 and after["connector"].state == "connected"
        for k, d0 in frozen.items():
            assert before[k].as_dict() == d0, k  # the old snapshot did not move
        assert before["buffer"].produced == 1 and after["buffer"].produced == 5
        assert before["stage"].values == 1 and after["stage"].values == 5
        assert before["link"].sent == 1 and after["link"].sent == 5
        assert before["connector"].connects == 0 and before["connector"].state == "idle"
        assert before["server"].connections_total == 0 and after["server"].connections_total >= 1
        assert before["store"].written == 1 and after["store"].written == 5
        assert before["persist"].stored == 1 and after["persist"].stored == 5
        assert before["buffer"] != after["buffer"] and before["buffer"] == before["buffer"]


def test_sync_statistics_are_snapshots() -> None:
    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)))
    with attach(b) as h:
        prod = h.producer(Temp, "t")
        cons = h.consumer(Temp, "t")
        prod.set(Temp(1.0))
        prod.flush(10)
        assert cons.get(timeout=10) == Temp(1.0)
        p0, c0 = prod.statistics(), cons.statistics()
        check(p0, SyncProducerStatistics)
        check(c0, SyncConsumerStatistics)
        frozen = (p0.as_dict(), c0.as_dict())
        for i in range(2, 5):
            prod.set(Temp(float(i)))
        prod.flush(10)
        for _ in range(3):
            cons.get(timeout=10)
        p1, c1 = prod.statistics(), cons.statistics()
    assert (p0.as_dict(), c0.as_dict()) == frozen
    assert (p0.accepted, p1.accepted) == (1, 4)
    assert (c0.received, c1.received) == (1, 4)


async def _until(cond: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")
