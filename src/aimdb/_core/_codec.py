"""The default JSON codec: values to bytes and back into the *declared* type.

On CPython dataclasses, msgspec Structs, primitives, lists and dicts go through msgspec
(fast, strict: a payload that does not fit the declared type is a
:class:`~aimdb.DeserializeError`); pydantic models use their own JSON methods. On
MicroPython the ``json`` module is used and a plain class is rebuilt with ``cls(**obj)``.
"""

from .._compat import IS_MICROPYTHON, TYPE_CHECKING
from .._errors import DeserializeError, SerializeError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_msgspec: "Any"
try:
    import msgspec as _msgspec
except ImportError:  # MicroPython, or CPython without msgspec
    _msgspec = None

_PRIMITIVES = (int, float, str, bool, list, dict, bytes, type(None))


def _is_pydantic(tp: "Any") -> bool:
    return hasattr(tp, "model_validate_json") and hasattr(tp, "model_dump_json")


def _is_dataclass(tp: "Any") -> bool:
    return hasattr(tp, "__dataclass_fields__")


def _is_struct(tp: "Any") -> bool:
    return _msgspec is not None and isinstance(tp, type) and issubclass(tp, _msgspec.Struct)


class JsonCodec:
    """JSON codec used by links and remote access unless a link names another.

    ``supports(tp)`` says whether a type has a default mapping; ``encoder(tp)`` and
    ``decoder(tp, key)`` return fast callables. Decoders raise ``DeserializeError`` naming
    the record key; encoders raise ``SerializeError``.
    """

    name = "json"
    content_type = "application/json"

    def supports(self, tp: "Any") -> bool:
        """Return True when values of ``tp`` have a default JSON mapping."""
        if tp in _PRIMITIVES or _is_pydantic(tp) or _is_dataclass(tp) or _is_struct(tp):
            return True
        if IS_MICROPYTHON:
            return isinstance(tp, type)
        return False

    def encoder(self, tp: "Any", key: str = "") -> "Callable[[Any], bytes]":
        """Return ``fn(value) -> bytes`` for values of ``tp``."""
        if _is_pydantic(tp):

            def enc_pydantic(value: "Any") -> bytes:
                try:
                    return value.model_dump_json().encode()  # type: ignore[no-any-return]
                except Exception as exc:
                    raise SerializeError(repr(exc), key) from exc

            return enc_pydantic
        if _msgspec is not None:
            raw = _msgspec.json.Encoder().encode

            def enc_msgspec(value: "Any") -> bytes:
                try:
                    return bytes(raw(value))
                except Exception as exc:
                    raise SerializeError(str(exc), key) from exc

            return enc_msgspec
        import json

        def enc_plain(value: "Any") -> bytes:
            obj = value
            if not isinstance(value, _PRIMITIVES):
                obj = getattr(value, "__dict__", None)
                if obj is None:
                    raise SerializeError("no JSON mapping for " + repr(type(value)), key)
            try:
                return json.dumps(obj).encode()
            except Exception as exc:
                raise SerializeError(str(exc), key) from exc

        return enc_plain

    def decoder(self, tp: "Any", key: str = "") -> "Callable[[bytes], Any]":
        """Return ``fn(payload) -> value of tp``; a payload that does not fit raises ``DeserializeError``."""
        if _is_pydantic(tp):

            def dec_pydantic(payload: bytes) -> "Any":
                try:
                    return tp.model_validate_json(payload)
                except Exception as exc:
                    raise DeserializeError(_first_line(exc), key, len(payload)) from exc

            return dec_pydantic
        if _msgspec is not None:
            raw = _msgspec.json.Decoder(tp).decode

            def dec_msgspec(payload: bytes) -> "Any":
                try:
                    return raw(payload)
                except Exception as exc:
                    raise DeserializeError(str(exc), key, len(payload)) from exc

            return dec_msgspec
        import json

        def dec_plain(payload: bytes) -> "Any":
            try:
                obj = json.loads(payload)
            except Exception as exc:
                raise DeserializeError("invalid JSON: " + str(exc), key, len(payload)) from exc
            if tp in _PRIMITIVES:
                if tp is float and isinstance(obj, int) and not isinstance(obj, bool):
                    return float(obj)
                if not isinstance(obj, tp):
                    raise DeserializeError(
                        "expected " + tp.__name__ + ", got " + type(obj).__name__, key, len(payload)
                    )
                return obj
            if not isinstance(obj, dict):
                raise DeserializeError("expected a JSON object", key, len(payload))
            try:
                return tp(**obj)
            except Exception as exc:
                raise DeserializeError(
                    "does not fit " + tp.__name__ + ": " + str(exc), key, len(payload)
                ) from exc

        return dec_plain

    def encode(self, value: "Any") -> bytes:
        """Encode one value (convenience; prefer ``encoder(tp)`` on hot paths)."""
        return self.encoder(type(value))(value)

    def decode(self, payload: bytes, tp: "Any") -> "Any":
        """Decode ``payload`` into ``tp`` (convenience; prefer ``decoder(tp)``)."""
        return self.decoder(tp)(payload)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.replace("\n", "; ")[:500]


json_codec = JsonCodec()
