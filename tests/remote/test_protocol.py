"""Framing, frame parsing, key patterns and endpoints (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimdb.remote import FrameDecoder, FrameError, parse_endpoint, pattern_matches
from aimdb.remote._protocol import parse_frame, version_compatible


def test_frames_split_on_newline_across_chunks() -> None:
    d = FrameDecoder(100)
    assert d.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert d.feed(b':2}\r\n\n\n{"c":3}\n') == [b'{"b":2}', b'{"c":3}']
    assert d.buffered == 0


def test_oversized_frame_is_reported_once_and_decoder_resyncs() -> None:
    d = FrameDecoder(10)
    out = d.feed(b"x" * 25)
    assert out == [FrameError("frame_too_large", "frame longer than 10 bytes discarded")]
    assert d.feed(b"y" * 1000) == []  # still discarding, holds nothing
    assert d.buffered == 0
    assert d.feed(b'zz\n{"ok":1}\n') == [b'{"ok":1}']


def test_oversized_complete_line_in_one_chunk() -> None:
    d = FrameDecoder(4)
    out = d.feed(b"123456\nabcd\n")
    assert isinstance(out[0], FrameError) and out[1] == b"abcd"


def test_parse_frame_errors() -> None:
    assert parse_frame(b'{"id":1}') == {"id": 1}
    for bad in (b"nope", b"[1,2]", b"\xff\xfe", b'{"a":', b"1"):
        err = parse_frame(bad)
        assert isinstance(err, FrameError) and err.code == "parse_error"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(min_value=1, max_value=40))
def test_decoder_on_arbitrary_bytes_yields_only_frames_or_clean_errors(
    chunks: list[bytes], limit: int
) -> None:
    d = FrameDecoder(limit)
    for chunk in chunks:
        for item in d.feed(chunk):
            if isinstance(item, FrameError):
                assert item.code == "frame_too_large"
            else:
                assert isinstance(item, bytes) and item
                assert b"\n" not in item and len(item) <= limit
                parsed = parse_frame(item)
                assert isinstance(parsed, (dict, FrameError))
        assert d.buffered <= limit + 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_chunking_does_not_change_frames(data: bytes, cuts: list[int]) -> None:
    whole = FrameDecoder(32).feed(data)
    d = FrameDecoder(32)
    got: list[object] = []
    prev = 0
    for c in [*sorted(set(cuts)), len(data)]:
        c = min(c, len(data))
        got.extend(d.feed(data[prev:c]))
        prev = c
    frames_whole = [x for x in whole if isinstance(x, bytes)]
    frames_got = [x for x in got if isinstance(x, bytes)]
    assert frames_got == frames_whole


@pytest.mark.parametrize(
    ("pattern", "key", "ok"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "x.y", True),
        ("#.temp", "station.1.temp", True),
        ("station.*.temp", "station.1.temp", True),
        ("station.*.temp", "station.1.hum", False),
        ("*", "a.b", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
    ],
)
def test_patterns(pattern: str, key: str, ok: bool) -> None:
    assert pattern_matches(pattern, key) is ok


def test_endpoints() -> None:
    assert parse_endpoint("unix:///tmp/x.sock").path == "/tmp/x.sock"
    assert parse_endpoint("/run/a.sock").kind == "unix"
    ep = parse_endpoint("tcp://127.0.0.1:7433")
    assert (ep.kind, ep.host, ep.port) == ("tcp", "127.0.0.1", 7433)
    assert parse_endpoint("tcp://[::1]:80").host == "::1"
    assert str(parse_endpoint("tcp://[::1]:80")) == "tcp://[::1]:80"
    for bad in ("", "tcp://host", "ftp://x", "tcp://h:99999", "unix://"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_version_compatibility() -> None:
    assert version_compatible("1.0") and version_compatible("1.7") and version_compatible("1")
    assert not version_compatible("2.0") and not version_compatible(None) and not version_compatible("x")
