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

from .._core._connector import LinkCounters
from ._base import InflightWindow
from ._mqtt_wire import PacketIds

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
    """One QoS 1/2 publish in flight: its packet, its link's statistics, how often it was sent.

    ``released`` is set once the broker acknowledged a QoS 2 publish with PUBREC: from
    then on it is completed with PUBREL, never sent again.
    """

    __slots__ = ("packet", "released", "sends", "stats")

    def __init__(self, packet: bytes, stats: LinkCounters) -> None:
        self.packet = packet
        self.stats = stats
        self.sends = 1
        self.released = False


class MqttSession:
    """Session state of one client id: what must survive a reconnect.

    Args:
        max_inflight: the client's own bound on QoS 1/2 publishes in flight; the window
            is the smaller of it and the broker's Receive Maximum.

    Attributes:
        ids: the session's packet identifiers (publishes and subscriptions alike).
        unacked: QoS 1/2 publishes in flight, oldest first.
        resend: identifiers of ``unacked`` entries waiting to be sent again.
        inbound_qos2: identifiers of inbound QoS 2 publishes delivered and not yet
            released by the broker: a DUP re-send of one of them is not delivered again.
    """

    #: a publish the broker dropped the connection over this often is not sent again
    MAX_SENDS = 3

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.ids = PacketIds()
        self.unacked: InflightWindow[int, Outgoing] = InflightWindow(max_inflight)
        self.resend: deque[int] = deque()
        self.inbound_qos2: set[int] = set()

    def on_wire(self) -> int:
        """How many publishes are in flight on the current connection (not waiting to be resent)."""
        return len(self.unacked) - len(self.resend)

    def released(self, pid: int) -> None:
        """The broker received QoS 2 publish ``pid`` (PUBREC): complete it with PUBREL from now on."""
        entry = self.unacked.get(pid)
        if entry is not None:
            entry.released = True

    def completed(self, pid: int) -> Outgoing | None:
        """Publish ``pid`` was acknowledged (PUBACK, PUBCOMP) or refused: forget it and free its id."""
        entry = self.unacked.pop(pid)
        self.ids.release(pid)
        return entry

    def refused_too_large(self) -> Outgoing | None:
        """The broker closed the connection because a packet was too large (MQTT 5 reason 0x95).

        The largest publish in flight that was not yet received is the one it refused: it is
        removed and returned, for the caller to count as failed.
        """
        candidates = [(len(out.packet), pid) for pid, out in self.unacked.items() if not out.released]
        if not candidates:
            return None
        return self.completed(max(candidates)[1])

    def start_connection(self, limits: BrokerLimits, session_present: bool) -> list[Outgoing]:
        """Adopt a new connection's limits; queue what must be sent again.

        With ``session_present`` the broker kept the session: every publish in flight is
        queued to be sent again, the oldest first, a QoS 2 publish the broker had received
        as PUBREL, every other as PUBLISH with the DUP flag. Without it the broker forgot
        them: a QoS 2 publish it had received is complete (it was delivered), every other
        is queued to be published anew (a subscriber may see a value again that the lost
        session had delivered), and inbound QoS 2 state is dropped. Publishes the broker
        dropped the connection over :attr:`MAX_SENDS` times, or that exceed its Maximum
        Packet Size, are removed and returned, for the caller to count as failed.
        """
        self.unacked.limit = max(1, min(self.max_inflight, limits.receive_maximum))
        if not session_present:
            self.inbound_qos2.clear()
        dropped: list[Outgoing] = []
        self.resend.clear()
        for pid, out in self.unacked.items():
            too_big = limits.maximum_packet_size is not None and len(out.packet) > limits.maximum_packet_size
            if out.released and not session_present:
                self.completed(pid)
            elif not out.released and (too_big or out.sends >= self.MAX_SENDS):
                dropped.append(out)
                self.completed(pid)
            else:
                self.resend.append(pid)
        return dropped

    def next_resends(self) -> list[bytes]:
        """Packets to send again now: as many as the window allows, oldest first."""
        out: list[bytes] = []
        while self.resend and self.on_wire() < self.unacked.limit:
            pid = self.resend.popleft()
            entry = self.unacked.get(pid)
            if entry is None:  # acknowledged meanwhile
                continue
            entry.sends += 1
            if entry.released:
                out.append(b"\x62\x02" + pid.to_bytes(2, "big"))  # PUBREL
            else:
                p = entry.packet
                out.append(bytes((p[0] | 0x08,)) + p[1:])  # PUBLISH with DUP
        return out
