"""The one shape of statistics in aimdb: frozen snapshots with ``as_dict()`` (MicroPython-safe).

Every ``statistics()`` (buffers, stages, tasks, links, connectors, the remote server, the
sync API) returns a :class:`Statistics`: the counters as they were when it was taken, as
attributes named by the class's ``__slots__``. A snapshot never changes; take a new one to
see newer counts. On CPython assigning an attribute raises ``AttributeError``.
"""

from .._compat import IS_MICROPYTHON, TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

if IS_MICROPYTHON:  # pragma: no cover - no object.__setattr__ to bypass a guard there
    _set = setattr
else:
    _set = object.__setattr__


def _lineage(cls: "type") -> "list[type]":
    """``cls`` and its bases, the most basic first (MicroPython has no ``__mro__``)."""
    out: list[type] = []
    for base in getattr(cls, "__bases__", ()):
        for k in _lineage(base):
            if k not in out:
                out.append(k)
    out.append(cls)
    return out


_FIELDS: "dict[type, list[str]]" = {}


def _fields(cls: "type") -> "list[str]":
    names = _FIELDS.get(cls)
    if names is None:
        names = []
        for klass in _lineage(cls):
            for name in getattr(klass, "__slots__", ()):
                if not name.startswith("_") and name not in names:
                    names.append(name)
        _FIELDS[cls] = names
    return names


class Statistics:
    """Base of every statistics snapshot: frozen counters with :meth:`as_dict`.

    Subclasses list their fields in ``__slots__`` and set them in ``__init__`` with
    :meth:`_init` (or pass them as keyword arguments to ``Statistics.__init__``).
    """

    __slots__ = ()

    def __init__(self, **fields: "Any") -> None:
        self._init(fields)

    def _init(self, fields: "dict[str, Any]") -> None:
        for k, v in fields.items():
            _set(self, k, v)

    if not IS_MICROPYTHON:

        def __setattr__(self, name: str, value: "Any") -> None:
            raise AttributeError(
                type(self).__name__ + " is a snapshot and does not change; call statistics() again"
            )

    def as_dict(self) -> "dict[str, Any]":
        """Return the snapshot as a plain dict (for JSON), in the order of the fields."""
        return {k: getattr(self, k) for k in _fields(type(self))}

    __hash__ = None  # type: ignore[assignment]  # compared by value, not hashed (values may be lists)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Statistics) or type(other) is not type(self):
            return False
        return self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        fields = ", ".join(k + "=" + repr(v) for k, v in self.as_dict().items())
        return type(self).__name__ + "(" + fields + ")"
