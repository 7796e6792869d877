"""Link declarations (``link_to`` / ``link_from``) and their URLs (MicroPython-safe)."""

from .._compat import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._record import RecordRegistrar


class LinkUrl:
    """A parsed link or connector URL: ``scheme://[user[:password]@][host[:port]]/resource``.

    For links the part after the scheme is the broker-side *address* (an MQTT topic, a
    Kafka topic, a remote record key); when the URL carries no host, the address is
    everything after ``scheme://``. Query parameters become ``params``.

    Attributes:
        scheme: lower-case scheme (``"mqtt"``).
        host: host name, or ``""``.
        port: port number, or ``None``.
        username: user name, or ``None``.
        password: password, or ``None``.
        address: the resource part (without leading ``/`` when a host is present).
        params: query parameters as a dict of strings.
        raw: the URL as given.
    """

    __slots__ = ("address", "host", "params", "password", "port", "raw", "scheme", "username")

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str) or "://" not in raw:
            raise ValueError("not a URL (expected scheme://...): " + repr(raw))
        self.raw = raw
        scheme, rest = raw.split("://", 1)
        if not scheme or not _is_scheme(scheme):
            raise ValueError("bad URL scheme in " + repr(raw))
        self.scheme = scheme.lower()
        self.params: dict[str, str] = {}
        if "?" in rest:
            rest, query = rest.split("?", 1)
            for part in query.split("&"):
                if part:
                    k, _, v = part.partition("=")
                    self.params[k] = v
        self.host = ""
        self.port: int | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.address = rest

    @classmethod
    def parse_endpoint(cls, raw: str) -> "LinkUrl":
        """Parse a connector endpoint URL (``mqtt://host:port``): host and port are required parts."""
        u = cls(raw)
        rest = raw.split("://", 1)[1].split("?", 1)[0]
        authority, _, path = rest.partition("/")
        u._authority(authority)
        u.address = path
        return u

    def _authority(self, authority: str) -> None:
        if "@" in authority:
            creds, authority = authority.rsplit("@", 1)
            user, sep, pw = creds.partition(":")
            self.username = user
            self.password = pw if sep else None
        if authority.startswith("["):
            end = authority.find("]")
            if end < 0:
                raise ValueError("bad IPv6 host in " + repr(self.raw))
            self.host = authority[1:end]
            tail = authority[end + 1 :]
            if tail.startswith(":"):
                self.port = _port(tail[1:], self.raw)
        elif ":" in authority:
            host, port = authority.rsplit(":", 1)
            self.host = host
            self.port = _port(port, self.raw)
        else:
            self.host = authority

    def __repr__(self) -> str:
        return "LinkUrl(" + repr(self.raw) + ")"


def _is_scheme(s: str) -> bool:
    for ch in s:
        if not (ch.isalpha() or ch.isdigit() or ch in "+-."):
            return False
    return s[0].isalpha()


def _port(text: str, raw: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError("bad port in " + repr(raw)) from None
    if not 0 < port < 65536:
        raise ValueError("port out of range in " + repr(raw))
    return port


class LinkSpec:
    """One declared link of a record, as the connector sees it.

    Attributes:
        direction: ``"out"`` (``link_to``) or ``"in"`` (``link_from``).
        url: the URL as declared.
        scheme: the URL scheme, selecting the connector.
        address: the broker-side address (topic, key ...), the URL without ``scheme://``.
        options: connector options (``qos``, ``retain``, ``key`` ...).
        serializer: ``fn(value) -> bytes`` or ``None`` for the default codec.
        deserializer: ``fn(bytes) -> value`` or ``None`` for the default codec.
        topic_provider: outbound only: ``fn(value) -> address`` or ``None``.
        codec: name of the codec (``"json"``, ``"msgpack"``, ``"cbor"``) when no
            (de)serializer is given.
    """

    __slots__ = (
        "address",
        "codec",
        "deserializer",
        "direction",
        "options",
        "scheme",
        "serializer",
        "topic_provider",
        "url",
    )

    def __init__(self, direction: str, url: str) -> None:
        self.direction = direction
        self.url = url
        self.scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
        self.address = url.split("://", 1)[1] if self.scheme else ""
        self.options: dict[str, Any] = {}
        self.serializer: Callable[[Any], bytes] | None = None
        self.deserializer: Callable[[bytes], Any] | None = None
        self.topic_provider: Callable[[Any], str] | None = None
        self.codec = "json"

    def __repr__(self) -> str:
        return "LinkSpec(" + self.direction + ", " + repr(self.url) + ")"


class _LinkBuilder:
    __slots__ = ("_reg", "_spec")

    def __init__(self, reg: "RecordRegistrar[Any]", spec: LinkSpec) -> None:
        self._reg = reg
        self._spec = spec

    def option(self, name: str, value: "Any") -> "Any":
        """Set a connector-specific option (e.g. ``option("qos", 1)``); returns the builder."""
        self._spec.options[name] = value
        return self

    def qos(self, level: int) -> "Any":
        """MQTT quality of service 0, 1 or 2."""
        return self.option("qos", level)

    def codec(self, name: str) -> "Any":
        """Use the named codec (``"json"``, ``"msgpack"``, ``"cbor"``) instead of JSON."""
        self._spec.codec = name
        return self

    def finish(self) -> "RecordRegistrar[Any]":
        """End the link declaration and return the record registrar."""
        return self._reg


class OutboundLinkBuilder(_LinkBuilder):
    """Options of a ``link_to``; end with ``.finish()``."""

    __slots__ = ()

    def retain(self, flag: bool = True) -> "OutboundLinkBuilder":
        """MQTT retain flag for every published value."""
        self._spec.options["retain"] = flag
        return self

    def key(self, fn: "Callable[[Any], bytes | str | None]") -> "OutboundLinkBuilder":
        """Kafka: message key computed from each value."""
        self._spec.options["key"] = fn
        return self

    def partition(self, partition: int) -> "OutboundLinkBuilder":
        """Kafka: fixed partition for every message."""
        self._spec.options["partition"] = partition
        return self

    def with_serializer(self, fn: "Callable[[Any], bytes]") -> "OutboundLinkBuilder":
        """Turn values into bytes with ``fn`` instead of the codec."""
        self._spec.serializer = fn
        return self

    def with_topic_provider(self, fn: "Callable[[Any], str]") -> "OutboundLinkBuilder":
        """Choose the destination address per value (``fn(value) -> topic``)."""
        self._spec.topic_provider = fn
        return self


class InboundLinkBuilder(_LinkBuilder):
    """Options of a ``link_from``; end with ``.finish()``."""

    __slots__ = ()

    def with_deserializer(self, fn: "Callable[[bytes], Any]") -> "InboundLinkBuilder":
        """Turn payloads into values with ``fn`` instead of the codec.

        ``fn`` should raise ``aimdb.DeserializeError`` (any exception is treated as one)
        for a payload that does not fit; it is logged, counted and dropped.
        """
        self._spec.deserializer = fn
        return self
