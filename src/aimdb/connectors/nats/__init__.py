"""NATS connector on nats-py: ``link_to("nats://subject")`` publishes, ``link_from`` subscribes.

::

    from aimdb.connectors import NatsConnector

    conn = NatsConnector("nats://127.0.0.1:4222", name="edge-1")
    builder.with_connector(conn)
    builder.configure(Temperature, "temp", lambda r: r.buffer(BufferCfg.SpmcRing(256))
                      .link_to("nats://sensors.kitchen.temp").finish())
    builder.configure(SetPoint, "setpoint", lambda r: r.buffer(BufferCfg.Mailbox())
                      .link_from("nats://cmd.*.set").finish())

Needs ``pip install 'aimdb[nats]'`` (nats-py) and asyncio or uvloop.

Behaviour:

* Core NATS (the default) is at most once. Outbound: one task per ``link_to`` route takes
  every pending value from the record's reader at once and publishes them without waiting
  (nats-py writes them to the socket in one go). ``sent`` counts values handed to the
  connection. At most ``pending_bytes`` wait in nats-py's outgoing buffer; beyond that the
  task stops reading, so a slow or stalled server makes the ring reader lag (counted in
  ``dropped_lag``) and memory stays bounded; producers are never blocked.
* While disconnected a route does not publish at all (nats-py's reconnect buffer is not
  used), so what is sent after the reconnect follows the buffer kind: a ring sends its
  backlog in order (up to its capacity; the overflow is counted as lag), SingleLatest
  only the latest value, Mailbox only the newest command.
* Inbound: one subscription per distinct subject (``*`` and ``>`` wildcards work); NATS
  delivers a message once per matching subscription, and each subscription feeds the
  routes declared with exactly that subject, so a message reaches every record whose
  subject matches, once each. A payload that does not decode is logged with subject and
  record key, counted in the route's ``failed`` and dropped.
* JetStream (``jetstream=True``, or ``.option("jetstream", True)`` per link): outbound values
  are published with a reply subject and a ``Nats-Msg-Id`` header; ``sent`` counts the
  stream's acknowledgements. At most ``max_inflight`` publishes wait for theirs; those not
  acknowledged when the connection drops are published again after the reconnect (the
  stream drops duplicates by message id). An error answer (no stream captures the subject,
  ...) or no answer within ``ack_timeout`` counts as ``failed``.
* JetStream inbound: one pull consumer per distinct subject on the stream that captures it
  (created before the connector reports connected). The connector keeps one pull request
  for up to ``batch_size`` messages open, so a message arrives as soon as the stream has it
  and waits in the stream while nobody asks. Each message is acknowledged after it was
  delivered (a bad payload too: it would never decode). JetStream delivers at least once
  (after a server crash it sends again what it had not recorded as acknowledged); the
  connector remembers the stream sequences of the last 65536 messages per subject and
  drops such redeliveries (counted in ``duplicates_dropped``). With ``durable`` the
  consumer is durable and a restarted instance resumes after the last acknowledged
  message; ``start`` (``"latest"``/``"earliest"``) applies when the consumer is created.
  The stream must exist; until it does, the link's ``last_error`` says so and the
  connector tries again every 2 s.
* Connecting: the first connection (and a new one when the server closed a connection for
  good, e.g. refusing credentials after a reconnect) is made by the reconnect loop of
  :class:`~aimdb.connectors.BaseConnector`. Once connected, nats-py reconnects by itself,
  with the delays of the :class:`~aimdb.connectors.ReconnectPolicy`, and renews the
  subscriptions; ``state``, statistics and ``wait_connected()`` follow its
  disconnected/reconnected/closed callbacks. When the policy's ``max_attempts``
  consecutive reconnects fail, the connector gives up (state ``failed``). Errors are
  translated to :class:`~aimdb.ConnectionFailed` / :class:`~aimdb.PublishError` with the
  nats-py error as ``__cause__``.

Link options: ``.option("jetstream", True | False)`` (default: the connector's
``jetstream``), ``.with_topic_provider(fn)`` (subject per value), codecs and
(de)serializers as for every link.
"""

from ._client import Client as _Client  # noqa: F401 - fails clearly when nats-py is missing
from ._connector import NatsConnector

__all__ = ("NatsConnector",)
