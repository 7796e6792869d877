"""MQTT client session state that outlives one connection, and what the broker allows.

* :class:`BrokerLimits`: the limits and capabilities a broker announced in its CONNACK
  (MQTT 5; an MQTT 3.1.1 broker announces none, so everything is allowed).
* :class:`MqttSession`: packet identifiers, the QoS 1/2 publishes in flight (an
  :class:`~aimdb.connectors.InflightWindow` sized by the broker's Receive Maximum) and which
  of them wait to be sent again after a reconnect.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .._core._connector import LinkStatistics
from ._base import InflightWindow

__all__ = ["BrokerLimits", "MqttSession", "Outgoing"]


class BrokerLimits:
    """What the broker allows, from the properties of its CONNACK (MQTT 5).

    Attributes:
        receive_maximum: most QoS 1/2 publishes the client may have in flight.
        maximum_packet_size: largest packet the broker accepts, or ``None`` (no limit).
        maximum_qos: highest QoS the broker accepts in a PUBLISH (0, 1 or 2).
        retain_available: whether the retain flag may be set.
        wildcard_available: whether subscriptions may use ``+`` and ``#``.
        subscription_ids_available: whether SUBSCRIBE may carry subscription identifiers.
        shared_available: whether ``$share/...`` subscriptions are allowed.
        topic_alias_maximum: most topic aliases the broker accepts (aimdb sends none).
        server_keep_alive: the keep-alive the broker imposes, or ``None``.
        assigned_client_id: the client identifier the broker assigned, or ``None``.
    """

    __slots__ = (
        "assigned_client_id",
        "maximum_packet_size",
        "maximum_qos",
        "receive_maximum",
        "retain_available",
        "server_keep_alive",
        "shared_available",
        "subscription_ids_available",
        "topic_alias_maximum",
        "wildcard_available",
    )

    def __init__(self, props: dict[int, Any] | None = None) -> None:
        p = props or {}
        self.receive_maximum = int(p.get(0x21, 65535))
        size = p.get(0x27)
        self.maximum_packet_size: int | None = int(size) if size else None
        self.maximum_qos = int(p.get(0x24, 2))
        self.retain_available = bool(p.get(0x25, 1))
        self.wildcard_available = bool(p.get(0x28, 1))
        self.subscription_ids_available = bool(p.get(0x29, 1))
        self.shared_available = bool(p.get(0x2A, 1))
        self.topic_alias_maximum = int(p.get(0x22, 0))
        ka = p.get(0x13)
        self.server_keep_alive: int | None = int(ka) if ka is not None else None
        cid = p.get(0x12)
        self.assigned_client_id: str | None = cid.decode() if isinstance(cid, bytes) else cid

    def as_dict(self) -> dict[str, Any]:
        """The limits as a plain dict (for JSON)."""
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        return "BrokerLimits(" + repr(self.as_dict()) + ")"


class Outgoing:
    """One QoS 1/2 publish in flight: its packet, its link's statistics, how often it was sent."""

    __slots__ = ("packet", "sends", "stats")

    def __init__(self, packet: bytes, stats: LinkStatistics) -> None:
        self.packet = packet
        self.stats = stats
        self.sends = 1


class MqttSession:
    """Session state of one client id: what must survive a reconnect.

    Args:
        max_inflight: the client's own bound on QoS 1/2 publishes in flight; the window
            is the smaller of it and the broker's Receive Maximum.
    """

    #: a publish the broker dropped the connection over this often is not sent again
    MAX_SENDS = 3

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.unacked: InflightWindow[int, Outgoing] = InflightWindow(max_inflight)
        self.resend: deque[int] = deque()
        self._pid = 0
        self._other_ids: set[int] = set()  # SUBSCRIBE / UNSUBSCRIBE ids in flight

    def next_pid(self) -> int:
        """A packet identifier not in flight (publishes and subscriptions alike)."""
        pid = self._pid
        for _ in range(65535):
            pid = pid + 1 if pid < 65535 else 1
            if pid not in self.unacked and pid not in self._other_ids:
                self._pid = pid
                return pid
        raise RuntimeError("all 65,535 MQTT packet identifiers are in flight")

    def hold_id(self) -> int:
        """Allocate an identifier for a SUBSCRIBE or UNSUBSCRIBE; give it back with :meth:`release_id`."""
        pid = self.next_pid()
        self._other_ids.add(pid)
        return pid

    def release_id(self, pid: int) -> None:
        """The SUBSCRIBE or UNSUBSCRIBE ``pid`` was answered (or its connection is gone)."""
        self._other_ids.discard(pid)

    def on_wire(self) -> int:
        """How many publishes are in flight on the current connection (not waiting to be resent)."""
        return len(self.unacked) - len(self.resend)

    def start_connection(self, limits: BrokerLimits, session_present: bool) -> list[Outgoing]:
        """Adopt a new connection's limits; queue what must be sent again.

        With ``session_present`` the broker kept the session: every publish in flight is
        queued to be sent again with the DUP flag, the oldest first. Without it the
        broker forgot them: they are queued too (as new publishes; a subscriber may see a
        value again that the lost session had delivered). Publishes the broker dropped the
        connection over :attr:`MAX_SENDS` times, or that exceed its Maximum Packet Size, are
        removed and returned, for the caller to count as failed.
        """
        self.unacked.limit = max(1, min(self.max_inflight, limits.receive_maximum))
        self._other_ids.clear()
        dropped: list[Outgoing] = []
        self.resend.clear()
        for pid, out in self.unacked.items():
            too_big = limits.maximum_packet_size is not None and len(out.packet) > limits.maximum_packet_size
            if too_big or out.sends >= self.MAX_SENDS:
                self.unacked.pop(pid)
                dropped.append(out)
            else:
                self.resend.append(pid)
        return dropped

    def next_resends(self) -> list[bytes]:
        """Packets to send again now: as many as the window allows, oldest first, with DUP set."""
        out: list[bytes] = []
        while self.resend and self.on_wire() < self.unacked.limit:
            pid = self.resend.popleft()
            entry = self.unacked.get(pid)
            if entry is None:  # acknowledged meanwhile
                continue
            entry.sends += 1
            p = entry.packet
            out.append(bytes((p[0] | 0x08,)) + p[1:])
        return out
