"""A fault-injecting MQTT proxy for the tests: drops chosen packets, cuts connections.

It sits between MQTT clients and a broker on loopback, splits the byte stream of each
direction into MQTT packets (by the fixed header alone, so it works for 3.1.1 and 5 alike)
and applies rules before forwarding each packet::

    async with MqttFaultProxy(broker_port) as proxy:
        proxy.drop("to_client", "PUBREC")                 # the first PUBREC the broker sends
        proxy.cut_after("to_broker", "PUBREL", nth=2)     # forward the 2nd PUBREL, then cut
        proxy.replace("to_client", "PUBACK", b"\\x41\\x02\\x00\\x01")  # malformed instead
        conn = MqttConnector(proxy.url)
        ...
        await proxy.wait_for(lambda p: p.kind == "PUBCOMP")

Every packet seen is in ``proxy.log`` (with what was done to it); every connection's end is
in ``proxy.ended`` (with its cause). A cut aborts both sockets (a TCP reset, like a network
failure); ``cut_all()`` does that to every open connection now.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DIRECTIONS", "MqttFaultProxy", "ProxiedPacket", "Rule"]

DIRECTIONS = ("to_broker", "to_client")
KINDS = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}  # fmt: skip
_DONE = {"drop": "dropped", "cut_after": "forwarded+cut", "cut_before": "cut", "replace": "replaced"}
_WITH_PID = {"PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK"}


@dataclass(frozen=True)
class ProxiedPacket:
    """One MQTT packet that passed the proxy.

    Attributes:
        conn: number of the client connection (1, 2, ... in accept order).
        direction: ``"to_broker"`` or ``"to_client"``.
        kind: packet type name (``"PUBLISH"``, ``"PUBREC"`` ...).
        data: the whole packet, fixed header included.
        action: ``"forwarded"``, ``"dropped"``, ``"forwarded+cut"``, ``"cut"`` (not forwarded)
            or ``"replaced"`` (other bytes forwarded instead).
    """

    conn: int
    direction: str
    kind: str
    data: bytes
    action: str = "forwarded"

    @property
    def flags(self) -> int:
        return self.data[0] & 0x0F

    @property
    def qos(self) -> int:
        """QoS of a PUBLISH (0 for other packets)."""
        return (self.flags >> 1) & 3 if self.kind == "PUBLISH" else 0

    @property
    def body(self) -> bytes:
        pos = 1
        while self.data[pos] & 0x80:
            pos += 1
        return self.data[pos + 1 :]

    @property
    def pid(self) -> int | None:
        """Packet identifier of a QoS 1/2 PUBLISH or an ack/(un)subscribe, else ``None``."""
        body = self.body
        if self.kind == "PUBLISH":
            if not self.qos:
                return None
            (tlen,) = struct.unpack_from(">H", body, 0)
            return int(struct.unpack_from(">H", body, 2 + tlen)[0])
        if self.kind in _WITH_PID:
            return int(struct.unpack_from(">H", body, 0)[0])
        return None


@dataclass
class Rule:
    """Drop or cut at the ``nth`` packet (counted over the proxy's life) that matches.

    ``action``: ``"drop"`` (not forwarded), ``"cut_after"`` (forwarded, then both sockets
    aborted), ``"cut_before"`` (both sockets aborted, the packet not forwarded) or
    ``"replace"`` (``data`` forwarded instead: to inject malformed bytes).
    """

    direction: str
    kind: str
    action: str
    nth: int = 1
    when: Callable[[ProxiedPacket], bool] | None = None
    data: bytes = b""
    seen: int = 0
    fired: bool = False

    def matches(self, pkt: ProxiedPacket) -> bool:
        if self.fired or pkt.direction != self.direction or pkt.kind != self.kind:
            return False
        if self.when is not None and not self.when(pkt):
            return False
        self.seen += 1
        if self.seen == self.nth:
            self.fired = True
            return True
        return False


@dataclass
class _Conn:
    number: int
    client: asyncio.StreamWriter
    broker: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        """Both sockets reset at once (what is not sent yet is lost), like a network failure."""
        for w in (self.client, self.broker):
            w.transport.abort()
            w.close()  # marks the writer closed (no-op on the aborted transport)

    def close(self) -> None:
        """Both sockets closed after what was forwarded is flushed (one peer closed)."""
        for w in (self.client, self.broker):
            w.close()


class MqttFaultProxy:
    """Loopback TCP proxy in front of the MQTT broker at ``broker_host:broker_port``.

    Args:
        broker_port: the broker's port.
        broker_host: the broker's host (loopback).
        host: where the proxy listens; ``port`` 0 picks a free port.
        port: the proxy's port (kept by ``start()`` after ``close()``).
    """

    def __init__(
        self, broker_port: int, broker_host: str = "127.0.0.1", host: str = "127.0.0.1", port: int = 0
    ):
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.host = host
        self.port = port
        self.rules: list[Rule] = []
        self.log: list[ProxiedPacket] = []
        self.ended: list[tuple[int, str]] = []  # (connection, cause)
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[int, _Conn] = {}
        self._changed: asyncio.Event | None = None

    # ------------------------------------------------------------ rules

    def drop(
        self, direction: str, kind: str, nth: int = 1, when: Callable[[ProxiedPacket], bool] | None = None
    ) -> Rule:
        """Do not forward the ``nth`` matching packet."""
        return self._add(Rule(direction, kind, "drop", nth, when))

    def cut_after(
        self, direction: str, kind: str, nth: int = 1, when: Callable[[ProxiedPacket], bool] | None = None
    ) -> Rule:
        """Forward the ``nth`` matching packet, then abort both sockets of its connection."""
        return self._add(Rule(direction, kind, "cut_after", nth, when))

    def cut_before(
        self, direction: str, kind: str, nth: int = 1, when: Callable[[ProxiedPacket], bool] | None = None
    ) -> Rule:
        """Abort both sockets of the connection instead of forwarding the ``nth`` matching packet."""
        return self._add(Rule(direction, kind, "cut_before", nth, when))

    def replace(
        self,
        direction: str,
        kind: str,
        data: bytes,
        nth: int = 1,
        when: Callable[[ProxiedPacket], bool] | None = None,
    ) -> Rule:
        """Forward ``data`` instead of the ``nth`` matching packet (say, a malformed one)."""
        return self._add(Rule(direction, kind, "replace", nth, when, data))

    def _add(self, rule: Rule) -> Rule:
        if rule.direction not in DIRECTIONS:
            raise ValueError("direction must be one of " + repr(DIRECTIONS))
        if rule.kind not in KINDS.values():
            raise ValueError("unknown MQTT packet type " + repr(rule.kind))
        if rule.nth < 1:
            raise ValueError("nth counts from 1")
        self.rules.append(rule)
        return rule

    def cut_all(self) -> None:
        """Abort every open connection now (both sockets)."""
        for conn in list(self._conns.values()):
            conn.abort()

    # ------------------------------------------------------------ observing

    def packets(self, kind: str | None = None, direction: str | None = None) -> list[ProxiedPacket]:
        """The logged packets of ``kind`` going in ``direction`` (``None``: any)."""
        return [
            p
            for p in self.log
            if (kind is None or p.kind == kind) and (direction is None or p.direction == direction)
        ]

    async def wait_for(
        self, pred: Callable[[MqttFaultProxy], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        """Wait until ``pred(proxy)`` is true (checked at each packet and connection end).

        Raises:
            AssertionError: not true within ``timeout`` seconds (the log is in the message).
        """
        deadline = time.monotonic() + timeout
        assert self._changed is not None, "proxy not started"
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(p.conn, p.direction, p.kind, p.pid, p.action) for p in self.log[-30:]]
                raise AssertionError(f"proxy: timed out waiting for {what or pred}; last packets {seen}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    # ------------------------------------------------------------ life cycle

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, abort every connection and wait for the pumps to end."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = [t for c in self._conns.values() for t in c.tasks]
        self.cut_all()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def __aenter__(self) -> MqttFaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ pumping

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            b_reader, b_writer = await asyncio.open_connection(self.broker_host, self.broker_port)
        except OSError as exc:
            self._end(number, "broker unreachable: " + str(exc))
            c_writer.transport.abort()
            return
        conn = _Conn(number, c_writer, b_writer)
        self._conns[number] = conn
        conn.tasks = [
            asyncio.create_task(self._pump(conn, c_reader, b_writer, "to_broker")),
            asyncio.create_task(self._pump(conn, b_reader, c_writer, "to_client")),
        ]
        try:
            await asyncio.wait(conn.tasks)  # this handler owns its two pumps
        finally:
            for t in conn.tasks:
                t.cancel()
            self._conns.pop(number, None)

    async def _pump(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        cause = "closed"
        orderly = False
        try:
            while True:
                head = await reader.readexactly(1)
                length_bytes = b""
                length = 0
                for shift in (0, 7, 14, 21):
                    b = await reader.readexactly(1)
                    length_bytes += b
                    length |= (b[0] & 0x7F) << shift
                    if not b[0] & 0x80:
                        break
                data = head + length_bytes + await reader.readexactly(length)
                pkt = ProxiedPacket(conn.number, direction, KINDS.get(head[0] >> 4, "RESERVED"), data)
                action = "forwarded"
                for rule in self.rules:
                    if rule.matches(pkt):
                        action = _DONE[rule.action]
                        if action == "replaced":
                            data = rule.data
                        break
                self._record(ProxiedPacket(pkt.conn, direction, pkt.kind, pkt.data, action))
                if action in ("forwarded", "forwarded+cut", "replaced"):
                    writer.write(data)
                    await writer.drain()
                if action in ("forwarded+cut", "cut"):
                    cause = "cut by the proxy after " + direction + " " + pkt.kind
                    conn.abort()
                    return
        except asyncio.IncompleteReadError:
            cause = direction + ": peer closed"
            orderly = True
        except (ConnectionError, OSError) as exc:
            cause = direction + ": " + type(exc).__name__ + ": " + str(exc)
        finally:
            self._end(conn.number, cause)
            # one side ended: end the other too, as a real connection would
            conn.close() if orderly else conn.abort()

    def _record(self, pkt: ProxiedPacket) -> None:
        self.log.append(pkt)
        if self._changed is not None:
            self._changed.set()

    def _end(self, number: int, cause: str) -> None:
        self.ended.append((number, cause))
        if self._changed is not None:
            self._changed.set()
