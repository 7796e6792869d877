"""An outbound pump whose connection dies under it waits for the next one, never spins.

The bug: when the connection died while a pump was inside ``_send`` (here: waiting for the
socket to drain), the pump could run before the connect loop noticed the loss.  The state
still said ``connected``, so the pump offered its unsent values again, ``_send`` returned
them at once (the connection is gone), and so on: a loop that never yields, 100 % CPU,
and the connect loop (which would change the state) never ran again.  Seen in the fault
suite (``test_mqtt_broker_fault_mid_stream``) as a hang no timeout could end.

``test_mqtt_pump_survives_a_broker_killed_while_it_waits_to_drain`` makes that moment
certain with a real Mosquitto: the broker is stopped (SIGSTOP) while far more is offered
than the socket holds, so the pump waits for the socket to drain; then the broker is
killed.  The database runs in a child process, so that a spinning event loop (which no
timeout inside it can end) fails the test instead of hanging it: the child dumps its
stacks and exits after ``CHILD_LIMIT`` seconds.

``test_a_pump_whose_send_hands_values_back_yields_until_the_next_connection`` checks the
base connector's contract with a minimal connector (no broker, asyncio only, fast).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector
from tests.connectors._util import wait_until

pytestmark = [pytest.mark.runtimes("asyncio")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOB = b"x" * 65536
OFFERED = 400  # 25 MiB: far beyond what the socket buffers hold while the broker is stopped
AFTER = 5  # values produced after the broker's return
CHILD_STEP = 40  # seconds per step: then the child dumps its stacks and exits (a spinning loop never ends)
STEP = 60  # seconds the parent waits for each line of the child (the child's limit comes first)


async def child(url: str) -> None:
    """The child's part: stream blobs, stall on a stopped broker, survive its death and return.

    Talks to the parent in lines: prints ``stalled`` (the pump waits for the socket to
    drain), reads ``killed``, prints ``noticed`` (the connector saw the loss), reads
    ``restarted``, then prints a JSON line with the out link's figures once every value
    is accounted for.
    """
    import faulthandler

    faulthandler.dump_traceback_later(CHILD_STEP, exit=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def expect(word: str) -> None:
        line = (await stdin.readline()).decode().strip()
        assert line == word, (word, line)
        faulthandler.dump_traceback_later(CHILD_STEP, exit=True)  # a new step

    def say(line: str) -> None:
        print(line, flush=True)

    conn = MqttConnector(url, keepalive=0)  # QoS 0, no keep-alive: only the kill ends it
    b = AimDbBuilder().with_connector(conn)
    b.configure(bytes, "blob", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)).link_to("mqtt://t/blob")
                .with_serializer(lambda v: v).finish())
    async with b.build() as db:
        await conn.wait_connected(20)
        say("paused-broker?")
        await expect("stopped")
        p = db.producer(bytes, "blob")
        for _ in range(OFFERED):
            p.produce(BLOB)
            await asyncio.sleep(0)
        await wait_until(lambda: conn._proto is not None and conn._proto.paused, timeout=20,
                         what="the pump waiting for the socket to drain")
        say("stalled")
        await expect("killed")
        await wait_until(lambda: conn.state != "connected", timeout=20, what="the connector seeing the loss")
        say("noticed")
        await expect("restarted")
        await conn.wait_connected(20)
        for _ in range(AFTER):
            p.produce(b"after")
            await asyncio.sleep(0)

        def accounted() -> int:
            st = db.link_statistics()[0]
            return int(st.sent + st.failed + st.dropped_lag)

        # what was in the pump's hands at the kill is sent on the new connection
        await wait_until(lambda: accounted() == OFFERED + AFTER, timeout=20, what="every value accounted for",
                         detail=lambda: db.link_statistics()[0])
        st = db.link_statistics()[0]
        say(json.dumps({"sent": st.sent, "failed": st.failed, "dropped_lag": st.dropped_lag,
                        "reconnects": conn.statistics().reconnects}))


async def test_mqtt_pump_survives_a_broker_killed_while_it_waits_to_drain(
    rt: Any, private_mosquitto: Any
) -> None:
    broker = private_mosquitto
    code = "import asyncio, sys; from tests.faults.test_pump_after_connection_loss import child; " \
           "asyncio.run(child(sys.argv[1]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, broker.url, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []

    async def line() -> str:
        assert proc.stdout is not None
        try:
            got = (await asyncio.wait_for(proc.stdout.readline(), STEP)).decode().strip()
        except (asyncio.TimeoutError, TimeoutError):
            got = ""
        seen.append(got)
        return got

    async def tell(word: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(word.encode() + b"\n")
        await proc.stdin.drain()

    stopped = False
    try:
        assert await line() == "paused-broker?", seen
        os.kill(broker.pid, signal.SIGSTOP)
        stopped = True
        await tell("stopped")
        assert await line() == "stalled", seen
        await asyncio.to_thread(broker.kill)  # SIGKILL ends a stopped process too
        stopped = False
        await tell("killed")
        # before the fix the child's loop spun here: it never printed "noticed"
        assert await line() == "noticed", seen
        await asyncio.to_thread(broker.start)
        await tell("restarted")
        figures = json.loads(await line() or "null")
        assert figures is not None, seen
        assert figures["reconnects"] >= 1, figures
        assert await asyncio.wait_for(proc.wait(), STEP) == 0
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        err = (await proc.stderr.read()).decode(errors="replace")
        if stopped:
            os.kill(broker.pid, signal.SIGCONT)
        raise AssertionError(f"the child failed (lines {seen}); its stderr:\n{err[-6000:]}") from None


async def test_a_pump_whose_send_hands_values_back_yields_until_the_next_connection(rt: Any) -> None:
    """A connection that dies while the state still says ``connected``: the pump waits, never loops."""
    from aimdb.connectors._base import BaseConnector, Endpoint

    turns = 0  # event-loop turns, counted by a task that yields at every turn

    class DiesUnderTheSend(BaseConnector):
        """Connects at once; its first connection dies during the first send, unnoticed."""

        def __init__(self) -> None:
            super().__init__(Endpoint("test", "127.0.0.1", 1))
            self.scheme = "test"
            self.alive = True
            self.died = False
            self.lost = asyncio.Event()
            self.sent: list[Any] = []
            self.spins = 0  # ``_send`` called again without the loop turning in between
            self._turn_at_last_send = -1

        async def _connect(self) -> None:
            self.alive = True

        async def _serve(self) -> str | None:
            await self.lost.wait()
            self.lost = asyncio.Event()
            return "lost"

        async def _close(self) -> None:
            return None

        async def _send(self, route: Any, values: list[Any]) -> list[Any]:
            if turns == self._turn_at_last_send:
                self.spins += 1
                if self.spins == 100:  # bounded: break the spin, the test reports it
                    self.lost.set()
                    self._set_state("disconnected")
            self._turn_at_last_send = turns
            if not self.alive:
                return values  # the connection is gone, the connect loop has not seen it yet
            if values == [1] and not self.died:
                self.alive, self.died = False, True
                return values
            self.sent.extend(values)
            route.settled = len(values)
            return []

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    conn = DiesUnderTheSend()
    b = AimDbBuilder().with_connector(conn)
    b.configure(int, "n", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=16)).link_to("test://n").finish())
    try:
        async with b.build() as db:
            await conn.wait_connected(5)
            p = db.producer(int, "n")
            p.produce(0)
            await wait_until(lambda: conn.sent == [0], what="the first value sent")
            p.produce(1)  # the connection dies under this send
            await wait_until(lambda: not conn.alive, what="the send that finds the connection gone")
            for _ in range(20):
                await asyncio.sleep(0)
            conn.lost.set()  # now the connect loop notices, reconnects; the pump sends again
            await wait_until(lambda: conn.sent == [0, 1], what="the carried value sent after the reconnect",
                             detail=lambda: (conn.sent, conn.spins))
    finally:
        counter.cancel()
    assert conn.spins == 0, "the pump called _send again without yielding to the event loop"
    assert conn.statistics().reconnects == 1
