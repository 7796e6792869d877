"""The aimdb error hierarchy: one root, a few families, structured attributes.

On CPython an error also derives from the closest builtin (``RecordNotFound`` is a
``LookupError``); MicroPython cannot derive from two builtin exception types, so there
the errors derive from :class:`AimDbError` alone.
"""

from ._compat import IS_MICROPYTHON, TYPE_CHECKING

if TYPE_CHECKING:
    _LookupError = LookupError
    _TypeError = TypeError
    _ValueError = ValueError
    _TimeoutError = TimeoutError
    _ConnectionError = ConnectionError
    _PermissionError = PermissionError
else:
    if IS_MICROPYTHON:

        class _Mixin:
            pass

        _LookupError = _TypeError = _ValueError = _TimeoutError = _Mixin
        _ConnectionError = _PermissionError = _Mixin
    else:
        _LookupError = LookupError
        _TypeError = TypeError
        _ValueError = ValueError
        _TimeoutError = TimeoutError
        _ConnectionError = ConnectionError
        _PermissionError = PermissionError


class AimDbError(Exception):
    """Root of every error aimdb raises on purpose.

    ``except aimdb.AimDbError`` catches all of them; the families below narrow it down.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------- records


class RecordNotFound(AimDbError, _LookupError):
    """Raised when a record key is not declared in the database.

    Attributes:
        key: the key that was asked for.
        close_matches: declared keys that look similar (may be empty).
    """

    def __init__(self, key: str, close_matches: "list[str] | None" = None) -> None:
        self.key = key
        self.close_matches = list(close_matches or [])
        msg = "no record with key " + repr(key)
        if self.close_matches:
            msg += " (did you mean " + ", ".join(repr(k) for k in self.close_matches) + "?)"
        super().__init__(msg)


class TypeMismatch(AimDbError, _TypeError):
    """Raised when a type or value does not match a record's declared type.

    Raised by ``db.producer``/``db.consumer`` when the requested type is not the record's
    type, and by ``Producer.produce`` when the value is not an instance of it.

    Attributes:
        key: the record key.
        expected: the record's declared type.
        actual: the type that was offered.
    """

    def __init__(self, key: str, expected: type, actual: type) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            "record " + repr(key) + " holds " + _type_name(expected) + ", got " + _type_name(actual)
        )


# ---------------------------------------------------------------- buffers


class BufferError_(AimDbError):
    """Family of errors raised by buffers and readers."""


class BufferLagged(BufferError_):
    """Raised once by a ring reader's receive when it fell more than capacity behind.

    The reader has already been moved to the oldest value still held; the next receive
    returns it.

    Attributes:
        missed: exact number of values this reader lost.
        key: the record key, when known.
    """

    def __init__(self, missed: int, key: str = "") -> None:
        self.missed = missed
        self.key = key
        super().__init__("reader of " + repr(key) + " lagged behind and missed " + str(missed))


class BufferEmpty(BufferError_):
    """Raised by ``try_recv`` when no value is pending for this reader."""

    def __init__(self, key: str = "") -> None:
        self.key = key
        super().__init__("no value pending on " + repr(key))


class BufferClosed(BufferError_):
    """Raised by a receive once the database stopped and everything pending was delivered.

    Also raised by ``produce`` on a buffer whose database has stopped.
    """

    def __init__(self, key: str = "") -> None:
        self.key = key
        super().__init__("buffer of " + repr(key) + " is closed")


# ---------------------------------------------------------------- configuration


class ConfigProblem:
    """One problem found by ``build()``.

    Attributes:
        key: record key the problem belongs to ("" for database-wide problems).
        message: what is wrong, in one sentence.
        url: the link URL involved, if any.
        kind: short machine-readable category (``"duplicate_writer"``, ``"missing_buffer"`` ...).
    """

    __slots__ = ("key", "kind", "message", "url")

    def __init__(self, key: str, kind: str, message: str, url: "str | None" = None) -> None:
        self.key = key
        self.kind = kind
        self.message = message
        self.url = url

    def __repr__(self) -> str:
        return "ConfigProblem(" + repr(self.key) + ", " + repr(self.kind) + ", " + repr(self.message) + ")"

    def __str__(self) -> str:
        where = self.key or "<database>"
        if self.url:
            where += " (" + self.url + ")"
        return where + ": " + self.message


class InvalidConfiguration(AimDbError, _ValueError):
    """Raised by ``build()`` (and a few configuration calls) listing every problem found.

    Attributes:
        problems: every :class:`ConfigProblem`, in declaration order.
    """

    def __init__(self, problems: "list[ConfigProblem]") -> None:
        self.problems = list(problems)
        lines = [str(len(self.problems)) + " configuration problem(s):"]
        for p in self.problems:
            lines.append("  - " + str(p))
        super().__init__("\n".join(lines))


class PermissionDenied(AimDbError, _PermissionError):
    """Raised when an operation is not allowed on a record (e.g. a remote write).

    Attributes:
        key: the record key.
        reason: why it was refused.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__("not allowed on " + repr(key) + ": " + reason)


# ---------------------------------------------------------------- stages


class StageFailed(AimDbError):
    """A source, tap, transform, join or link stage raised.

    ``run()`` (and leaving ``async with``) re-raises it when the stage's policy is
    ``on_error="stop"``. The original exception is ``cause`` (and ``__cause__``).

    Attributes:
        key: record key of the stage.
        stage: stage name (``"source"``, ``"tap:show"``, ``"transform"`` ...).
        cause: the exception the stage raised.
    """

    def __init__(self, key: str, stage: str, cause: BaseException) -> None:
        self.key = key
        self.stage = stage
        self.cause = cause
        super().__init__("stage " + stage + " of " + repr(key) + " failed: " + repr(cause))


# ---------------------------------------------------------------- codecs


class SerializeError(AimDbError, _ValueError):
    """Raised when a value cannot be turned into bytes by a codec or serializer.

    Attributes:
        key: record key ("" when unknown).
        reason: what went wrong.
    """

    def __init__(self, reason: str, key: str = "") -> None:
        self.key = key
        self.reason = reason
        super().__init__("cannot serialize" + (" " + repr(key) if key else "") + ": " + reason)


class DeserializeError(AimDbError, _ValueError):
    """Raised when bytes do not decode into the declared type.

    Attributes:
        key: record key ("" when unknown).
        reason: what went wrong.
        payload_size: size of the offending payload in bytes.
    """

    def __init__(self, reason: str, key: str = "", payload_size: int = 0) -> None:
        self.key = key
        self.reason = reason
        self.payload_size = payload_size
        super().__init__("cannot deserialize" + (" " + repr(key) if key else "") + ": " + reason)


# ---------------------------------------------------------------- connectors


class ConnectorError(AimDbError):
    """Family of errors raised by connectors; the library error is kept as ``__cause__``.

    Attributes:
        url: the connector or link URL involved.
    """

    def __init__(self, message: str, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class ConnectionFailed(ConnectorError, _ConnectionError):
    """Raised when a connector cannot connect (refused, auth failure, DNS, TLS).

    Attributes:
        reason: the broker's or OS's reason, as text.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.reason = reason
        super().__init__("cannot connect to " + url + ": " + reason, url)


class PublishError(ConnectorError):
    """Raised when a broker rejects or fails a publish."""


class ConnectorTimeout(ConnectorError, _TimeoutError):
    """Raised when a connector operation did not finish within its timeout."""


# ---------------------------------------------------------------- protocol


class ProtocolError(AimDbError, _ValueError):
    """Raised for a malformed or unexpected frame in the remote-access protocol.

    Attributes:
        code: machine-readable error code (e.g. ``"bad_frame"``).
    """

    def __init__(self, message: str, code: str = "protocol_error") -> None:
        self.code = code
        super().__init__(message)


# ---------------------------------------------------------------- persistence


class PersistenceError(AimDbError):
    """Raised when the persistence store cannot be opened or used (``with_persistence``).

    Raised at start when the database file cannot be opened or created (unwritable,
    corrupt, not an SQLite file); ``build()`` reports what it can check beforehand as a
    configuration problem.

    Attributes:
        path: the store's location (the database file), or ``""``.
        reason: what went wrong.
    """

    def __init__(self, reason: str, path: str = "") -> None:
        self.path = path
        self.reason = reason
        super().__init__("persistence store " + (repr(path) + " " if path else "") + "failed: " + reason)


class NotPersisted(PersistenceError, _LookupError):
    """Raised by ``db.history(key)`` when record ``key`` has no ``persist()``.

    Attributes:
        key: the record key.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        AimDbError.__init__(self, "record " + repr(key) + " is not persisted (call reg.persist() on it)")
        self.path = ""
        self.reason = "not persisted"


# ---------------------------------------------------------------- sync API


class SyncError(AimDbError):
    """Family of errors raised by the thread-facing sync API (:mod:`aimdb.sync`)."""


class SetTimeout(SyncError, _TimeoutError):
    """Raised by ``SyncProducer.set(v, timeout=)`` when the loop did not accept in time."""


class GetTimeout(SyncError, _TimeoutError):
    """Raised by ``SyncConsumer.get(timeout=)`` when no value arrived in time."""


class RuntimeShutdown(SyncError):
    """Raised by a sync call when the handle is detached or the database stopped."""


class AttachFailed(SyncError):
    """Raised when the background event loop or database could not be started."""


class DetachFailed(SyncError):
    """Raised when the background loop did not stop within the detach timeout."""


def _type_name(tp: object) -> str:
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None)
    return str(name) if name else repr(tp)
