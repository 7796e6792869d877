"""The MQTT wire decoder is strict: each malformation from the broker is a ProtocolViolation.

Every case feeds broker bytes to a real ``MqttProtocol`` (recording what it writes); the
last tests run the same over a real loopback socket.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from aimdb import (
    AimDbBuilder,
    BufferCfg,
    ConnectorError,
    InvalidConfiguration,
    ProtocolError,
    SerializeError,
)
from aimdb.connectors import MqttConnector
from aimdb.connectors._mqtt_wire import (
    MALFORMED_PACKET,
    PACKET_TOO_LARGE,
    PROTOCOL_ERROR,
    RECEIVE_MAXIMUM_EXCEEDED,
    TOPIC_ALIAS_INVALID,
    MqttProtocol,
    PacketIds,
    ProtocolViolation,
    encode_varint,
    publish_packet,
    validate_filter,
    validate_topic,
)

from ._mqtt_packets import ack, connack, feed, packet, props, publish, string, suback, varint
from ._util import Temp

PUBACK_1 = b"\x40\x02\x00\x01"


def disconnect(rc: int) -> bytes:
    return bytes((0xE0, 1, rc))


def assert_violation(out: Any, code: int, v5: bool = True) -> None:
    assert out.violation is not None, "accepted: " + repr(out)
    assert isinstance(out.violation, ProtocolError)
    assert out.code == code, str(out.violation)
    assert out.closed and not out.aborted  # closed after flushing, not thrown away
    assert out.written.endswith(disconnect(code)) == v5
    assert out.disconnect_reason is not None and "protocol violation" in out.disconnect_reason


# ------------------------------------------------------------------ accepted


def test_valid_packets_are_accepted_and_acknowledged() -> None:
    out = feed(
        [
            publish("a/b", b"0")
            + publish("a/b", b"1", qos=1, pid=1)
            + publish("a/b", b"2", qos=2, pid=2, properties=props(b"\x0b\x05", b"\x0b\x07"))
            + ack(0x62, 2)
            + ack(0x40, 9)
            + ack(0x50, 10)
            + ack(0x70, 10, 0, b"\x00")
            + packet(0xD0, b"")
        ]
    )
    assert out.violation is None
    assert out.messages == [("a/b", b"0", []), ("a/b", b"1", []), ("a/b", b"2", [5, 7])]
    assert out.written == PUBACK_1 + b"\x50\x02\x00\x02" + b"\x70\x02\x00\x02" + b"\x62\x02\x00\x0a"
    assert out.acks == [(9, 0), (10, 0)]
    assert not out.closed


def test_connack_properties_are_read() -> None:
    block = props(b"\x21\x00\x02", b"\x27\x00\x00\x01\x00", b"\x24\x01", b"\x25\x00", b"\x29\x00")
    out = feed([connack(properties=block)], connected=False)
    assert out.violation is None
    assert out.connack == (0, False, {0x21: 2, 0x27: 256, 0x24: 1, 0x25: 0, 0x29: 0})


def test_a_length_split_across_reads_waits_for_the_rest() -> None:
    pkt = publish("t", b"y" * 300, qos=1, pid=1)
    assert pkt[1] & 0x80 and pkt[2] < 0x80  # two length bytes
    out = feed([pkt[:2], pkt[2:3], pkt[3:]])
    assert out.violation is None
    assert out.messages == [("t", b"y" * 300, [])]


# ------------------------------------------------------------------ PUBLISH


@pytest.mark.parametrize(
    ("pkt", "code"),
    [
        (publish("t", flags=0b0110, pid=1), MALFORMED_PACKET),  # both QoS bits
        (publish("t", flags=0b1000), MALFORMED_PACKET),  # DUP on QoS 0
        (publish("t", qos=1, pid=0), PROTOCOL_ERROR),
        (publish("t", qos=2, pid=0), PROTOCOL_ERROR),
        (publish("a\x00b"), MALFORMED_PACKET),
        (publish(b"a\xffb"), MALFORMED_PACKET),  # invalid UTF-8
        (publish(b"a\xed\xa0\x80"), MALFORMED_PACKET),  # an encoded surrogate is invalid UTF-8
        (publish("a/+"), PROTOCOL_ERROR),
        (publish("a/#"), PROTOCOL_ERROR),
        (publish(""), PROTOCOL_ERROR),
        (packet(0x30, b"\x00\x09ab"), MALFORMED_PACKET),  # topic overruns the packet
        (packet(0x32, b"\x00\x01a\x00"), MALFORMED_PACKET),  # packet id cut off
        (packet(0x30, b"\x00\x01a"), MALFORMED_PACKET),  # MQTT 5 property length missing
    ],
)
def test_malformed_publish(pkt: bytes, code: int) -> None:
    out = feed([pkt])
    assert_violation(out, code)
    assert out.messages == []


@pytest.mark.parametrize(
    ("block", "code"),
    [
        (b"\x0a\x01\x00", MALFORMED_PACKET),  # length 10, 2 bytes left in the packet
        (props(b"\x03\x00\x09ab"), MALFORMED_PACKET),  # string longer than its block
        (props(b"\x02\x00\x01"), MALFORMED_PACKET),  # four-byte integer cut off
        (props(b"\x05\x00"), MALFORMED_PACKET),  # unknown property identifier
        (props(b"\x21\x00\x05"), PROTOCOL_ERROR),  # Receive Maximum is a CONNECT/CONNACK property
        (props(b"\x01\x01", b"\x01\x01"), PROTOCOL_ERROR),  # repeated
        (props(b"\x01\x02"), PROTOCOL_ERROR),  # payload format indicator must be 0/1
        (props(b"\x0b\x00"), PROTOCOL_ERROR),  # subscription identifier 0
        (props(b"\x23\x00\x01"), TOPIC_ALIAS_INVALID),  # the client allows no topic alias
        (props(b"\x03" + string(b"\xff")), MALFORMED_PACKET),  # content type not UTF-8
        (props(b"\x26" + string("k") + string("a\x00")), MALFORMED_PACKET),
    ],
)
def test_malformed_publish_properties(block: bytes, code: int) -> None:
    out = feed([publish("t", properties=block, payload=b"")])
    assert_violation(out, code)
    assert out.messages == []


def test_the_acks_for_good_packets_are_written_before_the_disconnect() -> None:
    for version in (5, 4):
        v5 = version == 5
        good = publish("t", b"1", qos=1, pid=1, v5=v5) + publish("t", b"2", qos=2, pid=2, v5=v5)
        bad = publish("t", flags=0b0110, pid=3, v5=v5)
        out = feed([good + bad + good], version)
        assert [m[1] for m in out.messages] == [b"1", b"2"]
        tail = disconnect(MALFORMED_PACKET) if v5 else b""
        assert out.writes == [PUBACK_1 + b"\x50\x02\x00\x02" + tail]  # one write, acks first
        assert out.closed and not out.aborted
        assert out.code == MALFORMED_PACKET


def test_nothing_is_read_after_a_violation() -> None:
    out = feed([publish("t", flags=0b0110, pid=1), publish("t", b"late", qos=1, pid=2)])
    assert out.messages == []
    assert out.written == disconnect(MALFORMED_PACKET)


def test_inbound_qos2_beyond_the_announced_receive_maximum() -> None:
    pubs = [publish("t", bytes((i,)), qos=2, pid=i) for i in (1, 2, 3)]
    out = feed([b"".join(pubs)], receive_maximum=2)
    assert_violation(out, RECEIVE_MAXIMUM_EXCEEDED)
    assert len(out.messages) == 2
    # the third is not acknowledged
    assert out.written == b"\x50\x02\x00\x01\x50\x02\x00\x02" + disconnect(RECEIVE_MAXIMUM_EXCEEDED)
    # released ones do not count
    out = feed([pubs[0] + ack(0x62, 1) + pubs[1] + pubs[2]], receive_maximum=2)
    assert out.violation is None and len(out.messages) == 3


def test_inbound_qos2_ids_kept_by_the_session_suppress_a_resend_after_reconnect() -> None:
    pending: set[int] = set()
    first = feed([publish("t", b"once", qos=2, pid=7)], inbound_qos2=pending)
    assert pending == {7} and len(first.messages) == 1
    dup = publish("t", b"once", qos=2, pid=7, flags=0b1100)  # DUP re-send on the new connection
    second = feed([dup + ack(0x62, 7)], inbound_qos2=pending)
    assert second.messages == []  # not delivered twice
    assert second.written == b"\x50\x02\x00\x07" + b"\x70\x02\x00\x07"
    assert pending == set()


# ------------------------------------------------------------------ fixed header, lengths


@pytest.mark.parametrize("head", [0x21, 0x41, 0x52, 0x60, 0x63, 0x71, 0x92, 0xB1, 0xD1, 0xE1])
def test_wrong_fixed_header_flags(head: int) -> None:
    body = {0x2: b"\x00\x00\x00", 0xD: b"", 0x9: b"\x00\x01\x00\x00"}.get(head >> 4, b"\x00\x01")
    out = feed([packet(head, body)])
    assert_violation(out, MALFORMED_PACKET)


@pytest.mark.parametrize(
    ("head", "version", "code"),
    [
        (0x10, 5, PROTOCOL_ERROR),  # CONNECT
        (0x82, 5, PROTOCOL_ERROR),  # SUBSCRIBE
        (0xA2, 4, PROTOCOL_ERROR),  # UNSUBSCRIBE
        (0xC0, 4, PROTOCOL_ERROR),  # PINGREQ
        (0xF0, 5, PROTOCOL_ERROR),  # AUTH: this client never starts enhanced authentication
        (0xF0, 4, MALFORMED_PACKET),  # reserved in 3.1.1
        (0x00, 5, MALFORMED_PACKET),  # reserved
        (0xE0, 4, PROTOCOL_ERROR),  # a 3.1.1 server never sends DISCONNECT
    ],
)
def test_packet_types_a_server_must_not_send(head: int, version: int, code: int) -> None:
    out = feed([packet(head, b"")], version)
    assert_violation(out, code, version == 5)


def test_remaining_length_over_four_bytes() -> None:
    out = feed([b"\x30\xff\xff\xff\xff\x7f"])
    assert_violation(out, MALFORMED_PACKET)
    out = feed([b"\x30\xff\xff\xff\xff"])  # four continuation bytes: no valid length can follow
    assert_violation(out, MALFORMED_PACKET)


def test_remaining_length_not_in_its_shortest_form() -> None:
    out = feed([b"\xd0\x80\x00"])  # 0 in two bytes
    assert_violation(out, MALFORMED_PACKET)


def test_a_packet_over_the_announced_maximum_packet_size() -> None:
    big = publish("t", b"z" * 300)
    out = feed([big[:5]], maximum_packet_size=256)  # refused from its header alone
    assert_violation(out, PACKET_TOO_LARGE)
    ok = feed([publish("t", b"z" * 240)], maximum_packet_size=256)
    assert ok.violation is None and len(ok.messages) == 1
    # MQTT 3.1.1 has no Maximum Packet Size: the limit is not applied
    v4 = feed([publish("t", b"z" * 300, v5=False)], 4, maximum_packet_size=256)
    assert v4.violation is None


# ------------------------------------------------------------------ acknowledgements, CONNACK


@pytest.mark.parametrize(
    ("pkt", "version", "code"),
    [
        (ack(0x40, 0), 5, PROTOCOL_ERROR),  # packet identifier 0
        (ack(0x70, 0), 4, PROTOCOL_ERROR),
        (packet(0x40, b"\x00"), 5, MALFORMED_PACKET),  # too short
        (ack(0x40, 1, 0), 4, MALFORMED_PACKET),  # 3.1.1 PUBACK is exactly 2 bytes
        (ack(0x40, 1, 0x05), 5, MALFORMED_PACKET),  # not a PUBACK reason code
        (ack(0x70, 1, 0x10), 5, MALFORMED_PACKET),  # not a PUBCOMP reason code
        (ack(0x40, 1, 0, b"\x05\x00"), 5, MALFORMED_PACKET),  # properties overrun
        (ack(0x40, 1, 0, b"\x00\x00"), 5, MALFORMED_PACKET),  # bytes after the properties
        (ack(0x40, 1, 0, props(b"\x21\x00\x01")), 5, PROTOCOL_ERROR),  # not an ack property
        (suback(1, b""), 5, MALFORMED_PACKET),  # no reason code
        (suback(1, b"\x03"), 5, MALFORMED_PACKET),
        (suback(1, b"\x87", v5=False), 4, MALFORMED_PACKET),  # an MQTT 5 code in 3.1.1
        (suback(0, b"\x00"), 5, PROTOCOL_ERROR),
        (packet(0xB0, b"\x00\x01\x00"), 4, MALFORMED_PACKET),  # 3.1.1 UNSUBACK is 2 bytes
        (packet(0xB0, b"\x00\x01\x00"), 5, MALFORMED_PACKET),  # MQTT 5 UNSUBACK needs a code
        (packet(0xD0, b"\x00"), 5, MALFORMED_PACKET),  # PINGRESP has no body
        (packet(0xE0, b"\x04"), 5, 0),  # DISCONNECT is fine: see below
    ],
)
def test_malformed_acknowledgements(pkt: bytes, version: int, code: int) -> None:
    out = feed([pkt], version)
    if code:
        assert_violation(out, code, version == 5)
    else:
        assert out.violation is None


@pytest.mark.parametrize(
    ("pkt", "code"),
    [
        (connack(properties=b""), MALFORMED_PACKET),  # MQTT 5 CONNACK without property length
        (packet(0x20, b"\x02\x00\x00"), MALFORMED_PACKET),  # reserved flag bit
        (connack(present=True, rc=0x87), PROTOCOL_ERROR),  # session present with a refusal
        (connack(rc=0x05), MALFORMED_PACKET),  # not an MQTT 5 CONNACK reason code
        (connack(properties=props(b"\x21\x00\x00")), PROTOCOL_ERROR),  # Receive Maximum 0
        (connack(properties=props(b"\x27\x00\x00\x00\x00")), PROTOCOL_ERROR),  # Max Packet Size 0
        (connack(properties=props(b"\x24\x02")), PROTOCOL_ERROR),  # Maximum QoS 2 is not a value
        (connack(properties=props(b"\x0b\x01")), PROTOCOL_ERROR),  # not a CONNACK property
        (connack(properties=props(b"\x13\x00")), MALFORMED_PACKET),  # Server Keep Alive cut off
        (publish("t"), PROTOCOL_ERROR),  # PUBLISH before CONNACK
        (ack(0x40, 1), PROTOCOL_ERROR),  # PUBACK before CONNACK
    ],
)
def test_malformed_connack(pkt: bytes, code: int) -> None:
    out = feed([pkt], connected=False)
    assert_violation(out, code)
    assert out.connack is None


def test_a_second_connack() -> None:
    assert_violation(feed([connack()]), PROTOCOL_ERROR)


def test_malformed_connack_311() -> None:
    assert_violation(feed([packet(0x20, b"\x00\x00\x00")], 4, connected=False), MALFORMED_PACKET, False)
    assert_violation(feed([packet(0x20, b"\x00\x06")], 4, connected=False), MALFORMED_PACKET, False)


def test_broker_disconnect_reason_is_kept() -> None:
    out = feed([packet(0xE0, b"\x95" + props(b"\x1f" + string("too big")))])
    assert out.violation is None
    assert out.disconnect_reason == "broker sent DISCONNECT: packet too large (too big)"


# ------------------------------------------------------------------ encoders, validators, ids


def test_encode_varint_bounds() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(268_435_455) == b"\xff\xff\xff\x7f"
    for bad in (268_435_456, -1):
        with pytest.raises(SerializeError, match="268,435,455"):
            encode_varint(bad)


def test_publish_packet_too_large_for_mqtt_is_a_serialize_error() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return 268_435_456

    with pytest.raises(SerializeError):
        publish_packet(b"t", Huge(), 0, False, 0, False)


@pytest.mark.parametrize("check", [validate_topic, validate_filter])
def test_validators_reject_what_is_not_an_mqtt_string(check: Any) -> None:
    assert "surrogate" in check("a/\ud800")
    assert "NUL" in check("a\x00b")
    assert "65,535" in check("a" * 65536)
    assert "65,535" in check("é" * 32768)  # 65,536 bytes in UTF-8
    assert check("a" * 65535) is None
    assert check("é/ü") is None


def test_build_reports_bad_topics_instead_of_raising() -> None:
    async def main() -> InvalidConfiguration:
        b = AimDbBuilder().with_connector(MqttConnector("mqtt://127.0.0.1:1"))
        ring = BufferCfg.SpmcRing(capacity=4)
        b.configure(Temp, "out", lambda r: r.buffer(ring).link_to("mqtt://a/\ud800").finish())
        b.configure(Temp, "in", lambda r: r.buffer(ring).link_from("mqtt://a\x00/#").finish())
        with pytest.raises(InvalidConfiguration) as ei:
            async with b.build():
                pass
        return ei.value

    err = asyncio.run(main())
    text = str(err)
    assert "surrogate" in text and "NUL" in text


def test_packet_ids_are_never_reused_while_in_flight() -> None:
    ids = PacketIds()
    first = [ids.allocate() for _ in range(10)]
    assert first == list(range(1, 11))
    ids.release(3)
    assert ids.allocate() == 11  # a released id is not handed out again at once
    for _ in range(65535 - 11):
        ids.allocate()
    assert len(ids) == 65534
    assert ids.allocate() == 3  # the only free one, after wrapping
    with pytest.raises(ConnectorError, match="65,535"):
        ids.allocate()
    ids.release(40000)
    assert 40000 not in ids
    assert ids.allocate() == 40000
    ids.clear()
    assert len(ids) == 0 and ids.allocate() == 40001


# ------------------------------------------------------------------ over a real socket


async def _serve_once(script: bytes) -> tuple[bytes, bool, MqttProtocol]:
    """A loopback server that answers CONNECT with ``script``; returns what the client sent after."""
    got = bytearray()
    eof = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)
        await reader.readexactly(head[1])  # the CONNECT
        writer.write(script)
        await writer.drain()
        while chunk := await reader.read(4096):
            got.extend(chunk)
        eof.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    msgs: list[Any] = []
    _t, proto = await loop.create_connection(
        lambda: MqttProtocol(5, lambda *m: msgs.append(m), lambda *a: None), "127.0.0.1", port
    )
    proto.write(b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x00\x00\x00\x00")
    reason = await asyncio.wait_for(proto.closed, 10)
    await asyncio.wait_for(eof.wait(), 10)
    server.close()
    await server.wait_closed()
    assert reason is not None and "protocol violation" in reason
    return bytes(got), len(msgs) == 1, proto


@pytest.mark.timeout(30)
def test_over_a_socket_the_client_acks_then_disconnects_with_the_reason() -> None:
    script = connack() + publish("t", b"ok", qos=1, pid=1) + publish("t", flags=0b0110, pid=2)
    got, delivered, proto = asyncio.run(_serve_once(script))
    assert got == PUBACK_1 + disconnect(MALFORMED_PACKET)
    assert delivered
    assert isinstance(proto.violation, ProtocolViolation)


@pytest.mark.timeout(30)
def test_over_a_socket_a_topic_with_nul_is_refused() -> None:
    got, delivered, _ = asyncio.run(_serve_once(connack() + publish("a\x00", qos=1, pid=1)))
    assert got == disconnect(MALFORMED_PACKET)
    assert not delivered


def test_publish_packet_header_is_what_the_decoder_reads() -> None:
    pkt = publish_packet(b"s/t", b"v" * 200, 1, False, 5, True)
    assert pkt == publish("s/t", b"v" * 200, qos=1, pid=5)
    assert struct.unpack(">H", pkt[3:5])[0] == 3
    assert varint(len(pkt) - 3) == pkt[1:3]
