r"""Wire format of the aimdb remote-access protocol (newline-delimited JSON).

Every frame is one JSON object encoded as UTF-8 and terminated by ``\\n``. The
:class:`FrameDecoder` splits a byte stream into frames, enforces the frame-size limit and
resynchronises on the next newline after garbage or an oversized frame, so the same
framing works over sockets, pipes and serial lines. See ``docs/remote-protocol.md``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from .._core._serial_link import PROTOCOL_VERSION as PROTOCOL_VERSION

PROTOCOL_MAJOR = int(PROTOCOL_VERSION.split(".")[0])

DEFAULT_TCP_PORT = 7433
DEFAULT_MAX_FRAME = 64 * 1024
DEFAULT_MAX_DEPTH = 32
MAX_DEPTH_LIMIT = 256
"""Largest ``max_depth`` a server accepts (well below the JSON decoder's own recursion limit)."""

# Error codes (stable strings; documented in docs/remote-protocol.md).
PARSE_ERROR = "parse_error"
INVALID_REQUEST = "invalid_request"
FRAME_TOO_LARGE = "frame_too_large"
FRAME_TOO_DEEP = "frame_too_deep"
IDLE_TIMEOUT = "idle_timeout"
HANDSHAKE_REQUIRED = "handshake_required"
VERSION_MISMATCH = "version_mismatch"
AUTH_FAILED = "auth_failed"
METHOD_NOT_FOUND = "method_not_found"
INVALID_PARAMS = "invalid_params"
NOT_FOUND = "not_found"
NO_VALUE = "no_value"
PERMISSION_DENIED = "permission_denied"
INVALID_VALUE = "invalid_value"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
TOO_MANY_CONNECTIONS = "too_many_connections"
SHUTTING_DOWN = "shutting_down"
NOT_PERSISTED = "not_persisted"
PERSISTENCE_ERROR = "persistence_error"
INTERNAL_ERROR = "internal_error"

ERROR_CODES = (
    PARSE_ERROR,
    INVALID_REQUEST,
    FRAME_TOO_LARGE,
    FRAME_TOO_DEEP,
    HANDSHAKE_REQUIRED,
    VERSION_MISMATCH,
    AUTH_FAILED,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    NOT_FOUND,
    NO_VALUE,
    PERMISSION_DENIED,
    INVALID_VALUE,
    TOO_MANY_SUBSCRIPTIONS,
    TOO_MANY_CONNECTIONS,
    SHUTTING_DOWN,
    NOT_PERSISTED,
    PERSISTENCE_ERROR,
    IDLE_TIMEOUT,
    INTERNAL_ERROR,
)
"""Every error code a server may send, as stable strings (see the protocol document)."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class FrameError:
    """A framing problem found by :class:`FrameDecoder` (the stream itself goes on).

    Attributes:
        code: ``"frame_too_large"``, ``"frame_too_deep"`` or ``"parse_error"``.
        message: human-readable description.
    """

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"FrameError({self.code!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameError) and (other.code, other.message) == (
            self.code,
            self.message,
        )

    __hash__ = None  # type: ignore[assignment]


class FrameDecoder:
    r"""Split a byte stream into newline-terminated frames.

    ``feed(data)`` returns, in stream order, each complete frame (``bytes`` without the
    newline, trailing ``\\r`` removed, never empty) and a :class:`FrameError` for every
    frame longer than ``max_frame`` bytes. An oversized frame is discarded up to its
    newline, reported once, and decoding resumes with the next frame. Memory held is at
    most ``max_frame`` bytes whatever is fed. Blank lines are ignored (keep-alives).

    Args:
        max_frame: largest frame accepted, in bytes (without the newline); at least 1.
    """

    __slots__ = ("_buf", "_discarding", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame currently held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        """Consume ``data`` and return the frames (and framing errors) it completes."""
        out: list[bytes | FrameError] = []
        buf = self._buf
        limit = self.max_frame
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            if nl < 0:
                chunk = data[start:]
                if self._discarding:
                    return out
                if len(buf) + len(chunk) > limit + 1:  # +1: a trailing '\r' may still go
                    buf.clear()
                    self._discarding = True
                    out.append(_too_large(limit))
                else:
                    buf += chunk
                return out
            piece = data[start:nl]
            start = nl + 1
            if self._discarding:
                self._discarding = False
                continue
            if buf:
                buf += piece
                frame = bytes(buf)
                buf.clear()
            else:
                frame = bytes(piece)
            if frame.endswith(b"\r"):
                frame = frame[:-1]
            if len(frame) > limit:
                out.append(_too_large(limit))
            elif frame.strip():
                out.append(frame)
        return out

    def reset(self) -> None:
        """Forget any partial frame (e.g. after a reconnect)."""
        self._buf.clear()
        self._discarding = False


def _too_large(limit: int) -> FrameError:
    return FrameError(FRAME_TOO_LARGE, f"frame longer than {limit} bytes discarded")


def parse_frame(frame: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any] | FrameError:
    """Decode one frame into a JSON object, or return why not as a :class:`FrameError`.

    Returns a ``frame_too_deep`` error when arrays and objects nest deeper than
    ``max_depth`` (the frame object itself is depth 1; checked before decoding, so a
    deep frame costs no recursion), and a ``parse_error`` error for invalid JSON or a
    value that is not an object.
    """
    if too_deep(frame, max_depth):
        return _too_deep(max_depth)
    try:
        obj = _decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return FrameError(PARSE_ERROR, "invalid JSON: " + str(exc))
    except RecursionError:  # not reached with max_depth <= MAX_DEPTH_LIMIT; kept as a guard
        return _too_deep(max_depth)
    if not isinstance(obj, dict):
        return FrameError(PARSE_ERROR, "a frame must be a JSON object")
    return obj


_NESTING = re.compile(rb'[\[\]{}"\\]')


def too_deep(frame: bytes, max_depth: int) -> bool:
    """Return True when the JSON text ``frame`` nests arrays and objects deeper than ``max_depth``.

    Brackets inside strings do not count. Costs two byte counts for a frame with at most
    ``max_depth`` opening brackets; otherwise one pass over its brackets, quotes and
    backslashes that stops at the first level too deep. The text need not be valid JSON.
    """
    if frame.count(b"[") + frame.count(b"{") <= max_depth:
        return False
    depth = 0
    in_string = False
    escaped_at = -1
    for m in _NESTING.finditer(frame):
        i = m.start()
        if i == escaped_at:
            continue
        c = frame[i]
        if in_string:
            if c == 0x5C:  # backslash: the next byte is escaped
                escaped_at = i + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c == 0x5B or c == 0x7B:
            depth += 1
            if depth > max_depth:
                return True
        elif c == 0x5D or c == 0x7D:
            depth -= 1
    return False


def _too_deep(max_depth: int) -> FrameError:
    return FrameError(FRAME_TOO_DEEP, f"frame nested deeper than {max_depth} levels discarded")


def encode(obj: Any) -> bytes:
    r"""Encode ``obj`` as one frame (JSON plus ``\\n``); ``msgspec.Raw`` values are embedded."""
    return _encoder.encode(obj) + b"\n"


def error_frame(req_id: Any, code: str, message: str, details: Any = None) -> bytes:
    """Return an error reply frame."""
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return encode({"id": req_id, "error": err})


def result_frame(req_id: Any, result: Any) -> bytes:
    """Return a success reply frame."""
    return encode({"id": req_id, "result": result})


def version_compatible(version: Any) -> bool:
    """Return True when a peer's ``"MAJOR.MINOR"`` version has our major number."""
    if not isinstance(version, str):
        return False
    major, _, _ = version.partition(".")
    return major.isdigit() and int(major) == PROTOCOL_MAJOR


# ------------------------------------------------------------------ key patterns


def is_pattern(text: str) -> bool:
    """Return True when ``text`` contains a ``*`` or ``#`` segment."""
    return any(seg in ("*", "#") for seg in text.split("."))


def pattern_matches(pattern: str, key: str) -> bool:
    """Match a dot-separated ``key`` against ``pattern``.

    ``*`` matches exactly one segment and ``#`` zero or more segments (anywhere in the
    pattern); other segments match literally, so a pattern always matches a key equal to it.
    """
    if pattern == key:
        return True
    return _match(pattern.split("."), key.split("."))


def _match(pat: list[str], segs: list[str]) -> bool:
    # Iterative matching with memo on (i, j): bounded O(len(pat) * len(segs)).
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        k = (i, j)
        if k in memo:
            return memo[k]
        if i == len(pat):
            r = j == len(segs)
        elif pat[i] == "#":
            r = go(i + 1, j) or (j < len(segs) and go(i, j + 1))
        elif j < len(segs) and (pat[i] == "*" or pat[i] == segs[j]):
            r = go(i + 1, j + 1)
        else:
            r = False
        memo[k] = r
        return r

    return go(0, 0)


# ------------------------------------------------------------------ endpoints


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens or a client connects.

    Attributes:
        kind: ``"unix"`` or ``"tcp"``.
        path: socket path (``unix``).
        host: host name or address (``tcp``).
        port: port (``tcp``).
    """

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return "unix://" + self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``unix://PATH``, a bare path, ``tcp://HOST:PORT`` or ``HOST:PORT``.

    Raises:
        ValueError: the text is not an endpoint (the message says why).
    """
    if not isinstance(text, str) or not text:
        raise ValueError("empty endpoint")
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path:
            raise ValueError(f"no socket path in {text!r}")
        return Endpoint("unix", path=path)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme not in ("tcp", "aimdb+tcp"):
            raise ValueError(f"unknown endpoint scheme {scheme!r} (use unix:// or tcp://)")
        return _host_port(rest.split("/", 1)[0], text)
    if text.startswith(("/", ".", "~")) or os.sep in text or text.endswith(".sock"):
        return Endpoint("unix", path=os.path.expanduser(text))
    return _host_port(text, text)


def _host_port(hp: str, raw: str) -> Endpoint:
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0 or not hp[end + 1 :].startswith(":"):
            raise ValueError(f"expected [HOST]:PORT in {raw!r}")
        host, port_text = hp[1:end], hp[end + 2 :]
    else:
        host, sep, port_text = hp.rpartition(":")
        if not sep:
            raise ValueError(f"expected HOST:PORT in {raw!r}")
    if not host:
        raise ValueError(f"no host in {raw!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in {raw!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"port out of range in {raw!r}")
    return Endpoint("tcp", host=host, port=port)
