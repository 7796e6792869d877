"""NATS subject rules: validation of link addresses and names of durable consumers."""

from __future__ import annotations

import hashlib
import re

__all__ = ("NAME_UNSAFE", "consumer_name", "subject_problem")

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
# characters not allowed in a JetStream consumer name (runs of them become one ``_``)
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def subject_problem(subject: str, wildcards: bool) -> str | None:
    """Return what is wrong with a NATS subject, or ``None`` when it is fine.

    Args:
        subject: the subject (``sensors.kitchen.temp``).
        wildcards: True for a subscription (``*`` for one token, ``>`` for the rest, each a
            whole token, ``>`` last); False for a publish subject, which takes none.
    """
    if not subject:
        return "empty NATS subject"
    if _BAD_CHARS.search(subject):
        return "NATS subject " + repr(subject) + " contains whitespace or control characters"
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if not token:
            return "NATS subject " + repr(subject) + " has an empty token (leading, trailing or double '.')"
        if "*" in token or ">" in token:
            if not wildcards:
                return (
                    "NATS subject " + repr(subject) + " has a wildcard ('*' or '>'): "
                    "a link_to publishes to one concrete subject"
                )
            if token not in ("*", ">"):
                return "NATS subject " + repr(subject) + ": '*' and '>' must be whole tokens"
            if token == ">" and i != len(tokens) - 1:
                return "NATS subject " + repr(subject) + ": '>' must be the last token"
    return None


def consumer_name(durable: str, subject: str) -> str:
    """Return the name ``<durable>-<subject>-<hash>`` (see ``NatsConnector.consumer_name``)."""
    digest = hashlib.sha1(subject.encode()).hexdigest()[:8]
    return durable + "-" + NAME_UNSAFE.sub("_", subject).strip("_")[:64] + "-" + digest
