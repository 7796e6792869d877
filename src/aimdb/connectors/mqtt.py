"""MQTT connector: ``link_to("mqtt://topic")`` publishes, ``link_from("mqtt://filter")`` subscribes.

::

    from aimdb.connectors import MqttConnector

    conn = MqttConnector("mqtt://127.0.0.1:1883", client_id="edge-1")
    builder.with_connector(conn)
    builder.configure(Temperature, "temp", lambda r: r.buffer(BufferCfg.SpmcRing(256))
                      .link_to("mqtt://sensors/temp").qos(1).finish())
    builder.configure(Command, "cmd", lambda r: r.buffer(BufferCfg.Mailbox())
                      .link_from("mqtt://cmd/+/set").finish())

The connector speaks MQTT 3.1.1 and 5 itself (a lean asyncio protocol; see
``docs/design/030-connectors.md`` for why no client library), over TCP or TLS
(``mqtts://``). It needs asyncio or uvloop.

Behaviour:

* Outbound: each ``link_to`` route has one task that takes every pending value from the
  record's reader at once, encodes them and writes all the PUBLISH packets in one go,
  without waiting for acknowledgements. QoS 1/2 publishes are kept until acknowledged
  (at most ``max_inflight``, or fewer when the broker's receive maximum says so) and sent
  again after a reconnect. When the socket's write buffer is full (a slow broker), the
  task stops reading, so the record's ring reader lags (counted in ``dropped_lag``) and
  memory stays bounded; producers are never blocked.
* While disconnected the route does not read at all, so what is sent after the
  reconnect follows the buffer kind: a ring sends its backlog in order (up to its
  capacity; the overflow is counted as lag), SingleLatest only the latest value,
  Mailbox only the newest command.
* Inbound: one subscription per distinct topic filter (the highest QoS asked for it),
  renewed after every reconnect. A message is delivered to every ``link_from`` route
  whose filter matches its topic (``+`` and ``#`` work), decoded into the record type;
  a bad payload is logged with topic and record key, counted in the route's ``failed``
  and dropped.
* Reconnects by itself per the :class:`~aimdb.connectors.ReconnectPolicy`; a refused
  connection (wrong password ...) is a :class:`~aimdb.ConnectionFailed` carrying the
  broker's reason.

Link options: ``.qos(0|1|2)`` (default: the connector's ``default_qos``), ``.retain()``,
``.with_topic_provider(fn)``, codecs and (de)serializers as for every link.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
import uuid
from typing import Any

from .._aio import wait_for
from .._core._connector import ConnectorRoutes, LinkCounters, OutboundRoute
from .._core._links import LinkSpec
from .._errors import ConnectionFailed
from ._base import BaseConnector, ReconnectPolicy, parse_endpoint
from ._mqtt_routing import InboundRouting
from ._mqtt_session import BrokerLimits, MqttSession, Outgoing
from ._mqtt_wire import (
    CONNACK_REASONS,
    DISCONNECT,
    PINGREQ,
    MqttProtocol,
    connect_packet,
    publish_packet,
    validate_filter,
    validate_topic,
)

__all__ = ["MqttConnector"]

_log = logging.getLogger("aimdb.connectors.mqtt")

_FLUSH_BYTES = 256 * 1024
_VERSIONS: dict[Any, int] = {5: 5, "5": 5, "5.0": 5, 4: 4, "4": 4, "3.1.1": 4, "311": 4}


class MqttConnector(BaseConnector):
    """Mirror records to and from an MQTT broker.

    Args:
        url: broker URL, ``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]``
            (TLS, default port 8883). Credentials may be given as ``mqtt://user:pw@host``.
        client_id: MQTT client id (default: ``aimdb-`` and a random suffix). With a
            persistent session, give a stable one.
        username: user name (overrides the URL's).
        password: password (overrides the URL's).
        protocol: ``5`` (default) or ``"3.1.1"`` (also accepted: ``4``).
        keepalive: keep-alive interval in seconds (0 disables pings); a connection that
            stays silent for 1.5 intervals is considered lost.
        clean_session: True starts a fresh session on every connect; False asks the broker
            to keep subscriptions and queued QoS 1/2 messages while disconnected.
        session_expiry: MQTT 5: seconds the broker keeps a persistent session (default
            3600 when ``clean_session`` is False, else 0).
        tls: ``True``/``False`` or an ``ssl.SSLContext``; default: on for ``mqtts://``.
        default_qos: QoS of links that do not set ``.qos()``.
        max_inflight: most unacknowledged QoS 1/2 publishes at a time.
        batch_size: most values taken from one reader per write.
        reconnect: :class:`~aimdb.connectors.ReconnectPolicy`.
        connect_timeout: seconds for TCP/TLS connect, CONNACK and SUBACK together.

    Raises:
        ValueError: bad URL or option.
    """

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: int | str = 5,
        keepalive: int = 60,
        clean_session: bool = True,
        session_expiry: int | None = None,
        tls: bool | _ssl.SSLContext | None = None,
        default_qos: int = 0,
        max_inflight: int = 1000,
        batch_size: int = 512,
        reconnect: ReconnectPolicy | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        ep = parse_endpoint(url, {"mqtt": 1883, "mqtts": 8883}, ("mqtts",))
        super().__init__(ep, reconnect, connect_timeout)
        self.scheme = "mqtt"
        if protocol not in _VERSIONS:
            raise ValueError("protocol must be 5 or '3.1.1', got " + repr(protocol))
        if default_qos not in (0, 1, 2):
            raise ValueError("default_qos must be 0, 1 or 2")
        if not 0 <= keepalive <= 65535:
            raise ValueError("keepalive must be 0..65535 seconds")
        if max_inflight < 1 or batch_size < 1:
            raise ValueError("max_inflight and batch_size must be at least 1")
        self.version = _VERSIONS[protocol]
        self.client_id = client_id or "aimdb-" + uuid.uuid4().hex[:12]
        self.username = username if username is not None else ep.username
        self.password = password if password is not None else ep.password
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.session_expiry = (
            session_expiry if session_expiry is not None else (0 if clean_session else 3600)
        )
        self.tls: bool | _ssl.SSLContext = ep.tls if tls is None else tls
        self.default_qos = default_qos
        self.max_inflight = max_inflight
        self.batch_size = batch_size
        self._proto: MqttProtocol | None = None
        self._session = MqttSession(max_inflight)
        self._routing = InboundRouting([], default_qos)
        #: what the broker allowed in its last CONNACK (everything before the first)
        self.broker_limits = BrokerLimits()
        self._warned: set[tuple[str, str]] = set()

    def unacknowledged(self) -> list[tuple[bytes, LinkCounters]]:
        """The QoS 1/2 PUBLISH packets not yet acknowledged, oldest first, with their link's live counters."""
        return [(out.packet, out.stats) for _pid, out in self._session.unacked.items()]

    @property
    def unrouted(self) -> int:
        """Messages received on a subscribed topic that no route matched."""
        return self._routing.unrouted

    # ------------------------------------------------------------ validation

    def config_problems(self) -> list[str]:
        """Check the connection settings; returns problems for ``build()`` to report."""
        problems: list[str] = []
        if self.version == 4 and self.password is not None and self.username is None:
            problems.append("MQTT 3.1.1 allows a password only together with a user name")
        for what, text in (("client id", self.client_id), ("user name", self.username)):
            if text is not None:
                p = _string_problem(text)
                if p is not None:
                    problems.append(what + " " + p)
        return problems

    def validate_link(self, spec: LinkSpec) -> list[str]:
        """Check a link's topic and options; returns problems for ``build()`` to report."""
        problems: list[str] = []
        qos = spec.options.get("qos", self.default_qos)
        if qos not in (0, 1, 2):
            problems.append("MQTT qos must be 0, 1 or 2, got " + repr(qos))
        addr = spec.address
        if spec.direction == "out":
            if "retain" in spec.options and not isinstance(spec.options["retain"], bool):
                problems.append("retain must be True or False")
            if spec.topic_provider is None:
                p = validate_topic(addr)
                if p is not None:
                    problems.append(p)
        else:
            p = validate_filter(addr)
            if p is not None:
                problems.append(p)
            if spec.topic_provider is not None:
                problems.append("a topic provider only applies to link_to")
        for name in spec.options:
            if name not in ("qos", "retain"):
                problems.append("unknown MQTT link option " + repr(name))
        return problems

    # ------------------------------------------------------------ routes

    async def _start_routes(self, routes: ConnectorRoutes) -> None:
        self._routing = InboundRouting(routes.inbound, self.default_qos)

    def _on_message(self, topic: str, payload: bytes, sub_ids: list[int]) -> None:
        try:
            routes = self._routing.routes_for(topic, sub_ids)
            if not routes:
                self._routing.unrouted += 1
                return
            for r in routes:
                r.deliver(payload, topic)  # never raises: a bad payload is logged and counted
        except Exception as exc:
            self._callback_failed("routing a message from " + repr(topic), exc)

    def _on_ack(self, pid: int, rc: int) -> None:
        try:
            entry = self._session.completed(pid)
            if entry is not None and rc >= 0x80:
                entry.stats.failed += 1
                entry.stats.error("broker rejected publish: " + CONNACK_REASONS.get(rc, hex(rc)))
            proto = self._proto
            if self._session.resend and proto is not None:
                resends = self._session.next_resends()
                if resends:
                    proto.write(b"".join(resends))
        except Exception as exc:
            self._callback_failed("handling the acknowledgement of packet " + str(pid), exc)

    def _warn_once(self, route: OutboundRoute, what: str, text: str) -> None:
        if (route.key, what) not in self._warned:
            self._warned.add((route.key, what))
            _log.warning("%s: link %s of %r: %s", self.url, route.spec.url, route.key, text)

    # ------------------------------------------------------------ outbound

    async def _send(self, route: OutboundRoute, values: list[Any]) -> list[Any]:
        """Write one batch of PUBLISH packets; returns the values left for after a reconnect.

        Packets are written in chunks of about 256 KiB; a chunk counts as ``sent`` (and its
        QoS 1/2 packets are kept until acknowledged) when it is handed to the socket.
        """
        proto = self._proto
        if proto is None or not proto.is_open or self.stats.state != "connected":
            return values
        stats = route.stats
        opts = route.spec.options
        limits = self.broker_limits
        qos = min(int(opts.get("qos", self.default_qos)), limits.maximum_qos)
        retain = bool(opts.get("retain", False)) and limits.retain_available
        max_size = limits.maximum_packet_size
        session = self._session
        window = session.unacked
        provider = route.spec.topic_provider
        fixed = None if provider is not None else route.address.encode()
        encode = route.encode
        v5 = proto.v5
        parts: list[bytes] = []
        unacked: list[tuple[int, bytes]] = []
        nbytes = 0
        pending = 0

        def flush(upto: int) -> None:
            nonlocal parts, unacked, nbytes, pending
            if parts:
                proto.write(b"".join(parts) if len(parts) > 1 else parts[0])
                for pid, pkt in unacked:
                    window.add(pid, Outgoing(pkt, stats))
                stats.sent += len(parts)
                stats.bytes += nbytes
            route.settled = upto
            parts, unacked, nbytes, pending = [], [], 0, 0

        for i, value in enumerate(values):
            try:
                payload = encode(value)
                if not isinstance(payload, bytes):
                    payload = bytes(payload)
                if fixed is not None:
                    topic = fixed
                else:
                    t = provider(value)  # type: ignore[misc]
                    problem = validate_topic(t)
                    if problem is not None:
                        raise ValueError(problem)
                    topic = t.encode()
            except Exception as exc:
                route.value_failed(repr(exc))
                continue
            if qos:
                if session.resend or len(unacked) + session.on_wire() >= window.limit:
                    flush(i)
                    while session.on_wire() >= window.limit or session.resend:  # re-checked on wake-up
                        await window.wait_change()
                        if proto is not self._proto or not proto.is_open:
                            return values[i:]
                pid = session.ids.allocate()
                pkt = publish_packet(topic, payload, qos, retain, pid, v5)
            else:
                pkt = publish_packet(topic, payload, 0, retain, 0, v5)
            if max_size is not None and len(pkt) > max_size:
                if qos:
                    session.ids.release(pid)
                route.value_failed(
                    "packet of "
                    + str(len(pkt))
                    + " bytes exceeds the broker's Maximum Packet Size of "
                    + str(max_size)
                )
                continue
            if qos:
                unacked.append((pid, pkt))
            parts.append(pkt)
            nbytes += len(payload)
            pending += len(pkt)
            if pending >= _FLUSH_BYTES:  # keep the socket's write buffer bounded
                flush(i + 1)
                if proto.paused:
                    await proto.drained()
                    if proto is not self._proto or not proto.is_open:
                        return values[i + 1 :]
        flush(len(values))
        if proto.paused:
            await proto.drained()
        return []

    # ------------------------------------------------------------ connection

    def _ssl_context(self) -> _ssl.SSLContext | None:
        if isinstance(self.tls, _ssl.SSLContext):
            return self.tls
        return _ssl.create_default_context() if self.tls else None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = self._ssl_context()
        host = self.endpoint.host
        _transport, proto = await loop.create_connection(
            lambda: MqttProtocol(
                self.version,
                self._on_message,
                self._on_ack,
                inbound_qos2=self._session.inbound_qos2,
                on_released=self._session.released,
            ),
            host,
            self.endpoint.port,
            ssl=ctx,
            server_hostname=host if ctx is not None else None,
        )
        try:
            proto.write(
                connect_packet(
                    self.client_id,
                    version=self.version,
                    keepalive=self.keepalive,
                    clean=self.clean_session,
                    username=self.username,
                    password=self.password,
                    session_expiry=self.session_expiry if self.version == 5 else 0,
                    receive_maximum=65535,
                )
            )
            try:
                rc, present, props = await proto.connack
            except ConnectionError as exc:
                if ctx is None:
                    raise
                # TLS 1.3: the broker checks the client certificate after the client's
                # handshake is done, then closes; its alert is often lost to a TCP reset.
                raise ConnectionFailed(
                    self.url,
                    "ConnectionError: " + str(exc) + " (the broker closed the TLS connection "
                    "before CONNACK: it may require a client certificate or refuse the one given)",
                ) from exc
            if rc:
                reason = CONNACK_REASONS.get(rc, "reason code " + hex(rc))
                if 0x1F in props:
                    reason += " (" + props[0x1F].decode(errors="replace") + ")"
                raise ConnectionFailed(self.url, "broker refused the connection: " + reason)
            await self._start_session(proto, present, BrokerLimits(props) if proto.v5 else BrokerLimits())
        except BaseException:
            self._proto = None
            proto.abort("connect failed")
            raise

    async def _start_session(self, proto: MqttProtocol, present: bool, limits: BrokerLimits) -> None:
        """Adopt the broker's limits, subscribe, then resend what the last connection left in flight."""
        if present and self.clean_session:
            proto.abort("protocol error: the broker reported a session present on a clean start")
            raise ConnectionFailed(self.url, "protocol error: session present on a clean start")
        self.broker_limits = limits
        if limits.server_keep_alive is not None:
            self.keepalive = limits.server_keep_alive
        if limits.assigned_client_id:
            self.client_id = limits.assigned_client_id
        self._check_links(limits)
        for out in self._session.start_connection(limits, present):
            out.stats.failed += 1
            out.stats.error("publish dropped: the broker refused it (closed the connection each time or "
                            "it exceeds the Maximum Packet Size)")
            _log.warning("%s: %s", self.url, out.stats.last_error)
        self._proto = proto
        plan, refused = self._routing.plan(
            use_ids=proto.v5 and limits.subscription_ids_available,
            wildcards=limits.wildcard_available,
            shared=limits.shared_available,
        )
        for flt, why in refused.items():
            self._refused(flt, why)
        if plan:
            ids = [self._session.ids.allocate() for _ in plan]
            try:
                answers = await asyncio.gather(
                    *(proto.subscribe(pid, f, sub_id) for pid, (sub_id, f) in zip(ids, plan, strict=True))
                )
            finally:
                for pid in ids:
                    self._session.ids.release(pid)
            for (_sid, flts), granted in zip(plan, answers, strict=False):
                for (flt, _qos), code in zip(flts, granted, strict=False):
                    if code >= 0x80:
                        self._refused(flt, CONNACK_REASONS.get(code, hex(code)))
        # QoS 1/2 publishes the last connection did not see acknowledged, oldest first,
        # as many as the broker's Receive Maximum allows (the rest as acknowledgements come)
        resends = self._session.next_resends()
        if resends:
            proto.write(b"".join(resends))

    def _check_links(self, limits: BrokerLimits) -> None:
        """Warn once per link whose options the broker does not allow (they are downgraded)."""
        routes = self._routes.outbound if self._routes is not None else []
        for r in routes:
            qos = int(r.spec.options.get("qos", self.default_qos))
            if qos > limits.maximum_qos:
                self._warn_once(
                    r, "qos", f"QoS {qos} downgraded to the broker's Maximum QoS {limits.maximum_qos}"
                )
            if r.spec.options.get("retain") and not limits.retain_available:
                self._warn_once(r, "retain", "retain dropped: the broker does not offer retained messages")

    def _refused(self, flt: str, why: str) -> None:
        text = "subscription to " + repr(flt) + " refused: " + why
        _log.error("%s: %s", self.url, text)
        self.stats.last_error = text
        for r in self._routing.routes_of(flt):
            r.stats.error(text)

    async def _serve(self) -> str | None:
        proto = self._proto
        assert proto is not None
        ka = self.keepalive
        try:
            while proto.is_open:
                try:
                    await wait_for(asyncio.shield(proto.closed), ka / 2 if ka else None)
                except (asyncio.TimeoutError, TimeoutError):
                    if time.monotonic() - proto.last_in > ka * 1.5:
                        proto.abort("no answer from the broker within 1.5 keep-alive intervals")
                    else:
                        proto.write(PINGREQ)
            if proto.disconnect_code == 0x95:  # Packet too large: drop it instead of resending it
                out = self._session.refused_too_large()
                if out is not None:
                    out.stats.failed += 1
                    out.stats.error(
                        "publish of " + str(len(out.packet)) + " bytes dropped: the broker closed the "
                        "connection with 'packet too large'"
                    )
                    _log.warning("%s: %s", self.url, out.stats.last_error)
            return proto.closed.result()
        finally:
            self._session.unacked.wake()

    async def _close(self) -> None:
        proto, self._proto = self._proto, None
        self._session.unacked.wake()
        if proto is None or proto.transport is None:
            return
        if proto.is_open:
            proto.write(DISCONNECT)
            proto.transport.close()
            try:
                await wait_for(asyncio.shield(proto.closed), 1.0)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            finally:  # not closed within a second, or cancelled while waiting: never leave it open
                if not proto.closed.done():
                    proto.transport.abort()

    async def shutdown(self, timeout: float) -> None:
        """Flush within ``timeout``, then disconnect.

        Publishes what the readers still hold, waits for QoS 1/2 acknowledgements, then
        sends DISCONNECT. Values that cannot be sent in time (e.g. while disconnected) are
        dropped.
        """
        deadline = time.monotonic() + max(0.0, timeout) * 0.9
        if self.connected:
            await self._wait_pumps(deadline)
        window = self._session.unacked
        while window and self.connected and time.monotonic() < deadline:
            try:  # woken by every acknowledgement
                await wait_for(window.wait_change(), max(0.0, deadline - time.monotonic()))
            except (asyncio.TimeoutError, TimeoutError):
                break
        await self._shut()


def _string_problem(text: str) -> str | None:
    """Why ``text`` is not an MQTT UTF-8 string (no NUL, valid UTF-8, at most 65,535 bytes), or ``None``."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it contains a lone surrogate): " + ascii(text)
    if "\x00" in text:
        return "contains NUL: " + ascii(text)
    if size > 65535:
        return "is longer than 65,535 bytes"
    return None
