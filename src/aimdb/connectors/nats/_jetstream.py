"""JetStream for the NATS connector: acknowledged publishes and pull consumers.

* :class:`PublishAcks`: the publishes of every JetStream ``link_to`` route that wait for
  the stream's acknowledgement (at most ``max_inflight``), the answers, their time-out,
  and the publishing again of the unacknowledged ones after a reconnect.
* :class:`PullConsumer`: the pull consumer of one JetStream ``link_from`` subject, its
  inbox subscription, the one pull request kept open, and the dropping of redeliveries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ..._aio import wait_for
from ..._core._connector import InboundRoute, LinkCounters
from .._base import InflightWindow, _reason
from ._client import GONE, Client, Msg, Subscription
from ._guard import Guard

__all__ = ("PublishAcks", "PullConsumer", "note_problem")

_log = logging.getLogger("aimdb.connectors.nats")

# stream sequences remembered per JetStream subject to drop redeliveries of delivered messages
SEEN_WINDOW = 65536
# seconds a JetStream pull request waits on the server for messages
PULL_EXPIRES = 2.0
# seconds before a consumer that could not be opened is tried again
RETRY_OPEN = 2.0


def note_problem(
    url: str, stats: list[LinkCounters], text: str, level: int = logging.WARNING, then: str = ""
) -> None:
    """Set ``text`` as the last error of every statistics object in ``stats``.

    The problem is logged (with ``then`` appended, e.g. what happens next) only when it is
    news to one of them, so a problem that repeats is logged once, when it starts.
    """
    if any(st.last_error != text for st in stats):
        _log.log(level, "%s: %s%s", url, text, then)
    for st in stats:
        st.last_error = text


class _Pending:
    """A JetStream publish waiting for its acknowledgement."""

    __slots__ = ("msg_id", "payload", "sent_at", "stats", "subject")

    def __init__(self, subject: str, payload: bytes, msg_id: str, stats: LinkCounters) -> None:
        self.subject = subject
        self.payload = payload
        self.msg_id = msg_id
        self.stats = stats
        self.sent_at = time.monotonic()


class PublishAcks:
    """The JetStream publishes of one connector that wait for the stream's acknowledgement.

    Each publish carries a reply subject ``<inbox>.<token>`` and a ``Nats-Msg-Id`` header
    (the stream drops a duplicate id). ``sent`` of the route counts an acknowledgement, its
    ``failed`` an error answer or none within ``ack_timeout`` (while connected).

    Args:
        url: the connector URL (without credentials) for the log.
        max_inflight: most publishes waiting at a time (:attr:`full` beyond).
        ack_timeout: seconds to wait for an acknowledgement.
    """

    __slots__ = ("_prefix", "_seq", "_window", "ack_timeout", "msg_prefix", "url")

    def __init__(self, url: str, max_inflight: int, ack_timeout: float) -> None:
        self.url = url
        self.ack_timeout = ack_timeout
        self.msg_prefix = uuid.uuid4().hex[:16]
        self._prefix = ""  # acknowledgements come to <prefix><token>
        self._seq = 0
        self._window: InflightWindow[int, _Pending] = InflightWindow(max_inflight)

    def __len__(self) -> int:
        return len(self._window)

    @property
    def max_inflight(self) -> int:
        """Most publishes waiting for their acknowledgement at a time."""
        return self._window.limit

    @property
    def full(self) -> bool:
        """True when ``max_inflight`` publishes wait for their acknowledgement."""
        return len(self._window) >= self._window.limit

    async def subscribe(self, nc: Client, guard: Guard, stats: list[LinkCounters]) -> None:
        """Subscribe to the acknowledgements on ``nc`` (a new inbox per connection)."""
        self._prefix = nc.new_inbox() + "."
        on_ack = guard.callback("handling a JetStream acknowledgement", stats, self._on_ack)
        await nc.subscribe(self._prefix + "*", cb=on_ack)

    async def publish(self, nc: Client, subject: str, payload: bytes, stats: LinkCounters) -> None:
        """Publish one value with a reply subject and a message id.

        Raises:
            the nats-py error of ``nc.publish``: one of ``GONE`` (the connection went; the
            publish is kept and sent again by :meth:`resend`) or another one (the publish
            is forgotten; the caller counts it as failed).
        """
        self._seq += 1
        token = self._seq
        msg_id = self.msg_prefix + "-" + str(token)
        # registered first: kept (and sent again) if the connection goes now
        entry = _Pending(subject, payload, msg_id, stats)
        self._window.add(token, entry)
        try:
            await self._send(nc, token, entry)
        except GONE:
            raise
        except Exception:
            self._window.pop(token)
            raise

    async def resend(self, nc: Client) -> None:
        """Publish again, in order, what the last connection did not see acknowledged."""
        for token, entry in self._window.items():
            entry.sent_at = time.monotonic()
            await self._send(nc, token, entry)

    async def _send(self, nc: Client, token: int, entry: _Pending) -> None:
        headers = {"Nats-Msg-Id": entry.msg_id}
        await nc.publish(entry.subject, entry.payload, reply=self._prefix + str(token), headers=headers)

    async def _on_ack(self, msg: Msg) -> None:
        try:
            token = int(msg.subject.rsplit(".", 1)[1])
        except (IndexError, ValueError):
            return
        entry = self._window.pop(token)  # wakes the pump waiting for room
        if entry is None:
            return  # late or duplicate answer
        stats = entry.stats
        error: str | None = None
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            error = "no JetStream stream captures subject " + repr(entry.subject) + " (no responders)"
        else:
            try:
                answer = json.loads(msg.data)
                if isinstance(answer, dict) and "error" in answer:
                    e = answer["error"]
                    error = (
                        "JetStream refused publish to "
                        + repr(entry.subject)
                        + ": "
                        + str(e.get("description", e) if isinstance(e, dict) else e)
                    )
            except ValueError:
                error = "JetStream answered publish to " + repr(entry.subject) + " with "
                error += repr(msg.data[:80])
        if error is None:
            stats.sent += 1
            stats.bytes += len(entry.payload)
        else:
            stats.failed += 1
            note_problem(self.url, [stats], error)

    def expire(self) -> None:
        """Count as failed the publishes without an acknowledgement after ``ack_timeout``."""
        now = time.monotonic()
        late = [(t, e) for t, e in self._window.items() if now - e.sent_at > self.ack_timeout]
        for t, e in late:
            self._window.pop(t)
            e.stats.failed += 1
            text = "no JetStream acknowledgement within " + str(self.ack_timeout) + "s for " + repr(e.subject)
            note_problem(self.url, [e.stats], text)

    def abandon(self, why: str) -> None:
        """Count every publish still waiting as failed (the connector stops), ``why`` as the error."""
        entries = []
        for t, e in self._window.items():
            self._window.pop(t)
            entries.append(e)
            e.stats.failed += 1
        for stats in {id(e.stats): e.stats for e in entries}.values():
            note_problem(self.url, [stats], why)
        self.wake()

    def wake(self) -> None:
        """Wake every :meth:`wait` (an acknowledgement came, or the connection changed)."""
        self._window.wake()

    async def wait(self) -> None:
        """Wait for the next acknowledgement, expiry or :meth:`wake`; callers check again."""
        await self._window.wait_change()


class PullConsumer:
    """The JetStream pull consumer of one ``link_from`` subject.

    Args:
        subject: the subject (wildcards allowed) the consumer filters.
        routes: the inbound routes fed by it.
        name: the consumer's name (a durable one's, or a name kept for the connector's life).
        durable: True for a durable consumer.
        stream: the stream, or ``None`` to look it up from the subject.
        start: ``"latest"`` or ``"earliest"``: where a new consumer starts.
        batch_size: most messages asked for per pull request.
        guard: reports errors of the inbox callback and delivers into the routes.
        ready: waits until the connector is connected and returns the client.

    Attributes:
        duplicates_dropped: redelivered messages dropped (acknowledged, not delivered).
    """

    __slots__ = (
        "_client",
        "_done",
        "_inbox",
        "_next_subject",
        "_order",
        "_received",
        "_retry_at",
        "_seen",
        "_stopped",
        "_sub",
        "batch_size",
        "duplicates_dropped",
        "durable",
        "guard",
        "name",
        "ready",
        "routes",
        "start",
        "stream",
        "subject",
    )

    def __init__(
        self,
        subject: str,
        routes: list[InboundRoute],
        *,
        name: str,
        durable: bool,
        stream: str | None,
        start: str,
        batch_size: int,
        guard: Guard,
        ready: Callable[[], Awaitable[Client]],
    ) -> None:
        self.subject = subject
        self.routes = routes
        self.name = name
        self.durable = durable
        self.stream = stream
        self.start = start
        self.batch_size = batch_size
        self.guard = guard
        self.ready = ready
        self.duplicates_dropped = 0
        self._client: Client | None = None  # the connection the consumer's inbox is on
        self._inbox = ""
        self._sub: Subscription | None = None
        self._next_subject = ""
        self._done = asyncio.Event()  # the open pull request is over
        self._received = 0
        self._retry_at = 0.0
        self._seen: set[int] = set()  # stream sequences delivered (the last SEEN_WINDOW)
        self._order: deque[int] = deque()
        self._stopped = False

    @property
    def inbox(self) -> str:
        """The subject the messages come to (empty before the first :meth:`open`)."""
        return self._inbox

    def _stats(self) -> list[LinkCounters]:
        return [r.stats for r in self.routes]

    def ask_again(self) -> None:
        """End the wait for the open pull request (it may be lost with a connection)."""
        self._done.set()

    def forget_client(self) -> None:
        """The client is closed: open the consumer again on the next one."""
        self._client = None
        self._done.set()

    async def stop(self) -> None:
        """Unsubscribe the inbox for good (the connector stops); :meth:`run` returns.

        The server keeps the open pull request up to ``PULL_EXPIRES`` s; while the inbox has
        interest, a message published meanwhile goes to it, over a connection about to
        close, and waits in the stream for the acknowledgement timeout (30 s) before it is
        delivered again, e.g. to the next instance of a durable consumer. Without interest,
        the server passes it by. (The caller syncs afterwards, so the server has the UNSUB.)
        """
        self._stopped = True
        sub, self._sub, self._client = self._sub, None, None
        self._done.set()
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                _log.debug("%s: unsubscribing %s: %r", self.guard.url, self.subject, exc)

    async def open(self, nc: Client) -> bool:
        """Find or create the consumer, and subscribe its inbox on ``nc`` unless it is there.

        Returns False, with the problem on the routes' statistics, when it failed (the
        pull task tries again after ``RETRY_OPEN`` s).

        Raises:
            one of ``GONE``: the connection went.
        """
        jsm = nc.jsm()
        try:
            stream = self.stream or await jsm.find_stream_name_by_subject(self.subject)
            exists = False
            try:
                await jsm.consumer_info(stream, self.name)
                exists = True
            except NotFoundError:
                pass
            if not exists:
                config = ConsumerConfig(
                    name=self.name,
                    durable_name=self.name if self.durable else None,
                    deliver_policy=DeliverPolicy.NEW if self.start == "latest" else DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    filter_subject=self.subject,
                    inactive_threshold=None if self.durable else 60.0,
                )
                await jsm.add_consumer(stream, config)
            if self._client is not nc or self._sub is None:  # nats-py renews it on a reconnect
                old, self._sub = self._sub, None
                if old is not None:  # the inbox of the consumer before (on this or a closed client)
                    try:
                        await old.unsubscribe()
                    except Exception as exc:
                        _log.debug("%s: unsubscribing %s: %r", self.guard.url, self.subject, exc)
                self._inbox = nc.new_inbox()
                what = "the pull consumer of " + repr(self.subject)
                on_msg = self.guard.callback(what, self._stats(), self._on_msg)
                self._sub = await nc.subscribe(self._inbox, cb=on_msg)
        except GONE:
            raise
        except Exception as exc:
            self._client = None
            text = "JetStream consumer for " + repr(self.subject) + " failed: " + _reason(exc)
            if isinstance(exc, NotFoundError):
                text += " (no stream captures this subject: create one)"
            note_problem(self.guard.url, self._stats(), text, logging.ERROR, "; retrying")
            self._retry_at = time.monotonic() + RETRY_OPEN
            return False
        self._client = nc
        self._next_subject = "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + self.name
        self._done.set()
        return True

    async def run(self) -> None:
        """Keep one pull request of ``batch_size`` messages open, until :meth:`stop`."""
        request = json.dumps({"batch": self.batch_size, "expires": int(PULL_EXPIRES * 1e9)}).encode()
        backoff = 0.0
        while not self._stopped:
            nc = await self.ready()
            if self._stopped:
                return
            if self._client is not nc:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(min(wait, 0.5))
                    continue
                try:
                    if not await self.open(nc):
                        continue
                except GONE:
                    continue
            self._done.clear()
            self._received = 0
            asked = time.monotonic()
            try:
                await nc.publish(self._next_subject, request, reply=self._inbox)
            except GONE:
                continue
            try:
                await wait_for(self._done.wait(), PULL_EXPIRES + 1.0)
            except (asyncio.TimeoutError, TimeoutError):
                # Not even the server's "request timeout" came back: the request was lost with
                # a connection, or the consumer is gone (the server ignores pulls on a missing
                # consumer). Open it again: that finds it, or creates it.
                if self._client is nc and self._received == 0:
                    self._client = None
                continue
            if self._received == 0 and time.monotonic() - asked < 0.05:
                # refused at once (e.g. not a pull consumer): do not hammer the server
                backoff = min(2.0, max(0.05, backoff * 2))
                await asyncio.sleep(backoff)
            else:
                backoff = 0.0

    async def _on_msg(self, msg: Msg) -> None:
        """A message of the consumer, or the end of the pull request (a status)."""
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if headers and status:
            if status == "100":
                return  # idle heartbeat
            text = str(headers.get("Description", "")).lower()
            if status == "503" or (status == "409" and "deleted" in text):
                url = self.guard.url
                _log.warning("%s: JetStream consumer for %r is gone; creating it again", url, self.subject)
                self._client = None
            elif status not in ("404", "408") and not (
                status == "409" and any(w in text for w in ("timeout", "shutdown", "leadership"))
            ):
                problem = "JetStream pull on " + repr(self.subject) + ": " + status + " " + text
                note_problem(self.guard.url, self._stats(), problem)
            self._done.set()  # this pull request is over
            return
        self._received += 1
        if self._received >= self.batch_size:
            self._done.set()
        try:
            seq: int | None = msg.metadata.sequence.stream
        except Exception:
            seq = None
        if seq is not None:
            if seq in self._seen:
                self.duplicates_dropped += 1
                await self._ack(msg)
                return
            self._seen.add(seq)
            self._order.append(seq)
            if len(self._order) > SEEN_WINDOW:
                self._seen.discard(self._order.popleft())
        self.guard.deliver(self.routes, msg)
        await self._ack(msg)

    async def _ack(self, msg: Msg) -> None:
        try:
            await msg.ack()
        except Exception as exc:
            _log.debug("%s: ack of a message on %s failed: %r", self.guard.url, msg.subject, exc)
