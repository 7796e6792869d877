"""Pytest fixtures for real brokers (a plugin module).

Load it once for the whole suite from ``tests/conftest.py``::

    pytest_plugins = ["tests.brokers.fixtures"]

Fixtures:

* ``mosquitto_url`` (session): ``"mqtt://127.0.0.1:1883"``, the machine's Mosquitto,
  started if it is down.  Stock config: at most 20 in-flight and 1000 queued QoS 1/2
  messages per client, beyond that it drops; use ``private_mosquitto`` for no-loss tests.
* ``private_mosquitto`` (function): a started ``PrivateMosquitto`` on a free port, configured
  for no loss; ``.url``, ``.port``, ``.restart()``, ``.stop()``, ``.kill()``, ``.start()``.
* ``private_mosquitto_factory`` (function): ``factory(**kwargs) -> PrivateMosquitto`` (started),
  e.g. ``factory(users={"u": "pw"})`` or, for a TLS-only listener (``.url`` is then
  ``mqtts://...``), ``factory(certfile=..., keyfile=..., cafile=..., require_certificate=True)``;
  all are stopped at teardown.
* ``tansu`` (session): a started ``Tansu`` (Kafka protocol); ``.url`` is
  ``"kafka://127.0.0.1:PORT"``, ``.address`` is ``"127.0.0.1:PORT"`` for aiokafka,
  ``.kcat_bootstrap`` is the address for ``kcat -b``.  Shared: do not restart it.
* ``private_tansu`` (function): a Tansu of the test's own, safe to restart.
* ``nats_url`` (session): ``"nats://127.0.0.1:4222"``, the machine's nats-server with
  JetStream, started if it is down.
* ``private_nats`` (function): a started ``PrivateNats`` (JetStream, store in a private temp
  dir that survives restarts) on a free port; ``.url``, ``.port``, ``.kill()``, ``.start()``...
* ``private_nats_factory`` (function): ``factory(**kwargs) -> PrivateNats`` (started), e.g.
  ``factory(user="u", password="pw")``, ``factory(token="t")`` or, TLS only (``.url`` is then
  ``tls://...``), ``factory(certfile=..., keyfile=..., cafile=...)``; all stopped at teardown.
* ``private_ejabberd_factory`` (function): ``factory(**kwargs) -> PrivateEjabberd`` (started):
  ejabberd's MQTT 5 / 3.1.1 broker, the second implementation of the MQTT conformance
  tests, e.g. ``factory(max_payload_size=256, max_topic_aliases=0)``; clients connect to
  ``.client_url`` (it wants a user name); all stopped at teardown.
* ``private_mqttools`` (function): a started ``PrivateMqttTools``, the ``mqttools`` package's
  MQTT 5 broker announcing Maximum QoS 0 and no wildcard subscriptions.
* ``unique_topic`` (function): a fresh name valid as an MQTT topic and a Kafka topic.

Tests using any of these get the ``broker`` marker automatically, so ``-m "not broker"``
skips them.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS))

import brokers  # noqa: E402
from brokers import (  # noqa: E402
    BrokerError,
    PrivateEjabberd,
    PrivateMosquitto,
    PrivateMqttTools,
    PrivateNats,
    Tansu,
    ensure_system_mosquitto,
    ensure_system_nats,
)

BROKER_FIXTURES = frozenset(
    {
        "mosquitto_url",
        "private_mosquitto",
        "private_mqttools",
        "private_mosquitto_factory",
        "tansu",
        "private_tansu",
        "nats_url",
        "private_nats",
        "private_nats_factory",
        "private_ejabberd_factory",
        "private_mqttools",
    }
)

_SETUP_HINT = "run scripts/setup-test-env to install and start the test brokers"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def mosquitto_url() -> str:
    """URL of the machine's Mosquitto on 127.0.0.1:1883 (started when down)."""
    try:
        return ensure_system_mosquitto()
    except (BrokerError, OSError) as exc:
        pytest.fail(f"system Mosquitto unavailable: {exc} ({_SETUP_HINT})", pytrace=False)


def _start(broker: Any) -> Any:
    try:
        broker.__enter__()
    except (BrokerError, OSError) as exc:
        pytest.fail(f"{type(broker).__name__} did not start: {exc} ({_SETUP_HINT})", pytrace=False)
    return broker


def _running(broker: Any) -> Iterator[Any]:
    """Start ``broker`` for one fixture and close it at teardown."""
    _start(broker)
    try:
        yield broker
    finally:
        broker.close()


def _factory(cls: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Yield ``factory(**options)`` starting brokers of ``cls``; close them all at teardown."""
    started: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        broker = _start(cls(**kwargs))
        started.append(broker)
        return broker

    try:
        yield factory
    finally:
        for broker in started:
            broker.close()


@pytest.fixture
def private_mosquitto() -> Iterator[PrivateMosquitto]:
    """A started no-loss Mosquitto on a free port, stopped at teardown."""
    yield from _running(PrivateMosquitto())


@pytest.fixture
def private_mosquitto_factory() -> Iterator[Callable[..., PrivateMosquitto]]:
    """Factory for private Mosquittos with options (users=..., max_queued_messages=...)."""
    yield from _factory(PrivateMosquitto)


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    """A Kafka-protocol broker (Tansu, in-memory) shared by the session."""
    yield from _running(Tansu())


@pytest.fixture
def private_tansu() -> Iterator[Tansu]:
    """A Tansu of the test's own (restart it freely), stopped at teardown."""
    yield from _running(Tansu())


@pytest.fixture(scope="session")
def nats_url() -> str:
    """URL of the machine's nats-server (JetStream) on 127.0.0.1:4222 (started when down)."""
    try:
        return ensure_system_nats()
    except (BrokerError, OSError) as exc:
        pytest.fail(f"system nats-server unavailable: {exc} ({_SETUP_HINT})", pytrace=False)


@pytest.fixture
def private_nats() -> Iterator[PrivateNats]:
    """A started nats-server with JetStream on a free port (restart it freely), stopped at teardown."""
    yield from _running(PrivateNats())


@pytest.fixture
def private_nats_factory() -> Iterator[Callable[..., PrivateNats]]:
    """Factory for private nats-servers with options (user=/password=, token=, jetstream=)."""
    yield from _factory(PrivateNats)


@pytest.fixture
def private_ejabberd_factory() -> Iterator[Callable[..., PrivateEjabberd]]:
    """Factory for private ejabberd MQTT brokers (max_payload_size=, max_topic_aliases=...)."""
    yield from _factory(PrivateEjabberd)


@pytest.fixture
def private_mqttools() -> Iterator[PrivateMqttTools]:
    """The mqttools MQTT 5 broker (Maximum QoS 0, no wildcards) on a free port, stopped at teardown."""
    yield from _running(PrivateMqttTools())


_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test run: ``aimdb-<test name>-<hex>``.

    Only ``[A-Za-z0-9-]``: valid for MQTT (no wildcards, no ``/``) and Kafka alike.
    Build MQTT hierarchies on top of it, e.g. ``f"{unique_topic}/sensors/temp"``.
    """
    name = _UNSAFE.sub("-", request.node.name).strip("-")[:60]
    return f"aimdb-{name}-{uuid.uuid4().hex[:10]}"


__all__ = [
    "BROKER_FIXTURES",
    "brokers",
    "mosquitto_url",
    "nats_url",
    "private_ejabberd_factory",
    "private_mosquitto",
    "private_mosquitto_factory",
    "private_nats",
    "private_nats_factory",
    "private_tansu",
    "tansu",
    "unique_topic",
]
