"""One client connection: reading and dispatching requests, writing replies and events, time limits.

A session runs two tasks owned by the server: the *reader* (frames in, requests handled
in order) and the *writer* (replies first, then subscription events). The session ends
when either ends; replies already queued get a bounded time to go out. A watchdog timer
closes a connection that does not complete ``hello`` within ``handshake_timeout`` or
stays idle longer than ``idle_timeout`` afterwards, with an error frame saying why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from .. import Reader
from . import _protocol as P
from ._fanout import Subscription
from ._methods import HANDLERS, METHODS
from ._records import RemoteFailure
from ._transport import Transport

if TYPE_CHECKING:
    from ._server import RemoteServer

_log = logging.getLogger("aimdb.remote")

REPLY_BACKLOG = 1 << 20
"""Bytes of unsent replies before a session stops reading requests."""
FLUSH_TIMEOUT = 1.0
"""Seconds a closing session waits for its queued replies to be written."""
_EVENT_BATCH = 512


class Session:
    """One connection: handshake state, subscriptions, drain cursors, reader and writer tasks.

    Args:
        server: the server it belongs to.
        transport: the connection (byte stream or WebSocket, see :mod:`._transport`).
        peer: a name for the peer in logs.
        idle_timeout: seconds of inactivity after ``hello`` before the session is closed;
            ``None`` for never.
    """

    def __init__(
        self,
        server: RemoteServer,
        transport: Transport,
        peer: str,
        idle_timeout: float | None,
    ) -> None:
        self.server = server
        self.idle_timeout = idle_timeout
        self.transport = transport
        self.peer = peer
        self.ready = False
        self.client = ""
        self.subs: dict[str, Subscription] = {}
        self.drains: dict[str, Reader[Any]] = {}
        self.next_sub = 0
        self.replies: deque[bytes] = deque()
        self.reply_bytes = 0
        self.closing = False
        self.requests = 0
        self.notification_errors = 0
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.started = self.last_activity = self._loop.time()
        self._reader_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    # -------------------------------------------------------------- life cycle

    async def run(self) -> None:
        """Serve the connection until it ends; release everything it held.

        Raises:
            asyncio.CancelledError: the calling task was cancelled (the session is closed
                and released all the same).
        """
        tasks = self.server.tasks
        name = f"aimdb.remote.session[{self.peer}]"
        reader = self._reader_task = tasks.spawn(self._read_loop(), name=name + ".reader")
        writer = self._writer_task = tasks.spawn(self._write_loop(), name=name + ".writer")
        self._arm_watchdog()
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            self.closing = True
            self._wake.set()
            if not writer.done():  # the reader ended: let queued replies go out (bounded)
                await asyncio.wait((writer,), timeout=FLUSH_TIMEOUT)
        finally:
            self.closing = True
            if self._watchdog is not None:
                self._watchdog.cancel()
            stuck = not writer.done()  # the peer did not take its replies in time
            reader.cancel()
            writer.cancel()
            self.cleanup()
            self.transport.close(abort=stuck)

    def stop(self) -> None:
        """Ask the session to end (its queued replies still get :data:`FLUSH_TIMEOUT`)."""
        self.closing = True
        self._wake.set()
        if self._reader_task is not None:
            self._reader_task.cancel()

    def expire(self, code: str, message: str) -> None:
        """Send an error frame (id null) and end the session."""
        _log.info("remote peer %s: closing: %s", self.peer, message)
        self.send(P.error_frame(None, code, message))
        self.stop()

    def cleanup(self) -> None:
        """Release every subscription and drain cursor (idempotent)."""
        fanout = self.server.fanout
        for s in list(self.subs.values()):
            fanout.unsubscribe(s)
        self.subs.clear()
        for r in self.drains.values():
            if r is not None:
                r.close()
        self.drains.clear()

    # -------------------------------------------------------------- time limits

    def _arm_watchdog(self) -> None:
        cfg = self.server.config
        if not self.ready:
            deadline = self.started + cfg.handshake_timeout
        elif self.idle_timeout is not None:
            deadline = self.last_activity + self.idle_timeout
        else:
            self._watchdog = None
            return
        self._watchdog = self._loop.call_at(deadline, self._check_time)

    def _check_time(self) -> None:
        self._watchdog = None
        if self.closing:
            return
        cfg = self.server.config
        now = self._loop.time()
        counters = self.server.counters
        if not self.ready:
            if now >= self.started + cfg.handshake_timeout:
                counters.handshake_timeouts += 1
                self.expire(P.HANDSHAKE_REQUIRED, "handshake timed out")
                return
        elif self.idle_timeout is not None and now >= self.last_activity + self.idle_timeout:
            counters.idle_closed += 1
            self.expire(P.IDLE_TIMEOUT, f"idle for {self.idle_timeout:g} s; closing")
            return
        self._arm_watchdog()

    # -------------------------------------------------------------- output

    def wake(self) -> None:
        """Wake the writer (an event was queued)."""
        self._wake.set()

    def send(self, frame: bytes) -> None:
        """Queue one reply frame."""
        self.replies.append(frame)
        self.reply_bytes += len(frame)
        self._wake.set()

    async def _write_loop(self) -> None:
        w = self.transport
        loop = self._loop
        try:
            while True:
                wrote = events = False
                replies = self.replies
                while replies:
                    frame = replies.popleft()
                    self.reply_bytes -= len(frame)
                    w.write(frame)
                    wrote = True
                for s in list(self.subs.values()):
                    if s.queue:
                        w.write(s.take(_EVENT_BATCH))
                        wrote = events = True
                self._flushed.set()
                if wrote:
                    await w.drain()
                    if events:  # the client took them off the socket: it is active
                        self.last_activity = loop.time()
                    continue
                self._wake.clear()
                if self.replies or any(s.queue for s in self.subs.values()):
                    continue
                if self.closing:
                    return
                await self._wake.wait()
        except (ConnectionError, OSError):
            self.closing = True

    # -------------------------------------------------------------- input

    async def _read_loop(self) -> None:
        transport = self.transport
        loop = self._loop
        try:
            while not self.closing:
                got = await transport.receive()
                if got is None:
                    return
                if got.active:  # a whole frame or keep-alive: trickled bytes are not
                    self.last_activity = loop.time()
                for item in got.items:
                    if isinstance(item, P.FrameError):
                        self._bad_frame(item)
                    else:
                        self._handle(item)
                    if self.closing:
                        return
                if self.reply_bytes > REPLY_BACKLOG:
                    self._flushed.clear()
                    await self._flushed.wait()
        except (ConnectionError, OSError):
            return

    def _bad_frame(self, err: P.FrameError) -> None:
        counters = self.server.counters
        counters.bad_frames += 1
        if err.code == P.FRAME_TOO_DEEP:
            counters.frames_too_deep += 1
        self.send(P.error_frame(None, err.code, err.message))

    def _handle(self, frame: bytes) -> None:
        server = self.server
        obj = P.parse_frame(frame, server.config.max_depth)
        if isinstance(obj, P.FrameError):
            self._bad_frame(obj)
            return
        notify = "id" not in obj  # a notification: never answered, failures only counted
        req_id = obj.get("id")
        if isinstance(req_id, (dict, list)):
            self.send(P.error_frame(None, P.INVALID_REQUEST, "'id' must be a number, string or null"))
            return
        method = obj.get("method")
        if not isinstance(method, str):
            self._fail(notify, req_id, P.INVALID_REQUEST, "missing 'method' (a string)")
            return
        params = obj.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self._fail(notify, req_id, P.INVALID_PARAMS, "'params' must be an object")
            return
        self.requests += 1
        server.counters.requests += 1
        handler = HANDLERS.get(method)
        if handler is None:
            self._fail(
                notify, req_id, P.METHOD_NOT_FOUND, f"unknown method {method!r}", {"methods": list(METHODS)}
            )
            return
        if not self.ready and method != "hello":
            self._fail(notify, req_id, P.HANDSHAKE_REQUIRED, "send 'hello' first")
            return
        was_ready = self.ready
        try:
            result = handler(self, params)
        except RemoteFailure as f:
            self._fail(notify, req_id, f.code, f.message, f.details)
            return
        except Exception as exc:  # a bug must not end the session: answered, logged and counted
            server.counters.failed(f"method {method}", exc)
            _log.exception("remote method %s failed", method)
            self._fail(notify, req_id, P.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return
        if self.ready and not was_ready:  # handshake done: from now on the idle limit applies
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._arm_watchdog()
        if not notify:
            self.send(P.result_frame(req_id, result))

    def _fail(self, notify: bool, req_id: Any, code: str, message: str, details: Any = None) -> None:
        """Answer a failed request with an error frame; count (and log once) a failed notification."""
        if not notify:
            self.send(P.error_frame(req_id, code, message, details))
            return
        self.notification_errors += 1
        self.server.counters.notification_errors += 1
        if self.notification_errors == 1:
            _log.warning("remote peer %s: notification failed (%s): %s", self.peer, code, message)
