"""Broker-side MQTT packets built by hand for the wire tests, and a harness around MqttProtocol.

The builders are written independently of ``aimdb.connectors._mqtt_wire`` so that a bug in
its encoders cannot hide the same bug in its decoder.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

from aimdb.connectors._mqtt_wire import MqttProtocol, ProtocolViolation


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(raw)) + raw


def packet(head: int, body: bytes) -> bytes:
    return bytes((head,)) + varint(len(body)) + body


def props(*items: bytes) -> bytes:
    block = b"".join(items)
    return varint(len(block)) + block


def connack(v5: bool = True, present: bool = False, rc: int = 0, properties: bytes = b"\x00") -> bytes:
    body = bytes((1 if present else 0, rc))
    if v5:
        body += properties
    return packet(0x20, body)


def publish(
    topic: str | bytes,
    payload: bytes = b"x",
    qos: int = 0,
    pid: int = 0,
    v5: bool = True,
    properties: bytes = b"\x00",
    flags: int = -1,
) -> bytes:
    head = 0x30 | (qos << 1) if flags < 0 else 0x30 | flags
    body = string(topic)
    if qos:
        body += struct.pack(">H", pid)
    if v5:
        body += properties
    return packet(head, body + payload)


def ack(kind: int, pid: int, rc: int | None = None, properties: bytes | None = None) -> bytes:
    """PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70 (head with its flags)."""
    body = struct.pack(">H", pid)
    if rc is not None:
        body += bytes((rc,))
        if properties is not None:
            body += properties
    return packet(kind, body)


def suback(pid: int, codes: bytes, v5: bool = True, properties: bytes = b"\x00") -> bytes:
    return packet(0x90, struct.pack(">H", pid) + (properties if v5 else b"") + codes)


class RecordingTransport(asyncio.Transport):
    """Records what the protocol writes and whether it closed or aborted the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


@dataclass
class Outcome:
    messages: list[tuple[str, bytes, list[int]]] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    writes: list[bytes] = field(default_factory=list)
    closed: bool = False
    aborted: bool = False
    violation: ProtocolViolation | None = None
    connack: tuple[int, bool, dict[int, Any]] | None = None
    disconnect_reason: str | None = None

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    @property
    def code(self) -> int | None:
        return None if self.violation is None else self.violation.reason_code


def feed(
    chunks: list[bytes],
    version: int = 5,
    connected: bool = True,
    inbound_qos2: set[int] | None = None,
    **kwargs: Any,
) -> Outcome:
    """Feed ``chunks`` to a fresh MqttProtocol (after a plain CONNACK when ``connected``)."""

    async def run() -> Outcome:
        out = Outcome()
        proto = MqttProtocol(
            version,
            lambda t, p, s: out.messages.append((t, p, list(s))),
            lambda pid, rc: out.acks.append((pid, rc)),
            inbound_qos2=inbound_qos2,
            **kwargs,
        )
        transport = RecordingTransport()
        proto.connection_made(transport)
        if connected:
            proto.data_received(connack(version == 5))
        for chunk in chunks:
            proto.data_received(chunk)
        out.writes = transport.writes
        out.closed = transport.closed
        out.aborted = transport.aborted
        out.violation = proto.violation
        if proto.connack.done() and proto.connack.exception() is None:
            out.connack = proto.connack.result()
        out.disconnect_reason = proto.disconnect_reason
        proto.connection_lost(None)  # cancels the abort timer of a failed connection
        return out

    return asyncio.run(run())
