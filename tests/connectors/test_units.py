"""Broker-free checks: URL parsing, topic matching, backoff, link validation, import errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, InvalidConfiguration
from aimdb._core._buffers import LatestBuffer, MailboxBuffer, RingBuffer
from aimdb._core._connector import OutboundRoute
from aimdb._core._links import LinkSpec
from aimdb.connectors import MqttConnector, ReconnectPolicy
from aimdb.connectors._base import _wait_for, parse_endpoint, translate_error
from aimdb.connectors._mqtt_wire import filter_covers, topic_matches, validate_filter

from ._util import Temp


@pytest.mark.parametrize(
    ("flt", "topic", "ok"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("+/+", "a/b", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("a/+/c", "a/b/d", False),
    ],
)
def test_topic_matches(flt: str, topic: str, ok: bool) -> None:
    assert topic_matches(flt, topic) is ok


def test_filters() -> None:
    assert validate_filter("a/#/b") and validate_filter("a+") and validate_filter("")
    assert validate_filter("a/+/#") is None
    assert filter_covers("a/#", "a/+/c") and filter_covers("#", "a/b")
    assert not filter_covers("a/+/c", "a/#") and not filter_covers("a/+", "a/b/c")


def test_endpoint_parsing() -> None:
    ep = parse_endpoint("mqtt://u:p@127.0.0.1", {"mqtt": 1883})
    assert (ep.host, ep.port, ep.username, ep.password, ep.url) == (
        "127.0.0.1",
        1883,
        "u",
        "p",
        "mqtt://127.0.0.1:1883",
    )
    v6 = parse_endpoint("mqtts://[::1]:9", {"mqtts": 8883}, ("mqtts",))
    assert v6.tls and (v6.host, v6.hostport, v6.url) == ("::1", "[::1]:9", "mqtts://[::1]:9")
    assert ep.hostport == "127.0.0.1:1883"
    for bad in ("http://x", "mqtt://", "mqtt://host/topic", "nourl"):
        with pytest.raises(ValueError):
            parse_endpoint(bad, {"mqtt": 1883})


def test_backoff_grows_with_jitter_and_caps() -> None:
    p = ReconnectPolicy(initial_delay=0.1, max_delay=1.0, multiplier=2, jitter=0.2, max_attempts=5)
    assert 0.08 <= p.delay(1) <= 0.12 and 0.32 <= p.delay(3) <= 0.48 and p.delay(20) <= 1.2
    assert p.gives_up(5) and not p.gives_up(4)


@pytest.mark.parametrize("multiplier", [2, 2.0, 1.5])
def test_backoff_after_thousands_of_attempts_stays_at_the_cap(multiplier: float) -> None:
    # an unlimited policy retrying every 30 s reaches attempt 1,025 after about 8.5 hours;
    # multiplier ** 1024 overflowed there and ended the connector
    p = ReconnectPolicy(initial_delay=0.1, max_delay=30.0, multiplier=multiplier, jitter=0.1)
    for attempt in (1_025, 5_000, 10**6):
        assert 27.0 <= p.delay(attempt) <= 33.0


def test_error_translation_keeps_cause() -> None:
    from aimdb import ConnectionFailed, ConnectorTimeout, PublishError

    e = translate_error(ConnectionRefusedError(111, "Connection refused"), "mqtt://h:1")
    assert isinstance(e, ConnectionFailed) and "Connection refused" in e.reason and e.__cause__
    assert isinstance(translate_error(TimeoutError(), "u", "publish"), ConnectorTimeout)
    assert isinstance(translate_error(RuntimeError("x"), "u", "publish"), PublishError)


def test_connect_wait_keeps_a_cancellation_that_races_the_result() -> None:
    """The connect attempt fails in the same loop pass as the connector is cancelled: the
    cancellation must win (asyncio.wait_for before 3.12 raised the failure instead, so the
    reconnect loop went on and the database's shutdown hung)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        inner: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(_wait_for(inner, 5.0))
        await asyncio.sleep(0)  # the task now waits for inner
        inner.set_exception(OSError("certificate verify failed"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await _wait_for(asyncio.sleep(0, "ok"), 5.0) == "ok"
        with pytest.raises(OSError):
            await _wait_for(_fail(), 5.0)
        slow = loop.create_task(asyncio.sleep(10))
        with pytest.raises(asyncio.TimeoutError):
            await _wait_for(slow, 0.01)
        assert slow.cancelled()

    asyncio.run(main())


async def _fail() -> None:
    raise OSError("refused")


def test_bad_mqtt_links_are_reported_by_build() -> None:
    b = AimDbBuilder().with_connector(MqttConnector())
    b.configure(Temp, "a", lambda r: r.buffer(BufferCfg.SpmcRing(4)).link_to("mqtt://x/+/y").qos(3).finish())
    b.configure(Temp, "b", lambda r: r.buffer(BufferCfg.SpmcRing(4)).link_from("mqtt://x/#/y").finish())
    with pytest.raises(InvalidConfiguration) as ei:
        b.build()
    text = str(ei.value)
    assert "wildcards are not allowed" in text and "qos" in text and "'#' must be" in text


def test_kafka_module_without_aiokafka_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiokafka'] = None\n"
        "try:\n    import aimdb.connectors.kafka\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    assert "aimdb[kafka]" in out.stdout.decode()


def test_connectors_package_is_lazy() -> None:
    code = (
        "import sys, aimdb.connectors\n"
        "print('aiokafka' in sys.modules, 'aimdb.connectors.mqtt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    assert out.stdout.decode().split() == ["False", "False"]


def _route(buf: Any) -> OutboundRoute:
    return OutboundRoute("k", int, LinkSpec("out", "mqtt://t"), buf.subscribe(), lambda v: b"")


@pytest.mark.parametrize("kind", ["latest", "mailbox"])
async def test_newest_only_records_drop_carried_values_once_a_newer_one_arrives(rt: Any, kind: str) -> None:
    buf = LatestBuffer("k") if kind == "latest" else MailboxBuffer("k")
    route = _route(buf)
    buf.produce(1)
    carry = await route.next_batch(8)
    assert carry == [1]
    assert await route.next_batch(8, carry) == [1]  # nothing newer: the carried value stays
    buf.produce(2)
    assert await route.next_batch(8, carry) == [2]  # the carried 1 is stale


async def test_a_ring_sends_carried_values_before_newer_ones(rt: Any) -> None:
    buf: RingBuffer[int] = RingBuffer("k", 8)
    route = _route(buf)
    for i in range(3):
        buf.produce(i)
    carry = await route.next_batch(2)
    assert carry == [0, 1]
    assert await route.next_batch(8, carry) == [0, 1]  # newer values wait behind the carried ones
    assert await route.next_batch(8, []) == [2]
    buf.close()
    assert await route.next_batch(8) is None


def _reconnect_time(policy: ReconnectPolicy, outage: float) -> float:
    """Seconds from a broker's return to the next attempt, after an outage of ``outage`` seconds.

    Attempts start at the loss; each failed one waits ``policy.delay(n, elapsed)``. The
    first attempt at or after the broker's return succeeds.
    """
    t, n = 0.0, 0
    while t < outage:
        n += 1
        t += policy.delay(n, t)
    return t - outage


@pytest.mark.parametrize("outage", [1.0, 3.0, 7.0, 10.0])
def test_default_policy_reconnects_within_about_two_seconds_of_a_return(outage: float) -> None:
    """Regression: the default (doubling to 10 s) turned a 7 s outage into 13.7 s of disconnection."""
    p = ReconnectPolicy()
    worst = max(_reconnect_time(p, outage) for _ in range(200))
    assert worst <= 2.0 * 1.2 + 1e-9, worst  # max_delay 2 s, jitter 20 %


def test_default_policy_still_backs_off_against_a_dead_broker() -> None:
    p = ReconnectPolicy()
    assert p.delay(1) < 0.2
    assert 1.6 <= p.delay(30, outage=30.0) <= 2.4
    assert 24.0 <= p.delay(30, outage=61.0) <= 36.0  # after a minute: up to 30 s between attempts
    with pytest.raises(ValueError, match="negative"):
        ReconnectPolicy(dead_after=-1)


@pytest.mark.runtimes("asyncio", "uvloop")
async def test_backoff_grows_across_connections_the_broker_drops_at_once(rt: Any) -> None:
    """A broker that accepts and drops every connection is retried ever slower, not in a tight loop."""
    from aimdb import AimDbBuilder
    from aimdb.connectors._base import BaseConnector, Endpoint

    class DropsAtOnce(BaseConnector):
        def __init__(self) -> None:
            super().__init__(
                Endpoint("test", "127.0.0.1", 1),
                ReconnectPolicy(initial_delay=0.01, max_delay=0.16, jitter=0.0, stable_after=1.0),
            )
            self.scheme = "test"
            self.connects: list[float] = []

        async def _connect(self) -> None:
            self.connects.append(time.monotonic())

        async def _serve(self) -> str | None:
            return "dropped by the broker"

        async def _close(self) -> None:
            return None

    conn = DropsAtOnce()
    conn.always_run = True
    async with AimDbBuilder().with_connector(conn).build():
        await asyncio.sleep(0.8)
    gaps = [b - a for a, b in zip(conn.connects, conn.connects[1:])]
    assert len(conn.connects) <= 10, gaps  # a tight loop makes hundreds
    assert gaps[0] < 0.05 and max(gaps) >= 0.15, gaps
    assert conn.statistics().disconnects >= len(conn.connects) - 1


def test_repeated_connection_error_is_logged_once_then_at_growing_intervals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from aimdb.connectors._base import RepeatedFailureLog

    log = logging.getLogger("aimdb.test.repeat")
    failures = RepeatedFailureLog(log, "kafka://h:1")
    with caplog.at_level(logging.INFO, logger="aimdb.test.repeat"):
        for _ in range(120):
            failures.failed("cannot connect to kafka://h:1: refused", 0.5)
        lines = [r.getMessage() for r in caplog.records]
        assert lines[0] == "cannot connect to kafka://h:1: refused; retrying in 0.50s (attempt 1)"
        assert lines[1:] == [
            "still failing (10 times in a row): cannot connect to kafka://h:1: refused; retrying in 0.50s",
            "still failing (100 times in a row): cannot connect to kafka://h:1: refused; retrying in 0.50s",
        ]
        caplog.clear()
        failures.failed("cannot connect to kafka://h:1: timed out", 0.5)  # a new error: in full
        failures.recovered()
        lines = [r.getMessage() for r in caplog.records]
        assert lines == ["cannot connect to kafka://h:1: timed out; retrying in 0.50s (attempt 121)"]
        caplog.clear()
        failures.failed("cannot connect to kafka://h:1: refused", 0.5)  # after a connect: in full again
        failures.failed("cannot connect to kafka://h:1: refused", 0.5)
        failures.recovered()
        lines = [r.getMessage() for r in caplog.records]
        assert lines == [
            "cannot connect to kafka://h:1: refused; retrying in 0.50s (attempt 1)",
            "kafka://h:1: connected after 2 failed attempts",
        ]
