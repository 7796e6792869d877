"""build() collects every configuration problem; lookups fail fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import (
    AimDbBuilder,
    BufferCfg,
    InvalidConfiguration,
    RecordNotFound,
    TypeMismatch,
)
from aimdb.testing import MemoryConnector


@dataclass
class Temp:
    celsius: float


@dataclass
class Hum:
    percent: float


class Opaque:
    def __init__(self, x: int) -> None:
        self.x = x


async def _src(ctx: Any, producer: Any) -> None:
    return None


async def _tap(ctx: Any, consumer: Any) -> None:
    return None


def kinds(exc: InvalidConfiguration) -> list[tuple[str, str]]:
    return [(p.key, p.kind) for p in exc.problems]


def build_problems(fn: Any) -> list[tuple[str, str]]:
    b = AimDbBuilder()
    fn(b)
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    return kinds(info.value)


def test_duplicate_writers() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.configure(Temp, "t.a", lambda r: r.buffer(BufferCfg.SingleLatest()).source(_src))
        b.configure(Temp, "t.b", lambda r: r.buffer(BufferCfg.SingleLatest()).source(_src).source(_src))
        b.configure(
            Temp,
            "t.c",
            lambda r: r.buffer(BufferCfg.SingleLatest()).source(_src).transform(Temp, "t.a", lambda v: v),
        )

    assert build_problems(cfg) == [("t.b", "duplicate_writer"), ("t.c", "duplicate_writer")]


def test_link_from_mixed_with_source() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.with_connector(MemoryConnector())
        b.configure(
            Temp,
            "t.a",
            lambda r: r.buffer(BufferCfg.SingleLatest()).source(_src).link_from("memory://x").finish(),
        )

    assert build_problems(cfg) == [("t.a", "duplicate_writer")]


def test_unknown_scheme_and_bad_url() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.configure(Temp, "t.a", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("nats://x").finish())
        b.configure(Temp, "t.b", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("no-scheme").finish())

    b = AimDbBuilder()
    cfg(b)
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    assert kinds(info.value) == [("t.a", "unknown_scheme"), ("t.b", "bad_url")]
    assert info.value.problems[0].url == "nats://x"


def test_missing_codec() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.with_connector(MemoryConnector())
        b.configure(
            Opaque, "o.a", lambda r: r.buffer(BufferCfg.SingleLatest()).link_to("memory://o").finish()
        )
        b.configure(
            Opaque,
            "o.b",
            lambda r: (
                r.buffer(BufferCfg.SingleLatest())
                .link_to("memory://o")
                .with_serializer(lambda v: b"x")
                .finish()
            ),
        )

    assert build_problems(cfg) == [("o.a", "missing_codec")]


def test_tap_and_link_without_buffer() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.with_connector(MemoryConnector())
        b.configure(Temp, "t.a", lambda r: r.tap(_tap))
        b.configure(Temp, "t.b", lambda r: r.link_to("memory://t").finish())

    assert build_problems(cfg) == [("t.a", "missing_buffer"), ("t.b", "missing_buffer")]


def test_transform_input_missing_and_type_conflict() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.configure(Temp, "t.a", lambda r: r.buffer(BufferCfg.SingleLatest()))
        b.configure(
            Hum, "h.a", lambda r: r.buffer(BufferCfg.SingleLatest()).transform(Temp, "nope", lambda v: None)
        )
        b.configure(
            Hum, "h.b", lambda r: r.buffer(BufferCfg.SingleLatest()).transform(Hum, "t.a", lambda v: None)
        )

    assert build_problems(cfg) == [("h.a", "missing_input"), ("h.b", "type_conflict")]


def test_cycle() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.configure(Temp, "a", lambda r: r.buffer(BufferCfg.SingleLatest()).transform(Temp, "b", lambda v: v))
        b.configure(Temp, "b", lambda r: r.buffer(BufferCfg.SingleLatest()).transform(Temp, "a", lambda v: v))

    assert build_problems(cfg) == [("a", "cycle")]


def test_same_key_other_type() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.configure(Temp, "t.a", lambda r: r.buffer(BufferCfg.SingleLatest()))
        b.configure(Hum, "t.a", lambda r: r.buffer(BufferCfg.SingleLatest()))

    assert build_problems(cfg) == [("t.a", "type_conflict")]


def test_same_key_same_type_adds_to_record() -> None:
    b = AimDbBuilder()
    b.configure(Temp, "t.a", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=4)).tap(_tap))
    b.configure(Temp, "t.a", lambda r: r.tap(_tap, name="second"))
    db = b.build()
    assert db.record("t.a").taps == 2


@pytest.mark.parametrize("cap", [0, -3, "16", 2.5])
def test_bad_capacity_names_the_record(cap: Any) -> None:
    b = AimDbBuilder()
    b.configure(Temp, "t.cap", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=cap)))
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    assert kinds(info.value) == [("t.cap", "bad_buffer")]
    assert "t.cap" in str(info.value)


def test_bad_keys_and_policy() -> None:
    def cfg(b: AimDbBuilder) -> None:
        b.configure(Temp, "a..b", lambda r: r.buffer(BufferCfg.SingleLatest()))
        b.configure(Temp, "ok", lambda r: r.buffer(BufferCfg.SingleLatest()).source(_src, on_error="explode"))

    assert build_problems(cfg) == [("a..b", "bad_key"), ("ok", "bad_argument")]


def test_many_problems_at_once() -> None:
    b = AimDbBuilder()
    b.configure(Temp, "x.one", lambda r: r.tap(_tap))  # no buffer
    b.configure(Temp, "x.two", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=0)))  # bad capacity
    b.configure(Hum, "x.two", lambda r: None)  # type conflict
    b.configure(Temp, "x.three", lambda r: r.buffer(BufferCfg.Mailbox()).link_from("kafka://t").finish())
    b.configure(
        Temp, "x.four", lambda r: r.buffer(BufferCfg.Mailbox()).transform(Temp, "x.none", lambda v: v)
    )
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    assert sorted(kinds(info.value)) == sorted(
        [
            ("x.two", "type_conflict"),
            ("x.one", "missing_buffer"),
            ("x.two", "bad_buffer"),
            ("x.three", "unknown_scheme"),
            ("x.four", "missing_input"),
        ]
    )
    text = str(info.value)
    assert text.startswith("5 configuration problem(s):")
    for key in ("x.one", "x.two", "x.three", "x.four"):
        assert key in text


def test_lookup_errors() -> None:
    b = AimDbBuilder()
    b.configure(Temp, "temp.indoor", lambda r: r.buffer(BufferCfg.SingleLatest()))
    db = b.build()
    with pytest.raises(RecordNotFound) as nf:
        db.producer(Temp, "temp.indor")
    assert nf.value.key == "temp.indor"
    assert "temp.indoor" in nf.value.close_matches
    assert isinstance(nf.value, LookupError)
    with pytest.raises(TypeMismatch) as tm:
        db.consumer(Hum, "temp.indoor")
    assert tm.value.expected is Temp and tm.value.actual is Hum
    assert isinstance(tm.value, TypeError)


def test_produce_wrong_type_leaves_buffer_untouched() -> None:
    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SingleLatest()))
    db = b.build()
    p = db.producer(Temp, "t")
    with pytest.raises(TypeMismatch):
        p.produce("x")  # type: ignore[arg-type]
    buf = db.buffer("t")
    assert buf is not None and buf.statistics().produced == 0 and buf.peek() is None
    # type checks can be turned off per database
    b2 = AimDbBuilder(type_checks=False)
    b2.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SingleLatest()))
    db2 = b2.build()
    db2.producer(Temp, "t").produce("x")  # type: ignore[arg-type]
    assert db2.consumer(Temp, "t").peek() == "x"


def test_metadata_survives_build() -> None:
    b = AimDbBuilder()
    b.with_connector(MemoryConnector())
    b.configure(
        Temp,
        "t.src",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).source(_src).tap(_tap).remote(writable=True),
    )
    b.configure(Temp, "t.cfg", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True))
    b.configure(
        Temp,
        "t.der",
        lambda r: (
            r.buffer(BufferCfg.SingleLatest())
            .transform(Temp, "t.src", lambda v: v)
            .link_to("memory://d")
            .finish()
        ),
    )
    db = b.build()
    src, cfgr, der = db.record("t.src"), db.record("t.cfg"), db.record("t.der")
    assert (src.writer_kind, src.taps, src.buffer_kind, src.capacity) == ("source", 1, "spmc_ring", 8)
    assert src.remote_writable is False  # never writable remotely with a source
    assert cfgr.writer_kind == "none" and cfgr.remote_writable is True
    assert der.writer_kind == "transform" and der.inputs == ("t.src",) and der.links_out == ("memory://d",)
    g = db.graph()
    assert g["order"].index("t.src") < g["order"].index("t.der")
    assert {"from": "t.src", "to": "t.der", "kind": "transform"} in g["edges"]
