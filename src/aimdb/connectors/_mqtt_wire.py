"""MQTT 3.1.1 / 5 wire protocol on an asyncio ``Protocol`` (client side).

Only what a connector needs: CONNECT/CONNACK, PUBLISH in both directions with QoS 0/1/2,
SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and DISCONNECT. Packets are parsed straight out of
``data_received`` (no per-packet task or queue) and acknowledgements produced while
parsing one chunk of input are written with a single ``transport.write``.

The decoder is strict: every packet from the broker is checked against the
specification (fixed-header flags per packet type, packet identifiers, UTF-8 strings,
topic names, property identifiers, lengths and values per packet type, variable byte
integers, the client's announced Maximum Packet Size). The first malformed packet is a
:class:`ProtocolViolation`: the acknowledgements already due for the good packets before
it are written first, then (MQTT 5) a DISCONNECT with the violation's reason code, then
the connection is closed.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from .._errors import ConnectorError, ProtocolError, SerializeError

__all__ = [
    "CONNACK_REASONS",
    "MALFORMED_PACKET",
    "MAX_PACKET_ID",
    "MAX_REMAINING_LENGTH",
    "PACKET_TOO_LARGE",
    "PROTOCOL_ERROR",
    "RECEIVE_MAXIMUM_EXCEEDED",
    "TOPIC_ALIAS_INVALID",
    "MqttProtocol",
    "PacketIds",
    "ProtocolViolation",
    "connect_packet",
    "disconnect_packet",
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

MAX_REMAINING_LENGTH = 268_435_455
"""Largest remaining length a variable byte integer can carry (4 bytes)."""
MAX_PACKET_ID = 65535

# MQTT 5 reason codes a client puts into its DISCONNECT for a broker's violation
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95

_CLOSE_GRACE = 5.0  # seconds a closing transport may take to flush before it is aborted

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
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}

_CODE_NAMES = {
    MALFORMED_PACKET: "mqtt_malformed_packet",
    PROTOCOL_ERROR: "mqtt_protocol_error",
    RECEIVE_MAXIMUM_EXCEEDED: "mqtt_receive_maximum_exceeded",
    TOPIC_ALIAS_INVALID: "mqtt_topic_alias_invalid",
    PACKET_TOO_LARGE: "mqtt_packet_too_large",
}

# MQTT 5 property identifier -> value kind: b byte, f byte 0/1, h two-byte integer,
# i four-byte integer, v variable byte integer, s UTF-8 string, d binary data,
# p UTF-8 string pair
_PROP_KIND = {
    0x01: "f", 0x17: "f", 0x19: "f", 0x24: "f", 0x25: "f", 0x28: "f", 0x29: "f", 0x2A: "f",
    0x13: "h", 0x21: "h", 0x22: "h", 0x23: "h",
    0x02: "i", 0x11: "i", 0x18: "i", 0x27: "i",
    0x0B: "v",
    0x03: "s", 0x08: "s", 0x12: "s", 0x15: "s", 0x1A: "s", 0x1C: "s", 0x1F: "s",
    0x09: "d", 0x16: "d",
    0x26: "p",
}  # fmt: skip
# properties that may appear more than once in one packet
_PROP_REPEATS = frozenset((0x0B, 0x26))
# properties a server may send, per packet type (upper nibble of the fixed header)
_ACK_PROPS = frozenset((0x1F, 0x26))
_PROPS_ALLOWED = {
    0x20: frozenset(
        (0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A, 0x13, 0x1A,
         0x1C, 0x15, 0x16)
    ),
    0x30: frozenset((0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0B, 0x03)),
    0x40: _ACK_PROPS,
    0x50: _ACK_PROPS,
    0x60: _ACK_PROPS,
    0x70: _ACK_PROPS,
    0x90: _ACK_PROPS,
    0xB0: _ACK_PROPS,
    0xE0: frozenset((0x11, 0x1F, 0x26, 0x1C)),
}  # fmt: skip
_PACKET_NAMES = {
    0x20: "CONNACK", 0x30: "PUBLISH", 0x40: "PUBACK", 0x50: "PUBREC", 0x60: "PUBREL",
    0x70: "PUBCOMP", 0x90: "SUBACK", 0xB0: "UNSUBACK", 0xD0: "PINGRESP", 0xE0: "DISCONNECT",
}  # fmt: skip
# reason codes a server may put into each acknowledgement (MQTT 5)
_PUB_ACK_CODES = frozenset((0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99))
_REL_COMP_CODES = frozenset((0x00, 0x92))
_SUBACK_CODES_5 = frozenset((0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2))
_SUBACK_CODES_4 = frozenset((0x00, 0x01, 0x02, 0x80))
_UNSUBACK_CODES = frozenset((0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91))
_CONNACK_CODES_5 = frozenset([0] + [c for c in CONNACK_REASONS if c >= 0x80])


class ProtocolViolation(ProtocolError):
    """The broker sent something that is not valid MQTT; the connection is closed.

    Attributes:
        reason_code: the MQTT 5 reason code of the client's DISCONNECT: ``0x81`` malformed
            packet, ``0x82`` protocol error, ``0x93`` receive maximum exceeded, ``0x94`` topic
            alias invalid or ``0x95`` packet too large.
    """

    def __init__(self, message: str, reason_code: int = MALFORMED_PACKET) -> None:
        self.reason_code = reason_code
        super().__init__(message, _CODE_NAMES.get(reason_code, "mqtt_protocol_error"))


def encode_varint(n: int) -> bytes:
    """Encode ``n`` as an MQTT variable byte integer (1 to 4 bytes).

    Raises:
        SerializeError: ``n`` is negative or above 268,435,455 (``MAX_REMAINING_LENGTH``),
            the largest length an MQTT packet can announce.
    """
    if 0 <= n < 128:
        return bytes((n,))
    if n < 0 or n > MAX_REMAINING_LENGTH:
        raise SerializeError(
            "MQTT length " + str(n) + " is outside 0..268,435,455 (a packet cannot be that large)"
        )
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
    """Read a variable byte integer inside ``buf[pos:end]``; returns (value, position after it)."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise ProtocolViolation("truncated variable byte integer")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0 and pos - start > 1:
                raise ProtocolViolation("variable byte integer not in its shortest form")
            return value, pos
        shift += 7
        if shift > 21:
            raise ProtocolViolation("variable byte integer longer than 4 bytes")


def _header_length(buf: Any, pos: int, n: int) -> tuple[int, int] | None:
    """Remaining length and start of the variable header of the packet at ``pos``.

    ``None`` while the length bytes are not all there yet.
    """
    try:
        return _read_varint(buf, pos + 1, n)
    except ProtocolViolation:
        if n - pos - 1 >= 4:  # four length bytes arrived and still not a valid length
            raise
        if any(not buf[i] & 0x80 for i in range(pos + 1, n)):
            raise  # complete but invalid (not in its shortest form)
        return None


def _u16(v: Any, p: int, end: int, what: str) -> int:
    if p + 2 > end:
        raise ProtocolViolation("packet ends inside the " + what)
    return int((v[p] << 8) | v[p + 1])


def _utf8(raw: bytes, what: str) -> str:
    """Decode an MQTT UTF-8 string: valid UTF-8 without U+0000 (MQTT 1.5.4)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ProtocolViolation(what + " is not valid UTF-8") from None
    if "\x00" in text:
        raise ProtocolViolation(what + " contains U+0000")
    return text


def _read_props(buf: Any, pos: int, end: int, kind: int) -> tuple[dict[int, Any], int]:
    """Read the MQTT 5 property block of a packet of type ``kind``.

    Returns ``({id: value}, position after the block)``. Strings are kept as the UTF-8
    bytes (checked), subscription identifiers as a list, user properties are skipped.

    Raises:
        ProtocolViolation: the block overruns the packet, a value overruns the block, an
            identifier is unknown or not allowed in this packet type, a property repeats,
            or a value is out of its range.
    """
    length, pos = _read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise ProtocolViolation("property block overruns the packet")
    allowed = _PROPS_ALLOWED.get(kind, frozenset())
    props: dict[int, Any] = {}
    while pos < stop:
        pid, pos = _read_varint(buf, pos, stop)
        vkind = _PROP_KIND.get(pid)
        if vkind is None:
            raise ProtocolViolation("unknown property identifier " + hex(pid))
        if pid not in allowed:
            raise ProtocolViolation(
                "property " + hex(pid) + " is not allowed in " + _PACKET_NAMES.get(kind, hex(kind)),
                PROTOCOL_ERROR,
            )
        if pid in props and pid not in _PROP_REPEATS:
            raise ProtocolViolation("property " + hex(pid) + " appears twice", PROTOCOL_ERROR)
        value: Any
        if vkind == "f":
            if pos >= stop:
                raise ProtocolViolation("property " + hex(pid) + " overruns the property block")
            value = buf[pos]
            pos += 1
            if value > 1:
                raise ProtocolViolation(
                    "property " + hex(pid) + " must be 0 or 1, got " + str(value), PROTOCOL_ERROR
                )
        elif vkind == "h":
            value = _u16(buf, pos, stop, "property " + hex(pid))
            pos += 2
        elif vkind == "i":
            if pos + 4 > stop:
                raise ProtocolViolation("property " + hex(pid) + " overruns the property block")
            (value,) = struct.unpack_from(">I", buf, pos)
            pos += 4
        elif vkind == "v":
            value, pos = _read_varint(buf, pos, stop)
            if value == 0:
                raise ProtocolViolation("subscription identifier 0", PROTOCOL_ERROR)
            props.setdefault(pid, []).append(value)
            continue
        else:  # "s", "d", "p": one or two length-prefixed strings
            for _ in range(2 if vkind == "p" else 1):
                n = _u16(buf, pos, stop, "property " + hex(pid))
                if pos + 2 + n > stop:
                    raise ProtocolViolation("property " + hex(pid) + " overruns the property block")
                value = bytes(buf[pos + 2 : pos + 2 + n])
                if vkind != "d":
                    _utf8(value, "property " + hex(pid))
                pos += 2 + n
            if vkind == "p":
                continue  # user properties are not used
        if (pid in (0x21, 0x27) and value == 0) or (pid == 0x23 and value == 0):
            raise ProtocolViolation("property " + hex(pid) + " must not be 0", PROTOCOL_ERROR)
        props[pid] = value
    return props, stop


def _s(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


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
    maximum_packet_size: int = 0,
) -> bytes:
    """Build a CONNECT packet (``version`` 4 = MQTT 3.1.1, 5 = MQTT 5).

    ``maximum_packet_size`` (MQTT 5, 0 = not announced) tells the broker the largest
    packet this client accepts; give the same value to :class:`MqttProtocol`.
    """
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
        if maximum_packet_size:
            props += b"\x27" + struct.pack(">I", maximum_packet_size)
        var += encode_varint(len(props)) + props
    body = var + payload
    return b"\x10" + encode_varint(len(body)) + body


def disconnect_packet(reason_code: int = 0) -> bytes:
    """Build a DISCONNECT packet; MQTT 5 with ``reason_code`` when it is not 0 (normal)."""
    if not reason_code:
        return DISCONNECT
    return bytes((0xE0, 1, reason_code))


def publish_packet(
    topic: bytes, payload: bytes, qos: int, retain: bool, pid: int, v5: bool, dup: bool = False
) -> bytes:
    """Build a PUBLISH packet; ``topic`` is UTF-8 encoded already.

    Raises:
        SerializeError: the packet would be longer than MQTT allows (268,435,455 bytes
            after the fixed header).
    """
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


def _string_problem(text: str, what: str) -> str | None:
    """A problem with ``text`` as an MQTT UTF-8 string (MQTT 1.5.4), or ``None``."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        return what + " is not a valid UTF-8 string (it contains a lone surrogate): " + repr(text)
    if "\x00" in text:
        return "NUL (U+0000) in " + what + ": " + repr(text)
    if size > 65535:
        return what + " is " + str(size) + " bytes long in UTF-8; MQTT allows at most 65,535"
    return None


def validate_topic(topic: str) -> str | None:
    """Return a problem with ``topic`` as a publish topic, or ``None`` when fine.

    A topic is a problem when it is empty, contains ``+`` or ``#``, contains U+0000 or a
    lone surrogate (not a valid UTF-8 string), or is longer than 65,535 bytes in UTF-8.
    """
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "wildcards are not allowed in a publish topic: " + repr(topic)
    return _string_problem(topic, "topic")


def validate_filter(flt: str) -> str | None:
    """Return a problem with ``flt`` as a subscription filter, or ``None`` when fine.

    A filter is a problem when it is empty, has ``#`` anywhere but as the whole last level
    or ``+`` anywhere but as a whole level, contains U+0000 or a lone surrogate (not a
    valid UTF-8 string), or is longer than 65,535 bytes in UTF-8.
    """
    if not flt:
        return "empty topic filter"
    problem = _string_problem(flt, "topic filter")
    if problem is not None:
        return problem
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


class PacketIds:
    """Packet identifiers (1..65535) of one MQTT session, never reused while in flight.

    Every packet that waits for an answer holds its identifier from :meth:`allocate` until
    :meth:`release`: QoS 1/2 PUBLISH (until PUBACK/PUBCOMP or a refusal), SUBSCRIBE (until
    SUBACK) and UNSUBSCRIBE (until UNSUBACK). Identifiers go round in order, skipping those
    in flight, so a released identifier is not handed out again at once.
    """

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._last = 0

    def allocate(self) -> int:
        """Return an identifier that is not in flight and mark it in flight.

        Raises:
            ConnectorError: all 65,535 identifiers are in flight.
        """
        used = self._used
        if len(used) >= MAX_PACKET_ID:
            raise ConnectorError("all 65,535 MQTT packet identifiers are in flight")
        pid = self._last
        while True:
            pid = pid + 1 if pid < MAX_PACKET_ID else 1
            if pid not in used:
                used.add(pid)
                self._last = pid
                return pid

    def release(self, pid: int) -> None:
        """Mark ``pid`` free again (no effect when it is not in flight)."""
        self._used.discard(pid)

    def clear(self) -> None:
        """Free every identifier (the session ended: a clean start or an expired session)."""
        self._used.clear()

    def __contains__(self, pid: object) -> bool:
        return pid in self._used

    def __len__(self) -> int:
        return len(self._used)


class MqttProtocol(asyncio.Protocol):
    """One MQTT connection.

    Args:
        version: 4 (MQTT 3.1.1) or 5.
        on_message: ``fn(topic, payload, sub_ids)`` for every PUBLISH received (QoS 2: once);
            ``sub_ids`` lists the MQTT 5 subscription identifiers it came with (may be empty).
        on_ack: ``fn(pid, reason_code)`` when an outbound QoS 1/2 publish completed.
        receive_maximum: the Receive Maximum this client announced in its CONNECT; a
            broker with more inbound QoS 2 publishes pending is a protocol violation.
        maximum_packet_size: the Maximum Packet Size this client announced (MQTT 5; 0 = none);
            a longer packet from the broker is a protocol violation.
        inbound_qos2: the packet identifiers of inbound QoS 2 publishes delivered but not yet
            released (PUBREL); pass the session's set to keep it across connections
            (default: a set of this connection's own).
        on_released: ``fn(pid)`` when the broker received an outbound QoS 2 publish (PUBREC)
            and PUBREL goes out: from then on that publish must be completed with PUBREL,
            never sent again, also after a reconnect.

    Attributes:
        violation: the :class:`ProtocolViolation` that closed the connection, else ``None``.
        disconnect_code: the reason code of the broker's DISCONNECT (MQTT 5), else ``None``.
    """

    def __init__(
        self,
        version: int,
        on_message: Callable[[str, bytes, list[int]], None],
        on_ack: Callable[[int, int], None],
        *,
        receive_maximum: int = 65535,
        maximum_packet_size: int = 0,
        inbound_qos2: set[int] | None = None,
        on_released: Callable[[int], None] | None = None,
    ) -> None:
        self.version = version
        self.v5 = version == 5
        self._on_message = on_message
        self._on_ack = on_ack
        self._receive_maximum = receive_maximum
        self._max_in = maximum_packet_size if self.v5 else 0
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[tuple[int, bool, dict[int, Any]]] = loop.create_future()
        self.closed: asyncio.Future[str | None] = loop.create_future()
        self._buf = bytearray()
        self._suback: dict[int, asyncio.Future[list[int]]] = {}
        self._in_qos2: set[int] = set() if inbound_qos2 is None else inbound_qos2
        self._topics: dict[bytes, str] = {}  # topic names already checked
        self._writable: asyncio.Future[None] | None = None
        self._abort_later: asyncio.TimerHandle | None = None
        self.paused = False
        self.last_in = time.monotonic()
        self.disconnect_reason: str | None = None
        self.disconnect_code: int | None = None
        self._on_released = on_released
        self.violation: ProtocolViolation | None = None
        self._got_connack = False
        self._reason_text = ""  # reason string of the broker's DISCONNECT being parsed

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
        if self._abort_later is not None:
            self._abort_later.cancel()
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

    def _fail(self, exc: ProtocolViolation, out: list[bytes]) -> None:
        """Write the acknowledgements due, then (MQTT 5) DISCONNECT with the reason, then close."""
        self.violation = exc
        self.disconnect_reason = self.disconnect_reason or "protocol violation: " + str(exc)
        self._buf.clear()
        t = self.transport
        if t is None or t.is_closing():
            return
        if self.v5:
            out.append(disconnect_packet(exc.reason_code))
        if out:
            t.write(b"".join(out))
        t.close()  # flushes what was written, then closes
        self._abort_later = asyncio.get_running_loop().call_later(_CLOSE_GRACE, t.abort)

    # ------------------------------------------------------------ parsing

    def data_received(self, data: bytes) -> None:
        if self.violation is not None:
            return  # closing: the rest of the stream is not read
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
                    hl = _header_length(view, pos, n)
                    if hl is None:
                        break
                    rl, start = hl
                if self._max_in and start - pos + rl > self._max_in:
                    raise ProtocolViolation(
                        "a packet of "
                        + str(start - pos + rl)
                        + " bytes is larger than the Maximum Packet Size this client announced ("
                        + str(self._max_in)
                        + ")",
                        PACKET_TOO_LARGE,
                    )
                end = start + rl
                if end > n:
                    break
                if head & 0xF0 == 0x30:
                    self._publish(head, view, start, end, out)
                elif head == 0x40 and rl == 2 and self._got_connack:  # the common PUBACK
                    pid = (view[start] << 8) | view[start + 1]
                    if not pid:
                        raise ProtocolViolation("PUBACK with packet identifier 0", PROTOCOL_ERROR)
                    self._on_ack(pid, 0)
                else:
                    self._control(head, view, start, end, out)
                pos = end
        except ProtocolViolation as exc:
            self._fail(exc, out)
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

    def _topic(self, raw: bytes) -> str:
        """Check a PUBLISH topic name the first time it is seen; remember it (up to 1024)."""
        if not raw:
            raise ProtocolViolation("PUBLISH with an empty topic name", PROTOCOL_ERROR)
        topic = _utf8(raw, "PUBLISH topic name")
        if "+" in topic or "#" in topic:
            raise ProtocolViolation("PUBLISH topic name with a wildcard: " + repr(topic), PROTOCOL_ERROR)
        if len(self._topics) >= 1024:
            self._topics.clear()
        self._topics[raw] = topic
        return topic

    def _publish(self, head: int, v: Any, start: int, end: int, out: list[bytes]) -> None:
        if not self._got_connack:
            raise ProtocolViolation("PUBLISH before CONNACK", PROTOCOL_ERROR)
        qos = (head >> 1) & 3
        if qos == 3:
            raise ProtocolViolation("PUBLISH with both QoS bits set")
        if not qos and head & 0x08:
            raise ProtocolViolation("QoS 0 PUBLISH with the DUP flag set")
        if start + 2 > end:
            raise ProtocolViolation("packet ends inside the PUBLISH topic length")
        p = start + 2 + ((v[start] << 8) | v[start + 1])
        if p > end:
            raise ProtocolViolation("PUBLISH topic name overruns the packet")
        raw = bytes(v[start + 2 : p])
        topic = self._topics.get(raw) or self._topic(raw)
        pid = 0
        if qos:
            if p + 2 > end:
                raise ProtocolViolation("packet ends inside the PUBLISH packet identifier")
            pid = (v[p] << 8) | v[p + 1]
            if not pid:
                raise ProtocolViolation(
                    "QoS " + str(qos) + " PUBLISH with packet identifier 0", PROTOCOL_ERROR
                )
            p += 2
        sub_ids: list[int] = _NO_IDS
        if self.v5:
            if p >= end:
                raise ProtocolViolation("PUBLISH without its property length")
            if v[p] == 0:
                p += 1
            else:
                props, p = _read_props(v, p, end, 0x30)
                if 0x23 in props:
                    raise ProtocolViolation(
                        "PUBLISH with a topic alias; this client allows none", TOPIC_ALIAS_INVALID
                    )
                sub_ids = props.get(0x0B, _NO_IDS)
        payload = bytes(v[p:end])
        if qos == 2:
            pending = self._in_qos2
            if pid in pending:  # a re-send: acknowledged again, delivered once
                out.append(b"\x50\x02" + struct.pack(">H", pid))
                return
            if len(pending) >= self._receive_maximum:
                raise ProtocolViolation(
                    "more than " + str(self._receive_maximum) + " inbound QoS 2 publishes pending",
                    RECEIVE_MAXIMUM_EXCEEDED,
                )
            pending.add(pid)
            out.append(b"\x50\x02" + struct.pack(">H", pid))
        elif qos == 1:
            out.append(b"\x40\x02" + struct.pack(">H", pid))
        self._on_message(topic, payload, sub_ids)

    def _reason_and_props(self, kind: int, v: Any, p: int, end: int) -> int:
        """MQTT 5: the optional reason code and properties after position ``p``; returns the code."""
        if p >= end:
            return 0
        rc = int(v[p])
        if p + 1 < end:
            props, stop = _read_props(v, p + 1, end, kind)
            if stop != end:
                raise ProtocolViolation(_PACKET_NAMES[kind] + " has bytes after its properties")
            if kind == 0xE0 and 0x1F in props:
                self._reason_text = props[0x1F].decode()
        return rc

    def _control(self, head: int, v: Any, start: int, end: int, out: list[bytes]) -> None:
        kind = head & 0xF0
        name = _PACKET_NAMES.get(kind)
        if name is None:
            if kind in (0x10, 0x80, 0xA0, 0xC0) or (kind == 0xF0 and self.v5):
                raise ProtocolViolation("the broker sent a client packet type " + hex(head), PROTOCOL_ERROR)
            raise ProtocolViolation("reserved packet type " + hex(head))
        if head & 0x0F != (2 if kind == 0x60 else 0):
            raise ProtocolViolation(name + " with wrong fixed-header flags " + hex(head))
        if kind == 0x20:
            self._connack(v, start, end)
            return
        if not self._got_connack and kind != 0xE0:
            raise ProtocolViolation(name + " before CONNACK", PROTOCOL_ERROR)
        if kind in (0x40, 0x50, 0x60, 0x70):  # PUBACK PUBREC PUBREL PUBCOMP
            pid = _u16(v, start, end, name + " packet identifier")
            if not pid:
                raise ProtocolViolation(name + " with packet identifier 0", PROTOCOL_ERROR)
            if self.v5:
                rc = self._reason_and_props(kind, v, start + 2, end)
                if rc not in (_REL_COMP_CODES if kind in (0x60, 0x70) else _PUB_ACK_CODES):
                    raise ProtocolViolation(name + " with invalid reason code " + hex(rc))
            elif end - start != 2:
                raise ProtocolViolation(name + " with remaining length " + str(end - start))
            else:
                rc = 0
            if kind == 0x50:
                if rc >= 0x80:
                    self._on_ack(pid, rc)
                else:
                    if self._on_released is not None:
                        self._on_released(pid)
                    out.append(b"\x62\x02" + struct.pack(">H", pid))
            elif kind == 0x60:
                self._in_qos2.discard(pid)
                out.append(b"\x70\x02" + struct.pack(">H", pid))
            else:
                self._on_ack(pid, rc)
        elif kind in (0x90, 0xB0):  # SUBACK UNSUBACK
            pid = _u16(v, start, end, name + " packet identifier")
            if not pid:
                raise ProtocolViolation(name + " with packet identifier 0", PROTOCOL_ERROR)
            p = start + 2
            if self.v5:
                _props, p = _read_props(v, p, end, kind)
            codes = list(v[p:end])
            if kind == 0x90:
                valid = _SUBACK_CODES_5 if self.v5 else _SUBACK_CODES_4
                if not codes or any(c not in valid for c in codes):
                    raise ProtocolViolation("SUBACK without valid reason codes: " + bytes(codes).hex())
                fut = self._suback.pop(pid, None)
                if fut is not None and not fut.done():
                    fut.set_result(codes)
            elif (self.v5 and (not codes or any(c not in _UNSUBACK_CODES for c in codes))) or (
                not self.v5 and codes
            ):
                raise ProtocolViolation("UNSUBACK with invalid reason codes: " + bytes(codes).hex())
        elif kind == 0xD0:  # PINGRESP
            if end != start:
                raise ProtocolViolation("PINGRESP with remaining length " + str(end - start))
        else:  # 0xE0 DISCONNECT (MQTT 5, from the server)
            if not self.v5:
                raise ProtocolViolation("an MQTT 3.1.1 server sent DISCONNECT", PROTOCOL_ERROR)
            self._reason_text = ""
            rc = self._reason_and_props(kind, v, start, end)
            text = CONNACK_REASONS.get(rc, "reason " + hex(rc)) if rc else "normal disconnection"
            if self._reason_text:
                text += " (" + self._reason_text + ")"
            self.disconnect_reason = "broker sent DISCONNECT: " + text
            self.disconnect_code = rc

    def _connack(self, v: Any, start: int, end: int) -> None:
        if self._got_connack:
            raise ProtocolViolation("a second CONNACK", PROTOCOL_ERROR)
        if end - start < 2:
            raise ProtocolViolation("CONNACK shorter than 2 bytes")
        flags = v[start]
        rc = int(v[start + 1])
        if flags & 0xFE:
            raise ProtocolViolation("CONNACK with reserved flag bits set: " + hex(flags))
        present = bool(flags & 1)
        if present and rc:
            raise ProtocolViolation("CONNACK refusing the connection with session present", PROTOCOL_ERROR)
        props: dict[int, Any] = {}
        if self.v5:
            if rc not in _CONNACK_CODES_5:
                raise ProtocolViolation("CONNACK with invalid reason code " + hex(rc))
            props, stop = _read_props(v, start + 2, end, 0x20)
            if stop != end:
                raise ProtocolViolation("CONNACK has bytes after its properties")
        else:
            if end - start != 2:
                raise ProtocolViolation("CONNACK with remaining length " + str(end - start))
            if rc > 5:
                raise ProtocolViolation("CONNACK with invalid return code " + str(rc))
        self._got_connack = True
        if not self.connack.done():
            self.connack.set_result((rc, present, props))
