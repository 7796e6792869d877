"""What a session reads from and writes to: the :class:`Transport` protocol and its byte-stream adapter.

A session (:mod:`._session`) speaks the remote protocol over a transport: it receives
frames (whole requests, or a :class:`~._protocol.FrameError` for a frame it cannot take),
writes newline-terminated frames, and closes. :class:`StreamTransport` carries the frames
as NDJSON lines over a byte stream (Unix socket, TCP, pipe, serial line);
:class:`WebSocketTransport` carries one frame per WebSocket text message (aiohttp is
imported only when one is created).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .._aio import wait_for
from . import _protocol as P

if TYPE_CHECKING:
    from aiohttp import web

_log = logging.getLogger("aimdb.remote")

READ_CHUNK = 64 * 1024
"""Bytes a stream session reads at once (also the stream reader's buffer limit)."""


class Incoming(NamedTuple):
    """What one :meth:`Transport.receive` call got.

    Attributes:
        items: complete frames (``bytes`` without the newline) and framing errors, in
            arrival order; may be empty (part of a line arrived).
        active: whether the peer completed something (a frame, a keep-alive line, or any
            message): what counts as activity for ``idle_timeout``.
    """

    items: list[bytes | P.FrameError]
    active: bool


class Transport(Protocol):
    """The two directions of one client connection, as a session uses them."""

    async def receive(self) -> Incoming | None:
        """Wait for input; ``None`` when the peer ended the connection (or it broke).

        Raises:
            ConnectionError: the connection broke (treated like ``None``).
        """
        ...

    def write(self, data: bytes) -> None:
        """Queue one or more newline-terminated frames for sending."""
        ...

    async def drain(self) -> None:
        """Wait until queued frames are handed to the operating system (flow control).

        Raises:
            ConnectionError: the connection broke.
        """
        ...

    async def end_output(self, timeout: float) -> None:
        """After a refusal was written: let the peer read it before the connection closes.

        Bounded by ``timeout`` seconds per step; never raises for a peer that is gone.
        """
        ...

    def close(self, abort: bool) -> None:
        """Close the connection; ``abort`` drops unsent data (a peer that does not read)."""
        ...


class StreamWriterLike(Protocol):
    """What a session needs of the writing side of a byte stream."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class StreamTransport:
    """NDJSON frames over a byte stream: :class:`Transport` for an ``asyncio`` reader/writer pair.

    Lines longer than ``max_frame`` are discarded and reported as ``frame_too_large``
    (the stream goes on); blank lines are keep-alives. Activity is a completed line;
    bytes of an unfinished line do not count.

    Args:
        reader: the read side.
        writer: the write side (an :class:`asyncio.StreamWriter`, or any object with
            ``write``, ``drain`` and ``close``).
        max_frame: the largest frame accepted, in bytes.
    """

    __slots__ = ("_decoder", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: StreamWriterLike, max_frame: int) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = P.FrameDecoder(max_frame)

    async def receive(self) -> Incoming | None:
        """Read what arrived and return the frames it completes; ``None`` at end of stream."""
        data = await self.reader.read(READ_CHUNK)
        if not data:
            return None
        return Incoming(self._decoder.feed(data), b"\n" in data)

    def write(self, data: bytes) -> None:
        """Write frames to the stream."""
        self.writer.write(data)

    async def drain(self) -> None:
        """Wait for the stream's flow control."""
        await self.writer.drain()

    async def end_output(self, timeout: float) -> None:
        """Half-close (when the stream can) and read until the peer hangs up (bounded).

        Closing a socket with unread input resets it, which can destroy the refusal
        before the peer read it.
        """
        w = self.writer
        try:
            if isinstance(w, asyncio.StreamWriter) and w.can_write_eof():
                w.write_eof()
            await wait_for(self._discard_until_eof(), timeout)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass  # the peer is gone or slow: it is refused either way

    async def _discard_until_eof(self) -> None:
        for _ in range(64):
            if not await self.reader.read(READ_CHUNK):
                return

    def close(self, abort: bool) -> None:
        """Close the stream; ``abort`` resets a socket instead of waiting for the peer to read.

        Closing a socket transport with unsent bytes waits for the peer to take them,
        which a peer that never reads does not: its connection would stay open.
        """
        try:
            if abort and isinstance(self.writer, asyncio.StreamWriter):
                self.writer.transport.abort()
            else:
                self.writer.close()
        except (ConnectionError, OSError, RuntimeError) as exc:  # already gone: nothing to release
            _log.debug("remote: close: %r", exc)


WS_MESSAGE_TOO_BIG = 1009
"""WebSocket close code for a message longer than ``max_frame``."""

BINARY_MESSAGE = "binary message: frames are JSON text messages"
"""The ``parse_error`` message a binary WebSocket message is answered with."""


class WebSocketTransport:
    """Remote-protocol frames as WebSocket text messages: :class:`Transport` over aiohttp.

    One frame per text message (a trailing newline is allowed, an empty message is a
    keep-alive); every message counts as activity. A binary message is answered with
    ``parse_error`` and the session goes on. A message longer than ``max_frame`` (the
    ``max_msg_size`` the socket was prepared with) ends the session: the peer gets
    ``frame_too_large`` and close code 1009 (see :mod:`._http`). Writing sends each
    queued frame as its own text message; :meth:`drain` waits on the socket's flow
    control, so a peer that does not read stalls only its own session.

    Args:
        ws: a prepared :class:`aiohttp.web.WebSocketResponse`.
        abort: drops the underlying connection at once (for a peer that does not read).

    Attributes:
        close_code: the close code the owner should close the WebSocket with.
        aborted: whether :meth:`close` aborted the connection.
    """

    __slots__ = ("_abort", "_msg", "_out", "_ws", "aborted", "close_code")

    def __init__(self, ws: web.WebSocketResponse, abort: Callable[[], None]) -> None:
        from aiohttp import WSMsgType

        self._msg = WSMsgType
        self._ws = ws
        self._abort = abort
        self._out: list[bytes] = []
        self.close_code = 1000
        self.aborted = False

    async def receive(self) -> Incoming | None:
        """Wait for the next message; ``None`` once the WebSocket is closing or closed."""
        if self.close_code != 1000:
            return None
        msg = await self._ws.receive()
        kind = msg.type
        if kind is self._msg.TEXT:
            data = msg.data.encode()
            if data.endswith(b"\n"):
                data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
            return Incoming([data] if data else [], True)
        if kind is self._msg.BINARY:
            err = P.FrameError(P.PARSE_ERROR, BINARY_MESSAGE)
            return Incoming([err], True)
        if kind is self._msg.ERROR and getattr(msg.data, "code", None) == WS_MESSAGE_TOO_BIG:
            self.close_code = WS_MESSAGE_TOO_BIG
            err = P.FrameError(P.FRAME_TOO_LARGE, "message longer than max_frame; closing")
            return Incoming([err], True)
        return None  # close, closing, closed or a protocol error (aiohttp closed the socket)

    def write(self, data: bytes) -> None:
        """Queue newline-terminated frames (sent by :meth:`drain`)."""
        self._out.append(data)

    async def drain(self) -> None:
        """Send every queued frame as a text message, waiting on flow control."""
        out, self._out = self._out, []
        send = self._ws.send_frame
        text = self._msg.TEXT
        for chunk in out:
            for frame in chunk.split(b"\n"):
                if frame:
                    await send(frame, text)

    async def end_output(self, timeout: float) -> None:
        """Nothing to wait for: a WebSocket close is delivered after the messages before it."""

    def close(self, abort: bool) -> None:
        """Mark the session over; ``abort`` drops the connection (the owner closes it otherwise)."""
        if abort and not self.aborted:
            self.aborted = True
            self._abort()
