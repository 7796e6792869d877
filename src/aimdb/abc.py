"""The contracts aimdb's core meets at its edges (CPython; type checkers only).

These are :class:`typing.Protocol` classes, in the spirit of ``anyio.abc`` and
``trio.abc``: what a runtime backend, its task group and waiters, a connector and a
codec must offer. The MicroPython-safe core imports them only for type checking, so a
backend or connector written for MicroPython needs nothing from here at run time; on
CPython, :class:`aimdb.links.Connector` is the convenient base class that satisfies
:class:`Connector`.

A connector can be checked against its contract at run time too:
``isinstance(obj, aimdb.abc.Connector)`` tests that the methods and attributes exist
(not their signatures).
"""

from __future__ import annotations

from collections.abc import Awaitable as _Awaitable
from collections.abc import Callable as _Callable
from typing import TYPE_CHECKING
from typing import Any as _Any
from typing import Protocol as _Protocol
from typing import runtime_checkable as _runtime_checkable

if TYPE_CHECKING:
    from ._core._connector import ConnectorRoutes
    from ._core._links import LinkSpec

__all__ = (
    "Connector",
    "Decoder",
    "Encoder",
    "PersistenceBackend",
    "RuntimeBackend",
    "Statistics",
    "TaskGroup",
    "TaskHandle",
    "Waiter",
)


class Waiter(_Protocol):
    """A one-shot wake-up made by :meth:`RuntimeBackend.new_waiter`."""

    def wake(self) -> None:
        """Wake the waiting task; idempotent, callable before ``wait`` and from callbacks."""

    def wait(self) -> _Awaitable[_Any]:
        """Return an awaitable that completes once :meth:`wake` was called."""


class TaskHandle(_Protocol):
    """A task spawned in a :class:`TaskGroup`."""

    def cancel(self) -> None:
        """Ask the task to stop (no effect once it ended)."""

    def done(self) -> bool:
        """True once the task ended."""

    async def join(self) -> None:
        """Wait until the task ended (returns normally whatever its outcome)."""


class TaskGroup(_Protocol):
    """The group every task of one database runs in."""

    async def start(self) -> None:
        """Prepare the group; called once before the first :meth:`spawn`."""

    def spawn(self, name: str, fn: _Callable[..., _Awaitable[_Any]], *args: _Any) -> TaskHandle:
        """Start ``await fn(*args)`` as a task called ``name``; returns at once."""

    async def aclose(self) -> None:
        """Cancel every task still running and wait until all ended."""


class RuntimeBackend(_Protocol):
    """An event loop as the core sees it (asyncio, trio, MicroPython's asyncio).

    Attributes:
        name: ``"asyncio"``, ``"trio"`` or ``"micropython"``; connectors name the
            runtimes they support with these names.
        cancelled_exc: the exception class with which the loop cancels a task.
    """

    name: str
    cancelled_exc: type[BaseException]

    def monotonic_ns(self) -> int:
        """Monotonic clock in nanoseconds."""

    def wall_ns(self) -> int | None:
        """Wall-clock nanoseconds since the Unix epoch, or ``None`` when unknown."""

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds``."""

    def new_waiter(self) -> Waiter:
        """Return a fresh one-shot :class:`Waiter`."""

    def open_task_group(self) -> TaskGroup:
        """Return a new, not yet started :class:`TaskGroup`."""

    async def wait_for(self, fn: _Callable[[], _Awaitable[_Any]], timeout: float) -> bool:
        """Await ``fn()`` for at most ``timeout`` seconds; False when it timed out (it is cancelled)."""

    def logger(self) -> _Any:
        """The ``aimdb`` logger of this platform."""

    def on_interrupt(self, fn: _Callable[[], object]) -> _Callable[[], None]:
        """Call ``fn`` on the first Ctrl-C instead of interrupting (where possible); returns an undo."""


class Statistics(_Protocol):
    """A snapshot of counters: every ``statistics()`` in aimdb returns one."""

    def as_dict(self) -> dict[str, _Any]:
        """The counters as a plain dict (JSON-ready)."""


@_runtime_checkable
class Connector(_Protocol):
    """What the database needs of a connector (registered with ``builder.with_connector``).

    Attributes:
        scheme: the URL scheme of the links it serves (``"mqtt"``).
        runtimes: names of the runtimes it can run on, ``None`` for all; ``build()``
            refuses a connector that cannot run on the database's runtime.
        on_error: ``"restart"``, ``"log"`` or ``"stop"``: what happens when ``run`` or a
            task it spawned through ``routes.spawn`` raises.
        always_run: start ``run`` even when no link uses the connector.
    """

    @property
    def scheme(self) -> str:
        """The URL scheme of the links it serves."""

    @property
    def runtimes(self) -> tuple[str, ...] | None:
        """Runtimes it can run on (``None``: all)."""

    @property
    def on_error(self) -> str:
        """Policy when one of its tasks raises."""

    @property
    def always_run(self) -> bool:
        """Start ``run`` even when no link uses it."""

    def validate_link(self, spec: LinkSpec) -> list[str]:
        """Problems with one of the links it would serve (reported by ``build()``)."""

    def config_problems(self) -> list[str]:
        """Problems with its own settings (reported by ``build()``)."""

    def bind(self, routes: ConnectorRoutes) -> None:
        """Receive the routes at start, before ``run`` is scheduled."""

    async def run(self, routes: ConnectorRoutes) -> None:
        """Serve the routes until cancelled (supervised by the database)."""

    async def shutdown(self, timeout: float) -> None:
        """Flush and disconnect within ``timeout`` seconds at stop."""


class PersistenceBackend(_Protocol):
    """A store for persisted record values (registered with ``builder.with_persistence``).

    The database hands it encoded values and asks it for them back; it never sees a
    Python value. A row is ``(key, ts, payload)``: record key, wall-clock nanoseconds since
    the Unix epoch and the value encoded with the record's codec.
    :class:`aimdb.persistence.SqliteBackend` is the implementation aimdb ships.

    Attributes:
        max_pending: rows handed to :meth:`store` and not yet written above which the
            database stops taking values from persisted records (ring readers then lag,
            which is counted) so memory stays bounded.
    """

    max_pending: int

    def problems(self) -> list[str]:
        """Problems found without starting (bad settings, an unusable file); reported by ``build()``."""

    async def start(self, runtime: RuntimeBackend) -> None:
        """Open the store and start its writer; raises ``aimdb.PersistenceError`` naming the path."""

    def store(self, rows: list[tuple[str, int, bytes]]) -> None:
        """Queue ``rows`` for writing and return at once (never blocks the event loop)."""

    def pending(self) -> int:
        """Rows queued by :meth:`store` and not yet written (or given up)."""

    async def query(
        self, key: str, since_ns: int | None, until_ns: int | None, limit: int, newest_first: bool
    ) -> list[tuple[int, bytes]]:
        """Rows ``(ts, payload)`` of ``key`` with ``since_ns <= ts < until_ns``, ordered by ``ts``.

        Oldest first, or newest first when ``newest_first``; at most ``limit`` rows, taken
        from the start of that order.
        """

    async def latest(self, keys: list[str]) -> dict[str, tuple[int, bytes]]:
        """The newest row ``(ts, payload)`` of each key that has one."""

    async def cleanup(self) -> int:
        """Apply the retention settings now; returns the number of rows deleted."""

    async def close(self, timeout: float) -> None:
        """Write what is queued and release the store within ``timeout`` seconds."""

    def statistics(self) -> Statistics:
        """A snapshot of the store's counters."""


#: a link serializer: ``fn(value) -> bytes``; raises ``aimdb.SerializeError`` when it cannot
Encoder = _Callable[[_Any], bytes]
#: a link deserializer: ``fn(payload) -> value``; raises ``aimdb.DeserializeError`` for a bad payload
Decoder = _Callable[[bytes], _Any]
