"""SerialLink: write-only aimdb:// links on every runtime, and into a real server over a pipe."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, InvalidConfiguration
from aimdb.links import SerialLink


@dataclass
class Temp:
    celsius: float


def _frames(chunks: list[bytes]) -> list[dict[str, Any]]:
    data = b"".join(chunks)
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


async def _run_link(
    rt: Any, link: SerialLink, written: list[bytes], src: Any, capacity: int, frames: int
) -> Any:
    """Run ``src`` into a ring of ``capacity`` linked through ``link`` (which writes into
    ``written``) until ``frames`` frames were written, at most 1 s; return the link's statistics."""
    b = AimDbBuilder().with_connector(link)
    b.configure(
        Temp, "t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=capacity)).source(src).link_to("aimdb://hub.t")
    )
    async with b.build() as db:
        for _ in range(200):
            if len(written) >= frames:
                break
            await rt.sleep(0.005)
        await rt.sleep(0.02)  # nothing more may come
        return db.link_statistics()[0]


async def test_hello_then_every_value_in_order_as_notifications(rt: Any) -> None:
    written: list[bytes] = []
    link = SerialLink(written.append, name="station-x", token="t0k", hello_every=0)

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(50):
            producer.produce(Temp(float(i)))
            if i % 10 == 0:
                await ctx.time.sleep(0)

    stats = await _run_link(rt, link, written, src, 64, 51)
    frames = _frames(written)
    hello = {"version": "1.3", "client": "station-x", "token": "t0k"}
    assert frames[0] == {"method": "hello", "params": hello}
    sets = frames[1:]
    assert all("id" not in f and f["method"] == "record.set" for f in sets)
    assert [f["params"]["value"]["celsius"] for f in sets] == [float(i) for i in range(50)]
    assert {f["params"]["key"] for f in sets} == {"hub.t"}
    assert stats.sent == 50 and stats.failed == 0 and stats.bytes > 0


async def test_a_line_that_falls_behind_counts_the_lost_values_and_sends_the_rest(rt: Any) -> None:
    written: list[bytes] = []
    link = SerialLink(written.append, hello_every=0)

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(20):  # without yielding: the ring of 8 overruns the link's reader
            producer.produce(Temp(float(i)))

    stats = await _run_link(rt, link, written, src, 8, 9)
    sent = [f["params"]["value"]["celsius"] for f in _frames(written)[1:]]
    assert sent == [float(i) for i in range(12, 20)]  # the newest 8, in order
    assert stats.dropped_lag == 12 and stats.sent == 8
    assert "lag" in (stats.last_error or "").lower()


async def test_write_errors_and_encode_errors_are_counted_not_fatal(rt: Any) -> None:
    calls = 0
    ok: list[bytes] = []

    def flaky(frame: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            raise OSError("line busy")
        ok.append(frame)

    def enc(value: Temp) -> bytes:
        if value.celsius < 0:
            raise ValueError("negative")
        return json.dumps({"celsius": value.celsius}).encode()

    link = SerialLink(flaky, hello_every=0)

    async def src(ctx: Any, producer: Any) -> None:
        for c in (1.0, -1.0, 2.0, 3.0, 4.0):
            producer.produce(Temp(c))

    b = AimDbBuilder().with_connector(link)
    b.configure(
        Temp,
        "t",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(src).link_to("aimdb://t").with_serializer(enc).finish(),
    )
    async with b.build() as db:
        for _ in range(100):
            if calls >= 5:
                break
            await rt.sleep(0.005)
        stats = db.link_statistics()[0]
    # hello (ok), 1.0 (fails), 2.0 (ok), 3.0 (fails), 4.0 (ok); -1.0 never encoded
    assert calls == 5 and link.write_errors == 2
    assert stats.sent == 2 and stats.failed == 3 and stats.last_error == "write failed"
    assert [f["params"]["value"]["celsius"] for f in _frames(ok)[1:]] == [2.0, 4.0]


async def test_hello_is_repeated(rt: Any) -> None:
    written: list[bytes] = []
    b = AimDbBuilder().with_connector(SerialLink(written.append, hello_every=0.02))
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://t"))
    async with b.build():
        await rt.sleep(0.15)
    hellos = [f for f in _frames(written) if f["method"] == "hello"]
    assert len(hellos) >= 3


def test_link_from_and_patterns_are_configuration_problems() -> None:
    b = AimDbBuilder().with_connector(SerialLink(lambda f: None))
    b.configure(Temp, "a", lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("aimdb://peer.a"))
    b.configure(Temp, "b", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://peer.*"))
    b.configure(Temp, "c", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://peer..c"))
    b.configure(Temp, "d", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("aimdb://peer d"))
    with pytest.raises(InvalidConfiguration) as ei:
        b.build()
    text = str(ei.value)
    assert "write-only" in text
    assert text.count("a SerialLink address must be one record key") == 3
    assert "may not contain '*'" in text and "empty segment" in text and "may not contain ' '" in text


@pytest.mark.runtimes("asyncio")
async def test_into_a_real_server_over_an_os_pipe(rt: Any) -> None:
    """Station and hub in one process, joined only by a pipe: the station's values arrive."""
    from aimdb.remote import RemoteAccess, RemoteConfig

    r_fd, w_fd = os.pipe()

    def write(frame: bytes) -> None:
        os.write(w_fd, frame)

    async def src(ctx: Any, producer: Any) -> None:
        for i in range(20):
            producer.produce(Temp(float(i)))
            await ctx.time.sleep(0.001)

    station = AimDbBuilder().with_connector(SerialLink(write, hello_every=0))
    station.configure(
        Temp, "s.temp", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=32)).source(src).link_to("aimdb://hub.temp")
    )
    seen: list[float] = []

    async def tap(ctx: Any, consumer: Any) -> None:
        async for t in consumer.subscribe():
            seen.append(t.celsius)

    remote = RemoteAccess(RemoteConfig(name="pipe-hub", unix=None, writable=("hub.#",)))
    hub = AimDbBuilder().with_connector(remote)
    hub.configure(
        Temp, "hub.temp", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=32)).remote(writable=True).tap(tap)
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r_fd, "rb", buffering=0)
    )

    class NullWriter:
        def write(self, data: bytes) -> None:
            pass

        async def drain(self) -> None:
            pass

        def can_write_eof(self) -> bool:
            return False

        def close(self) -> None:
            pass

    try:
        async with hub.build():
            server = await remote.wait_started()
            serving = asyncio.ensure_future(server.serve_stream(reader, NullWriter(), peer="pipe"))
            async with station.build():
                for _ in range(200):
                    if len(seen) >= 20:
                        break
                    await asyncio.sleep(0.005)
            os.close(w_fd)
            await asyncio.wait_for(serving, 2)  # EOF ends the session
            assert server.statistics().notification_errors == 0
    finally:
        transport.close()
    assert seen == [float(i) for i in range(20)]
