"""Connectors: mirror records to and from brokers (CPython, asyncio/uvloop).

Import the connector you need; nothing here imports an optional library eagerly::

    from aimdb.connectors import MqttConnector, KafkaConnector, NatsConnector

* :class:`MqttConnector` (``mqtt://`` and ``mqtts://``): MQTT 3.1.1 and 5 on a lean
  asyncio protocol of aimdb's own (no extra dependency).
* :class:`KafkaConnector` (``kafka://``): Kafka on aiokafka (``pip install aimdb[kafka]``).
* :class:`NatsConnector` (``nats://``): core NATS and JetStream on nats-py
  (``pip install aimdb[nats]``).

Shared pieces (reconnect policy, connection state, statistics) live in
:mod:`aimdb.connectors._base` and are re-exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import BaseConnector, ConnectorStatistics, Endpoint, ReconnectPolicy
    from .kafka import KafkaConnector
    from .mqtt import MqttConnector
    from .nats import NatsConnector

__all__ = (
    "BaseConnector",
    "ConnectorStatistics",
    "Endpoint",
    "KafkaConnector",
    "MqttConnector",
    "NatsConnector",
    "ReconnectPolicy",
)

_WHERE = {
    "BaseConnector": "._base",
    "ConnectorStatistics": "._base",
    "Endpoint": "._base",
    "ReconnectPolicy": "._base",
    "MqttConnector": ".mqtt",
    "KafkaConnector": ".kafka",
    "NatsConnector": ".nats",
}


def __getattr__(name: str) -> Any:
    """Import connector classes on first use (so a missing extra only matters when used)."""
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError("module 'aimdb.connectors' has no attribute " + repr(name))
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
