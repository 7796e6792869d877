"""Misbehaving clients against a remote server in its own process; a good client stays served.

Attackers: clients that say ``hello`` and fall silent, a client that never reads its
socket while subscribed to a fast record, and clients (each in its own process, sending
at full speed) that send garbage or frames nested too deep. Only liveness is asserted
(the good client is answered within a generous bound); the measured figures are printed
(``pytest -s``) for docs/benchmarks-remote.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aimdb.remote import AsyncClient, RemoteError
from tests.remote._helpers import Raw, aio, short_tmpdir

pytestmark = pytest.mark.slow

SERVER = Path(__file__).resolve().parents[1] / "remote" / "_fault_server.py"
ATTACKER = SERVER.with_name("_fault_attacker.py")
LIVENESS = 5.0  # seconds: a good client's request taking longer counts as not served


@contextlib.asynccontextmanager
async def fault_server(idle_timeout: float = 300.0) -> AsyncIterator[tuple[str, int]]:
    """Start the server process; yield its socket path and pid."""
    with short_tmpdir() as d:
        path = os.path.join(d, "fault.sock")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER),
            path,
            str(idle_timeout),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.startswith(b"READY"), line
            yield path, proc.pid
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def good_client_pings(client: AsyncClient, seconds: float) -> list[float]:
    """Ping every 10 ms for ``seconds``; return the round-trip times (each within LIVENESS)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    times = []
    for _ in range(100_000):
        if loop.time() >= end:
            break
        times.append(await client.ping())
        await asyncio.sleep(0.01)
    assert times and max(times) < LIVENESS, f"good client not served: max {max(times):.3f} s"
    return times


def report(name: str, times: list[float], **extra: object) -> None:
    figures = {
        "pings": len(times),
        "p50_ms": round(percentile(times, 0.5) * 1000, 2),
        "p99_ms": round(percentile(times, 0.99) * 1000, 2),
        "max_ms": round(max(times) * 1000, 2),
        **extra,
    }
    print(f"\nFAULT {name}: {json.dumps(figures)}")


async def server_stats(client: AsyncClient) -> dict[str, object]:
    stats = await client.stats()
    server: dict[str, object] = stats["server"]
    return server


@aio
async def test_silent_clients_hold_slots_only_until_the_idle_timeout() -> None:
    async with fault_server(idle_timeout=1.0) as (path, _pid):
        squatters = [await Raw.open(path) for _ in range(16)]  # max_connections is 16
        for raw in squatters:
            assert "result" in await raw.hello()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        refused = 0
        good = None
        for _ in range(600):  # bounded: 30 s at most
            try:
                good = await AsyncClient.connect("unix://" + path)
                break
            except RemoteError as exc:
                assert exc.code == "too_many_connections"
                refused += 1
                await asyncio.sleep(0.05)
        assert good is not None, "the silent clients kept every slot"
        waited = loop.time() - t0
        for raw in squatters:
            assert await raw.closed(timeout=LIVENESS)
        async with good:
            times = await good_client_pings(good, 1.5)  # outlives the idle limit: keep-alives
            st = await server_stats(good)
            assert st["idle_closed"] == 16
        report("idle", times, refused_before_slot=refused, seconds_to_slot=round(waited, 2))


@aio
async def test_a_client_that_never_reads_costs_bounded_memory_and_others_are_served() -> None:
    async with fault_server() as (path, pid):
        # A plain socket with a small receive buffer that nobody reads (an asyncio stream
        # would keep reading into its own buffer).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(path)
        sock.sendall(
            b'{"id":1,"method":"hello","params":{"version":"1.1"}}\n'
            b'{"id":2,"method":"record.subscribe","params":{"pattern":"fast.blob"}}\n'
        )
        async with await AsyncClient.connect("unix://" + path) as good:
            sub = await good.subscribe("fast.blob", snapshot=False)
            received = 0

            async def consume() -> None:
                nonlocal received
                async for _ in sub:
                    received += 1

            consumer = asyncio.get_running_loop().create_task(consume())
            try:
                await asyncio.sleep(1.0)  # socket buffers of the slow client fill up
                rss_start = rss_kib(pid)
                times = await good_client_pings(good, 4.0)
                rss_end = rss_kib(pid)
                st = await server_stats(good)
            finally:
                consumer.cancel()
                await asyncio.wait([consumer])
            assert received > 1000, received  # the good subscriber kept being served
            assert st["events_dropped"] > 0  # the slow client's queue drops, counted
            growth = rss_end - rss_start
            assert growth < 64 * 1024, f"server memory grew by {growth} KiB in 4 s"
        # The slow client sees the loss as a gap in the sequence numbers.
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        slow = Raw(reader, writer)
        last = 0
        gap = 0
        for _ in range(20_000):
            msg = await slow.line(timeout=LIVENESS)
            if msg.get("event") == "update":
                if last and msg["seq"] > last + 1:
                    gap = msg["seq"] - last - 1
                    break
                last = msg["seq"]
        slow.close()
        assert gap > 0
        report(
            "slow-reader",
            times,
            server_rss_growth_kib=growth,
            events_dropped=st["events_dropped"],
            good_events=received,
            first_gap_seen=gap,
        )


async def _attacker(path: str, kind: str, seconds: float) -> tuple[int, int, bool]:
    """Run one attacker process; return (frames sent, error replies, session still alive)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ATTACKER), path, kind, str(seconds), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    assert proc.returncode == 0
    sent, replies, alive = out.split()
    return int(sent), int(replies), alive == b"1"


async def _under_attack(kind: str, error_counter: str) -> None:
    async with fault_server() as (path, _pid):
        async with await AsyncClient.connect("unix://" + path) as good:
            baseline = await good_client_pings(good, 1.0)
            loop = asyncio.get_running_loop()
            attackers = [loop.create_task(_attacker(path, kind, 3.5)) for _ in range(4)]
            await asyncio.sleep(0.5)  # the attackers are connected and sending
            times = await good_client_pings(good, 2.5)
            assert (await good.get("quiet.value")) == {"celsius": 21.5}
            results = await asyncio.gather(*attackers)
            st = await server_stats(good)
        sent = sum(r[0] for r in results)
        replies = sum(r[1] for r in results)
        assert all(r[2] for r in results), "an attacker's session ended"
        assert replies == sent and st[error_counter] >= sent  # every bad frame answered and counted
        report(
            kind,
            times,
            baseline_p99_ms=round(percentile(baseline, 0.99) * 1000, 2),
            attack_frames_answered=replies,
            **{error_counter: st[error_counter]},
        )


@aio
async def test_garbage_senders_get_errors_and_a_good_client_is_served() -> None:
    await _under_attack("garbage", "bad_frames")


@aio
async def test_deep_frame_senders_get_errors_and_a_good_client_is_served() -> None:
    await _under_attack("deep", "frames_too_deep")
