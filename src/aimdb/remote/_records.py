"""What remote clients may see and write of the served database, through its public API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import AimDb, Producer, RecordInfo, json_codec
from . import _protocol as P
from ._config import RemoteConfig


class RemoteFailure(Exception):
    """A request failed with a protocol error ``code`` (answered, the session goes on)."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class RecordAccess:
    """Readable records, write permissions and cached codecs/producers of one server.

    Args:
        db: the served database.
        config: the server configuration (``writable`` is read once).
    """

    def __init__(self, db: AimDb, config: RemoteConfig) -> None:
        self.db = db
        self._allow = list(config.writable)
        self._encoders: dict[str, Callable[[Any], bytes]] = {}
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        self._producers: dict[str, Producer[Any]] = {}
        self._writable: list[str] | None = None

    def readable_infos(self) -> list[RecordInfo]:
        """Record infos a client may see (``remote(readable=True)``, the default)."""
        return [i for i in self.db.records() if i.remote_readable]

    def info(self, key: str) -> RecordInfo:
        """Return the info of readable record ``key``.

        Raises:
            RemoteFailure: ``not_found`` when there is no such readable record.
        """
        try:
            info = self.db.record(key)
        except LookupError:
            info = None
        if info is None or not info.remote_readable:
            raise RemoteFailure(P.NOT_FOUND, f"no record {key!r}")
        return info

    def writable_keys(self) -> list[str]:
        """Keys ``record.set`` may write: allow-listed, passive or linked, with a buffer."""
        if self._writable is None:
            out = []
            if self._allow:
                for info in self.readable_infos():
                    if not info.remote_writable or info.buffer_kind == "none":
                        continue
                    if any(P.pattern_matches(a, info.key) for a in self._allow):
                        out.append(info.key)
            self._writable = out
        return self._writable

    def check_writable(self, info: RecordInfo) -> None:
        """Raise unless a client may write the record of ``info``.

        Raises:
            RemoteFailure: ``permission_denied``, the message says why.
        """
        if info.writer_kind in ("source", "transform", "join"):
            raise RemoteFailure(
                P.PERMISSION_DENIED,
                f"record {info.key!r} is written by its {info.writer_kind}; remote writes are refused",
                {"key": info.key},
            )
        if not self._allow:
            raise RemoteFailure(P.PERMISSION_DENIED, "this server is read-only", {"key": info.key})
        if info.key not in self.writable_keys():
            reason = (
                "declared without remote(writable=True)"
                if not info.remote_writable
                else "not in the server's write allow-list"
            )
            raise RemoteFailure(
                P.PERMISSION_DENIED, f"record {info.key!r} is not writable: {reason}", {"key": info.key}
            )

    def encoder(self, info: RecordInfo) -> Callable[[Any], bytes]:
        """The record's JSON encoder (cached)."""
        enc = self._encoders.get(info.key)
        if enc is None:
            enc = self._encoders[info.key] = json_codec.encoder(info.type, info.key)
        return enc

    def decoder(self, info: RecordInfo) -> Callable[[bytes], Any]:
        """The record's JSON decoder (cached)."""
        dec = self._decoders.get(info.key)
        if dec is None:
            dec = self._decoders[info.key] = json_codec.decoder(info.type, info.key)
        return dec

    def producer(self, info: RecordInfo) -> Producer[Any]:
        """A producer of the record (cached)."""
        p = self._producers.get(info.key)
        if p is None:
            p = self._producers[info.key] = self.db.producer(info.type, info.key)
        return p
