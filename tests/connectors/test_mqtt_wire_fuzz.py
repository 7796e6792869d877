"""Hypothesis over the MQTT packet decoder.

Any bytes from the broker, in any chunking, give valid packets or one ProtocolViolation
(the connection closed with its reason), never another exception out of
``data_received``; the outcome does not depend on how the stream was cut into reads.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._mqtt_packets import Outcome, ack, feed, packet, props, publish, string, suback

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOPIC_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="+#\x00")
TOPICS = st.text(TOPIC_CHARS, min_size=1, max_size=20)
PIDS = st.integers(1, 65535)
VERSIONS = st.sampled_from([4, 5])


def _publish_props() -> st.SearchStrategy[bytes]:
    one = st.one_of(
        st.integers(0, 1).map(lambda v: b"\x01" + bytes((v,))),
        st.integers(0, 2**32 - 1).map(lambda v: b"\x02" + struct.pack(">I", v)),
        st.text(TOPIC_CHARS, max_size=8).map(lambda s: b"\x03" + string(s)),
        st.binary(max_size=8).map(lambda b: b"\x09" + string(b)),
        st.tuples(st.text(TOPIC_CHARS, max_size=4), st.text(TOPIC_CHARS, max_size=4)).map(
            lambda kv: b"\x26" + string(kv[0]) + string(kv[1])
        ),
    )
    sub_ids = st.lists(st.integers(1, 268_435_455), max_size=2)
    return st.tuples(st.lists(one, max_size=1), sub_ids).map(
        lambda ps: props(*ps[0], *(b"\x0b" + _varint(i) for i in ps[1]))
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def valid_packet(draw: Any, v5: bool) -> tuple[bytes, tuple[str, Any] | None]:
    """One packet a conforming broker may send after CONNACK, and what it means."""
    kind = draw(st.sampled_from(["publish", "ack", "pubrel", "suback", "unsuback", "ping"]))
    if kind == "publish":
        qos = draw(st.integers(0, 2))
        pid = draw(PIDS) if qos else 0
        topic = draw(TOPICS)
        payload = draw(st.binary(max_size=40))
        block = draw(_publish_props()) if v5 else b""
        pkt = publish(topic, payload, qos=qos, pid=pid, v5=v5, properties=block)
        return pkt, ("publish", (topic, payload, qos, pid))
    if kind == "ack":
        head = draw(st.sampled_from([0x40, 0x50, 0x70]))
        pid = draw(PIDS)
        if v5 and draw(st.booleans()):
            codes = [0x00, 0x92] if head == 0x70 else [0x00, 0x10, 0x80, 0x87, 0x99]
            return ack(head, pid, draw(st.sampled_from(codes)), b"\x00"), None
        return ack(head, pid), None
    if kind == "pubrel":
        pid = draw(PIDS)
        return ack(0x62, pid), ("pubrel", pid)
    if kind == "suback":
        valid = [0, 1, 2, 0x80] + ([0x87, 0x91, 0xA2] if v5 else [])
        codes = bytes(draw(st.lists(st.sampled_from(valid), min_size=1, max_size=4)))
        return suback(draw(PIDS), codes, v5=v5), None
    if kind == "unsuback":
        body = struct.pack(">H", draw(PIDS)) + (b"\x00\x00" if v5 else b"")
        return packet(0xB0, body), None
    return b"\xd0\x00", None


@st.composite
def valid_stream(draw: Any) -> tuple[int, bytes, list[tuple[str, bytes]]]:
    """Version, a stream of valid packets, and the messages it must deliver."""
    version = draw(VERSIONS)
    pkts = draw(st.lists(valid_packet(version == 5), max_size=12))
    pending: set[int] = set()
    expected: list[tuple[str, bytes]] = []
    for _pkt, meaning in pkts:
        if meaning is None:
            continue
        what, arg = meaning
        if what == "pubrel":
            pending.discard(arg)
            continue
        topic, payload, qos, pid = arg
        if qos == 2:
            if pid in pending:
                continue  # a re-send of a pending QoS 2 publish is delivered once
            pending.add(pid)
        expected.append((topic, payload))
    return version, b"".join(p for p, _ in pkts), expected


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out = []
    prev = 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return [c for c in out if c]


def same_outcome(a: Outcome, b: Outcome) -> None:
    assert a.messages == b.messages
    assert a.written == b.written
    assert a.code == b.code
    assert a.closed == b.closed


def check_any(stream: bytes, cuts: list[int], version: int, connected: bool, limit: int) -> Outcome:
    """Feed ``stream`` whole and in chunks: no exception escapes, same outcome either way."""
    whole = feed([stream], version, connected=connected, maximum_packet_size=limit)
    parts = feed(chunked(stream, cuts), version, connected=connected, maximum_packet_size=limit)
    same_outcome(whole, parts)
    for topic, payload, sub_ids in whole.messages:
        assert isinstance(topic, str) and topic and "\x00" not in topic
        assert "+" not in topic and "#" not in topic
        assert isinstance(payload, bytes)
        assert all(isinstance(i, int) and i > 0 for i in sub_ids)
    if whole.violation is not None:
        assert whole.closed
        assert whole.violation.reason_code in (0x81, 0x82, 0x93, 0x94, 0x95)
        if version == 5:
            assert whole.written.endswith(bytes((0xE0, 1, whole.violation.reason_code)))
    return whole


@SETTINGS
@given(
    st.binary(max_size=300),
    st.lists(st.integers(0, 400), max_size=6),
    VERSIONS,
    st.booleans(),
    st.sampled_from([0, 64]),
)
def test_arbitrary_bytes_never_raise(
    data: bytes, cuts: list[int], version: int, connected: bool, limit: int
) -> None:
    check_any(data, cuts, version, connected, limit)


@SETTINGS
@given(valid_stream(), st.lists(st.integers(0, 2000), max_size=6))
def test_valid_packets_are_delivered_in_any_chunking(stream: Any, cuts: list[int]) -> None:
    version, data, expected = stream
    out = check_any(data, cuts, version, True, 0)
    assert out.violation is None, str(out.violation)
    assert [(t, p) for t, p, _ in out.messages] == expected
    assert not out.closed


@SETTINGS
@given(
    valid_stream(),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "set", "insert", "delete"]), st.integers(0, 2000), st.integers(0, 255)
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_mutated_valid_packets_never_raise(stream: Any, mutations: list[Any], cuts: list[int]) -> None:
    version, data, _expected = stream
    buf = bytearray(data)
    for op, at, value in mutations:
        i = at % (len(buf) + 1)
        if op == "insert":
            buf.insert(i, value)
        elif not buf:
            continue
        elif op == "delete":
            del buf[i % len(buf)]
        elif op == "flip":
            buf[i % len(buf)] ^= 1 << (value % 8)
        else:
            buf[i % len(buf)] = value
    check_any(bytes(buf), cuts, version, True, 0)
