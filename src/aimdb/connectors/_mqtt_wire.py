"""MQTT 3.1.1 / 5 wire protocol on an asyncio ``Protocol`` (client side).

Only what a connector needs: CONNECT/CONNACK, PUBLISH in both directions with QoS 0/1/2,
SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and DISCONNECT. Packets are parsed straight out of
``data_received`` (no per-packet task or queue) and acknowledgements produced while
parsing one chunk of input are written with a single ``transport.write``. MQTT 5
properties are parsed where they matter (CONNACK receive maximum, reason strings) and
skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "CONNACK_REASONS",
    "MqttProtocol",
    "ProtocolViolation",
    "connect_packet",
    "encode_varint",
    "filter_covers",
    "publish_packet",
    "subscribe_packet",
    "topic_matches",
    "validate_filter",
    "validate_topic",
]

PINGREQ = b"\xc0\x00"
_NO_IDS: list[int] = []
DISCONNECT = b"\xe0\x00"

CONNACK_REASONS = {
    # MQTT 3.1.1
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
    # MQTT 5
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}

# MQTT 5 property identifier -> value kind, to skip or read properties
_PROP_KIND = {
    0x01: "b", 0x17: "b", 0x19: "b", 0x24: "b", 0x25: "b", 0x28: "b", 0x29: "b", 0x2A: "b",
    0x13: "h", 0x21: "h", 0x22: "h", 0x23: "h",
    0x02: "i", 0x11: "i", 0x18: "i", 0x27: "i",
    0x0B: "v",
    0x03: "s", 0x08: "s", 0x12: "s", 0x15: "s", 0x1A: "s", 0x1C: "s", 0x1F: "s",
    0x09: "s", 0x16: "s",
    0x26: "p",
}  # fmt: skip


class ProtocolViolation(Exception):
    """The broker sent something that is not valid MQTT."""


def encode_varint(n: int) -> bytes:
    """Encode ``n`` as an MQTT variable byte integer."""
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtocolViolation("truncated variable byte integer")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ProtocolViolation("variable byte integer too long")


def _s(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def _read_props(buf: Any, pos: int, end: int) -> tuple[dict[int, Any], int]:
    """Read an MQTT 5 property block; returns ({id: value}, position after it)."""
    length, pos = _read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise ProtocolViolation("property block overruns packet")
    props: dict[int, Any] = {}
    while pos < stop:
        pid, pos = _read_varint(buf, pos, stop)
        kind = _PROP_KIND.get(pid)
        if kind == "b":
            props[pid] = buf[pos]
            pos += 1
        elif kind == "h":
            props[pid] = struct.unpack_from(">H", buf, pos)[0]
            pos += 2
        elif kind == "i":
            props[pid] = struct.unpack_from(">I", buf, pos)[0]
            pos += 4
        elif kind == "v":
            value, pos = _read_varint(buf, pos, stop)
            if pid == 0x0B:  # subscription identifiers may repeat
                props.setdefault(pid, []).append(value)
            else:
                props[pid] = value
        elif kind == "s":
            (n,) = struct.unpack_from(">H", buf, pos)
            props[pid] = bytes(buf[pos + 2 : pos + 2 + n])
            pos += 2 + n
        elif kind == "p":
            for _ in range(2):
                (n,) = struct.unpack_from(">H", buf, pos)
                pos += 2 + n
        else:
            raise ProtocolViolation("unknown property " + hex(pid))
    return props, stop


def connect_packet(
    client_id: str,
    *,
    version: int,
    keepalive: int,
    clean: bool,
    username: str | None,
    password: str | None,
    session_expiry: int,
    receive_maximum: int,
) -> bytes:
    """Build a CONNECT packet (``version`` 4 = MQTT 3.1.1, 5 = MQTT 5)."""
    flags = 0x02 if clean else 0
    payload = _s(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _s(username.encode())
    if password is not None:
        flags |= 0x40
        payload += _s(password.encode())
    var = _s(b"MQTT") + bytes((version, flags)) + struct.pack(">H", keepalive)
    if version == 5:
        props = b""
        if session_expiry:
            props += b"\x11" + struct.pack(">I", session_expiry)
        props += b"\x21" + struct.pack(">H", receive_maximum)
        var += encode_varint(len(props)) + props
    body = var + payload
    return b"\x10" + encode_varint(len(body)) + body


def publish_packet(
    topic: bytes, payload: bytes, qos: int, retain: bool, pid: int, v5: bool, dup: bool = False
) -> bytes:
    """Build a PUBLISH packet; ``topic`` is UTF-8 encoded already."""
    head = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    var = struct.pack(">H", len(topic)) + topic
    if qos:
        var += struct.pack(">H", pid)
    if v5:
        var += b"\x00"
    n = len(var) + len(payload)
    if n < 128:
        return bytes((head, n)) + var + payload
    return bytes((head,)) + encode_varint(n) + var + payload


def subscribe_packet(pid: int, filters: list[tuple[str, int]], v5: bool, sub_id: int = 0) -> bytes:
    """Build a SUBSCRIBE packet for ``[(filter, qos), ...]`` (MQTT 5: with ``sub_id`` when not 0)."""
    body = struct.pack(">H", pid)
    if v5:
        props = b"\x0b" + encode_varint(sub_id) if sub_id else b""
        body += encode_varint(len(props)) + props
    for flt, qos in filters:
        body += _s(flt.encode()) + bytes((qos,))
    return b"\x82" + encode_varint(len(body)) + body


def validate_topic(topic: str) -> str | None:
    """Return a problem with ``topic`` as a publish topic, or ``None`` when fine."""
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "wildcards are not allowed in a publish topic: " + repr(topic)
    if "\x00" in topic:
        return "NUL in topic"
    if len(topic.encode()) > 65535:
        return "topic too long"
    return None


def validate_filter(flt: str) -> str | None:
    """Return a problem with ``flt`` as a subscription filter, or ``None`` when fine."""
    if not flt:
        return "empty topic filter"
    levels = flt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole last level: " + repr(flt)
        if "+" in level and level != "+":
            return "'+' must be a whole level: " + repr(flt)
    return None


def filter_covers(a: str, b: str) -> bool:
    """True when every topic matching filter ``b`` also matches filter ``a``."""
    if a == b:
        return True
    fa = a.split("/")
    fb = b.split("/")
    for i, level in enumerate(fa):
        if level == "#":
            return not (i == 0 and fb[0].startswith("$"))
        if i >= len(fb) or fb[i] == "#":
            return False
        if level == "+":
            if i == 0 and fb[0].startswith("$"):
                return False
            continue
        if level != fb[i]:
            return False
    return len(fa) == len(fb)


def topic_matches(flt: str, topic: str) -> bool:
    """True when ``topic`` matches the subscription filter ``flt`` (``+``/``#`` aware).

    Wildcards at the first level do not match topics starting with ``$`` (MQTT 4.7.2).
    """
    if flt == topic:
        return True
    if "+" not in flt and "#" not in flt:
        return False
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    f = flt.split("/")
    t = topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


class MqttProtocol(asyncio.Protocol):
    """One MQTT connection.

    Args:
        version: 4 (MQTT 3.1.1) or 5.
        on_message: ``fn(topic, payload, sub_ids)`` for every PUBLISH received (QoS 2: once);
            ``sub_ids`` lists the MQTT 5 subscription identifiers it came with (may be empty).
        on_ack: ``fn(pid, reason_code)`` when an outbound QoS 1/2 publish completed.
    """

    def __init__(
        self,
        version: int,
        on_message: Callable[[str, bytes, list[int]], None],
        on_ack: Callable[[int, int], None],
    ) -> None:
        self.version = version
        self.v5 = version == 5
        self._on_message = on_message
        self._on_ack = on_ack
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[tuple[int, bool, dict[int, Any]]] = loop.create_future()
        self.closed: asyncio.Future[str | None] = loop.create_future()
        self._buf = bytearray()
        self._suback: dict[int, asyncio.Future[list[int]]] = {}
        self._in_qos2: set[int] = set()
        self._writable: asyncio.Future[None] | None = None
        self.paused = False
        self.last_in = time.monotonic()
        self.disconnect_reason: str | None = None

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - platform dependent
                pass
        transport.set_write_buffer_limits(high=1 << 20)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.disconnect_reason or (str(exc) if exc else "closed by the broker")
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(reason))
            self.connack.exception()  # mark retrieved
        if not self.closed.done():
            self.closed.set_result(reason)
        for fut in self._suback.values():
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
                fut.exception()
        self._suback.clear()
        w = self._writable
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        w = self._writable
        if w is not None and not w.done():
            w.set_result(None)

    async def drained(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        while self.paused and not self.closed.done():
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    @property
    def is_open(self) -> bool:
        """True until the connection closed."""
        return not self.closed.done()

    def write(self, data: bytes) -> None:
        """Write raw bytes (ignored once the connection is closing)."""
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def abort(self, reason: str) -> None:
        """Close the connection now, recording ``reason``."""
        self.disconnect_reason = self.disconnect_reason or reason
        if self.transport is not None:
            self.transport.abort()

    async def subscribe(self, pid: int, filters: list[tuple[str, int]], sub_id: int = 0) -> list[int]:
        """Send SUBSCRIBE and return the granted QoS / reason code per filter."""
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._suback[pid] = fut
        self.write(subscribe_packet(pid, filters, self.v5, sub_id))
        return await fut

    # ------------------------------------------------------------ parsing

    def data_received(self, data: bytes) -> None:
        self.last_in = time.monotonic()
        buf = self._buf
        if buf:
            buf += data
            view: Any = buf
        else:
            view = data
        n = len(view)
        pos = 0
        out: list[bytes] = []
        try:
            while n - pos >= 2:
                head = view[pos]
                b = view[pos + 1]
                if b < 128:
                    rl = b
                    start = pos + 2
                else:
                    try:
                        rl, start = _read_varint(view, pos + 1, n)
                    except ProtocolViolation:
                        if n - pos > 5:
                            raise
                        break
                end = start + rl
                if end > n:
                    break
                kind = head & 0xF0
                if kind == 0x30:
                    self._publish(head, view, start, end, out)
                else:
                    self._control(head, view, start, end, out)
                pos = end
        except (ProtocolViolation, struct.error, IndexError, UnicodeDecodeError) as exc:
            self.abort("protocol violation: " + str(exc))
            return
        if pos < n:
            if view is buf:
                del buf[:pos]
            else:
                buf += data[pos:]
        elif buf:
            buf.clear()
        if out:
            self.write(b"".join(out))

    def _publish(self, head: int, v: Any, start: int, end: int, out: list[bytes]) -> None:
        qos = (head >> 1) & 3
        (tlen,) = struct.unpack_from(">H", v, start)
        p = start + 2 + tlen
        topic = bytes(v[start + 2 : p]).decode()
        pid = 0
        if qos:
            (pid,) = struct.unpack_from(">H", v, p)
            p += 2
        sub_ids: list[int] = _NO_IDS
        if self.v5:
            if v[p] == 0:
                p += 1
            else:
                props, p = _read_props(v, p, end)
                sub_ids = props.get(0x0B, _NO_IDS)
        payload = bytes(v[p:end])
        if qos == 2:
            out.append(b"\x50\x02" + struct.pack(">H", pid))
            if pid in self._in_qos2:
                return
            self._in_qos2.add(pid)
        elif qos == 1:
            out.append(b"\x40\x02" + struct.pack(">H", pid))
        self._on_message(topic, payload, sub_ids)

    def _control(self, head: int, v: Any, start: int, end: int, out: list[bytes]) -> None:
        kind = head & 0xF0
        if kind in (0x40, 0x70, 0x50, 0x60):  # PUBACK PUBCOMP PUBREC PUBREL
            (pid,) = struct.unpack_from(">H", v, start)
            rc = v[start + 2] if end - start > 2 else 0
            if kind == 0x50:
                if rc >= 0x80:
                    self._on_ack(pid, rc)
                else:
                    out.append(b"\x62\x02" + struct.pack(">H", pid))
            elif kind == 0x60:
                self._in_qos2.discard(pid)
                out.append(b"\x70\x02" + struct.pack(">H", pid))
            else:
                self._on_ack(pid, rc)
        elif kind == 0x20:  # CONNACK
            present = bool(v[start] & 1)
            rc = v[start + 1]
            props: dict[int, Any] = {}
            if self.v5 and end - start > 2:
                props, _ = _read_props(v, start + 2, end)
            if not self.connack.done():
                self.connack.set_result((rc, present, props))
        elif kind == 0x90:  # SUBACK
            (pid,) = struct.unpack_from(">H", v, start)
            p = start + 2
            if self.v5:
                _props, p = _read_props(v, p, end)
            fut = self._suback.pop(pid, None)
            if fut is not None and not fut.done():
                fut.set_result(list(v[p:end]))
        elif kind == 0xD0:  # PINGRESP
            pass
        elif kind == 0xE0:  # DISCONNECT (MQTT 5, from the server)
            rc = v[start] if end > start else 0
            text = CONNACK_REASONS.get(rc, "reason " + hex(rc))
            if self.v5 and end - start > 1:
                props, _ = _read_props(v, start + 1, end)
                if 0x1F in props:
                    text += " (" + props[0x1F].decode(errors="replace") + ")"
            self.disconnect_reason = "broker sent DISCONNECT: " + text
        elif kind == 0xB0:  # UNSUBACK
            pass
        else:
            raise ProtocolViolation("unexpected packet type " + hex(head))
