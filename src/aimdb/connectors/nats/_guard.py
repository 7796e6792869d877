"""No error of the connector's own code gets lost: guarded callbacks and delivery.

nats-py hands an exception of a subscription callback to its ``error_cb`` and one of a
connection callback (``reconnected_cb`` ...) to the task that called it, which may end
(its reconnect task). :class:`Guard` wraps every callback handed to nats-py: an error is
logged once with its traceback, counted in the connector's ``errors`` and kept in
``last_error`` of the links concerned; the callback goes on with the next message. The
connector's tasks are the database's supervised tasks (restarted there, not here).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec

from ..._core._connector import InboundRoute, LinkCounters
from .._base import _reason
from ._client import Msg

__all__ = ("Guard",)

_log = logging.getLogger("aimdb.connectors.nats")
_P = ParamSpec("_P")


class Guard:
    """Reports the errors raised in one connector's callbacks.

    Args:
        url: the connector URL (without credentials) for the log.
        failed: the connector's own report of an error in its code
            (``BaseConnector._callback_failed``: counts it in the connector's ``errors``,
            keeps it as its last error and logs it once with the traceback).
    """

    __slots__ = ("_failed", "url")

    def __init__(self, url: str, failed: Callable[[str, Exception], None]) -> None:
        self.url = url
        self._failed = failed

    def report(self, what: str, exc: Exception, stats: list[LinkCounters]) -> None:
        """Report ``exc`` to the connector and set it as the last error of ``stats``."""
        text = what + " failed: " + _reason(exc)
        for st in stats:
            st.last_error = text
        self._failed(what, exc)

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
