"""Every method and error path of the server, spoken with a bare socket or the client."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import AsyncClient, RemoteAccess, RemoteConfig, RemoteError, RemoteServer, serve

from ._helpers import Raw, Setpoint, Temp, aio, builder, served, short_tmpdir, wait_until

# ------------------------------------------------------------------ handshake and framing


@aio
async def test_hello_first_then_everything_else() -> None:
    async with served() as (_, server):
        raw = await Raw.open(server.unix_path)
        r = await raw.call("record.list")
        assert r["error"]["code"] == "handshake_required"
        r = await raw.hello(client="t")
        res = r["result"]
        assert res["protocol"] == "1.3" and res["permissions"] == ["read"] and res["writable"] == []
        assert res["limits"]["max_connections"] == 16
        assert (await raw.call("ping"))["result"]["pong"] is True
        raw.close()


@aio
async def test_incompatible_major_is_refused_and_closed() -> None:
    async with served() as (_, server):
        raw = await Raw.open(server.unix_path)
        r = await raw.call("hello", {"version": "2.0"})
        assert r["error"]["code"] == "version_mismatch"
        assert r["error"]["details"]["server_version"] == "1.3"
        assert await raw.closed()
        raw2 = await Raw.open(server.unix_path)
        assert (await raw2.call("hello", {}))["error"]["code"] == "version_mismatch"
        assert await raw2.closed()


@aio
async def test_token_required_wrong_token_closes() -> None:
    async with served(token="s3cret") as (_, server):
        raw = await Raw.open(server.unix_path)
        assert (await raw.hello())["error"]["code"] == "auth_failed"
        assert await raw.closed()
        raw = await Raw.open(server.unix_path)
        assert (await raw.hello(token="wrong"))["error"]["code"] == "auth_failed"
        assert await raw.closed()
        raw = await Raw.open(server.unix_path)
        assert (await raw.hello(token="s3cret"))["result"]["authenticated"] is True
        raw.close()
        with pytest.raises(RemoteError) as ei:
            await AsyncClient.connect(server.endpoints[0], token="nope")
        assert ei.value.code == "auth_failed"
        assert server.statistics().auth_failures == 3


@aio
async def test_malformed_frames_get_errors_and_session_continues() -> None:
    async with served(max_frame=256) as (_, server):
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        await raw.send_bytes(b"this is not json\n")
        assert (await raw.line())["error"]["code"] == "parse_error"
        await raw.send_bytes(b"[1,2,3]\n")
        assert (await raw.line())["error"]["code"] == "parse_error"
        await raw.send_bytes(b"\xff\xfe\x00\n")
        assert (await raw.line())["error"]["code"] == "parse_error"
        await raw.send_bytes(b'{"id":1,"method":"record.list","params":{"pattern":"' + b"x" * 1000 + b'"}}\n')
        r = await raw.line()
        assert r["error"]["code"] == "frame_too_large" and r["id"] is None
        await raw.send_bytes(b'{"id":7}\n')
        r = await raw.line()
        assert r["id"] == 7 and r["error"]["code"] == "invalid_request"
        await raw.send_bytes(b'{"id":8,"method":"record.get","params":[1]}\n')
        assert (await raw.line())["error"]["code"] == "invalid_params"
        await raw.send_bytes(b'{"id":[1],"method":"ping"}\n')
        assert (await raw.line())["error"]["code"] == "invalid_request"
        r = await raw.call("no.such.method")
        assert r["error"]["code"] == "method_not_found" and "record.get" in r["error"]["details"]["methods"]
        assert "result" in await raw.call("ping")  # still alive
        assert server.statistics().bad_frames >= 4
        raw.close()


@aio
async def test_half_a_frame_then_disconnect_leaves_nothing() -> None:
    async with served() as (_, server):
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        await raw.send_bytes(b'{"id":2,"method":"record.sub')
        raw.writer.transport.abort()
        assert await wait_until(lambda: server.statistics().connections == 0)
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            assert await c.ping() >= 0


@aio
async def test_handshake_timeout() -> None:
    async with served(handshake_timeout=0.2) as (_, server):
        raw = await Raw.open(server.unix_path)
        r = await raw.line(timeout=3)
        assert r["error"]["code"] == "handshake_required"
        assert await raw.closed()


# ------------------------------------------------------------------ list / get / set


@aio
async def test_record_list_metadata() -> None:
    async with served(writable=["config.#", "derived.#", "sensor.tick"]) as (db, server):
        db.producer(Temp, "station.1.temp").produce(Temp(1.0))
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            recs = {r["key"]: r for r in await c.list()}
            assert "hidden.secret" not in recs
            r = recs["station.1.log"]
            assert (r["type"], r["buffer"], r["capacity"], r["writer"]) == ("Temp", "spmc_ring", 8, "none")
            assert recs["station.1.temp"]["has_value"] is True
            assert recs["station.1.temp"]["stats"]["produced"] == 1
            assert recs["derived.double"]["writer"] == "transform" and recs["derived.double"]["inputs"] == [
                "station.1.temp"
            ]
            assert recs["derived.join"]["writer"] == "join"
            writable = sorted(k for k, v in recs.items() if v["writable"])
            assert writable == ["config.cmd", "config.setpoint", "sensor.tick"]
            assert sorted(c.server_info["writable"]) == writable
            assert [r["key"] for r in await c.list("station.*.temp")] == ["station.1.temp", "station.2.temp"]


@aio
async def test_record_get() -> None:
    async with served() as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            with pytest.raises(RemoteError) as ei:
                await c.get("station.1.temp")
            assert ei.value.code == "no_value"
            with pytest.raises(RemoteError) as ei:
                await c.get("station.9.temp")
            assert ei.value.code == "not_found"
            with pytest.raises(RemoteError) as ei:
                await c.get("hidden.secret")
            assert ei.value.code == "not_found"
            db.producer(Temp, "station.1.temp").produce(Temp(21.5))
            assert await c.get("station.1.temp") == {"celsius": 21.5}
            ring = db.producer(Temp, "station.1.log")
            for i in range(20):
                ring.produce(Temp(float(i)))
            assert await c.get("station.1.log") == {"celsius": 19.0}  # newest, nothing consumed
            db.producer(Setpoint, "config.cmd").produce(Setpoint(3.0))
            assert await c.get("config.cmd") == {"celsius": 3.0}
            assert db.buffer("config.cmd").peek() == Setpoint(3.0)  # get never takes a command
            with pytest.raises(RemoteError) as ei:
                await c.call("record.get", {})
            assert ei.value.code == "invalid_params"


@aio
async def test_record_set_permissions() -> None:
    async with served(writable=["config.#", "derived.#", "sensor.tick"]) as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            assert await c.set("config.setpoint", {"celsius": 22}) == {"celsius": 22.0}
            assert db.buffer("config.setpoint").peek() == Setpoint(22.0)
            assert await c.get("config.setpoint") == {"celsius": 22.0}
            for key, why in [
                ("derived.double", "transform"),  # allow-listed, but has a transform
                ("derived.join", "join"),
                ("config.locked", "remote(writable=True)"),  # allow-listed, declared not writable
                ("station.1.temp", "remote(writable=True)"),  # passive, declared read-only
            ]:
                with pytest.raises(RemoteError) as ei:
                    await c.set(key, {"celsius": 1})
                assert ei.value.code == "permission_denied", key
                assert why in str(ei.value), str(ei.value)
            with pytest.raises(RemoteError) as ei:
                await c.set("config.setpoint", {"fahrenheit": "x"})
            assert ei.value.code == "invalid_value"
            with pytest.raises(RemoteError) as ei:
                await c.set("config.nope", 1)
            assert ei.value.code == "not_found"
            with pytest.raises(RemoteError) as ei:
                await c.call("record.set", {"key": "config.setpoint"})
            assert ei.value.code == "invalid_params"
            assert db.buffer("config.setpoint").peek() == Setpoint(22.0)


@aio
async def test_set_refused_on_source_record_even_when_allow_listed() -> None:
    async with served(builder(ticking=True), writable=["#"]) as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            assert "sensor.tick" not in c.server_info["writable"]
            with pytest.raises(RemoteError) as ei:
                await c.set("sensor.tick", {"celsius": 1})
            assert ei.value.code == "permission_denied" and "source" in str(ei.value)
    assert db.record("sensor.tick").writer_kind == "source"


@aio
async def test_declared_writable_but_not_allow_listed() -> None:
    async with served(writable=["config.setpoint"]) as (_, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            with pytest.raises(RemoteError) as ei:
                await c.set("sensor.tick", {"celsius": 1})
            assert ei.value.code == "permission_denied" and "allow-list" in str(ei.value)


@aio
async def test_read_only_server_refuses_writes() -> None:
    async with served() as (_, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            with pytest.raises(RemoteError) as ei:
                await c.set("config.setpoint", {"celsius": 1})
            assert ei.value.code == "permission_denied" and "read-only" in str(ei.value)


# ------------------------------------------------------------------ subscriptions


@aio
async def test_exact_subscribe_snapshot_and_updates() -> None:
    async with served() as (db, server):
        p = db.producer(Temp, "station.1.temp")
        p.produce(Temp(1.0))
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            sub = await c.subscribe("station.1.temp")
            assert sub.keys == ["station.1.temp"] and sub.snapshot == 1
            ev = await sub.next(2)
            assert (ev.key, ev.value, ev.seq, ev.snapshot, ev.gap) == (
                "station.1.temp",
                {"celsius": 1.0},
                1,
                True,
                0,
            )
            p.produce(Temp(2.0))
            ev = await sub.next(2)
            assert (ev.value, ev.seq, ev.snapshot) == ({"celsius": 2.0}, 2, False)
            nosnap = await c.subscribe("station.1.temp", snapshot=False)
            assert nosnap.snapshot == 0
            p.produce(Temp(3.0))
            assert (await nosnap.next(2)).seq == 1
            assert (await sub.next(2)).seq == 3


@aio
async def test_wildcard_subscribe_snapshot_then_updates() -> None:
    async with served() as (db, server):
        db.producer(Temp, "station.1.temp").produce(Temp(1.0))
        db.producer(Temp, "station.2.temp").produce(Temp(2.0))
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            sub = await c.subscribe("station.#")
            assert sub.keys == ["station.1.temp", "station.2.temp", "station.1.log"]
            assert sub.snapshot == 2  # the ring has no value yet
            snaps = [await sub.next(2) for _ in range(2)]
            assert [(e.key, e.seq, e.snapshot) for e in snaps] == [
                ("station.1.temp", 1, True),
                ("station.2.temp", 2, True),
            ]
            db.producer(Temp, "station.1.log").produce(Temp(9.0))
            ev = await sub.next(2)
            assert (ev.key, ev.seq, ev.snapshot) == ("station.1.log", 3, False)
            sub2 = await c.subscribe("*.*.temp")
            assert sub2.keys == ["station.1.temp", "station.2.temp"]
            with pytest.raises(RemoteError) as ei:
                await c.subscribe("nothing.#")
            assert ei.value.code == "not_found"
            with pytest.raises(RemoteError) as ei:
                await c.subscribe("hidden.secret")
            assert ei.value.code == "not_found"


@aio
async def test_slow_client_loses_events_not_memory_and_sees_gaps() -> None:
    b = AimDbBuilder()
    b.configure(Temp, "fast.ring", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1000)))
    async with served(b, queue_size=64) as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            sub = await c.subscribe("fast.ring", queue=4)
            assert sub.queue_size == 4
            p = db.producer(Temp, "fast.ring")
            for i in range(500):  # one burst: the feed pumps it all at once into a queue of 4
                p.produce(Temp(float(i)))
            (server_sub,) = [s for sess in server._sessions for s in sess.subs.values()]
            assert len(server_sub.queue) <= 4  # bounded whatever the client does
            events = []
            while True:
                try:
                    events.append(await sub.next(0.3))
                except TimeoutError:
                    break
            assert events[-1].seq == 500 and events[-1].value == {"celsius": 499.0}
            assert len(events) <= 8
            assert sum(e.gap for e in events) + len(events) == 500
            assert sub.missed == 500 - len(events)
            stats = await sub.close()
            assert stats["dropped"] == 500 - len(events)


@aio
async def test_ring_lag_on_the_feed_shows_as_gap() -> None:
    async with served() as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            sub = await c.subscribe("station.1.log")
            p = db.producer(Temp, "station.1.log")
            for i in range(50):  # ring capacity 8: the server's reader lags by 42
                p.produce(Temp(float(i)))
            events = [await sub.next(2) for _ in range(8)]
            assert events[0].gap == 42 and events[0].seq == 43
            assert [e.value["celsius"] for e in events] == [float(i) for i in range(42, 50)]
            assert server.statistics().feed_lagged == 42


@aio
async def test_subscription_limit_and_unsubscribe() -> None:
    async with served(max_subscriptions=2) as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            s1 = await c.subscribe("station.1.temp")
            await c.subscribe("station.2.temp")
            with pytest.raises(RemoteError) as ei:
                await c.subscribe("station.1.log")
            assert ei.value.code == "too_many_subscriptions"
            assert server.statistics().feeds == 2
            res = await s1.close()
            assert res["sub"] == s1.id
            assert server.statistics().feeds == 1
            assert db.buffer("station.1.temp").statistics().readers == 2  # transform + join only
            await c.subscribe("station.1.log")
            with pytest.raises(RemoteError) as ei:
                await c.call("record.unsubscribe", {"sub": "s99"})
            assert ei.value.code == "not_found"


@aio
async def test_abrupt_disconnect_releases_subscriptions_and_readers() -> None:
    async with served() as (db, server):
        before = {i.key: db.buffer(i.key).statistics().readers for i in db.records()}
        raw = await Raw.open(server.unix_path)
        await raw.hello()
        for pattern in ("station.#", "config.*"):
            assert "result" in await raw.call("record.subscribe", {"pattern": pattern})
        assert "result" in await raw.call("record.drain", {"key": "station.1.log"})
        assert db.buffer("station.1.log").statistics().readers == 2  # one feed + one drain cursor
        raw.writer.transport.abort()
        assert await wait_until(lambda: server.statistics().connections == 0)
        st = server.statistics()
        assert st.subscriptions == 0 and st.feeds == 0
        assert {i.key: db.buffer(i.key).statistics().readers for i in db.records()} == before


@aio
async def test_mailbox_subscribe_watches_without_taking() -> None:
    async with served() as (db, server):
        p = db.producer(Setpoint, "config.cmd")
        reader = db.consumer(Setpoint, "config.cmd").subscribe()
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            sub = await c.subscribe("config.cmd")
            assert sub.snapshot == 0
            p.produce(Setpoint(1.0))
            ev = await sub.next(2)
            assert (ev.value, ev.snapshot) == ({"celsius": 1.0}, False)
            assert reader.try_recv() == Setpoint(1.0)  # the command is still there for its consumer
            p.produce(Setpoint(2.0))  # pending; a new subscription gets it as snapshot only
            sub2 = await c.subscribe("config.cmd")
            assert sub2.snapshot == 1
            assert (await sub2.next(2)).value == {"celsius": 2.0}
            p.produce(Setpoint(3.0))
            ev2 = await sub2.next(2)
            assert (ev2.value, ev2.snapshot) == ({"celsius": 3.0}, False)  # no duplicate of 2.0
            assert [(await sub.next(2)).value["celsius"] for _ in range(2)] == [2.0, 3.0]
            await sub.close()
            await sub2.close()
            assert server.statistics().feeds == 0
            p.produce(Setpoint(4.0))
            assert reader.try_recv() == Setpoint(4.0)


@aio
async def test_many_clients_share_one_feed_per_record() -> None:
    async with served() as (db, server):
        before = db.buffer("station.1.temp").statistics().readers  # transform and join inputs
        clients = [await AsyncClient.connect(server.endpoints[0]) for _ in range(5)]
        subs = [await c.subscribe("station.1.temp", snapshot=False) for c in clients]
        assert db.buffer("station.1.temp").statistics().readers == before + 1  # one feed for all
        assert server.statistics().feeds == 1
        db.producer(Temp, "station.1.temp").produce(Temp(5.0))
        for s in subs:
            assert (await s.next(2)).value == {"celsius": 5.0}
        for c in clients:
            await c.aclose()


# ------------------------------------------------------------------ drain, graph, stats


@aio
async def test_record_drain() -> None:
    async with served(writable=["config.cmd"]) as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            assert await c.drain("station.1.log") == []  # creates the cursor
            p = db.producer(Temp, "station.1.log")
            for i in range(3):
                p.produce(Temp(float(i)))
            assert await c.drain("station.1.log", limit=2) == [{"celsius": 0.0}, {"celsius": 1.0}]
            assert await c.drain("station.1.log") == [{"celsius": 2.0}]
            for i in range(20):
                p.produce(Temp(float(i)))
            res = await c.call("record.drain", {"key": "station.1.log"})
            assert res["count"] == 8 and res["lagged"] == 12
            db.producer(Temp, "station.1.temp").produce(Temp(4.0))
            assert await c.drain("station.1.temp") == [{"celsius": 4.0}]
            db.producer(Setpoint, "config.cmd").produce(Setpoint(1.0))
            assert await c.drain("config.cmd") == [{"celsius": 1.0}]
            with pytest.raises(RemoteError) as ei:
                await c.drain("nope")
            assert ei.value.code == "not_found"
    async with served() as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            with pytest.raises(RemoteError) as ei:
                await c.drain("config.cmd")  # would steal commands: needs write permission
            assert ei.value.code == "permission_denied"


@aio
async def test_graph_and_stats() -> None:
    async with served() as (db, server):
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            g = await c.graph()
            keys = [n["key"] for n in g["nodes"]]
            assert "hidden.secret" not in keys and "hidden.secret" not in g["order"]
            assert {"from": "station.1.temp", "to": "derived.double", "kind": "transform"} in g["edges"]
            assert g["order"].index("station.1.temp") < g["order"].index("derived.double")
            db.producer(Temp, "station.1.temp").produce(Temp(1.0))
            st = await c.stats()
            assert st["records"]["station.1.temp"]["buffer"]["produced"] == 1
            assert st["server"]["connections"] == 1
            one = await c.stats("station.1.temp")
            assert one["stats"]["buffer"]["produced"] == 1
            with pytest.raises(RemoteError) as ei:
                await c.reset_stats()
            assert ei.value.code == "permission_denied"
    async with served(allow_reset=True) as (db, server):
        db.producer(Temp, "station.1.temp").produce(Temp(1.0))
        async with await AsyncClient.connect(server.endpoints[0]) as c:
            await c.reset_stats()
            assert (await c.stats("station.1.temp"))["stats"]["buffer"]["produced"] == 0


# ------------------------------------------------------------------ limits and sockets


@aio
async def test_200_connections_with_limit_16() -> None:
    async with served(max_connections=16) as (_, server):

        async def one() -> str:
            try:
                c = await AsyncClient.connect(server.endpoints[0], timeout=10)
            except RemoteError as exc:
                return exc.code
            clients.append(c)
            return "ok"

        clients: list[AsyncClient] = []
        results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), 30)
        assert results.count("ok") == 16
        assert results.count("too_many_connections") == 184
        assert server.statistics().connections == 16
        for c in clients:
            assert await c.ping() >= 0
        await clients[0].aclose()
        assert await wait_until(lambda: server.statistics().connections == 15)
        late = await AsyncClient.connect(server.endpoints[0])
        await late.aclose()
        for c in clients[1:]:
            await c.aclose()


@aio
async def test_unix_socket_mode_stale_replacement_and_cleanup() -> None:
    with short_tmpdir() as d:
        path = os.path.join(d, "x.sock")
        # A stale socket file (nobody listens): replaced.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        async with AimDbBuilder().build() as db:
            server = RemoteServer(db, RemoteConfig(unix=path))
            await server.start()
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            # A live socket: not replaced.
            other = RemoteServer(db, RemoteConfig(unix=path))
            with pytest.raises(OSError, match="another process is listening"):
                await other.start()
            assert os.path.exists(path)
            async with await AsyncClient.connect("unix://" + path) as c:
                assert await c.ping() >= 0
            await server.aclose()
            assert not os.path.exists(path)
            # Not a socket: left alone.
            with open(path, "w") as f:
                f.write("keep me")
            with pytest.raises(OSError, match="not a socket"):
                await RemoteServer(db, RemoteConfig(unix=path)).start()
            with open(path) as f:
                assert f.read() == "keep me"


@aio
async def test_tcp_default_loopback_and_ipv6() -> None:
    async with served(unix=None, tcp="127.0.0.1:0") as (_, server):
        host, port = server.tcp_address
        assert host == "127.0.0.1" and port > 0
        async with await AsyncClient.connect(f"tcp://127.0.0.1:{port}") as c:
            assert c.server_info["protocol"] == "1.3"
    if socket.has_ipv6:
        try:
            async with served(unix=None, tcp="[::1]:0") as (_, server):
                async with await AsyncClient.connect(server.endpoints[0]) as c:
                    assert await c.ping() >= 0
        except OSError:
            pytest.skip("no IPv6 loopback")


@aio
async def test_default_unix_path_in_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    with short_tmpdir() as d:
        monkeypatch.setenv("AIMDB_RUNTIME_DIR", os.path.join(d, "rt"))
        async with AimDbBuilder().build() as db:
            async with RemoteServer(db, RemoteConfig(name="unit")) as server:
                assert server.unix_path == os.path.join(d, "rt", "unit.sock")
                assert stat.S_IMODE(os.stat(os.path.join(d, "rt")).st_mode) == 0o700
                from aimdb.remote import list_instances

                found = await list_instances()
                assert [(i["name"], i["alive"]) for i in found] == [("unit", True)]
                async with await AsyncClient.connect() as c:  # discovery finds the only instance
                    assert c.server_info["name"] == "unit"


@aio
async def test_server_on_builder_and_as_service() -> None:
    with short_tmpdir() as d:
        access = RemoteAccess(RemoteConfig(unix=os.path.join(d, "b.sock")))
        b = builder().with_connector(access)
        async with b.build() as db:
            server = await access.wait_started()
            async with await AsyncClient.connect(server.endpoints[0]) as c:
                assert len(await c.list()) == 9
        assert not os.path.exists(os.path.join(d, "b.sock"))
        async with builder().build() as db:
            db.add_service("remote", serve, db, RemoteConfig(unix=os.path.join(d, "s.sock")))
            assert await wait_until(lambda: os.path.exists(os.path.join(d, "s.sock")))
            async with await AsyncClient.connect("unix://" + os.path.join(d, "s.sock")) as c:
                assert await c.ping() >= 0
        assert not os.path.exists(os.path.join(d, "s.sock"))


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        RemoteAccess(RemoteConfig(max_connections=0))
    with pytest.raises(ValueError, match="writable"):
        RemoteAccess(RemoteConfig(writable="config.x"))


def test_sync_client() -> None:
    from aimdb.remote import SyncClient

    from ._helpers import ServerThread

    with ServerThread(writable=["config.#"]) as st:
        st.call(lambda: st.db.producer(Temp, "station.1.temp").produce(Temp(7.0)))
        with SyncClient(st.endpoint) as c:
            assert c.get("station.1.temp") == {"celsius": 7.0}
            assert c.set("config.setpoint", {"celsius": 1}) == {"celsius": 1.0}
            sub = c.subscribe("station.1.temp")
            assert sub.next(2).value == {"celsius": 7.0}
            st.call(lambda: st.db.producer(Temp, "station.1.temp").produce(Temp(8.0)))
            assert sub.next(2).value == {"celsius": 8.0}
            sub.close()
            assert [r["key"] for r in c.list("config.*")] == [
                "config.setpoint",
                "config.locked",
                "config.cmd",
            ]
            with pytest.raises(RemoteError):
                c.get("nope")
            assert json.dumps(c.graph())


# ------------------------------------------------------------------ notifications


@aio
async def test_notifications_are_applied_never_answered_and_failures_counted() -> None:
    async with served(writable=["config.#"]) as (_db, server):
        raw = await Raw.open(server.unix_path)
        frames = [
            {"method": "hello", "params": {"version": "1.1", "client": "uart"}},
            {"method": "record.set", "params": {"key": "config.setpoint", "value": {"celsius": 4.5}}},
            {"method": "record.set", "params": {"key": "config.locked", "value": {"celsius": 1.0}}},
            {"method": "record.set", "params": {"key": "config.setpoint", "value": {"celsius": "x"}}},
            {"method": "no.such"},
            {"method": "record.set", "params": {"key": "config.setpoint", "value": {"celsius": 7.0}}},
        ]
        await raw.send_bytes(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        # A request with an id after the notifications: its reply is the first frame back.
        r = await raw.call("record.get", {"key": "config.setpoint"})
        assert r["result"]["value"] == {"celsius": 7.0}
        st = server.statistics()
        assert st.notification_errors == 3 and st.sets == 2
        assert (await raw.call("ping"))["result"]["pong"] is True
        raw.close()


# ------------------------------------------------------------------ typed client errors


@aio
async def test_client_errors_are_typed() -> None:
    from aimdb import AimDbError, PermissionDenied, ProtocolError
    from aimdb.remote import RemotePermissionDenied, RemoteProtocolError

    async with served(writable=["config.#"]) as (_db, server):
        async with await AsyncClient.connect("unix://" + server.unix_path) as c:
            with pytest.raises(PermissionDenied) as ei:
                await c.set("config.locked", {"celsius": 1.0})
            err = ei.value
            assert isinstance(err, RemotePermissionDenied) and isinstance(err, PermissionError)
            assert isinstance(err, RemoteError) and isinstance(err, AimDbError)
            assert err.code == "permission_denied" and err.key == "config.locked"
            with pytest.raises(RemoteError) as ei2:
                await c.get("no.such.record")
            assert ei2.value.code == "not_found"
            assert not isinstance(ei2.value, (PermissionDenied, ProtocolError))
            with pytest.raises(ProtocolError) as ei3:
                await c.call("no.such.method", {})
            assert isinstance(ei3.value, RemoteProtocolError) and ei3.value.code == "method_not_found"
    async with served(token="s3cret") as (_db, server):
        with pytest.raises(RemotePermissionDenied) as ei4:
            await AsyncClient.connect("unix://" + server.unix_path, token="wrong")
        assert ei4.value.code == "auth_failed"
