"""Station processes of the demo: how each is started, watched, restarted and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aimdb
from aimdb._aio import wait_for

PKG_DIR = Path(aimdb.__file__).resolve().parent


@dataclass
class StationSpec:
    """One station: its name, the runtime it runs on and how it reaches the hub.

    ``transport`` is ``"socket"`` (``aimdb://`` link over the hub's Unix socket),
    ``"pipe"`` (``SerialLink`` over the child's stdout) or ``"mqtt"`` (publishes to a broker);
    ``gateway`` marks a pipe station whose gateway process republishes it to MQTT.
    """

    name: str
    runtime: str
    transport: str
    gateway: bool = False

    @property
    def link(self) -> str:
        """Short label of the link, for the table."""
        if self.gateway:
            return "pipe+mqtt"
        return {"socket": "aimdb/unix", "pipe": "aimdb/pipe", "mqtt": "mqtt"}.get(self.transport, "?")


def micropython_runner() -> tuple[list[str] | None, str]:
    """Return ``(command prefix, "")`` to run MicroPython, or ``(None, reason)``.

    The runner is the one packaged with aimdb (``aimdb/_micropython/run.mjs``, or the file
    named by ``$AIMDB_MICROPYTHON_RUNNER``) under Node.js, with the pinned interpreter
    installed by ``aimdb micropython install`` (see :mod:`aimdb._micropython`).
    """
    from aimdb._micropython import runner

    found = runner("--timeout", "0", "--exit-on-stdin-eof", "--heap", "4m", "--path", str(PKG_DIR))
    return found.command, found.reason


def station_command(spec: StationSpec, hz: float, link: str) -> list[str]:
    """Return the command line that runs ``spec`` (``link``: ``stdout``, ``unix://…`` or ``mqtt://…``)."""
    if spec.runtime == "micropython":
        prefix, _ = micropython_runner()
        assert prefix is not None
        return [*prefix, str(PKG_DIR / "_demo" / "mpy_station.py"), spec.name, f"{hz:g}"]
    return [
        sys.executable,
        "-m",
        "aimdb._demo",
        "station",
        spec.name,
        "--runtime",
        spec.runtime,
        "--hz",
        f"{hz:g}",
        "--link",
        link,
    ]


def child_env() -> dict[str, str]:
    """Environment for child processes: this interpreter's import path, unbuffered output."""
    env = dict(os.environ)
    src = str(PKG_DIR.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Supervised:
    """A child process kept running: restarted ``restart_delay`` seconds after it exits.

    ``on_stdout(reader, writer)`` (for pipe stations) serves the child's stdout/stdin for
    as long as the process lives; ``on_line(text)`` gets every stderr line.
    """

    name: str
    argv: list[str]
    on_line: Callable[[str], None]
    on_stdout: Callable[[asyncio.StreamReader, Any], Awaitable[None]] | None = None
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, info: None
    restart_delay: float = 2.0
    starts: int = 0
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _stopping: bool = False

    async def run(self) -> None:
        """Start the child and restart it whenever it exits, until cancelled."""
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE if self.on_stdout else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(),
                start_new_session=True,
            )
            self._proc = proc
            self.starts += 1
            self.on_event("started", {"pid": proc.pid, "starts": self.starts})
            tasks = [asyncio.ensure_future(self._lines(proc))]
            if self.on_stdout is not None:
                assert proc.stdout is not None
                tasks.append(asyncio.ensure_future(self.on_stdout(proc.stdout, proc.stdin)))
            waiter = asyncio.ensure_future(proc.wait())
            try:
                # wait() also waits for the pipes, which a surviving grandchild (the MicroPython
                # runner's interpreter process) may hold open; the exit status comes first.
                while proc.returncode is None and not waiter.done():
                    await asyncio.wait([waiter], timeout=0.2)
                code = proc.returncode
            finally:
                self._killpg(proc.pid, signal.SIGKILL)  # leftovers of the process group
                try:
                    with contextlib.suppress(Exception):  # a cancellation of ours goes on
                        await wait_for(waiter, 1.0)  # pipes close once the group is gone
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.wait(tasks)
                    for t in tasks:  # a pipe reader that failed is logged, not dropped
                        exc = None if t.cancelled() else t.exception()
                        if exc is not None:
                            logging.getLogger("aimdb.demo").error(
                                "reading station %s failed: %r", self.name, exc, exc_info=exc
                            )
            if self._stopping:
                return
            self.on_event("exited", {"pid": proc.pid, "code": code, "restart_in": self.restart_delay})
            await asyncio.sleep(self.restart_delay)

    async def _lines(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            self.on_line(line.decode(errors="replace").rstrip())

    @staticmethod
    def _killpg(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    async def stop(self, grace: float = 0.5) -> None:
        """Stop the child: SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
        self._stopping = True
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        # Not proc.wait(): it also waits for pipes a leftover grandchild may hold open.
        while proc.returncode is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self._killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_for(proc.wait(), grace)


def pipe_server(server: Any, name: str) -> Callable[[asyncio.StreamReader, Any], Awaitable[None]]:
    """Return an ``on_stdout`` that serves a pipe station's stdout/stdin as one remote session."""

    async def serve(reader: asyncio.StreamReader, writer: Any) -> None:
        await server.serve_stream(reader, writer, peer=f"pipe:{name}")

    return serve


async def stop_all(supervised: list[Supervised], tasks: list[asyncio.Task[None]]) -> None:
    """Stop every child (in parallel), then end their supervising tasks.

    A child that could not be stopped, or a supervising task that had failed, is logged
    with its cause (once each); the others are stopped all the same.
    """
    stopped = await asyncio.gather(*(s.stop() for s in supervised), return_exceptions=True)
    for t in tasks:
        t.cancel()
    ended = await asyncio.gather(*tasks, return_exceptions=True)
    log = logging.getLogger("aimdb.demo")
    for what, results in (("stopping", stopped), ("supervising", ended)):
        for s, r in zip(supervised, results, strict=False):
            if isinstance(r, Exception):  # a cancellation is how a supervising task ends
                log.error("%s station %s failed: %r", what, s.name, r, exc_info=r)


def exit_when_stdin_closes() -> None:
    """Exit this process as soon as its stdin reaches EOF (the parent is gone)."""

    def watch() -> None:
        with contextlib.suppress(Exception):
            while os.read(0, 4096):
                pass
        os._exit(0)

    threading.Thread(target=watch, name="aimdb-demo-parent-watch", daemon=True).start()
