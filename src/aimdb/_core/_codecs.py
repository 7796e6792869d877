"""Codec registry used by links: ``json`` (default), ``msgpack`` and ``cbor`` (MicroPython-safe).

Every codec maps bytes to the *declared* type on the way in; a payload that does not fit
raises :class:`~aimdb.DeserializeError`. ``msgpack`` uses msgspec's MessagePack support;
``cbor`` needs the ``cbor2`` package (``aimdb[cbor]``) and converts through msgspec.
"""

from .._compat import TYPE_CHECKING
from .._errors import DeserializeError, SerializeError
from ._codec import json_codec

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CODECS = ("json", "msgpack", "cbor")


def codec_problem(name: str, tp: "Any") -> "str | None":
    """Return why codec ``name`` cannot carry ``tp`` (``None`` when it can)."""
    if name not in CODECS:
        return "unknown codec " + repr(name) + " (known: " + ", ".join(CODECS) + ")"
    if not json_codec.supports(tp):
        return (
            "no default codec for type "
            + getattr(tp, "__name__", repr(tp))
            + "; use a dataclass, msgspec Struct, pydantic model or primitive, "
            + "or give with_serializer/with_deserializer"
        )
    if name != "json":
        try:
            import msgspec  # noqa: F401
        except ImportError:
            return "codec " + repr(name) + " needs msgspec"
        if name == "cbor":
            try:
                import cbor2  # noqa: F401
            except ImportError:
                return "codec 'cbor' needs cbor2: pip install 'aimdb[cbor]'"
    return None


def encoder_for(name: str, tp: "Any", key: str = "") -> "Callable[[Any], bytes]":
    """Return ``fn(value) -> bytes`` of codec ``name`` for ``tp``."""
    if name == "json":
        return json_codec.encoder(tp, key)
    import msgspec

    raw: Callable[[Any], bytes]
    if name == "msgpack":
        raw = msgspec.msgpack.Encoder().encode
    else:
        import cbor2

        def raw_cbor(value: "Any") -> bytes:
            return cbor2.dumps(msgspec.to_builtins(value))

        raw = raw_cbor

    def enc(value: "Any") -> bytes:
        try:
            return raw(value)
        except Exception as exc:
            raise SerializeError(str(exc), key) from exc

    return enc


def decoder_for(name: str, tp: "Any", key: str = "") -> "Callable[[bytes], Any]":
    """Return ``fn(payload) -> value of tp`` of codec ``name``."""
    if name == "json":
        return json_codec.decoder(tp, key)
    import msgspec

    raw: Callable[[bytes], Any]
    if name == "msgpack":
        raw = msgspec.msgpack.Decoder(tp).decode
    else:
        import cbor2

        def raw_cbor(payload: bytes) -> "Any":
            return msgspec.convert(cbor2.loads(payload), tp)

        raw = raw_cbor

    def dec(payload: bytes) -> "Any":
        try:
            return raw(payload)
        except Exception as exc:
            raise DeserializeError(str(exc), key, len(payload)) from exc

    return dec
