"""Compare Python MQTT client libraries end to end through a local Mosquitto.

Run (about a minute)::

    python bench/mqtt_clients.py                 # private no-loss Mosquitto on a free port
    python bench/mqtt_clients.py --json out.json

For each client (publisher and subscriber of the same library, one process):

* throughput: ``--messages`` (20k) ~45-byte JSON messages published as fast as the client
  allows, QoS 0 and QoS 1; end-to-end msgs/s = received / (last receive - first publish),
  plus how many arrived;
* latency: ``--latency-messages`` published at ``--rate`` (1k msg/s); p50/p99 of
  receive time - send time (the send time travels in the payload; same clock).

Clients: aiomqtt (``await publish()`` one by one; and concurrent publishes in windows of
``--window``), paho-mqtt (its own network thread; and driven from asyncio through its
socket callbacks), gmqtt if installed.  Everything is bounded: each run has a deadline,
and the whole process is stopped by an alarm after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from brokers import PrivateMosquitto

HOST = "127.0.0.1"
RUN_DEADLINE = 20.0  # seconds per run (publish + receive)
INFLIGHT = 1000  # client-side QoS 1 in-flight window for paho/aiomqtt (0: unlimited)
NODELAY = True  # set TCP_NODELAY on paho/aiomqtt sockets (asyncio transports, gmqtt, always do)
_QUIET = logging.getLogger("bench.quiet")
_QUIET.setLevel(logging.ERROR)  # aiomqtt warns "There are N pending publish calls"


def _nodelay(sock: socket.socket | None) -> None:
    if NODELAY and sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def payload(seq: int) -> bytes:
    return b'{"seq":%d,"t":%d,"v":21.5}' % (seq, time.perf_counter_ns())


class Sink:
    """What a subscriber saw: unique sequence numbers, latencies, time of the last one."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = bytearray(n)
        self.unique = 0
        self.dups = 0
        self.lat_ns: list[int] = []
        self.last_ns = 0
        self.done = threading.Event()
        self.on_done: Callable[[], None] | None = None

    def __call__(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        msg = json.loads(data)
        seq = msg["seq"]
        if self.seen[seq]:
            self.dups += 1
            return
        self.seen[seq] = 1
        self.unique += 1
        self.lat_ns.append(now - msg["t"])
        self.last_ns = now
        if self.unique >= self.n:
            self.done.set()
            if self.on_done is not None:
                self.on_done()


@dataclass
class Result:
    client: str
    qos: int
    mode: str  # "throughput" or "latency"
    sent: int
    received: int
    duplicates: int
    seconds: float
    msgs_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _result(
    client: str, qos: int, mode: str, n: int, sink: Sink, t0_ns: int, error: str | None = None
) -> Result:
    secs = (sink.last_ns - t0_ns) / 1e9 if sink.unique else float("nan")
    lat = sorted(sink.lat_ns)
    p50 = p99 = None
    if lat:
        p50 = lat[len(lat) // 2] / 1e6
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6
    return Result(
        client,
        qos,
        mode,
        n,
        sink.unique,
        sink.dups,
        round(secs, 4),
        round(sink.unique / secs, 1) if sink.unique and secs > 0 else 0.0,
        None if p50 is None else round(p50, 3),
        None if p99 is None else round(p99, 3),
        error,
    )


async def _pace(i: int, t_start: float, rate: float) -> None:
    delay = t_start + i / rate - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _pace_sync(i: int, t_start: float, rate: float) -> None:
    delay = t_start + i / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


async def _wait_event(ev: threading.Event | asyncio.Event, deadline: float) -> bool:
    while time.perf_counter() < deadline:
        if ev.is_set():
            return True
        await asyncio.sleep(0.005)
    return ev.is_set()


# --------------------------------------------------------------------------- aiomqtt


async def run_aiomqtt(
    port: int, topic: str, qos: int, n: int, rate: float | None, window: int
) -> tuple[Sink, int]:
    import aiomqtt

    sink = Sink(n)
    opts = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if NODELAY else []
    kw = {"max_inflight_messages": INFLIGHT, "logger": _QUIET, "socket_options": opts}
    async with (
        aiomqtt.Client(HOST, port, identifier=f"sub-{topic}", **kw) as sub,
        aiomqtt.Client(HOST, port, identifier=f"pub-{topic}", **kw) as pub,
    ):
        await sub.subscribe(topic, qos=qos)

        async def reader() -> None:
            async for message in sub.messages:
                sink(message.payload)  # type: ignore[arg-type]
                if sink.done.is_set():
                    return

        rtask = asyncio.create_task(reader())
        t0 = time.perf_counter_ns()
        t_start = time.perf_counter()
        deadline = t_start + RUN_DEADLINE
        if window <= 1 or rate is not None:
            for i in range(n):
                if rate is not None:
                    await _pace(i, t_start, rate)
                await pub.publish(topic, payload(i), qos=qos)
        else:
            for start in range(0, n, window):
                await asyncio.gather(
                    *(pub.publish(topic, payload(i), qos=qos) for i in range(start, min(n, start + window)))
                )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(rtask, max(0.1, deadline - time.perf_counter()))
        rtask.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rtask
    return sink, t0


# ------------------------------------------------------------------------------ paho


def _paho_client(client_id: str):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(INFLIGHT)
    c.max_queued_messages_set(0)
    return c


def run_paho_thread(port: int, topic: str, qos: int, n: int, rate: float | None) -> tuple[Sink, int]:
    sink = Sink(n)
    subscribed = threading.Event()
    sub = _paho_client(f"sub-{topic}")
    sub.on_message = lambda c, u, m: sink(m.payload)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(HOST, port)
    _nodelay(sub.socket())
    sub.loop_start()
    pub = _paho_client(f"pub-{topic}")
    pub.connect(HOST, port)
    _nodelay(pub.socket())
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=qos)
        if not subscribed.wait(5):
            raise TimeoutError("no SUBACK")
        t0 = time.perf_counter_ns()
        t_start = time.perf_counter()
        for i in range(n):
            if rate is not None:
                _pace_sync(i, t_start, rate)
            pub.publish(topic, payload(i), qos=qos)
        sink.done.wait(max(0.1, t_start + RUN_DEADLINE - time.perf_counter()))
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
    return sink, t0


class _PahoAsyncio:
    """Drive a paho client from the asyncio loop through its socket callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client) -> None:
        self.loop = loop
        self.client = client
        self.misc: asyncio.Task[None] | None = None
        client.on_socket_open = self.on_socket_open
        client.on_socket_close = self.on_socket_close
        client.on_socket_register_write = self.on_socket_register_write
        client.on_socket_unregister_write = self.on_socket_unregister_write

    def on_socket_open(self, client, userdata, sock) -> None:
        self.loop.add_reader(sock, client.loop_read)
        self.misc = self.loop.create_task(self.misc_loop())

    def on_socket_close(self, client, userdata, sock) -> None:
        self.loop.remove_reader(sock)
        if self.misc is not None:
            self.misc.cancel()

    def on_socket_register_write(self, client, userdata, sock) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def on_socket_unregister_write(self, client, userdata, sock) -> None:
        self.loop.remove_writer(sock)

    async def misc_loop(self) -> None:
        import paho.mqtt.client as mqtt

        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)


async def run_paho_asyncio(port: int, topic: str, qos: int, n: int, rate: float | None) -> tuple[Sink, int]:
    loop = asyncio.get_running_loop()
    sink = Sink(n)
    done = asyncio.Event()
    sink.on_done = done.set
    subscribed = asyncio.Event()
    connected = [asyncio.Event(), asyncio.Event()]
    sub = _paho_client(f"sub-{topic}")
    pub = _paho_client(f"pub-{topic}")
    helpers = [_PahoAsyncio(loop, sub), _PahoAsyncio(loop, pub)]
    sub.on_message = lambda c, u, m: sink(m.payload)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda *a: connected[0].set()
    pub.on_connect = lambda *a: connected[1].set()
    for c in (sub, pub):
        c.connect(HOST, port)
        _nodelay(c.socket())
    try:
        await asyncio.wait_for(asyncio.gather(connected[0].wait(), connected[1].wait()), 5)
        sub.subscribe(topic, qos=qos)
        await asyncio.wait_for(subscribed.wait(), 5)
        t0 = time.perf_counter_ns()
        t_start = time.perf_counter()
        for i in range(n):
            if rate is not None:
                await _pace(i, t_start, rate)
            pub.publish(topic, payload(i), qos=qos)
            if rate is None and i % 64 == 63:
                await asyncio.sleep(0)  # let the loop write and read
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.1, t_start + RUN_DEADLINE - time.perf_counter()))
    finally:
        for c in (pub, sub):
            c.disconnect()
        await asyncio.sleep(0.05)
        for h in helpers:
            if h.misc is not None:
                h.misc.cancel()
    return sink, t0


async def run_paho_trio(port: int, topic: str, qos: int, n: int, rate: float | None) -> tuple[Sink, int]:
    """paho driven from trio: wait_readable/wait_writable on its socket, no thread."""
    import paho.mqtt.client as mqtt
    import trio

    sink = Sink(n)
    done = trio.Event()
    sink.on_done = done.set
    subscribed = trio.Event()
    sub = _paho_client(f"sub-{topic}")
    pub = _paho_client(f"pub-{topic}")
    sub.on_message = lambda c, u, m: sink(m.payload)
    sub.on_subscribe = lambda *a: subscribed.set()
    t0 = time.perf_counter_ns()

    async def drive(c, want_write: list[trio.Event]) -> None:
        sock = c.socket()

        async def reader() -> None:
            while c.loop_read() == mqtt.MQTT_ERR_SUCCESS:
                await trio.lowlevel.wait_readable(sock)

        async def writer() -> None:
            while True:
                if c.want_write():
                    await trio.lowlevel.wait_writable(sock)
                    c.loop_write()
                else:
                    want_write[0] = trio.Event()
                    await want_write[0].wait()

        async def misc() -> None:
            while c.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(writer)
            nursery.start_soon(misc)

    async with trio.open_nursery() as nursery:
        for c in (sub, pub):
            ev = [trio.Event()]
            c.on_socket_register_write = lambda cl, ud, so, ev=ev: ev[0].set()
            c.connect(HOST, port)
            _nodelay(c.socket())
            nursery.start_soon(drive, c, ev)
        with trio.fail_after(5):
            while not (sub.is_connected() and pub.is_connected()):
                await trio.sleep(0.001)
            sub.subscribe(topic, qos=qos)
            await subscribed.wait()
        t0 = time.perf_counter_ns()
        t_start = time.perf_counter()
        for i in range(n):
            if rate is not None:
                delay = t_start + i / rate - time.perf_counter()
                if delay > 0:
                    await trio.sleep(delay)
            pub.publish(topic, payload(i), qos=qos)
            if rate is None and i % 64 == 63:
                await trio.lowlevel.checkpoint()
        with trio.move_on_after(max(0.1, t_start + RUN_DEADLINE - time.perf_counter())):
            await done.wait()
        for c in (pub, sub):
            c.disconnect()
        nursery.cancel_scope.cancel()
    return sink, t0


# ----------------------------------------------------------------------------- gmqtt


async def run_gmqtt(port: int, topic: str, qos: int, n: int, rate: float | None) -> tuple[Sink, int]:
    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv311

    sink = Sink(n)
    done = asyncio.Event()
    sink.on_done = done.set
    subscribed = asyncio.Event()
    sub = Client(f"sub-{topic}")
    pub = Client(f"pub-{topic}")

    def on_message(client, t, data, q, properties):
        sink(data)
        return 0

    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    await sub.connect(HOST, port, version=MQTTv311)
    await pub.connect(HOST, port, version=MQTTv311)
    try:
        sub.subscribe(topic, qos=qos)
        await asyncio.wait_for(subscribed.wait(), 5)
        t0 = time.perf_counter_ns()
        t_start = time.perf_counter()
        for i in range(n):
            if rate is not None:
                await _pace(i, t_start, rate)
            pub.publish(topic, payload(i), qos=qos)
            if rate is None and i % 64 == 63:
                await asyncio.sleep(0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.1, t_start + RUN_DEADLINE - time.perf_counter()))
    finally:
        await asyncio.wait_for(asyncio.gather(pub.disconnect(), sub.disconnect(), return_exceptions=True), 5)
    return sink, t0


# ---------------------------------------------------------------------------- driver


def _installed(mod: str) -> bool:
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def clients(
    window: int,
) -> dict[str, Callable[[int, str, int, int, float | None], tuple[Sink, int]]]:
    def arun(factory: Callable[[], Awaitable[tuple[Sink, int]]]) -> tuple[Sink, int]:
        return asyncio.run(asyncio.wait_for(factory(), RUN_DEADLINE + 10))

    out: dict[str, Callable[..., tuple[Sink, int]]] = {
        "aiomqtt await-each": lambda p, t, q, n, r: arun(lambda: run_aiomqtt(p, t, q, n, r, 1)),
        f"aiomqtt gather-{window}": lambda p, t, q, n, r: arun(lambda: run_aiomqtt(p, t, q, n, r, window)),
        "paho thread": run_paho_thread,
        "paho on asyncio": lambda p, t, q, n, r: arun(lambda: run_paho_asyncio(p, t, q, n, r)),
    }
    if _installed("trio"):

        def trio_run(p: int, t: str, q: int, n: int, r: float | None) -> tuple[Sink, int]:
            import trio

            async def bounded() -> tuple[Sink, int]:
                with trio.fail_after(RUN_DEADLINE + 10):
                    return await run_paho_trio(p, t, q, n, r)

            return trio.run(bounded)

        out["paho on trio"] = trio_run
    if _installed("gmqtt"):
        out["gmqtt"] = lambda p, t, q, n, r: arun(lambda: run_gmqtt(p, t, q, n, r))
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("aiomqtt", "paho-mqtt", "gmqtt"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--latency-messages", type=int, default=2_000)
    ap.add_argument("--rate", type=float, default=1_000.0, help="msgs/s in the latency runs")
    ap.add_argument("--window", type=int, default=500, help="concurrent publishes for aiomqtt gather")
    ap.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", nargs="*", help="substrings of client names to run")
    ap.add_argument("--max-seconds", type=int, default=170)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--stock-sockets", action="store_true", help="leave Nagle on for paho/aiomqtt sockets")
    ap.add_argument("--inflight", type=int, default=1000, help="paho/aiomqtt QoS 1 in-flight window")
    args = ap.parse_args()
    global INFLIGHT, NODELAY
    NODELAY = not args.stock_sockets
    INFLIGHT = args.inflight

    signal.alarm(args.max_seconds)  # hard bound on the whole run
    results: list[Result] = []
    t_all = time.perf_counter()
    with PrivateMosquitto() as broker:
        print(f"# broker {broker.url} (private, max_queued_messages 0, max_inflight_messages 0)")
        print(f"# {_versions()} TCP_NODELAY={NODELAY} inflight={INFLIGHT}")
        cols = ("recv/sent", "msgs/s", "p50 ms", "p99 ms")
        print(f"{'client':22} {'qos':>3} {'mode':10} {cols[0]:>13} {cols[1]:>9} {cols[2]:>8} {cols[3]:>8}")
        for name, fn in clients(args.window).items():
            if args.only and not any(s in name for s in args.only):
                continue
            for qos in args.qos:
                for mode, n, rate in (
                    ("throughput", args.messages, None),
                    ("latency", args.latency_messages, args.rate),
                ):
                    topic = f"bench/{uuid.uuid4().hex[:8]}"
                    err = None
                    try:
                        sink, t0 = fn(broker.port, topic, qos, n, rate)
                    except Exception as exc:  # a client failing is a result too
                        sink, t0, err = (
                            Sink(n),
                            time.perf_counter_ns(),
                            f"{type(exc).__name__}: {exc}",
                        )
                    r = _result(name, qos, mode, n, sink, t0, err)
                    results.append(r)
                    p50 = "-" if r.p50_ms is None else f"{r.p50_ms:.2f}"
                    p99 = "-" if r.p99_ms is None else f"{r.p99_ms:.2f}"
                    rate_s = f"{r.msgs_per_s:.0f}" if mode == "throughput" else "-"
                    print(
                        f"{name:22} {qos:>3} {mode:10} {r.received:>6}/{n:<6} {rate_s:>9} {p50:>8} {p99:>8}"
                        + (f"  ERROR {err}" if err else "")
                        + (f"  dups={r.duplicates}" if r.duplicates else ""),
                        flush=True,
                    )
    print(f"# total {time.perf_counter() - t_all:.1f}s")
    if args.json:
        args.json.write_text(
            json.dumps({"versions": _versions(), "results": [asdict(r) for r in results]}, indent=2)
        )


if __name__ == "__main__":
    main()
