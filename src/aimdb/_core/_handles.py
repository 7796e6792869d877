"""Handles users receive but never construct: ``Producer[T]`` and ``Consumer[T]`` (MicroPython-safe)."""

from .._compat import TYPE_CHECKING, Generic, TypeVar
from .._errors import TypeMismatch

if TYPE_CHECKING:
    from typing import Any

    from ._buffers import Buffer, Reader

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class _Handle:
    """What producers and consumers share: the record key, its type and the buffer."""

    __slots__ = ("_buf", "_key", "_type")

    def __init__(self, key: str, tp: "type[Any]", buf: "Buffer[Any]") -> None:
        self._key = key
        self._type = tp
        self._buf = buf

    @property
    def key(self) -> str:
        """The record key."""
        return self._key

    @property
    def type(self) -> "type[Any]":
        """The record's declared type."""
        return self._type

    @property
    def buffer(self) -> "Buffer[Any]":
        """The record's buffer (loop-affine, like every buffer method)."""
        return self._buf

    def __repr__(self) -> str:
        return (
            "<"
            + type(self).__name__
            + " "
            + repr(self._key)
            + " "
            + getattr(self._type, "__name__", "?")
            + ">"
        )


class Producer(_Handle, Generic[T_contra]):
    """Writes values into one record's buffer; obtained from ``db.producer(T, key)`` or a source.

    ``produce(value)`` is synchronous, O(1), never blocks and never fails on a full buffer
    (every buffer overwrites). It must be called on the database's event loop; from other
    threads use :mod:`aimdb.sync`.
    """

    __slots__ = ("_check",)

    def __init__(self, key: str, tp: "type[Any]", buf: "Buffer[Any]", check: bool) -> None:
        _Handle.__init__(self, key, tp, buf)
        self._check = check

    @property
    def type_checks(self) -> bool:
        """Whether :meth:`produce` checks each value against the record type."""
        return self._check

    def produce(self, value: T_contra) -> None:
        """Store ``value`` in the record's buffer and wake its readers.

        Raises:
            TypeMismatch: ``value`` is not an instance of the record type (unless type
                checks are off for the database); the buffer is untouched.
            BufferClosed: the database has stopped.
        """
        if self._check and not isinstance(value, self._type):
            raise TypeMismatch(self._key, self._type, type(value))
        self._buf.produce(value)


class Consumer(_Handle, Generic[T]):
    """Reads one record; obtained from ``db.consumer(T, key)`` or handed to a tap.

    ``subscribe()`` returns a new :class:`~aimdb.Reader`. The consumer handed to a tap
    already holds a reader subscribed before any source started; its first ``subscribe()``
    returns that reader.
    """

    __slots__ = ("_preset",)

    def __init__(
        self, key: str, tp: "type[Any]", buf: "Buffer[Any]", preset: "Reader[Any] | None" = None
    ) -> None:
        _Handle.__init__(self, key, tp, buf)
        self._preset = preset

    def subscribe(self) -> "Reader[T]":
        """Return a reader of the record's buffer (see the buffer kind for what it sees)."""
        r = self._preset
        if r is not None:
            self._preset = None
            return r
        return self._buf.subscribe()

    def peek(self) -> "T | None":
        """Return the buffer's current value without consuming (``None`` for rings)."""
        return self._buf.peek()
