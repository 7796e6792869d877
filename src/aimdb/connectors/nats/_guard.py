"""No error of the connector's own code gets lost: guarded callbacks, kept tasks, delivery.

nats-py hands an exception of a subscription callback to its ``error_cb`` and one of a
connection callback (``reconnected_cb`` ...) to the task that called it, which may end
(its reconnect task); a task of the connector that raises ends for good. :class:`Guard`
wraps every callback handed to nats-py and every task of the connector: an error is
logged once with its traceback, counted, and kept in ``last_error`` of the links
concerned; a callback goes on with the next message, a task starts again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec

from ..._core._connector import InboundRoute, LinkCounters
from .._base import _reason
from ._client import Msg

__all__ = ("RESTART_PAUSE", "Guard")

_log = logging.getLogger("aimdb.connectors.nats")
_P = ParamSpec("_P")

# seconds before a task of the connector that raised starts again
RESTART_PAUSE = 0.5


class Guard:
    """Reports the errors raised in one connector's callbacks and tasks.

    Args:
        url: the connector URL (without credentials) for the log.

    Attributes:
        errors: errors reported so far.
    """

    __slots__ = ("errors", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.errors = 0

    def report(self, what: str, exc: Exception, stats: list[LinkCounters]) -> None:
        """Count ``exc``, log it with its traceback and set it as the last error of ``stats``."""
        self.errors += 1
        text = what + " failed: " + _reason(exc)
        for st in stats:
            st.last_error = text
        _log.error("%s: %s", self.url, text, exc_info=exc)

    def callback(
        self, what: str, stats: list[LinkCounters], fn: Callable[_P, Awaitable[None]]
    ) -> Callable[_P, Awaitable[None]]:
        """Return ``fn`` wrapped so that an exception it raises is reported, not raised."""

        async def call(*args: _P.args, **kwargs: _P.kwargs) -> None:
            try:
                await fn(*args, **kwargs)
            except Exception as exc:
                self.report(what, exc, stats)

        return call

    async def keep(self, what: str, stats: list[LinkCounters], work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` until it returns; each time it raises, report it and run it again.

        Cancellation ends it (``CancelledError`` propagates).
        """
        while True:
            try:
                await work()
                return
            except Exception as exc:
                self.report(what, exc, stats)
            await asyncio.sleep(RESTART_PAUSE)

    def deliver(self, routes: list[InboundRoute], msg: Msg) -> None:
        """Decode ``msg`` into every route; one route's failure does not keep it from the others.

        A payload that does not decode is the route's to report (``InboundRoute.deliver``);
        any other error is reported here.
        """
        for r in routes:
            try:
                r.deliver(msg.data, msg.subject)
            except Exception as exc:
                what = "delivering a message on " + repr(msg.subject) + " to " + repr(r.key)
                self.report(what, exc, [r.stats])
