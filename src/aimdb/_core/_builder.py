"""``AimDbBuilder``: declare records, connectors and options, then ``build()`` (MicroPython-safe)."""

from .._compat import TYPE_CHECKING
from .._errors import ConfigProblem, InvalidConfiguration
from ._codecs import codec_problem
from ._connector import runtime_problems
from ._database import AimDb
from ._links import LinkUrl
from ._record import RecordConfig, RecordRegistrar

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from ..abc import Connector, PersistenceBackend

    T = TypeVar("T")

#: what ``with_connector`` checks a connector has (the ``aimdb.abc.Connector`` contract)
_CONNECTOR_CONTRACT = (
    "scheme",
    "runtimes",
    "on_error",
    "always_run",
    "validate_link",
    "config_problems",
    "bind",
    "run",
    "shutdown",
)


#: what ``with_persistence`` checks a store has (the ``aimdb.abc.PersistenceBackend`` contract)
_PERSISTENCE_CONTRACT = (
    "max_pending",
    "problems",
    "start",
    "store",
    "pending",
    "query",
    "latest",
    "cleanup",
    "close",
    "statistics",
)


def key_problem(key: "Any") -> "str | None":
    if not isinstance(key, str) or not key:
        return "record key must be a non-empty string, got " + repr(key)
    for seg in key.split("."):
        if not seg:
            return "record key has an empty segment: " + repr(key)
        for ch in seg:
            if ch in " \t\n*#+/":
                return "record key may not contain " + repr(ch) + ": " + repr(key)
    return None


class AimDbBuilder:
    """Collects record declarations and connectors; ``build()`` checks them all at once.

    Args:
        type_checks: check ``isinstance`` on every ``produce`` (default True; turn off for
            hot paths once the program is trusted).
        shutdown_timeout: upper bound in seconds for a clean stop (default 2.0).
        runtime: ``None`` (detect the running loop), ``"asyncio"``, ``"trio"``,
            ``"micropython"`` or a backend object.
        restart_backoff: ``(first delay, maximum delay)`` in seconds for
            ``on_error="restart"``; each delay is doubled and jittered (50-100 %).
    """

    def __init__(
        self,
        *,
        type_checks: bool = True,
        shutdown_timeout: float = 2.0,
        runtime: "Any" = None,
        restart_backoff: "tuple[float, float]" = (0.05, 5.0),
    ) -> None:
        self._configs: dict[str, RecordConfig] = {}
        self._conflicts: list[ConfigProblem] = []
        self._connectors: dict[str, Connector] = {}
        self._connector_problems: list[ConfigProblem] = []
        self._type_checks = type_checks
        self._shutdown_timeout = shutdown_timeout
        self._runtime = runtime
        self._restart_backoff = restart_backoff
        self._persistence: PersistenceBackend | None = None

    def configure(
        self,
        tp: "type[T]",
        key: str,
        fn: "Callable[[RecordRegistrar[T]], Any] | None" = None,
    ) -> "RecordRegistrar[T]":
        """Declare record ``key`` holding values of ``tp`` and configure it with ``fn(reg)``.

        Calling again with the same key and type adds to the same record; another type
        for the same key is a configuration error (reported by ``build()``). Returns the
        registrar, so ``fn`` may also be omitted and calls chained on the result.
        """
        cfg = self._configs.get(key) if isinstance(key, str) else None
        if cfg is None:
            cfg = RecordConfig(key, tp)
            if isinstance(key, str):
                self._configs[key] = cfg
            else:
                self._conflicts.append(ConfigProblem(repr(key), "bad_key", str(key_problem(key))))
        elif cfg.type is not tp:
            self._conflicts.append(
                ConfigProblem(
                    key,
                    "type_conflict",
                    "configured with type "
                    + getattr(cfg.type, "__name__", "?")
                    + " and again with "
                    + getattr(tp, "__name__", repr(tp)),
                )
            )
            cfg = RecordConfig(key, tp)  # collect the rest of the declaration, then drop it
        reg: RecordRegistrar[T] = RecordRegistrar(cfg)
        if fn is not None:
            fn(reg)
        return reg

    def with_connector(self, connector: "Connector") -> "AimDbBuilder":
        """Register a connector; links whose URL scheme equals ``connector.scheme`` use it.

        ``connector`` must offer the connector contract (``aimdb.abc.Connector``; the
        base class ``aimdb.links.Connector`` does). What is missing, a scheme used twice or a
        connector that cannot run on the chosen runtime is reported by ``build()``.
        """
        scheme = getattr(connector, "scheme", None)
        missing = [a for a in _CONNECTOR_CONTRACT if not hasattr(connector, a)]
        if missing:
            self._connector_problems.append(
                ConfigProblem(
                    "",
                    "bad_connector",
                    "connector "
                    + repr(connector)
                    + " lacks "
                    + ", ".join(missing)
                    + " (derive it from aimdb.links.Connector)",
                )
            )
        elif not isinstance(scheme, str) or not scheme:
            self._connector_problems.append(
                ConfigProblem("", "bad_connector", "connector has no scheme: " + repr(connector))
            )
        elif scheme in self._connectors:
            self._connector_problems.append(
                ConfigProblem("", "duplicate_connector", "two connectors for scheme " + repr(scheme))
            )
        else:
            self._connectors[scheme] = connector
        return self

    def with_persistence(self, backend: "PersistenceBackend") -> "AimDbBuilder":
        """Store the values of records declared with ``reg.persist()`` in ``backend``.

        ``backend`` meets ``aimdb.abc.PersistenceBackend``, e.g.
        ``aimdb.persistence.SqliteBackend("hub.db", retention="7d")``. One backend per
        database; ``build()`` reports a second one and the backend's own problems (an
        unwritable or corrupt file ...), and an object that lacks part of the contract.
        The backend is opened at start.
        """
        missing = [a for a in _PERSISTENCE_CONTRACT if not hasattr(backend, a)]
        if missing:
            self._connector_problems.append(
                ConfigProblem(
                    "",
                    "bad_persistence",
                    "persistence backend " + repr(backend) + " lacks " + ", ".join(missing),
                )
            )
            return self
        if self._persistence is not None and self._persistence is not backend:
            self._connector_problems.append(
                ConfigProblem("", "bad_persistence", "with_persistence called twice with different backends")
            )
        self._persistence = backend
        return self

    def _persistence_problems(self) -> "list[ConfigProblem]":
        backend = self._persistence
        out = [ConfigProblem("", "bad_persistence", msg) for msg in backend.problems()] if backend else []
        for key, cfg in self._configs.items():
            spec = cfg.persist
            if spec is None:
                continue
            if backend is None:
                msg = "persist() needs builder.with_persistence(...)"
                out.append(ConfigProblem(key, "bad_persistence", msg))
            cp = codec_problem(spec.codec, cfg.type)
            if cp:
                out.append(ConfigProblem(key, "missing_codec", "persist(): " + cp))
        return out

    def problems(self) -> "list[ConfigProblem]":
        """Return every configuration problem (what ``build()`` would raise), in order."""
        out: list[ConfigProblem] = list(self._conflicts) + list(self._connector_problems)
        out.extend(self._persistence_problems())
        for conn in self._connectors.values():
            for msg in conn.config_problems():
                out.append(ConfigProblem("", "bad_connector", conn.scheme + " connector: " + msg))
        runtime = self._runtime_name()
        if runtime is not None:
            out.extend(runtime_problems(self._connectors.values(), runtime))
        cfgs = self._configs
        input_keys = {k for c in cfgs.values() for d in c.derivations for _, k in d.inputs}
        for key, cfg in cfgs.items():
            out.extend(self._record_problems(key, cfg, input_keys))
        cycle = self._cycle()
        if cycle:
            out.append(ConfigProblem(cycle[0], "cycle", "dependency cycle: " + " -> ".join(cycle)))
        return out

    def _record_problems(self, key: str, cfg: RecordConfig, input_keys: "set[str]") -> "list[ConfigProblem]":
        out: list[ConfigProblem] = []

        def add(kind: str, msg: str, url: "str | None" = None) -> None:
            out.append(ConfigProblem(key, kind, msg, url))

        kp = key_problem(key)
        if kp:
            add("bad_key", kp)
        if not isinstance(cfg.type, type):
            add("bad_type", "record type must be a class, got " + repr(cfg.type))
        for kind, msg, url in cfg.problems:
            add(kind, msg, url)
        bc = cfg.buffer_cfg
        if bc is not None:
            bp = bc._problem()
            if bp:
                add("bad_buffer", bp)
        writers = [s.kind for s in cfg.sources] + [d.kind for d in cfg.derivations]
        has_in = any(ln.direction == "in" for ln in cfg.links)
        if len(writers) > 1 or (writers and has_in):
            desc = writers + (["link_from"] if has_in else [])
            add(
                "duplicate_writer",
                "a record has one writer (a source, a transform or a join) or link_from links, got: "
                + ", ".join(desc),
            )
        needs_buffer = []
        if cfg.taps:
            needs_buffer.append("tap")
        if cfg.links:
            needs_buffer.append("link")
        if key in input_keys:
            needs_buffer.append("transform/join input")
        if cfg.sources or cfg.derivations:
            needs_buffer.append("writer")
        if cfg.persist is not None:
            needs_buffer.append("persist")
        if bc is None and needs_buffer:
            add("missing_buffer", "record needs a buffer (it has " + ", ".join(needs_buffer) + ")")
        for d in cfg.derivations:
            for in_tp, in_key in d.inputs:
                other = self._configs.get(in_key)
                if other is None:
                    add("missing_input", d.kind + " input " + repr(in_key) + " is not a declared record")
                elif other.type is not in_tp:
                    add(
                        "type_conflict",
                        d.kind
                        + " input "
                        + repr(in_key)
                        + " holds "
                        + getattr(other.type, "__name__", "?")
                        + ", declared as "
                        + getattr(in_tp, "__name__", repr(in_tp)),
                    )
            if d.kind == "join" and not d.inputs:
                add("bad_argument", "join needs at least one input")
        for ln in cfg.links:
            try:
                LinkUrl(ln.url)
            except ValueError as exc:
                add("bad_url", str(exc), str(ln.url))
                continue
            conn = self._connectors.get(ln.scheme)
            if conn is None:
                add(
                    "unknown_scheme",
                    "no connector registered for scheme " + repr(ln.scheme),
                    ln.url,
                )
                continue
            if not ln.address:
                add("bad_url", "link URL has no address", ln.url)
            custom = ln.serializer if ln.direction == "out" else ln.deserializer
            if custom is None:
                cp = codec_problem(ln.codec, cfg.type)
                if cp:
                    add("missing_codec", cp, ln.url)
            validate = getattr(conn, "validate_link", None)
            if validate is not None:
                for msg in validate(ln):
                    add("bad_link", msg, ln.url)
        return out

    def _runtime_name(self) -> "str | None":
        """The name of the runtime the database will run on, when it is known now."""
        from .._backends import get_backend, running_backend

        choice = self._runtime
        if choice is None:
            be = running_backend()
            return be.name if be is not None else None
        if isinstance(choice, str):
            try:
                return get_backend(choice).name
            except LookupError:
                return choice
        name = getattr(choice, "name", None)
        return name if isinstance(name, str) else None

    def _deps(self) -> "dict[str, list[str]]":
        return {
            key: [k for d in cfg.derivations for _, k in d.inputs if k in self._configs]
            for key, cfg in self._configs.items()
        }

    def _cycle(self) -> "list[str] | None":
        deps = self._deps()
        color: dict[str, int] = {}
        stack: list[str] = []

        def visit(k: str) -> "list[str] | None":
            color[k] = 1
            stack.append(k)
            for d in deps.get(k, []):
                c = color.get(d, 0)
                if c == 1:
                    return stack[stack.index(d) :] + [d]  # noqa: RUF005 - MicroPython lacks [*x, y]
                if c == 0:
                    found = visit(d)
                    if found:
                        return found
            stack.pop()
            color[k] = 2
            return None

        for k in deps:
            if color.get(k, 0) == 0:
                found = visit(k)
                if found:
                    return found
        return None

    def _order(self) -> "list[str]":
        deps = self._deps()
        order: list[str] = []
        seen: set[str] = set()

        def visit(k: str) -> None:
            if k in seen:
                return
            seen.add(k)
            for d in deps.get(k, []):
                visit(d)
            order.append(k)

        for k in self._configs:
            visit(k)
        return order

    def build(self) -> AimDb:
        """Check every declaration and return the database (not yet started).

        Raises:
            InvalidConfiguration: listing every problem found (duplicate writers, unknown
                connector scheme, bad URL, missing codec, tap or link without buffer,
                missing transform input, dependency cycle, type conflict, bad capacity ...).
        """
        problems = self.problems()
        if problems:
            raise InvalidConfiguration(problems)
        return AimDb(
            list(self._configs.values()),
            dict(self._connectors),
            type_checks=self._type_checks,
            shutdown_timeout=self._shutdown_timeout,
            runtime=self._runtime,
            restart_backoff=self._restart_backoff,
            order=self._order(),
            persistence=self._persistence,
        )

    async def run(self) -> None:
        """``build()`` and run the database until it is stopped or the task is cancelled."""
        await self.build().run()
