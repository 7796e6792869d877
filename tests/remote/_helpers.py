"""Shared helpers of the remote-access tests (not a conftest: plain imports)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import RemoteConfig, RemoteServer, start_server


@dataclass
class Temp:
    celsius: float


@dataclass
class Setpoint:
    celsius: float


async def _tick(ctx: Any, producer: Any) -> None:
    n = 0
    while True:
        n += 1
        producer.produce(Temp(float(n)))
        await ctx.time.sleep(0.01)


def builder(*, ticking: bool = False) -> AimDbBuilder:
    """A small database: passive, ring, writable config, source, transform, join, mailbox."""
    b = AimDbBuilder()
    b.configure(Temp, "station.1.temp", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Temp, "station.2.temp", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Temp, "station.1.log", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)))
    b.configure(
        Setpoint, "config.setpoint", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True)
    )
    b.configure(
        Setpoint, "config.locked", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=False)
    )
    b.configure(Setpoint, "config.cmd", lambda r: r.buffer(BufferCfg.Mailbox()).remote(writable=True))
    b.configure(Temp, "hidden.secret", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(readable=False))
    if ticking:
        b.configure(
            Temp,
            "sensor.tick",
            lambda r: r.buffer(BufferCfg.SingleLatest()).source(_tick).remote(writable=True),
        )
    else:
        b.configure(Temp, "sensor.tick", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True))
    b.configure(
        Temp,
        "derived.double",
        lambda r: (
            r.buffer(BufferCfg.SingleLatest())
            .transform(Temp, "station.1.temp", lambda t: Temp(t.celsius * 2))
            .remote(writable=True)
        ),
    )
    b.configure(
        Temp,
        "derived.join",
        lambda r: r.buffer(BufferCfg.SingleLatest()).join(
            [(Temp, "station.1.temp"), (Setpoint, "config.setpoint")],
            lambda t, s: Temp(t.celsius - s.celsius),
        ),
    )
    return b


@contextlib.contextmanager
def short_tmpdir() -> Iterator[str]:
    """A short temporary directory (Unix socket paths are limited to ~100 bytes)."""
    d = tempfile.mkdtemp(prefix="aimdb-t-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def served(b: AimDbBuilder | None = None, **cfg: Any) -> AsyncIterator[tuple[Any, RemoteServer]]:
    """Run a database with a remote server on a Unix socket in a temp dir."""
    with short_tmpdir() as d:
        cfg.setdefault("unix", os.path.join(d, "db.sock"))
        async with (b or builder()).build() as db:
            server = await start_server(db, RemoteConfig(**cfg))
            yield db, server


class Raw:
    """A bare protocol speaker over a Unix socket: send frames, read lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.next_id = 0

    @classmethod
    async def open(cls, path: str) -> Raw:
        r, w = await asyncio.open_unix_connection(path, limit=1 << 24)
        return cls(r, w)

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 2.0) -> dict[str, Any]:
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        if not data:
            raise EOFError("connection closed")
        return json.loads(data)  # type: ignore[no-any-return]

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        frame: dict[str, Any] = {"id": self.next_id, "method": method}
        if params is not None:
            frame["params"] = params
        await self.send_bytes(json.dumps(frame).encode() + b"\n")
        while True:
            msg = await self.line()
            if "event" not in msg:
                return msg

    async def hello(self, **extra: Any) -> dict[str, Any]:
        return await self.call("hello", {"version": "1.0", **extra})

    async def closed(self, timeout: float = 2.0) -> bool:
        """Wait for the server to close the connection (then close our end too)."""
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionError:
            data = b""
        except asyncio.TimeoutError:
            return False
        self.close()
        return data == b"" or data.endswith(b"\n")

    def close(self) -> None:
        self.writer.close()


async def wait_until(cond: Any, timeout: float = 2.0, step: float = 0.01) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


class ServerThread:
    """A database plus remote server running on an event loop in a background thread.

    For CLI tests (the CLI runs its own event loop with ``asyncio.run``).
    """

    def __init__(self, b: AimDbBuilder | None = None, **cfg: Any) -> None:
        self._b = b or builder()
        self._cfg = cfg
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: RemoteServer | None = None
        self.db: Any = None
        self.error: BaseException | None = None
        self._dir = tempfile.mkdtemp(prefix="aimdb-t-")
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return self.server.endpoints[0]

    def _main(self) -> None:
        asyncio.run(self._amain())

    async def _amain(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self._cfg.setdefault("unix", os.path.join(self._dir, "db.sock"))
            async with self._b.build() as db:
                self.db = db
                self.server = await start_server(db, RemoteConfig(**self._cfg))
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server loop and return its result."""
        assert self.loop is not None
        fut: Any = asyncio.run_coroutine_threadsafe(_call(fn, *args), self.loop)
        return fut.result(5)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        shutil.rmtree(self._dir, ignore_errors=True)


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def aio(fn: Any) -> Any:
    """Run an ``async def`` test on a fresh asyncio loop, bounded to 60 s."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 60))

    return wrapper
