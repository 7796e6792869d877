"""The shipped conformance suites, run against aimdb's own buffers and backends on every runtime."""

from __future__ import annotations

from typing import Any

import pytest

from aimdb import LatestBuffer, MailboxBuffer, RingBuffer
from aimdb.testing import (
    check_latest_buffer,
    check_mailbox,
    check_ring_buffer,
    check_runtime_backend,
)


async def test_ring_conformance(rt: Any) -> None:
    assert await check_ring_buffer(lambda cap: RingBuffer("t.ring", cap), rt) >= 5


async def test_latest_conformance(rt: Any) -> None:
    assert await check_latest_buffer(lambda: LatestBuffer("t.latest"), rt) >= 2


async def test_mailbox_conformance(rt: Any) -> None:
    assert await check_mailbox(lambda: MailboxBuffer("t.mailbox"), rt) >= 3


async def test_runtime_conformance(rt: Any) -> None:
    assert await check_runtime_backend(rt) == 5


@pytest.mark.runtimes("asyncio")
async def test_suite_detects_a_broken_buffer(rt: Any) -> None:
    # RingReader has __slots__, so patching fails: use a subclass without slots
    from aimdb._core._buffers import RingReader

    class LooseReader(RingReader[Any]):
        def try_recv(self) -> Any:
            from aimdb import BufferLagged

            try:
                return super().try_recv()
            except BufferLagged:
                return super().try_recv()

    class Broken(RingBuffer[Any]):
        def subscribe(self) -> Any:
            self._readers += 1
            return LooseReader(self)

    with pytest.raises(AssertionError, match="lag"):
        await check_ring_buffer(lambda cap: Broken("t.broken", cap), rt)
