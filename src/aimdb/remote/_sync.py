"""Blocking client: a thin wrapper running :class:`AsyncClient` on a private event loop thread."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from ._client import AsyncClient, Event, RemoteError, Subscription
from ._history import HistoryPage, TimeBound

R = TypeVar("R")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="aimdb-remote-client", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, R], timeout: float | None) -> R:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise RemoteError("timeout", "operation timed out") from None

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)


class SyncSubscription:
    """Blocking view of a :class:`Subscription`: iterate it or call :meth:`next`."""

    def __init__(self, client: SyncClient, sub: Subscription) -> None:
        self._client = client
        self._sub = sub

    @property
    def id(self) -> str:
        """The server's subscription id."""
        return self._sub.id

    @property
    def keys(self) -> list[str]:
        """Record keys matched at subscribe time."""
        return self._sub.keys

    @property
    def snapshot(self) -> int:
        """Number of snapshot events that come first."""
        return self._sub.snapshot

    @property
    def missed(self) -> int:
        """Events lost so far: gaps the server reported plus events dropped locally."""
        return self._sub.missed

    @property
    def dropped(self) -> int:
        """Events this client dropped because the application did not take them in time."""
        return self._sub.dropped

    def next(self, timeout: float | None = None) -> Event:
        """Return the next event; raises ``TimeoutError`` or ``RemoteError`` (ended)."""
        return self._client._lt.run(self._sub.next(timeout), None)

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                yield self.next()
            except RemoteError:
                return

    def close(self) -> dict[str, Any]:
        """Unsubscribe; returns the server's counters."""
        return self._client._lt.run(self._sub.close(), self._client.timeout)


class SyncClient:
    """Blocking client of an aimdb server (for scripts and threads).

    Same methods as :class:`AsyncClient`, minus ``async``. Use as a context manager or
    call :meth:`close`. Each client owns one background thread running its event loop.

    Args:
        endpoint: ``unix://PATH`` or ``tcp://HOST:PORT``; ``None`` for ``$AIMDB_CONNECT``
            or local discovery.
        token: the server's token, if it has one.
        timeout: seconds to wait for a connection or reply.

    Raises:
        RemoteError: the connection or handshake failed.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        client_name: str = "aimdb-python-sync",
    ) -> None:
        self.timeout = timeout
        self._lt = _LoopThread()
        try:
            self._client: AsyncClient = self._lt.run(
                AsyncClient.connect(endpoint, token=token, timeout=timeout, client_name=client_name),
                timeout + 1.0,
            )
        except BaseException:
            self._lt.stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        return self._lt.run(coro, self.timeout + 1.0)

    @property
    def server_info(self) -> dict[str, Any]:
        """The server's ``hello`` reply."""
        return self._client.server_info

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result."""
        return self._run(self._client.call(method, params))

    def ping(self) -> float:
        """Round-trip time of a ``ping`` in seconds."""
        return self._run(self._client.ping())

    def list(self, pattern: str | None = None) -> builtins.list[dict[str, Any]]:
        """Metadata and statistics of every (matching) record."""
        return self._run(self._client.list(pattern))

    def get(self, key: str) -> Any:
        """Current value of ``key``."""
        return self._run(self._client.get(key))

    def set(self, key: str, value: Any) -> Any:
        """Write ``value`` to ``key``; returns the stored value."""
        return self._run(self._client.set(key, value))

    def subscribe(self, pattern: str, *, snapshot: bool = True, queue: int | None = None) -> SyncSubscription:
        """Subscribe to a key or pattern."""
        return SyncSubscription(
            self, self._run(self._client.subscribe(pattern, snapshot=snapshot, queue=queue))
        )

    def drain(self, key: str, limit: int | None = None) -> builtins.list[Any]:
        """Values produced since the previous drain of ``key`` on this connection."""
        return self._run(self._client.drain(key, limit))

    def history(
        self,
        key: str,
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> HistoryPage:
        """Blocking :meth:`AsyncClient.history`: stored values of persisted record ``key``.

        Same arguments, result and errors.
        """
        return self._run(
            self._client.history(key, since=since, until=until, limit=limit, newest_first=newest_first)
        )

    def graph(self) -> dict[str, Any]:
        """The dependency graph."""
        return self._run(self._client.graph())

    def stats(self, key: str | None = None) -> dict[str, Any]:
        """Statistics of one record or of everything."""
        return self._run(self._client.stats(key))

    def reset_stats(self) -> None:
        """Zero the server's statistics."""
        self._run(self._client.reset_stats())

    def close(self) -> None:
        """Close the connection and stop the background thread. Idempotent."""
        if self._lt.loop.is_running():
            try:
                self._run(self._client.aclose())
            finally:
                self._lt.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
