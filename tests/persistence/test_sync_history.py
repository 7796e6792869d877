"""The blocking history of the sync API, against a real SQLite file."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

import aimdb.sync
from aimdb import AimDbBuilder, NotPersisted, RuntimeShutdown, SpmcRing
from aimdb.persistence import SqliteBackend


@dataclasses.dataclass
class Reading:
    n: int


def test_sync_history_returns_stored_values_and_typed_errors(tmp_path: Path) -> None:
    store = SqliteBackend(tmp_path / "hub.db", commit_interval=0.01)
    b = AimDbBuilder()
    b.configure(Reading, "r", lambda r: r.buffer(SpmcRing(capacity=64)).persist())
    b.configure(Reading, "plain", lambda r: r.buffer(SpmcRing(capacity=64)))
    b.with_persistence(store)
    with aimdb.sync.attach(b) as handle:
        p = handle.producer(Reading, "r")
        for i in range(5):
            p.set(Reading(i))
        deadline = time.monotonic() + 10
        while handle.call(lambda: store.statistics().written) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rows = handle.history("r", newest_first=True, limit=2)
        assert [s.value for s in rows] == [Reading(4), Reading(3)]
        with pytest.raises(NotPersisted):
            handle.history("plain")
    with pytest.raises(RuntimeShutdown):
        handle.history("r")
