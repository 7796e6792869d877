"""Inbound MQTT routing: which subscriptions to make and which routes a message goes to.

One subscription per distinct topic filter, at the highest QoS any route asks for it.
Where the broker supports subscription identifiers (MQTT 5, unless its CONNACK says
otherwise), each filter gets one, so a message the broker sends once per matching
subscription (overlapping filters) still reaches each route exactly once. Without them
(MQTT 3.1.1, or a broker that does not offer them), filters covered by a broader one are
not subscribed and messages are routed by matching their topic; partial overlaps are
warned about. Wildcard and shared subscriptions the broker does not offer are refused.
"""

from __future__ import annotations

import logging

from .._core._connector import InboundRoute
from ._mqtt_wire import filter_covers, topic_matches

__all__ = ["InboundRouting", "SubscriptionPlan"]

_log = logging.getLogger("aimdb.connectors.mqtt")

#: SUBSCRIBE batches: (subscription identifier or 0, [(filter, qos), ...])
SubscriptionPlan = list[tuple[int, list[tuple[str, int]]]]


class InboundRouting:
    """The ``link_from`` routes of one MQTT connector, by filter.

    Args:
        routes: the inbound routes.
        default_qos: QoS of a route that sets none.
    """

    def __init__(self, routes: list[InboundRoute], default_qos: int) -> None:
        self.filters: dict[str, int] = {}
        self._by_filter: dict[str, list[InboundRoute]] = {}
        for r in routes:
            flt = r.address
            qos = int(r.spec.options.get("qos", default_qos))
            self.filters[flt] = max(qos, self.filters.get(flt, 0))
            self._by_filter.setdefault(flt, []).append(r)
        self._exact: dict[str, list[InboundRoute]] = {}
        self._wild: list[tuple[str, InboundRoute]] = []
        self._by_id: dict[int, list[InboundRoute]] = {}
        self._cache: dict[str, tuple[InboundRoute, ...]] = {}
        self.unrouted = 0

    def routes_of(self, flt: str) -> list[InboundRoute]:
        """The routes subscribed through filter ``flt``."""
        return list(self._by_filter.get(flt, ()))

    def plan(
        self, *, use_ids: bool, wildcards: bool = True, shared: bool = True
    ) -> tuple[SubscriptionPlan, dict[str, str]]:
        """Plan the subscriptions of one connection.

        Args:
            use_ids: subscription identifiers are available.
            wildcards: the broker accepts ``+``/``#`` filters.
            shared: the broker accepts ``$share/`` filters.

        Returns:
            The SUBSCRIBE batches, and the filters that cannot be subscribed with the reason.
        """
        refused: dict[str, str] = {}
        usable: list[str] = []
        for f in sorted(self.filters):
            if not shared and f.startswith("$share/"):
                refused[f] = "the broker does not offer shared subscriptions"
            elif not wildcards and ("+" in f or "#" in f):
                refused[f] = "the broker does not offer wildcard subscriptions"
            else:
                usable.append(f)
        self._exact = {}
        self._wild = []
        self._cache = {}
        for f in usable:
            for r in self._by_filter[f]:
                if "+" in f or "#" in f:
                    self._wild.append((f, r))
                else:
                    self._exact.setdefault(f, []).append(r)
        self._by_id = {}
        plan: SubscriptionPlan = []
        if use_ids:
            for i, f in enumerate(usable, 1):
                self._by_id[i] = self._by_filter[f]
                plan.append((i, [(f, self.filters[f])]))
            return plan, refused
        keep = [f for f in usable if not any(g != f and filter_covers(g, f) for g in usable)]
        qos = {f: max(self.filters[g] for g in usable if filter_covers(f, g)) for f in keep}
        for i, a in enumerate(keep):
            for b in keep[i + 1 :]:
                if _may_overlap(a, b):
                    _log.warning(
                        "MQTT without subscription identifiers: filters %r and %r overlap; a message "
                        "matching both may be delivered twice",
                        a,
                        b,
                    )
        if keep:
            plan.append((0, [(f, qos[f]) for f in keep]))
        return plan, refused

    def routes_for(self, topic: str, sub_ids: list[int]) -> tuple[InboundRoute, ...] | list[InboundRoute]:
        """The routes a message on ``topic`` (with these subscription identifiers) goes to."""
        if sub_ids:
            if len(sub_ids) == 1:
                return self._by_id.get(sub_ids[0], ())
            return list({id(r): r for i in sub_ids for r in self._by_id.get(i, ())}.values())
        found = self._cache.get(topic)
        if found is None:
            found = tuple(self._exact.get(topic, ())) + tuple(
                r for flt, r in self._wild if topic_matches(flt, topic)
            )
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[topic] = found
        return found


def _may_overlap(a: str, b: str) -> bool:
    """True when some topic could match both filters."""
    fa = a.split("/")
    fb = b.split("/")
    for x, y in zip(fa, fb, strict=False):
        if x == "#" or y == "#":
            return True
        if x != "+" and y != "+" and x != y:
            return False
    return len(fa) == len(fb)
