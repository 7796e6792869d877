"""Record declarations: what ``builder.configure(T, key, fn)`` collects (MicroPython-safe)."""

from .._compat import TYPE_CHECKING, Generic, TypeVar
from ._links import InboundLinkBuilder, LinkSpec, OutboundLinkBuilder
from ._persist import PersistSpec
from ._tasks import ON_ERROR_POLICIES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from typing import Any

    from ._buffers import Mailbox, SingleLatest, SpmcRing

T = TypeVar("T")
U = TypeVar("U")


class StageSpec:
    """A declared stage (source, tap, transform, join) of one record."""

    __slots__ = ("fn", "inputs", "kind", "name", "on_error", "state")

    def __init__(
        self,
        kind: str,
        name: str,
        fn: "Any",
        on_error: str,
        inputs: "list[tuple[Any, str]] | None" = None,
        state: "Any" = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.fn = fn
        self.on_error = on_error
        self.inputs = inputs or []
        self.state = state

    def __repr__(self) -> str:
        return "StageSpec(" + self.kind + ", " + repr(self.name) + ")"


class RecordConfig:
    """Everything declared for one record key (internal; exposed read-only as metadata)."""

    def __init__(self, key: str, tp: "Any") -> None:
        self.key = key
        self.type = tp
        self.buffer_cfg: SpmcRing | SingleLatest | Mailbox | None = None
        self.buffer_set = 0
        self.sources: list[StageSpec] = []
        self.taps: list[StageSpec] = []
        self.derivations: list[StageSpec] = []  # transforms and joins
        self.links: list[LinkSpec] = []
        self.remote_readable = True
        self.remote_writable = False
        self.persist: PersistSpec | None = None
        self.problems: list[tuple[str, str, str | None]] = []  # (kind, message, url)

    @property
    def writer_kind(self) -> str:
        """``"source"``, ``"transform"``, ``"join"``, ``"link"`` or ``"none"`` (passive)."""
        if self.sources:
            return "source"
        if self.derivations:
            return self.derivations[0].kind
        if any(link.direction == "in" for link in self.links):
            return "link"
        return "none"


class RecordRegistrar(Generic[T]):
    """Declares buffer, stages and links of one record; handed to ``configure``'s callback.

    Every method returns the registrar so calls chain. Problems (bad arguments, a second
    writer ...) are not raised here: ``build()`` reports all of them at once.
    """

    def __init__(self, cfg: RecordConfig) -> None:
        self._cfg = cfg

    @property
    def key(self) -> str:
        """The record key being configured."""
        return self._cfg.key

    def _problem(self, kind: str, message: str, url: "str | None" = None) -> None:
        self._cfg.problems.append((kind, message, url))

    def _policy(self, on_error: str) -> str:
        if on_error not in ON_ERROR_POLICIES:
            self._problem(
                "bad_argument",
                "on_error must be one of " + ", ".join(ON_ERROR_POLICIES) + ", got " + repr(on_error),
            )
            return "log"
        return on_error

    def buffer(self, cfg: "SpmcRing | SingleLatest | Mailbox") -> "RecordRegistrar[T]":
        """Give the record its buffer: ``SpmcRing(capacity=N)``, ``SingleLatest()`` or ``Mailbox()``."""
        if not hasattr(cfg, "_create"):
            self._problem("bad_buffer", "not a buffer configuration: " + repr(cfg))
            return self
        if self._cfg.buffer_cfg is not None and self._cfg.buffer_cfg != cfg:
            self._problem(
                "bad_buffer",
                "buffer configured twice with different settings: "
                + repr(self._cfg.buffer_cfg)
                + " and "
                + repr(cfg),
            )
        self._cfg.buffer_cfg = cfg
        return self

    def source(
        self,
        fn: "Callable[[Any, Any], Awaitable[None]]",
        *,
        name: str = "source",
        on_error: str = "log",
    ) -> "RecordRegistrar[T]":
        """Set the record's source: ``async def fn(ctx, producer)``, started once, may loop forever.

        At most one source; a source excludes transforms, joins and ``link_from``.
        """
        self._cfg.sources.append(StageSpec("source", name, fn, self._policy(on_error)))
        return self

    def tap(
        self,
        fn: "Callable[[Any, Any], Awaitable[None]]",
        *,
        name: "str | None" = None,
        on_error: str = "log",
    ) -> "RecordRegistrar[T]":
        """Add a tap: ``async def fn(ctx, consumer)``; any number per record.

        The consumer already holds a reader subscribed before any source starts; its
        first ``subscribe()`` returns that reader, so the tap misses nothing.
        """
        n = name or getattr(fn, "__name__", None) or "tap" + str(len(self._cfg.taps))
        self._cfg.taps.append(StageSpec("tap", "tap:" + str(n), fn, self._policy(on_error)))
        return self

    def transform(
        self,
        input_type: "type[U]",
        input_key: str,
        fn: "Callable[[U], T | None]",
        *,
        name: str = "transform",
        on_error: str = "log",
    ) -> "RecordRegistrar[T]":
        """Derive this record from another: ``fn(value) -> output | None`` (``None`` skips).

        Runs for every value of ``input_key`` (lagged ring values are skipped and counted).
        """
        self._cfg.derivations.append(
            StageSpec("transform", name, fn, self._policy(on_error), [(input_type, input_key)])
        )
        return self

    def stateful_transform(
        self,
        input_type: "type[U]",
        input_key: str,
        state: "Any",
        fn: "Callable[[Any, U], T | None]",
        *,
        name: str = "transform",
        on_error: str = "log",
    ) -> "RecordRegistrar[T]":
        """Like :meth:`transform` with a state object: ``fn(state, value) -> output | None``.

        The same ``state`` object is passed on every call (and kept across restarts).
        """
        self._cfg.derivations.append(
            StageSpec("transform", name, fn, self._policy(on_error), [(input_type, input_key)], state)
        )
        return self

    def join(
        self,
        inputs: "Sequence[tuple[type[Any], str]]",
        fn: "Callable[..., T | None]",
        *,
        name: str = "join",
        on_error: str = "log",
    ) -> "RecordRegistrar[T]":
        """Derive from several records, latest value of each.

        Once every input has a value, ``fn(v1, v2, ...)`` (in ``inputs`` order) is called on
        every update of any input; a ``None`` result skips.
        """
        self._cfg.derivations.append(StageSpec("join", name, fn, self._policy(on_error), list(inputs)))
        return self

    def join_stream(
        self,
        inputs: "Sequence[tuple[type[Any], str]]",
        handler: "Callable[[Any, Any, Any], Awaitable[None]]",
        *,
        name: str = "join",
        on_error: str = "log",
    ) -> "RecordRegistrar[T]":
        """General join: ``async def handler(ctx, inputs, producer)``.

        ``async for index, value in inputs`` yields ``(position in inputs, value)`` as values
        arrive on any input, in arrival order per input; it ends when the database stops.
        """
        self._cfg.derivations.append(
            StageSpec("join", name, handler, self._policy(on_error), list(inputs), "stream")
        )
        return self

    def link_to(self, url: str) -> OutboundLinkBuilder:
        """Mirror every value of this record to ``url`` (``mqtt://topic``, ``kafka://topic`` ...)."""
        spec = LinkSpec("out", url)
        self._cfg.links.append(spec)
        return OutboundLinkBuilder(self, spec)

    def link_from(self, url: str) -> InboundLinkBuilder:
        """Feed this record from ``url``; several ``link_from`` may write one record."""
        spec = LinkSpec("in", url)
        self._cfg.links.append(spec)
        return InboundLinkBuilder(self, spec)

    def remote(self, *, readable: bool = True, writable: bool = False) -> "RecordRegistrar[T]":
        """Set remote access: visible to remote clients (default) and whether ``record.set`` is allowed.

        A remote write is refused anyway when the record has a source, transform or join.
        """
        self._cfg.remote_readable = readable
        self._cfg.remote_writable = writable
        return self

    def persist(self, *, restore: "bool | None" = None, codec: str = "json") -> "RecordRegistrar[T]":
        """Store every value of this record in the database's persistence store.

        Needs ``builder.with_persistence(...)`` and a buffer (``build()`` reports either
        missing). Values are taken off the produce path by a reader subscribed before any
        source starts, encoded with ``codec`` and written in batches by the store; query
        them with ``db.history(key)``.

        Args:
            restore: put the newest stored value back into the buffer at start, before
                any reader subscribes or source runs. ``None`` (default): on for
                ``SingleLatest`` records, off for rings and mailboxes (a stale command
                must not be executed again).
            codec: ``"json"`` (default), ``"msgpack"`` or ``"cbor"``.
        """
        if restore is not None and not isinstance(restore, bool):
            self._problem("bad_argument", "persist(restore=) must be a bool or None, got " + repr(restore))
        self._cfg.persist = PersistSpec(restore, codec)
        return self
