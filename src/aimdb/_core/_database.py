"""The running database: records, handles, stages and their lifecycle (MicroPython-safe)."""

from .._compat import TYPE_CHECKING, get_logger
from .._errors import (
    BufferClosed,
    BufferEmpty,
    BufferLagged,
    ConfigProblem,
    InvalidConfiguration,
    RecordNotFound,
    StageFailed,
    TypeMismatch,
)
from ._buffers import RingBuffer, RingReader, _log_lag
from ._connector import ConnectorRoutes, InboundRoute, OutboundRoute, runtime_problems
from ._connector_stats import ConnectorCounters, ConnectorStatistics
from ._context import Context, TimeApi
from ._handles import Consumer, Producer
from ._persist import Feed, Persister
from ._stats import Statistics as _Statistics
from ._tasks import SupervisedTask, TaskStatistics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, TypeVar

    from ..abc import Connector, PersistenceBackend, RuntimeBackend, Statistics
    from ._buffers import Buffer, Reader
    from ._connector import LinkStatistics
    from ._persist import Stored
    from ._record import RecordConfig, StageSpec

    T = TypeVar("T")


def partial(fn: "Any", *args: "Any") -> "Any":
    """Bind ``args`` to ``fn`` (functools is not on every MicroPython port)."""

    def call() -> "Any":
        return fn(*args)

    return call


_log: "Any" = get_logger("aimdb")


class RecordInfo:
    """Permanent metadata of one record, kept after build (what remote access shows).

    Attributes:
        key: record key.
        type: the declared Python type.
        type_name: the type's qualified name.
        buffer_kind: ``"spmc_ring"``, ``"single_latest"``, ``"mailbox"`` or ``"none"``.
        capacity: buffer capacity (0 without a buffer).
        writer_kind: ``"source"``, ``"transform"``, ``"join"``, ``"link"`` or ``"none"``.
        taps: number of taps.
        links_out: URLs of ``link_to`` links.
        links_in: URLs of ``link_from`` links.
        inputs: keys this record is derived from (transform/join inputs).
        remote_readable: visible to remote clients.
        remote_writable: remote ``record.set`` allowed (never with a source/transform/join).
        persisted: declared with ``reg.persist()``: its values are stored and
            ``history()`` answers for it.
    """

    __slots__ = (
        "buffer_kind",
        "capacity",
        "inputs",
        "key",
        "links_in",
        "links_out",
        "persisted",
        "remote_readable",
        "remote_writable",
        "taps",
        "type",
        "type_name",
        "writer_kind",
    )

    def __init__(self, cfg: "RecordConfig") -> None:
        self.key = cfg.key
        self.type = cfg.type
        self.type_name = getattr(cfg.type, "__qualname__", None) or getattr(cfg.type, "__name__", "?")
        bc = cfg.buffer_cfg
        self.buffer_kind = bc.kind if bc is not None else "none"
        self.capacity = bc.capacity if bc is not None else 0
        self.writer_kind = cfg.writer_kind
        self.taps = len(cfg.taps)
        self.links_out = tuple(ln.url for ln in cfg.links if ln.direction == "out")
        self.links_in = tuple(ln.url for ln in cfg.links if ln.direction == "in")
        inputs: list[str] = []
        for d in cfg.derivations:
            for _, k in d.inputs:
                if k not in inputs:
                    inputs.append(k)
        self.inputs = tuple(inputs)
        self.remote_readable = cfg.remote_readable
        self.remote_writable = cfg.remote_writable and self.writer_kind in ("none", "link")
        self.persisted = cfg.persist is not None

    def as_dict(self) -> "dict[str, Any]":
        """Return the metadata as a plain dict (for JSON)."""
        return {
            "key": self.key,
            "type": self.type_name,
            "buffer": self.buffer_kind,
            "capacity": self.capacity,
            "writer": self.writer_kind,
            "taps": self.taps,
            "links_out": list(self.links_out),
            "links_in": list(self.links_in),
            "inputs": list(self.inputs),
            "remote_readable": self.remote_readable,
            "writable": self.remote_writable,
            "persisted": self.persisted,
        }

    def __repr__(self) -> str:
        return "RecordInfo(" + repr(self.as_dict()) + ")"


class StageStatistics(_Statistics):
    """Counters of one stage.

    Attributes:
        key: record key.
        name: stage name (``"source"``, ``"tap:show"``, ``"transform"``, ``"join"``).
        kind: ``"source"``, ``"tap"``, ``"transform"`` or ``"join"``.
        running: whether the stage's task is running.
        calls: transform/join: function calls; source/tap: times the stage was started.
        errors: exceptions the stage raised.
        restarts: restarts under ``on_error="restart"``.
        last_error: ``repr`` of the most recent exception, or ``None``.
        last_error_at: wall-clock time (seconds since the epoch) of ``last_error``, or ``None``.
        values: values produced (source, transform, join) or received (tap).
        mean_call_ns: transform/join: mean time per function call; otherwise 0.
        mean_interval_ns: source/tap: mean time between values over the stage's life; else 0.
    """

    __slots__ = (
        "calls",
        "errors",
        "key",
        "kind",
        "last_error",
        "last_error_at",
        "mean_call_ns",
        "mean_interval_ns",
        "name",
        "restarts",
        "running",
        "values",
    )

    if TYPE_CHECKING:
        calls: int
        errors: int
        key: str
        kind: str
        last_error: str | None
        last_error_at: float | None
        mean_call_ns: int
        mean_interval_ns: int
        name: str
        restarts: int
        running: bool
        values: int

    def __init__(self, run: "_StageRun") -> None:
        derived = run.stage_kind in ("transform", "join")
        values = run.values()
        mean_interval_ns = 0
        if not derived and values and run.started_ns:
            end = run.ended_ns or run.db._rt.monotonic_ns()
            mean_interval_ns = (end - run.started_ns) // values
        self._init(
            {
                "key": run.key,
                "name": run.stage_name,
                "kind": run.stage_kind,
                "running": run.running,
                "calls": run.calls if derived else run.starts,
                "errors": run.failures,
                "restarts": run.restarts,
                "last_error": run.last_error,
                "last_error_at": run.last_error_at,
                "values": values,
                "mean_call_ns": run.call_ns // run.calls if derived and run.calls else 0,
                "mean_interval_ns": mean_interval_ns,
            }
        )


class _StageRun(SupervisedTask):
    """Run-time state of one stage: a supervised task whose body is the stage."""

    def __init__(self, db: "AimDb", rec: "_Record", spec: "StageSpec") -> None:
        name = "aimdb[" + rec.key + "]." + spec.name
        super().__init__(db, name, None, (), kind="stage", policy=spec.on_error, key=rec.key)
        self.rec = rec
        self.spec = spec
        self.stage_name = spec.name
        self.stage_kind = spec.kind
        self.calls = 0
        self.call_ns = 0
        self.started_ns = 0
        self.ended_ns = 0
        self.readers: list[Any] = []  # readers subscribed at start (taps, transform/join inputs)
        self.input_keys = [k for _, k in spec.inputs]
        self.ctx: Context | None = None

    def values(self) -> int:
        if self.stage_kind == "tap":
            return sum(r.delivered for r in self.readers)
        buf = self.rec.buffer
        return buf.statistics().produced if buf is not None else 0

    async def _body(self) -> None:
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = Context(self.db, self.key, self.stage_name, TimeApi(self.db._rt))
            if not self.started_ns:
                self.started_ns = self.db._rt.monotonic_ns()
        self.ended_ns = 0
        try:
            await self.db._stage_body(self, ctx)
        finally:
            self.ended_ns = self.db._rt.monotonic_ns()

    def _stage_name(self) -> str:
        return self.stage_name

    def _log_failure(self, exc: BaseException) -> None:
        assert self.ctx is not None
        self.ctx.log.exception("stage raised %r (policy %s)", exc, self.policy)

    def reset(self) -> None:
        self.calls = self.call_ns = self.failures = self.restarts = self.starts = 0
        self.last_error = None
        self.last_error_at = None


class _Record:
    """Run-time record: configuration, buffer, stages, link routes."""

    def __init__(self, cfg: "RecordConfig") -> None:
        self.cfg = cfg
        self.key = cfg.key
        self.type = cfg.type
        self.buffer: Buffer[Any] | None = cfg.buffer_cfg._create(cfg.key) if cfg.buffer_cfg else None
        self.info = RecordInfo(cfg)
        self.stages: list[_StageRun] = []
        self.outbound: list[OutboundRoute] = []
        self.inbound: list[InboundRoute] = []


class JoinInputs:
    """The merged input stream handed to a ``join_stream`` handler.

    ``async for index, value in inputs`` yields ``(position in the join's inputs, value)``
    from whichever input has a value, taking inputs in turn so none starves; lag on a ring
    input is skipped (and counted on that reader). Iteration ends when every input closed
    and nothing is pending. ``readers`` gives the per-input readers.
    """

    def __init__(self, readers: "list[Reader[Any]]", keys: "list[str]") -> None:
        self.readers = readers
        self.keys = keys
        self._next = 0

    def __aiter__(self) -> "JoinInputs":
        return self

    async def __anext__(self) -> "tuple[int, Any]":
        readers = self.readers
        n = len(readers)
        while True:
            closed = 0
            for step in range(n):
                i = (self._next + step) % n
                try:
                    value = readers[i].try_recv()
                except BufferEmpty:
                    continue
                except BufferLagged as lag:
                    # the reader now stands at the oldest held value, which is pending
                    _log_lag(lag)
                    value = readers[i].try_recv()
                except BufferClosed:
                    closed += 1
                    continue
                self._next = (i + 1) % n
                return (i, value)
            if closed == n:
                raise StopAsyncIteration
            await _wait_any([r._buf for r in readers])


async def _wait_any(buffers: "list[Buffer[Any]]") -> None:
    w = buffers[0]._new_waiter()
    for b in buffers:
        b._waiters.append(w)
    try:
        await w.wait()
    finally:
        for b in buffers:
            try:
                b._waiters.remove(w)
            except ValueError:
                pass


def _close_matches(key: str, keys: "list[str]") -> "list[str]":
    try:
        import difflib
    except ImportError:  # pragma: no cover - MicroPython
        return [k for k in keys if key in k or k in key][:3]
    return difflib.get_close_matches(key, keys, n=3, cutoff=0.6)


def _task_connector_statistics(scheme: str, task: "SupervisedTask | None") -> ConnectorStatistics:
    """The snapshot of a connector without connection counters: its task's state and failures."""
    c = ConnectorCounters(scheme + "://")
    if task is not None:
        c.state = "running" if task.state in ("starting", "running") else task.state
        c.errors = task.failures
        c.last_error = task.last_error
        c.last_error_at = task.last_error_at
    return ConnectorStatistics(c)


class AimDb:
    """A built database: records with buffers, their stages and links.

    Created by ``AimDbBuilder.build()``. Start and stop it with ``async with db:`` or
    ``await db.run()``; ``db.stop()`` asks it to stop. ``producer``/``consumer`` resolve a
    record once and fail fast.
    """

    def __init__(
        self,
        configs: "list[RecordConfig]",
        connectors: "dict[str, Connector]",
        *,
        type_checks: bool,
        shutdown_timeout: float,
        runtime: "Any",
        restart_backoff: "tuple[float, float]",
        order: "list[str]",
        persistence: "PersistenceBackend | None" = None,
    ) -> None:
        self._records: dict[str, _Record] = {}
        for cfg in configs:
            self._records[cfg.key] = _Record(cfg)
        self._order = order  # dependency order of record keys (inputs first)
        self._connectors = connectors
        self._type_checks = type_checks
        self._shutdown_timeout = shutdown_timeout
        self._runtime_choice = runtime
        self._restart_backoff = restart_backoff
        self._rt: Any = None
        self._group: Any = None
        self._state = "built"
        self._stop_requested = False
        self._stop_waiters: list[Any] = []
        self._failure: StageFailed | None = None
        self._connector_tasks: list[SupervisedTask] = []
        self._tasks: list[SupervisedTask] = []
        for rec in self._records.values():
            for spec in rec.cfg.sources + rec.cfg.derivations + rec.cfg.taps:
                rec.stages.append(_StageRun(self, rec, spec))
        self._persister = self._make_persister(persistence)

    # ------------------------------------------------------------ lookup

    def _record(self, key: str) -> _Record:
        rec = self._records.get(key)
        if rec is None:
            raise RecordNotFound(key, _close_matches(key, list(self._records)))
        return rec

    def _typed(self, tp: "Any", key: str) -> _Record:
        rec = self._record(key)
        if tp is not rec.type:
            raise TypeMismatch(key, rec.type, tp)
        return rec

    def producer(self, tp: "type[T]", key: str) -> "Producer[T]":
        """Return a producer for record ``key`` of type ``tp``.

        Raises:
            RecordNotFound: no such key (the error lists close matches).
            TypeMismatch: the record holds another type.
            InvalidConfiguration: the record has no buffer.
        """
        rec = self._typed(tp, key)
        return Producer(key, rec.type, self._buffer_of(rec), self._type_checks)

    def consumer(self, tp: "type[T]", key: str) -> "Consumer[T]":
        """Return a consumer for record ``key`` of type ``tp``.

        Raises:
            RecordNotFound: no such key (the error lists close matches).
            TypeMismatch: the record holds another type.
            InvalidConfiguration: the record has no buffer.
        """
        rec = self._typed(tp, key)
        return Consumer(key, rec.type, self._buffer_of(rec))

    def _buffer_of(self, rec: _Record) -> "Buffer[Any]":
        if rec.buffer is None:
            raise InvalidConfiguration(
                [ConfigProblem(rec.key, "missing_buffer", "record has no buffer to read or write")]
            )
        return rec.buffer

    def record(self, key: str) -> RecordInfo:
        """Return the permanent metadata of ``key``; raises ``RecordNotFound``."""
        return self._record(key).info

    def records(self) -> "list[RecordInfo]":
        """Return the metadata of every record, in declaration order."""
        return [r.info for r in self._records.values()]

    def buffer(self, key: str) -> "Buffer[Any] | None":
        """Return the buffer of ``key`` (``None`` when it has none); raises ``RecordNotFound``."""
        return self._record(key).buffer

    def record_statistics(self, key: str) -> "dict[str, Any]":
        """Return buffer, stage, link and persistence statistics of ``key`` as a dict.

        ``"persistence"`` is ``None`` unless the record is persisted (see
        ``aimdb.persistence.PersistStatistics``).
        """
        rec = self._record(key)
        return {
            "buffer": rec.buffer.statistics().as_dict() if rec.buffer is not None else None,
            "stages": [StageStatistics(s).as_dict() for s in rec.stages],
            "links": [r.statistics().as_dict() for r in rec.outbound + rec.inbound],
            "persistence": self._persist_statistics(key),
        }

    def statistics(self) -> "dict[str, dict[str, Any]]":
        """Return :meth:`record_statistics` for every record, keyed by record key."""
        return {k: self.record_statistics(k) for k in self._records}

    def stage_statistics(self, key: str) -> "list[StageStatistics]":
        """Return the statistics of every stage of ``key``."""
        return [StageStatistics(s) for s in self._record(key).stages]

    def reset_statistics(self) -> None:
        """Zero buffer, stage and link counters of every record."""
        for rec in self._records.values():
            if rec.buffer is not None:
                rec.buffer.reset_statistics()
            for s in rec.stages:
                s.reset()
            for r in rec.outbound + rec.inbound:
                r.stats.reset()

    def graph(self) -> "dict[str, Any]":
        """Return the dependency graph: ``nodes``, ``edges`` and topological ``order``.

        Edges go from an input record to the record derived from it (kind ``transform``
        or ``join``) and between records and link URLs (kind ``link_out``/``link_in``).
        """
        nodes = [r.info.as_dict() for r in self._records.values()]
        edges: list[dict[str, str]] = []
        for rec in self._records.values():
            for d in rec.cfg.derivations:
                for _, k in d.inputs:
                    edges.append({"from": k, "to": rec.key, "kind": d.kind})
            for ln in rec.cfg.links:
                if ln.direction == "out":
                    edges.append({"from": rec.key, "to": ln.url, "kind": "link_out"})
                else:
                    edges.append({"from": ln.url, "to": rec.key, "kind": "link_in"})
        return {"nodes": nodes, "edges": edges, "order": list(self._order)}

    @property
    def state(self) -> str:
        """``"built"``, ``"running"``, ``"stopping"`` or ``"stopped"``."""
        return self._state

    @property
    def runtime(self) -> "Any":
        """The runtime backend the database runs on (``None`` before start)."""
        return self._rt

    def connectors(self) -> "list[Connector]":
        """Return the registered connectors, in registration order."""
        return list(self._connectors.values())

    def connector_statistics(self) -> "dict[str, ConnectorStatistics]":
        """Return a snapshot of every registered connector, keyed by its URL scheme.

        In registration order. A connector whose ``statistics()`` returns a
        :class:`~aimdb.connectors.ConnectorStatistics` (the MQTT, Kafka, NATS and
        ``aimdb://`` connectors; a subclass such as ``AimdbLinkStatistics`` keeps its extra
        fields) gives that snapshot. Any other connector (one without a connection of its
        own, e.g. ``MemoryConnector``, ``SerialLink``, ``RemoteAccess``) is shown with
        ``url`` ``"SCHEME://"``, the connection counters at 0 and the state of the task
        the database runs it in: ``"idle"`` before it started (or when no link uses it),
        then ``"running"``, ``"restarting"``, ``"done"``, ``"failed"`` or ``"stopped"``;
        ``errors``, ``last_error`` and ``last_error_at`` are that task's failures. URLs
        never carry credentials (connectors keep the URL without user and password).
        """
        tasks = {t.name: t for t in self._connector_tasks}
        out: dict[str, ConnectorStatistics] = {}
        for scheme, conn in self._connectors.items():
            fn = getattr(conn, "statistics", None)
            snap = fn() if callable(fn) else None
            if not isinstance(snap, ConnectorStatistics):
                snap = _task_connector_statistics(scheme, tasks.get("aimdb.connector[" + scheme + "]"))
            out[scheme] = snap
        return out

    def link_statistics(self) -> "list[LinkStatistics]":
        """Return a snapshot (:class:`LinkStatistics`) of every link of every record."""
        out: list[LinkStatistics] = []
        for rec in self._records.values():
            out.extend(r.statistics() for r in rec.outbound + rec.inbound)
        return out

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "AimDb":
        await self.start()
        return self

    async def __aexit__(self, exc_type: "Any", exc: "Any", tb: "Any") -> None:
        await self.aclose()
        if exc is None and self._failure is not None:
            raise self._failure

    async def run(self) -> None:
        """Start, run until ``stop()`` is called (or the task is cancelled), then shut down.

        On asyncio's main thread the first Ctrl-C (SIGINT) calls :meth:`stop`, so the
        program's ``run()`` returns normally after a clean shutdown; a second Ctrl-C
        interrupts as usual.

        Raises:
            StageFailed: a stage with ``on_error="stop"`` raised (after clean shutdown).
        """
        await self.start()
        undo = self._rt.on_interrupt(self.stop)  # Ctrl-C stops the database cleanly
        try:
            await self.wait_stop_requested()
        finally:
            undo()
            await self.aclose()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """Ask the database to stop; ``run()`` returns and ``async with`` bodies can see it.

        Safe to call from any stage or callback on the database's loop; idempotent.
        """
        self._stop_requested = True
        ws = self._stop_waiters
        self._stop_waiters = []
        for w in ws:
            w.wake()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called (or a stage failed under ``on_error="stop"``)."""
        return self._stop_requested

    async def wait_stop_requested(self) -> None:
        """Wait until :meth:`stop` is called."""
        while not self._stop_requested:
            w = self._rt.new_waiter()
            self._stop_waiters.append(w)
            try:
                await w.wait()
            except BaseException:
                if w in self._stop_waiters:
                    self._stop_waiters.remove(w)
                raise

    def _resolve_runtime(self) -> "RuntimeBackend":
        choice = self._runtime_choice
        from .._backends import current_backend, get_backend

        if choice is None:
            return current_backend()
        if isinstance(choice, str):
            return get_backend(choice)
        backend: RuntimeBackend = choice
        return backend

    async def start(self) -> None:
        """Start the database: subscribe every reader, then start stages in dependency order.

        Taps, transforms, joins and outbound links are subscribed before any source task
        exists, so no early value is missed whatever order the runtime starts tasks in.
        When starting fails part-way (a connector that cannot run on this runtime, a
        connector's ``bind`` raising ...), whatever was started is stopped again before
        the error propagates, and the database is ``"stopped"``.

        Raises:
            RuntimeError: the database was already started.
            InvalidConfiguration: a connector does not support the runtime.
        """
        if self._state != "built":
            raise RuntimeError("database already started (state " + self._state + ")")
        self._state = "starting"
        try:
            rt = self._rt = self._resolve_runtime()
            problems = runtime_problems(self._connectors.values(), rt.name)
            if problems:
                raise InvalidConfiguration(problems)
            for rec in self._records.values():
                if rec.buffer is not None:
                    rec.buffer._rt = rt
            # 0. the persistence store opened, stored values restored, persisting readers
            await self._open_persistence(rt)
            # 1. every reader first
            for key in self._order:
                rec = self._records[key]
                for s in rec.stages:
                    if s.stage_kind == "tap":
                        s.readers = [self._subscribe_owned(rec)]
                    elif s.stage_kind in ("transform", "join"):
                        s.readers = [self._subscribe_owned(self._records[k]) for k in s.input_keys]
                self._make_routes(rec)
            group = rt.open_task_group()
            await group.start()
        except BaseException:
            self._state = "stopped"
            self.stop()
            await self._close_store(self._shutdown_timeout)
            raise
        self._group = group
        self._state = "running"
        try:
            # 2. persistence, consumers and derivations in dependency order, then connectors, then sources
            self._start_persister()
            for key in self._order:
                for s in self._records[key].stages:
                    if s.stage_kind != "source":
                        self._spawn(s)
            for scheme, conn in self._connectors.items():
                routes = self._routes_for(scheme, conn)
                if routes.outbound or routes.inbound or getattr(conn, "always_run", False):
                    conn.bind(routes)  # synchronously, so the connector is usable once start() returns
                    self._connector_tasks.append(
                        self._spawn(
                            SupervisedTask(
                                self,
                                "aimdb.connector[" + scheme + "]",
                                conn.run,
                                (routes,),
                                kind="connector",
                                policy=conn.on_error,
                                on_failure=routes._connector_failed,
                            )
                        )
                    )
            for key in self._order:
                for s in self._records[key].stages:
                    if s.stage_kind == "source":
                        self._spawn(s)
        except BaseException:
            await self.aclose()
            raise

    def _spawn(self, task: SupervisedTask) -> SupervisedTask:
        task.handle = self._group.spawn(task.name, task.run)
        self._tasks.append(task)
        return task

    def _subscribe_owned(self, rec: _Record) -> "Reader[Any]":
        """A reader for a stage or link of this database; its lag counts in ``dropped`` at once."""
        buf = self._buffer_of(rec)
        reader = buf.subscribe()
        if isinstance(buf, RingBuffer) and isinstance(reader, RingReader):
            buf._track(reader)
        return reader

    def _make_routes(self, rec: _Record) -> None:
        from ._codecs import decoder_for, encoder_for

        for spec in rec.cfg.links:
            if spec.scheme not in self._connectors:
                continue
            if spec.direction == "out":
                enc = spec.serializer or encoder_for(spec.codec, rec.type, rec.key)
                rec.outbound.append(OutboundRoute(rec.key, rec.type, spec, self._subscribe_owned(rec), enc))
            else:
                dec = spec.deserializer or decoder_for(spec.codec, rec.type, rec.key)
                rec.inbound.append(
                    InboundRoute(rec.key, rec.type, spec, self._buffer_of(rec), dec, self._type_checks)
                )

    def _routes_for(self, scheme: str, conn: "Connector") -> ConnectorRoutes:
        out: list[OutboundRoute] = []
        inn: list[InboundRoute] = []
        for rec in self._records.values():
            out.extend(r for r in rec.outbound if r.spec.scheme == scheme)
            inn.extend(r for r in rec.inbound if r.spec.scheme == scheme)
        return ConnectorRoutes(out, inn, self._rt, self, conn)

    def add_service(
        self, name: str, fn: "Callable[..., Awaitable[Any]]", *args: "Any", on_error: str = "restart"
    ) -> SupervisedTask:
        """Run ``await fn(*args)`` as a supervised task of this running database.

        Used for work that belongs to the database but to no record, e.g. a remote-access
        server. If ``fn`` raises, the exception is logged once with its traceback,
        counted in the task's :meth:`~SupervisedTask.statistics` and handled by
        ``on_error`` (``"restart"`` with backoff by default, ``"log"`` or ``"stop"``).
        The task is cancelled at shutdown after stages and connectors.

        Raises:
            RuntimeError: the database is not running.
            ValueError: unknown ``on_error`` policy.
        """
        if self._group is None or self._state != "running":
            raise RuntimeError("database is not running")
        return self._spawn(SupervisedTask(self, name, fn, args, kind="service", policy=on_error))

    def tasks(self) -> "list[TaskStatistics]":
        """Return a snapshot of every task the database runs or ran, in the order they started.

        Stages, connectors, link pumps and services: see :class:`TaskStatistics`.
        """
        return [t.statistics() for t in self._tasks]

    def _is_cancellation(self, exc: BaseException) -> bool:
        # asyncio's and trio's cancellations are BaseExceptions; MicroPython's is too, but
        # check the backend's class as well so a port where it is an Exception still works.
        return not isinstance(exc, Exception) or isinstance(exc, self._rt.cancelled_exc)

    def _fail(self, failure: StageFailed, cause: BaseException) -> None:
        """Keep the first failure of an ``on_error="stop"`` task and stop the database."""
        if self._failure is None:
            failure.__cause__ = cause
            self._failure = failure
        self.stop()

    @property
    def failure(self) -> "StageFailed | None":
        """The failure that stopped the database (a task with ``on_error="stop"`` raised), or ``None``."""
        return self._failure

    async def _stage_body(self, s: _StageRun, ctx: Context) -> None:
        rec = s.rec
        spec = s.spec
        if s.stage_kind == "source":
            await spec.fn(ctx, Producer(rec.key, rec.type, self._buffer_of(rec), self._type_checks))
        elif s.stage_kind == "tap":
            reader = s.readers[0]
            await spec.fn(ctx, Consumer(rec.key, rec.type, reader._buf, reader))
        elif s.stage_kind == "transform":
            await self._transform_loop(s)
        elif spec.state == "stream":
            producer: Producer[Any] = Producer(rec.key, rec.type, self._buffer_of(rec), self._type_checks)
            await spec.fn(ctx, JoinInputs(s.readers, s.input_keys), producer)
        else:
            await self._join_loop(s)

    async def _transform_loop(self, s: _StageRun) -> None:
        fn = s.spec.fn
        state = s.spec.state
        stateful = state is not None
        out = self._buffer_of(s.rec)
        tp = s.rec.type
        check = self._type_checks
        now = self._rt.monotonic_ns
        async for value in s.readers[0]:
            t0 = now()
            result = fn(state, value) if stateful else fn(value)
            s.call_ns += now() - t0
            s.calls += 1
            if result is not None:
                if check and not isinstance(result, tp):
                    raise TypeMismatch(s.key, tp, type(result))
                out.produce(result)

    async def _join_loop(self, s: _StageRun) -> None:
        fn = s.spec.fn
        n = len(s.readers)
        latest: list[Any] = [None] * n
        have = [False] * n
        missing = n
        out = self._buffer_of(s.rec)
        tp = s.rec.type
        check = self._type_checks
        now = self._rt.monotonic_ns
        async for i, value in JoinInputs(s.readers, s.input_keys):
            if not have[i]:
                have[i] = True
                missing -= 1
            latest[i] = value
            if missing:
                continue
            t0 = now()
            result = fn(*latest)
            s.call_ns += now() - t0
            s.calls += 1
            if result is not None:
                if check and not isinstance(result, tp):
                    raise TypeMismatch(s.key, tp, type(result))
                out.produce(result)

    async def aclose(self) -> None:
        """Shut down cleanly within ``shutdown_timeout``.

        Cancels sources, closes buffers in dependency order letting consumers drain,
        flushes connectors, then cancels whatever is left.

        Idempotent; after it returns no task the database started is alive.
        """
        if self._state in ("built", "stopped", "stopping"):
            if self._state == "built":
                self._state = "stopped"
            return
        self._state = "stopping"
        self._stop_requested = True
        rt = self._rt
        deadline: int = rt.monotonic_ns() + int(self._shutdown_timeout * 1_000_000_000)

        def remaining() -> float:
            return max(0.0, (deadline - int(rt.monotonic_ns())) / 1_000_000_000)

        try:
            sources = [s for rec in self._records.values() for s in rec.stages if s.stage_kind == "source"]
            for s in sources:
                if s.handle is not None:
                    s.handle.cancel()
            for s in sources:
                if s.handle is not None:
                    await rt.wait_for(s.handle.join, remaining())
            # A record's taps can finish once its buffer closed; a transform or join once
            # the last of its inputs (in dependency order) closed.
            position = {key: i for i, key in enumerate(self._order)}
            drains: dict[str, list[_StageRun]] = {}
            for rec in self._records.values():
                for s in rec.stages:
                    if s.handle is None or s.stage_kind == "source":
                        continue
                    last = rec.key if s.stage_kind == "tap" else max(s.input_keys, key=position.__getitem__)
                    drains.setdefault(last, []).append(s)
            for key in self._order:
                rec = self._records[key]
                if rec.buffer is not None:
                    rec.buffer.close()
                for s in drains.get(key, ()):
                    await rt.wait_for(s.handle.join, remaining())
            for conn in self._connectors.values():
                shutdown = getattr(conn, "shutdown", None)
                if shutdown is not None and self._connector_tasks:
                    budget = remaining()
                    try:
                        await rt.wait_for(partial(shutdown, budget), budget)
                    except Exception as exc:
                        _log.warning("connector %r shutdown failed: %r", getattr(conn, "scheme", conn), exc)
            await self._stop_persister(remaining())
        finally:
            await self._group.aclose()
            await self._close_store(remaining())
            self._state = "stopped"
            self.stop()

    # ------------------------------------------------------------ persistence

    def _make_persister(self, backend: "PersistenceBackend | None") -> "Persister | None":
        if backend is None:
            return None
        from ._codecs import decoder_for, encoder_for

        feeds: dict[str, Feed] = {}
        for rec in self._records.values():
            spec = rec.cfg.persist
            if spec is not None:
                enc = encoder_for(spec.codec, rec.type, rec.key)
                feeds[rec.key] = Feed(rec.key, spec, enc, decoder_for(spec.codec, rec.type, rec.key))
        return Persister(backend, feeds)

    async def _open_persistence(self, rt: "Any") -> None:
        """Open the store, restore stored values, subscribe the persisting feeds (at start)."""
        p = self._persister
        if p is None:
            return
        p.rt = rt
        await p.backend.start(rt)
        p.started = True
        restore = [k for k, f in p.feeds.items() if f.restore_wanted(self._buffer_of(self._records[k]).kind)]
        if restore:
            latest = await p.backend.latest(restore)
            for key in restore:
                row = latest.get(key)
                if row is None:
                    continue
                feed = p.feeds[key]
                values = feed.decode_rows([row])
                if values:
                    self._buffer_of(self._records[key]).produce(values[0].value)
                    feed.restored = 1
        for key, feed in p.feeds.items():
            feed.attach(self._buffer_of(self._records[key]), p)

    def _start_persister(self) -> None:
        p = self._persister
        if p is not None and p.feeds:
            task = SupervisedTask(self, "aimdb.persist", p.run, (), kind="service", policy="restart")
            p.task = self._spawn(task)

    async def _stop_persister(self, timeout: float) -> None:
        """Let the persisting task hand the last values to the store (buffers are closed)."""
        p = self._persister
        if p is None:
            return
        p.finish()
        t = p.task
        if t is not None and t.handle is not None and not await self._rt.wait_for(t.handle.join, timeout):
            _log.warning("persistence: the last values were not handed to the store in time")

    async def _close_store(self, timeout: float) -> None:
        p = self._persister
        if p is not None and p.started:
            p.started = False
            await p.backend.close(timeout)

    def _persist_statistics(self, key: str) -> "dict[str, Any] | None":
        p = self._persister
        feed = p.feeds.get(key) if p is not None else None
        return feed.statistics().as_dict() if feed is not None else None

    def persistence_statistics(self) -> "Statistics | None":
        """Return the persistence store's statistics, or ``None`` without ``with_persistence``."""
        p = self._persister
        return p.backend.statistics() if p is not None else None

    async def history(
        self,
        key: str,
        *,
        since: "Any" = None,
        until: "Any" = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> "list[Stored[Any]]":
        """Return stored values of persisted record ``key``, decoded into its type.

        Rows are ordered by time, oldest first (newest first with ``newest_first=True``),
        and at most ``limit`` are returned, taken from the start of that order. Values
        still on their way to the store (at most one commit interval) are not included.
        Rows that no longer decode into the record's type are skipped, counted in
        ``record_statistics(key)["persistence"]["decode_skipped"]`` and logged once.

        Args:
            key: record key.
            since: earliest time included: seconds since the Unix epoch (int/float), a
                ``datetime``, or a ``timedelta`` meaning that long ago. ``None``: no bound.
            until: time excluded from then on, same forms; ``None``: no bound.
            limit: most rows returned (at least 1).
            newest_first: order newest first.

        Raises:
            RecordNotFound: no such key.
            NotPersisted: the record has no ``persist()``.
            ValueError: ``limit`` is not a positive int, or ``since``/``until`` has
                another type.
            RuntimeError: the database is not running.
            PersistenceError: the store failed to answer.
        """
        from .._compat import wall_ns

        now = wall_ns() or 0
        rows, _ = await self.history_ns(
            key,
            since_ns=_time_ns(since, now, "since"),
            until_ns=_time_ns(until, now, "until"),
            limit=limit,
            newest_first=newest_first,
        )
        return rows

    async def history_ns(
        self,
        key: str,
        *,
        since_ns: "int | None" = None,
        until_ns: "int | None" = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> "tuple[list[Stored[Any]], bool]":
        """Stored values of persisted record ``key`` between two exact nanosecond times.

        The exact form of :meth:`history` (which is built on it), for callers that keep
        times as integer nanoseconds since the Unix epoch (the remote ``record.history``
        method). Returns ``(rows, more)``: ``rows`` as :meth:`history` returns them (each
        ``Stored.ts_ns`` exact), and ``more`` True when more than ``limit`` rows matched,
        so the limit cut the result. The query runs off the event loop.

        Args:
            key: record key.
            since_ns: earliest time included (ns since the epoch); ``None``: no bound.
            until_ns: first time excluded (ns since the epoch); ``None``: no bound.
            limit: most rows returned (at least 1).
            newest_first: order newest first (the rows kept are then the newest ones).

        Raises:
            RecordNotFound: no such key.
            NotPersisted: the record has no ``persist()``.
            ValueError: ``limit`` is not a positive int, or a bound is not an int.
            RuntimeError: the database is not running.
            PersistenceError: the store failed to answer.
        """
        from .._errors import NotPersisted

        self._record(key)
        p = self._persister
        feed = p.feeds.get(key) if p is not None else None
        if p is None or feed is None:
            raise NotPersisted(key)
        if type(limit) is not int or limit < 1:
            raise ValueError("limit must be an int of at least 1, got " + repr(limit))
        for name, bound in (("since_ns", since_ns), ("until_ns", until_ns)):
            if bound is not None and type(bound) is not int:
                raise ValueError(name + " must be an int (ns since the epoch) or None, got " + repr(bound))
        if self._state != "running" or not p.started:
            raise RuntimeError("database is not running")
        rows = await p.backend.query(key, since_ns, until_ns, limit + 1, bool(newest_first))
        more = len(rows) > limit
        return feed.decode_rows(rows[:limit]), more

    def __repr__(self) -> str:
        return "<AimDb records=" + str(len(self._records)) + " state=" + self._state + ">"


def _time_ns(t: "Any", now_ns: int, name: str) -> "int | None":
    """``history()``'s time bound as wall-clock ns: epoch seconds, datetime, or timedelta ago."""
    if t is None:
        return None
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return int(t * 1_000_000_000)
    total = getattr(t, "total_seconds", None)  # timedelta: that long ago
    if total is not None:
        return now_ns - int(total() * 1_000_000_000)
    stamp = getattr(t, "timestamp", None)  # datetime (naive ones are local time)
    if stamp is not None:
        return int(stamp() * 1_000_000_000)
    raise ValueError(name + " must be epoch seconds, a datetime or a timedelta, got " + repr(t))
