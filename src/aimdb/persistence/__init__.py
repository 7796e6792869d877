"""Records that survive a restart: persisted values and history queries (CPython).

Register a store with ``builder.with_persistence(SqliteBackend("hub.db", retention="7d"))``,
mark records with ``reg.persist()``, and read them back with ``await db.history(key)``.
Other stores implement :class:`aimdb.abc.PersistenceBackend`.
"""

from .._core._persist import PersistStatistics, Stored
from ._sqlite import SqliteBackend, SqliteStatistics

__all__ = ("PersistStatistics", "SqliteBackend", "SqliteStatistics", "Stored")

for _cls in (PersistStatistics, Stored):
    _cls.__module__ = "aimdb.persistence"
del _cls
