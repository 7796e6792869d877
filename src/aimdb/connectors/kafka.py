"""Kafka connector on aiokafka: ``link_to("kafka://topic")`` produces, ``link_from`` consumes.

::

    from aimdb.connectors import KafkaConnector

    conn = KafkaConnector("kafka://127.0.0.1:9092", group_id="edge-1", start="earliest")
    builder.with_connector(conn)
    builder.configure(Reading, "reading", lambda r: r.buffer(BufferCfg.SpmcRing(1024))
                      .link_to("kafka://readings").key(lambda v: v.sensor).finish())

Needs ``pip install 'aimdb[kafka]'`` (aiokafka) and asyncio or uvloop.

Behaviour:

* Outbound: one task per ``link_to`` route takes every pending value from the reader at
  once and hands each to the producer without waiting for its acknowledgement; the
  acknowledgement updates ``sent``/``failed`` later. The producer batches per partition
  (``linger_ms``, ``max_batch_size``) and blocks the task, never the record's producers,
  when its buffer is full: the ring reader then lags (counted in ``dropped_lag``).
  Link options: ``.key(fn)`` (message key from the value; ``str`` is UTF-8 encoded),
  ``.partition(n)``, ``.with_topic_provider(fn)``.
* Inbound: one consumer for every ``link_from`` topic; several partitions are consumed
  together. With a ``group_id`` the consumer joins that group and resumes from the
  group's committed offsets (committed automatically, or after every delivered batch
  with ``commit="batch"``); ``start`` (``"latest"``/``"earliest"``) applies when the
  group has no committed offset (always, without a group). A record whose value does
  not decode is logged with topic, partition, offset and record key, counted, dropped.
* Connecting: the producer and consumer are started by the reconnect loop of
  :class:`~aimdb.connectors.BaseConnector`; once started, aiokafka itself reconnects to
  brokers that go away, and a reachability check every ``health_interval`` seconds keeps
  ``state`` truthful meanwhile. Errors are translated to :class:`~aimdb.ConnectionFailed` /
  :class:`~aimdb.PublishError` with the aiokafka error as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from functools import partial
from typing import Any

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aimdb.connectors.kafka needs aiokafka: install it with pip install 'aimdb[kafka]'"
    ) from _exc

from .._aio import first_of
from .._aio import wait_for as _wait_for
from .._core._connector import ConnectorRoutes, InboundRoute, LinkCounters, OutboundRoute
from .._core._links import LinkSpec
from .._errors import ConnectionFailed
from ._base import BaseConnector, ReconnectPolicy, parse_endpoint, translate_error

__all__ = ["KafkaConnector"]

_log = logging.getLogger("aimdb.connectors.kafka")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class KafkaConnector(BaseConnector):
    """Mirror records to and from Kafka topics.

    Args:
        url: ``kafka://host[:port]`` (default port 9092).
        bootstrap_servers: more ``host:port`` entries to bootstrap from (optional).
        client_id: Kafka client id.
        group_id: consumer group for ``link_from`` routes (``None``: no group, no commits).
        start: where a consumer without committed offset starts: ``"latest"`` or ``"earliest"``.
        commit: ``"auto"`` (periodic, aiokafka's auto-commit) or ``"batch"`` (after every
            delivered batch); ignored without ``group_id``.
        acks: ``0``, ``1`` or ``"all"``.
        compression: ``None``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"``.
        linger_ms: how long the producer waits to fill a batch.
        max_batch_size: producer batch size in bytes per partition.
        fetch_max_wait_ms: how long a fetch waits for data on the broker.
        batch_size: most values taken from one reader at a time.
        producer_options: more keyword arguments for ``AIOKafkaProducer``.
        consumer_options: more keyword arguments for ``AIOKafkaConsumer``.
        reconnect: :class:`~aimdb.connectors.ReconnectPolicy`.
        connect_timeout: seconds for starting producer and consumer.
        health_interval: seconds between broker reachability checks while connected
            (``0`` turns them off). aiokafka reconnects by itself and keeps consumer
            positions, so an unreachable broker does not tear the clients down; after two
            failed checks in a row the state becomes ``"disconnected"`` (outbound routes stop
            reading their records, so a ring's reader lags as with MQTT) and it returns to
            ``"connected"`` with the first check that succeeds.

    Raises:
        ValueError: bad URL or option.
    """

    def __init__(
        self,
        url: str = "kafka://127.0.0.1:9092",
        *,
        bootstrap_servers: list[str] | None = None,
        client_id: str = "aimdb",
        group_id: str | None = None,
        start: str = "latest",
        commit: str = "auto",
        acks: int | str = 1,
        compression: str | None = None,
        linger_ms: int = 0,
        max_batch_size: int = 65536,
        fetch_max_wait_ms: int = 100,
        batch_size: int = 1024,
        producer_options: dict[str, Any] | None = None,
        consumer_options: dict[str, Any] | None = None,
        reconnect: ReconnectPolicy | None = None,
        connect_timeout: float = 15.0,
        health_interval: float = 1.0,
    ) -> None:
        ep = parse_endpoint(url, {"kafka": 9092})
        super().__init__(ep, reconnect, connect_timeout)
        if start not in ("latest", "earliest"):
            raise ValueError("start must be 'latest' or 'earliest'")
        if commit not in ("auto", "batch"):
            raise ValueError("commit must be 'auto' or 'batch'")
        if acks not in (0, 1, "all", -1):
            raise ValueError("acks must be 0, 1 or 'all'")
        self.bootstrap = [ep.hostport, *(bootstrap_servers or [])]
        self.client_id = client_id
        self.group_id = group_id
        self.start = start
        self.commit = commit
        self.batch_size = batch_size
        if health_interval < 0:
            raise ValueError("health_interval must be >= 0")
        self.health_interval = health_interval
        self.producer_options: dict[str, Any] = {
            "acks": acks,
            "compression_type": compression,
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_size,
            **(producer_options or {}),
        }
        self.consumer_options: dict[str, Any] = {
            "fetch_max_wait_ms": fetch_max_wait_ms,
            **(consumer_options or {}),
        }
        self._producer: Any = None
        self._consumer: Any = None
        self._by_topic: dict[str, list[InboundRoute]] = {}
        self._need_producer = False

    # ------------------------------------------------------------ links

    def validate_link(self, spec: LinkSpec) -> list[str]:
        """Check a link's topic and options; returns problems for ``build()`` to report."""
        problems: list[str] = []
        if not (spec.direction == "out" and spec.topic_provider is not None) and not _TOPIC.match(
            spec.address
        ):
            problems.append("not a valid Kafka topic name: " + repr(spec.address))
        for name, value in spec.options.items():
            if spec.direction == "out" and name == "key":
                if not callable(value):
                    problems.append("key must be a function of the value")
            elif spec.direction == "out" and name == "partition":
                if not isinstance(value, int) or value < 0:
                    problems.append("partition must be a non-negative int")
            else:
                problems.append("unknown Kafka link option " + repr(name))
        return problems

    async def _start_routes(self, routes: ConnectorRoutes) -> None:
        self._by_topic = {}
        for r in routes.inbound:
            self._by_topic.setdefault(r.address, []).append(r)
        self._need_producer = bool(routes.outbound)

    # ------------------------------------------------------------ connection

    async def _connect(self) -> None:
        if self._need_producer:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, client_id=self.client_id, **self.producer_options
            )
            await self._producer.start()
        if self._by_topic:
            self._consumer = AIOKafkaConsumer(
                *sorted(self._by_topic),
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                group_id=self.group_id,
                auto_offset_reset=self.start,
                enable_auto_commit=self.group_id is not None and self.commit == "auto",
                **self.consumer_options,
            )
            await self._consumer.start()

    async def _serve(self) -> str | None:
        if self.health_interval > 0:
            return await first_of(self._serve_records(), self._watch_health())
        return await self._serve_records()

    async def _watch_health(self) -> None:
        """Keep ``state`` truthful while aiokafka reconnects internally (see ``health_interval``)."""
        clients = [
            c
            for c in (
                self._producer.client if self._producer is not None else None,
                self._consumer._client if self._consumer is not None else None,
            )
            if c is not None
        ]
        timeout = max(1.0, 2 * self.health_interval)
        failures = 0
        down = False
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await _wait_for(clients[0].fetch_all_metadata(), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures >= 2 and not down:
                    down = True
                    why = str(exc) or type(exc).__name__
                    err = ConnectionFailed(self.url, "broker unreachable: " + why)
                    self._record_error(err)
                    self.stats.disconnects += 1
                    self.stats.connected_since = None
                    _log.warning("%s: %s (the client keeps retrying)", self.url, err)
                    self._set_state("disconnected")
                continue
            failures = 0
            if down:
                # The cluster may have changed while it was away (a restarted broker,
                # recreated topics): refresh the clients' metadata before sending again.
                for c in clients:
                    with contextlib.suppress(Exception):
                        await _wait_for(c.force_metadata_update(), timeout)
                down = False
                self.stats.connects += 1
                self.stats.reconnects += 1
                self.stats.connected_since = time.time()
                _log.info("%s: broker reachable again", self.url)
                self._set_state("connected")

    async def _serve_records(self) -> str | None:
        consumer = self._consumer
        if consumer is None:
            await asyncio.Event().wait()  # outbound only: aiokafka reconnects by itself
            return None
        commit = self.group_id is not None and self.commit == "batch"
        by_topic = self._by_topic
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=self.batch_size)
            for tp, records in batches.items():
                routes = by_topic.get(tp.topic, ())
                source = tp.topic + " partition " + str(tp.partition)
                for rec in records:
                    payload = rec.value if rec.value is not None else b""
                    for r in routes:
                        r.deliver(payload, source)  # a bad payload is logged and counted there
            if commit and batches:
                await consumer.commit()

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        consumer, self._consumer = self._consumer, None
        for client in (consumer, producer):
            if client is None:
                continue
            try:
                await _wait_for(client.stop(), 5.0)
            except Exception as exc:
                _log.debug("stopping %r: %r", client, exc)

    # ------------------------------------------------------------ outbound

    async def _send(self, route: OutboundRoute, values: list[Any]) -> list[Any]:
        """Hand one batch to the producer; returns the values left for after a reconnect.

        A value counts as ``sent`` when the broker acknowledges it (or ``failed`` when it
        refuses it), later, from the producer's acknowledgement.
        """
        producer = self._producer
        if producer is None:
            return values
        stats = route.stats
        opts = route.spec.options
        keyfn = opts.get("key")
        part = opts.get("partition")
        provider = route.spec.topic_provider
        fixed = route.address if provider is None else None
        encode = route.encode
        for i, value in enumerate(values):
            try:
                payload = encode(value)
                topic = fixed if fixed is not None else provider(value)  # type: ignore[misc]
                key = keyfn(value) if keyfn is not None else None
                if isinstance(key, str):
                    key = key.encode()
            except Exception as exc:
                route.value_failed(repr(exc))
                continue
            try:
                fut = await producer.send(topic, payload, key=key, partition=part)
            except Exception as exc:
                if self._producer is not producer:
                    return values[i:]
                route.value_failed(str(translate_error(exc, self.url, "publish")))
                continue
            fut.add_done_callback(partial(_acked, stats, len(payload), self.url))
            route.settled = i + 1
        return []

    async def shutdown(self, timeout: float) -> None:
        """Flush within ``timeout``, then stop producer and consumer.

        Produces what the readers still hold and waits for the broker's acknowledgements;
        what cannot be sent in time is dropped.
        """
        deadline = time.monotonic() + max(0.0, timeout) * 0.9
        if self.connected:
            await self._wait_pumps(deadline)
        producer = self._producer
        if producer is not None and self.connected:
            try:
                await _wait_for(producer.flush(), max(0.01, deadline - time.monotonic()))
            except Exception as exc:
                _log.warning("%s: flush at shutdown: %r", self.url, exc)
        await self._shut()


def _acked(stats: LinkCounters, size: int, url: str, fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        stats.failed += 1
        return
    exc = fut.exception()
    if exc is None:
        stats.sent += 1
        stats.bytes += size
    else:
        stats.failed += 1
        stats.error(str(translate_error(exc, url, "publish")))
