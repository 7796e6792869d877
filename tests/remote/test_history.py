"""``record.history`` over a real Unix socket, against a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.persistence import SqliteBackend
from aimdb.remote import AsyncClient, HistoryRow, RemoteConfig, RemoteError, RemoteServer, start_server

from ._helpers import Raw, Temp, aio, short_tmpdir, wait_until

N = 12


class GatedBackend(SqliteBackend):
    """A real SQLite backend whose queries wait for ``gate`` (a slow store, made on purpose)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, commit_interval=0.01)
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    async def query(
        self, key: str, since_ns: int | None, until_ns: int | None, limit: int, newest_first: bool
    ) -> list[tuple[int, bytes]]:
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        return await super().query(key, since_ns, until_ns, limit, newest_first)


def _builder(backend: SqliteBackend) -> AimDbBuilder:
    b = AimDbBuilder()
    b.configure(Temp, "t.kept", lambda r: r.buffer(BufferCfg.SingleLatest()).persist())
    b.configure(Temp, "t.plain", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(
        Temp, "t.hidden", lambda r: r.buffer(BufferCfg.SingleLatest()).persist().remote(readable=False)
    )
    b.with_persistence(backend)
    return b


@contextlib.asynccontextmanager
async def _served(**cfg: Any) -> AsyncIterator[tuple[Any, RemoteServer, GatedBackend, list[int]]]:
    """A database with N stored values of ``t.kept`` (distinct times) and a server on a Unix socket."""
    with short_tmpdir() as d:
        backend = GatedBackend(os.path.join(d, "hub.db"))
        async with _builder(backend).build() as db:
            p = db.producer(Temp, "t.kept")
            for i in range(N):
                p.produce(Temp(float(i)))
                await asyncio.sleep(0.002)  # distinct timestamps
            assert await wait_until(lambda: backend.statistics().written >= N, timeout=10)
            ts = [s.ts_ns for s in await db.history("t.kept")]
            assert len(ts) == N and ts == sorted(set(ts))
            server = await start_server(db, RemoteConfig(unix=os.path.join(d, "db.sock"), **cfg))
            yield db, server, backend, ts


@aio
async def test_history_since_until_limit_order_and_more() -> None:
    async with _served() as (_, server, _b, ts):
        async with await AsyncClient.connect("unix://" + str(server.unix_path)) as c:
            assert c.server_info["protocol"] == "1.3" and c.server_info["limits"]["max_history"] == 1000
            page = await c.history("t.kept")
            assert page.key == "t.kept" and not page.more
            assert page.rows == tuple(HistoryRow(ts[i], {"celsius": float(i)}) for i in range(N))
            assert page.rows[-1].value == await c.get("t.kept")  # encoded exactly as record.get
            # since inclusive, until exclusive, exact ns
            page = await c.history("t.kept", since=ts[3], until=ts[7])
            assert [r.ts for r in page.rows] == ts[3:7] and not page.more
            assert (await c.history("t.kept", since=ts[-1] + 1)).rows == ()
            assert (await c.history("t.kept", until=ts[0])).rows == ()
            # datetime (naive is local time, aware in its zone) and timedelta bounds
            local = datetime.fromtimestamp(ts[3] // 1000 / 1e6)
            aware = datetime.fromtimestamp(ts[5] // 1000 / 1e6, timezone.utc)
            page = await c.history("t.kept", since=local, until=aware)
            assert [r.ts for r in page.rows] == ts[3:5]
            assert len((await c.history("t.kept", since=timedelta(minutes=5))).rows) == N
            assert (await c.history("t.kept", until=timedelta(minutes=5))).rows == ()
            # limit cuts: more says so
            page = await c.history("t.kept", limit=3)
            assert [r.ts for r in page.rows] == ts[:3] and page.more
            page = await c.history("t.kept", limit=N)
            assert len(page.rows) == N and not page.more
            page = await c.history("t.kept", limit=3, newest_first=True)
            assert [r.ts for r in page.rows] == ts[::-1][:3] and page.more
            page = await c.history("t.kept", since=ts[N - 2], newest_first=True)
            assert [r.value["celsius"] for r in page.rows] == [N - 1.0, N - 2.0] and not page.more
            # paging with ts + 1 loses nothing
            seen: list[int] = []
            since: int | None = None
            for _ in range(N):
                page = await c.history("t.kept", since=since, limit=5)
                seen.extend(r.ts for r in page.rows)
                if not page.more:
                    break
                since = page.rows[-1].ts + 1
            assert seen == ts
            # record.list marks the persisted records
            listed = {r["key"]: r["persisted"] for r in await c.list()}
            assert listed == {"t.kept": True, "t.plain": False}
            nodes = {n["key"]: n["persisted"] for n in (await c.graph())["nodes"]}
            assert nodes == {"t.kept": True, "t.plain": False}


@aio
async def test_history_reply_shape_on_the_wire() -> None:
    async with _served() as (_, server, _b, ts):
        raw = await Raw.open(str(server.unix_path))
        await raw.hello()
        r = await raw.call("record.history", {"key": "t.kept", "limit": 2, "newest_first": True})
        assert r["result"] == {
            "key": "t.kept",
            "rows": [
                {"ts": ts[-1], "value": {"celsius": N - 1.0}},
                {"ts": ts[-2], "value": {"celsius": N - 2.0}},
            ],
            "count": 2,
            "more": True,
        }
        raw.close()


@aio
async def test_history_errors_and_max_history() -> None:
    async with _served(max_history=5) as (_db, server, backend, _ts):
        raw = await Raw.open(str(server.unix_path))
        hello = (await raw.hello())["result"]
        assert hello["limits"]["max_history"] == 5

        async def code(params: dict[str, Any]) -> str:
            r = await raw.call("record.history", params)
            assert "error" in r, r
            return str(r["error"]["code"])

        assert await code({"key": "t.nope"}) == "not_found"
        assert await code({"key": "t.hidden"}) == "not_found"  # invisible: as if absent
        assert await code({"key": "t.plain"}) == "not_persisted"
        assert await code({}) == "invalid_params"
        assert await code({"key": "t.kept", "limit": 6}) == "invalid_params"
        r = await raw.call("record.history", {"key": "t.kept", "limit": 6})
        assert r["error"]["details"] == {"max_history": 5}
        assert await code({"key": "t.kept", "limit": 0}) == "invalid_params"
        assert await code({"key": "t.kept", "limit": True}) == "invalid_params"
        assert await code({"key": "t.kept", "since": "10m"}) == "invalid_params"
        assert await code({"key": "t.kept", "until": 1.5}) == "invalid_params"
        assert await code({"key": "t.kept", "since": -1}) == "invalid_params"
        assert await code({"key": "t.kept", "newest_first": "yes"}) == "invalid_params"
        # the default limit is max_history; more says there is more
        r = await raw.call("record.history", {"key": "t.kept"})
        assert r["result"]["count"] == 5 and r["result"]["more"] is True
        # the client raises the typed error
        async with await AsyncClient.connect("unix://" + str(server.unix_path)) as c:
            with pytest.raises(RemoteError) as e:
                await c.history("t.plain")
            assert e.value.code == "not_persisted"
            with pytest.raises(TypeError):
                await c.history("t.kept", since="10m")  # type: ignore[arg-type]
        # a store that fails to answer: the table is gone under it
        conn = sqlite3.connect(backend.path)
        try:
            conn.execute("DROP TABLE aimdb_values")
            conn.commit()
        finally:
            conn.close()
        r = await raw.call("record.history", {"key": "t.kept"})
        assert r["error"]["code"] == "persistence_error" and "no such table" in r["error"]["message"]
        assert (await raw.call("ping"))["result"]["pong"] is True  # the session goes on
        raw.close()


@aio
async def test_history_from_a_stopped_database_is_shutting_down() -> None:
    with short_tmpdir() as d:
        backend = GatedBackend(os.path.join(d, "hub.db"))
        server: RemoteServer | None = None
        async with _builder(backend).build() as db:
            db.producer(Temp, "t.kept").produce(Temp(1.0))
            server = RemoteServer(db, RemoteConfig(unix=os.path.join(d, "db.sock")))
            await server.start()  # not a service of the database: it outlives it
            raw = await Raw.open(str(server.unix_path))
            await raw.hello()
        try:
            r = await raw.call("record.history", {"key": "t.kept"})
            assert r["error"]["code"] == "shutting_down"
            raw.close()
        finally:
            await server.aclose()


@aio
async def test_a_slow_history_query_keeps_replies_in_order_and_the_loop_free() -> None:
    async with _served() as (_, server, backend, _ts):
        backend.gate = asyncio.Event()
        raw = await Raw.open(str(server.unix_path))
        await raw.hello()
        frames = [
            {"id": "h1", "method": "record.history", "params": {"key": "t.kept", "limit": 2}},
            {"id": "p", "method": "ping"},
            {"id": "g", "method": "record.get", "params": {"key": "t.kept"}},
            {"id": "h2", "method": "record.history", "params": {"key": "t.plain"}},  # fails at once
            {"id": "l", "method": "record.list"},
        ]
        await raw.send_bytes(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        assert await wait_until(lambda: backend.waiting == 1, timeout=10)
        # the event loop is free while the query waits: another connection is served
        async with await AsyncClient.connect("unix://" + str(server.unix_path)) as other:
            t0 = time.monotonic()
            await other.ping()
            assert time.monotonic() - t0 < 30  # liveness, not speed
        backend.gate.set()
        replies = [await raw.line(timeout=10) for _ in frames]
        assert [r["id"] for r in replies] == ["h1", "p", "g", "h2", "l"]
        assert replies[0]["result"]["count"] == 2 and replies[0]["result"]["more"] is True
        assert replies[3]["error"]["code"] == "not_persisted"
        raw.close()


@aio
async def test_a_client_cancelled_during_a_slow_history_query_leaves_the_server_serving() -> None:
    async with _served() as (_, server, backend, _ts):
        backend.gate = asyncio.Event()
        raw = await Raw.open(str(server.unix_path))
        await raw.hello()
        await raw.send_bytes(b'{"id":1,"method":"record.history","params":{"key":"t.kept"}}\n')
        assert await wait_until(lambda: backend.waiting == 1, timeout=10)
        raw.close()  # the peer goes away while its query waits (the bounded query finishes first)
        backend.gate.set()
        assert await wait_until(lambda: server.statistics().connections == 0, timeout=10)
        async with await AsyncClient.connect("unix://" + str(server.unix_path)) as c:
            assert len((await c.history("t.kept")).rows) == N
        assert server.statistics().failures == 0


@aio
async def test_sync_client_history_and_config_check() -> None:
    from aimdb.remote import SyncClient

    with pytest.raises(ValueError, match="max_history"):
        RemoteServer(None, RemoteConfig(max_history=0))  # type: ignore[arg-type]
    async with _served() as (_, server, _b, ts):
        endpoint = "unix://" + str(server.unix_path)

        def blocking() -> tuple[list[int], bool, str]:
            with SyncClient(endpoint) as c:
                page = c.history("t.kept", since=ts[1], limit=3, newest_first=False)
                try:
                    c.history("t.plain")
                except RemoteError as exc:
                    return [r.ts for r in page.rows], page.more, exc.code
            raise AssertionError("t.plain answered")

        rows, more, code = await asyncio.to_thread(blocking)
        assert rows == ts[1:4] and more and code == "not_persisted"
