"""CPython specifics of the buffer change API; the semantics are in the conformance suite."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from aimdb import AimDbBuilder, Buffer, BufferCfg, BufferListener, RingBuffer


def test_failing_listener_is_logged_with_the_record_key(caplog: pytest.LogCaptureFixture) -> None:
    buf: RingBuffer[int] = RingBuffer("t.failing", 4)

    def boom() -> None:
        raise RuntimeError("boom")

    lst = buf.add_listener(boom)
    assert isinstance(lst, BufferListener)
    assert "t.failing" in repr(lst) and "inactive" not in repr(lst)
    with caplog.at_level(logging.ERROR, logger="aimdb"):
        buf.produce(1)  # does not raise
    (rec,) = [r for r in caplog.records if r.name == "aimdb"]
    assert "'t.failing'" in rec.getMessage() and rec.exc_info is not None
    buf.remove_listener(lst)
    assert "inactive" in repr(lst)


async def test_wait_changed_watches_a_mailbox_until_the_database_stops(rt: Any) -> None:
    builder = AimDbBuilder()
    builder.configure(int, "t.cmd", lambda r: r.buffer(BufferCfg.Mailbox()))
    seen: list[int] = []

    async def settle() -> None:  # let the watcher run (trio needs more than one turn)
        for _ in range(5):
            await rt.sleep(0)

    async def watch(buf: Buffer[int]) -> None:
        while not buf.closed:
            await buf.wait_changed()
            if not buf.closed:
                seen.append(buf.latest())

    async with builder.build() as db:
        buf = db.buffer("t.cmd")
        assert buf is not None
        group = rt.open_task_group()
        await group.start()
        h = group.spawn("t.watch", watch, buf)
        await settle()
        p = db.producer(int, "t.cmd")
        for i in range(3):
            p.produce(i)
            await settle()
    assert await rt.wait_for(h.join, 2.0)  # the close ended the watch
    await group.aclose()
    assert seen == [0, 1, 2]
    assert buf.latest() == 2  # watched, never taken
