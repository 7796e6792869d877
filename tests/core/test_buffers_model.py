"""Hypothesis state machines: each buffer against a trivial model of its semantics."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from aimdb import BufferClosed, BufferEmpty, BufferLagged, LatestBuffer, MailboxBuffer, RingBuffer

_NONE: Any = object()


def _latest(buf: Any) -> Any:
    try:
        return buf.latest()
    except BufferEmpty:
        return _NONE


class _Loop:
    """A private asyncio loop to drive recv()/cancel interleavings synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def recv_with_cancel(self, reader: Any) -> None:
        async def go() -> None:
            task = asyncio.ensure_future(reader.recv())
            await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        self.loop.run_until_complete(go())

    def recv(self, reader: Any) -> Any:
        return self.loop.run_until_complete(reader.recv())

    def close(self) -> None:
        self.loop.close()


class RingMachine(RuleBasedStateMachine):
    readers = Bundle("readers")

    def __init__(self) -> None:
        super().__init__()
        self.cap = 3
        self.buf: RingBuffer[int] = RingBuffer("m.ring", self.cap)
        self.log: list[int] = []  # every value ever produced
        self.cursor: dict[int, int] = {}  # reader id -> index into log
        self.lagged: dict[int, int] = {}
        self.objs: dict[int, Any] = {}
        self.n = 0
        self.loop = _Loop()

    def teardown(self) -> None:
        self.loop.close()

    @rule(target=readers)
    def subscribe(self) -> int:
        rid = len(self.objs)
        self.objs[rid] = self.buf.subscribe()
        self.cursor[rid] = len(self.log)
        self.lagged[rid] = 0
        return rid

    @rule(k=st.integers(min_value=1, max_value=5))
    def produce(self, k: int) -> None:
        for _ in range(k):
            self.n += 1
            self.buf.produce(self.n)
            self.log.append(self.n)

    def _expect(self, rid: int) -> tuple[str, Any]:
        c = self.cursor[rid]
        pending = len(self.log) - c
        if pending == 0:
            return ("empty", None)
        if pending > self.cap:
            return ("lag", pending - self.cap)
        return ("value", self.log[c])

    def _apply(self, rid: int, kind: str, arg: Any) -> None:
        if kind == "lag":
            self.cursor[rid] += arg
            self.lagged[rid] += arg
        elif kind == "value":
            self.cursor[rid] += 1

    @rule(rid=readers)
    def try_recv(self, rid: int) -> None:
        kind, arg = self._expect(rid)
        r = self.objs[rid]
        if kind == "empty":
            try:
                r.try_recv()
            except BufferEmpty:
                return
            raise AssertionError("expected empty")
        if kind == "lag":
            try:
                r.try_recv()
            except BufferLagged as exc:
                assert exc.missed == arg
                self._apply(rid, kind, arg)
                return
            raise AssertionError("expected lag")
        assert r.try_recv() == arg
        self._apply(rid, kind, arg)

    @rule(rid=readers)
    def recv_if_pending(self, rid: int) -> None:
        kind, arg = self._expect(rid)
        if kind == "empty":
            return
        r = self.objs[rid]
        if kind == "lag":
            try:
                self.loop.recv(r)
            except BufferLagged as exc:
                assert exc.missed == arg
                self._apply(rid, kind, arg)
                return
            raise AssertionError("expected lag")
        assert self.loop.recv(r) == arg
        self._apply(rid, kind, arg)

    @rule(rid=readers)
    def cancelled_wait(self, rid: int) -> None:
        if self._expect(rid)[0] == "empty":
            self.loop.recv_with_cancel(self.objs[rid])
            assert self.buf._waiters == []

    @rule(rid=readers)
    def batch(self, rid: int) -> None:
        kind, arg = self._expect(rid)
        r = self.objs[rid]
        if kind == "lag":
            try:
                r.try_recv_batch()
            except BufferLagged as exc:
                assert exc.missed == arg
                self._apply(rid, kind, arg)
            return
        got = r.try_recv_batch()
        c = self.cursor[rid]
        assert got == self.log[c:]
        self.cursor[rid] = len(self.log)

    @invariant()
    def stats(self) -> None:
        s = self.buf.statistics()
        assert s.produced == len(self.log)
        assert s.occupancy == min(len(self.log), self.cap)
        assert s.readers == len(self.objs)

    @invariant()
    def latest(self) -> None:
        assert _latest(self.buf) == (self.log[-1] if self.log else _NONE)


class LatestMachine(RuleBasedStateMachine):
    readers = Bundle("readers")

    def __init__(self) -> None:
        super().__init__()
        self.buf: LatestBuffer[int] = LatestBuffer("m.latest")
        self.version = 0
        self.value: int | None = None
        self.seen: dict[int, int] = {}
        self.objs: dict[int, Any] = {}
        self.loop = _Loop()

    def teardown(self) -> None:
        self.loop.close()

    @rule(target=readers)
    def subscribe(self) -> int:
        rid = len(self.objs)
        self.objs[rid] = self.buf.subscribe()
        self.seen[rid] = 0
        return rid

    @rule(v=st.integers())
    def produce(self, v: int) -> None:
        self.buf.produce(v)
        self.version += 1
        self.value = v

    @rule(rid=readers)
    def try_recv(self, rid: int) -> None:
        r = self.objs[rid]
        if self.seen[rid] == self.version:
            try:
                r.try_recv()
            except BufferEmpty:
                return
            raise AssertionError("expected empty")
        assert r.try_recv() == self.value
        self.seen[rid] = self.version

    @rule(rid=readers)
    def cancelled_wait(self, rid: int) -> None:
        if self.seen[rid] == self.version:
            self.loop.recv_with_cancel(self.objs[rid])
            assert self.buf._waiters == []

    @invariant()
    def peek(self) -> None:
        assert self.buf.peek() == self.value
        assert _latest(self.buf) == (self.value if self.version else _NONE)


class MailboxMachine(RuleBasedStateMachine):
    readers = Bundle("readers")

    def __init__(self) -> None:
        super().__init__()
        self.buf: MailboxBuffer[int] = MailboxBuffer("m.mailbox")
        self.slot: int | None = None
        self.drops = 0
        self.taken: list[int] = []
        self.produced: list[int] = []
        self.objs: dict[int, Any] = {}
        self.loop = _Loop()
        self.closed = False

    def teardown(self) -> None:
        self.loop.close()

    @rule(target=readers)
    def subscribe(self) -> int:
        rid = len(self.objs)
        self.objs[rid] = self.buf.subscribe()
        return rid

    @rule(v=st.integers())
    def produce(self, v: int) -> None:
        if self.closed:
            return
        self.buf.produce(v)
        if self.slot is not None:
            self.drops += 1
        self.slot = v
        self.produced.append(v)

    @rule(rid=readers)
    def try_recv(self, rid: int) -> None:
        r = self.objs[rid]
        if self.slot is None:
            try:
                r.try_recv()
            except (BufferEmpty, BufferClosed):
                return
            raise AssertionError("expected empty")
        assert r.try_recv() == self.slot
        self.taken.append(self.slot)
        self.slot = None

    @rule(rid=readers)
    def cancelled_wait(self, rid: int) -> None:
        if self.slot is None and not self.closed:
            self.loop.recv_with_cancel(self.objs[rid])
            assert self.buf._waiters == []

    @rule()
    def close(self) -> None:
        self.buf.close()
        self.closed = True

    @invariant()
    def accounting(self) -> None:
        s = self.buf.statistics()
        assert s.dropped == self.drops
        assert s.delivered == len(self.taken)
        # every produced value is either taken, overwritten, or still in the slot
        assert len(self.produced) == len(self.taken) + self.drops + (1 if self.slot is not None else 0)
        assert self.buf.peek() == self.slot
        assert _latest(self.buf) == (self.slot if self.slot is not None else _NONE)


_settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestRing = RingMachine.TestCase
TestRing.settings = _settings
TestLatest = LatestMachine.TestCase
TestLatest.settings = _settings
TestMailbox = MailboxMachine.TestCase
TestMailbox.settings = _settings
