"""The demo hub's persistence: where its SQLite file lives, what it restores, what it reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimdb.persistence import SqliteBackend

if TYPE_CHECKING:
    from aimdb import AimDb

RETENTION = "1d"
"""How long the hub keeps stored values."""
MAX_ROWS = 100_000
"""Most stored values the hub keeps per record (about 2.8 h of one sensor at 10 Hz)."""


def default_db_path(name: str) -> Path:
    """``<runtime dir>/<name>.db``: beside the hub's socket, named like it."""
    from aimdb.remote import default_socket_path

    return default_socket_path(name).with_suffix(".db")


def open_store(path: str | Path) -> tuple[SqliteBackend, list[str]]:
    """The hub's store at ``path`` and what is wrong with it (empty when usable)."""
    backend = SqliteBackend(path, retention=RETENTION, max_rows=MAX_ROWS)
    return backend, backend.problems()


async def last_stored(db: AimDb, keys: list[str]) -> dict[str, Any]:
    """The newest stored value of each key in ``keys`` that has one (read once, at start)."""
    found: dict[str, Any] = {}
    for key in keys:
        rows = await db.history(key, limit=1, newest_first=True)
        if rows:
            found[key] = rows[0].value
    return found


def persistence_summary(backend: SqliteBackend | None, restored: int) -> dict[str, Any]:
    """The ``persistence`` section of the demo's JSON summary.

    ``enabled``, and with a store: ``path``, ``rows_written``, ``write_failures``,
    ``rows_lost``, ``writer_restarts``, ``last_error`` and ``restored`` (stations whose
    last stored values were shown at start).
    """
    if backend is None:
        return {"enabled": False}
    st = backend.statistics()
    return {
        "enabled": True,
        "path": st.path,
        "rows_written": st.written,
        "write_failures": st.write_failures,
        "rows_lost": st.lost,
        "writer_restarts": st.writer_restarts,
        "last_error": st.last_error,
        "restored": restored,
    }
