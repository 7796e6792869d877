"""The listening sockets of a remote-access server (Unix socket and TCP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable

from .._aio import wait_for
from . import _protocol as P
from ._config import AUTO, RemoteConfig
from ._discovery import default_socket_path, ensure_runtime_dir, someone_listens
from ._transport import READ_CHUNK

_log = logging.getLogger("aimdb.remote")

OnConnect = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listeners:
    """Binds the configured listeners and removes what it created on close.

    Args:
        config: ``unix``, ``tcp``, ``name`` and ``socket_mode`` are used.
        on_connect: called (as a task of the stream machinery) for each accepted connection.
    """

    def __init__(self, config: RemoteConfig, on_connect: OnConnect) -> None:
        self._config = config
        self._on_connect = on_connect
        self._servers: list[asyncio.base_events.Server] = []
        self.unix_path: str | None = None
        self._unix_ino: tuple[int, int] | None = None
        self.tcp_address: tuple[str, int] | None = None

    @property
    def endpoints(self) -> list[str]:
        """Connect strings (``unix://...``, ``tcp://...``) of every listener."""
        out = []
        if self.unix_path:
            out.append(str(P.Endpoint("unix", path=self.unix_path)))
        if self.tcp_address:
            out.append(str(P.Endpoint("tcp", host=self.tcp_address[0], port=self.tcp_address[1])))
        return out

    async def start(self) -> None:
        """Bind the Unix socket and the TCP listener as configured.

        Raises:
            OSError: a listener could not be bound, or another process already listens
                on the Unix socket path (the file is then left alone).
        """
        cfg = self._config
        if cfg.unix is not None:
            await self._start_unix(cfg.unix)
        if cfg.tcp is not None:
            ep = P.parse_endpoint(cfg.tcp if "://" in cfg.tcp else "tcp://" + cfg.tcp)
            srv = await asyncio.start_server(
                self._on_connect, ep.host, ep.port, backlog=512, limit=READ_CHUNK
            )
            self._servers.append(srv)
            sockname = srv.sockets[0].getsockname()
            self.tcp_address = (str(sockname[0]), int(sockname[1]))

    async def _start_unix(self, path_cfg: str) -> None:
        if path_cfg == AUTO:
            ensure_runtime_dir()
            path = str(default_socket_path(self._config.name))
        else:
            path = path_cfg
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{path} exists and is not a socket; not replacing it")
            if someone_listens(path):
                raise OSError(f"another process is listening on {path}")
            os.unlink(path)  # stale socket of a process that is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, self._config.socket_mode)
            sock.listen(512)
            sock.setblocking(False)
            srv = await asyncio.start_unix_server(self._on_connect, sock=sock, backlog=512, limit=READ_CHUNK)
        except BaseException:
            sock.close()
            raise
        self._servers.append(srv)
        self.unix_path = path
        st2 = os.stat(path)
        self._unix_ino = (st2.st_dev, st2.st_ino)

    def close(self) -> None:
        """Stop accepting connections and remove the Unix socket file if it is still ours."""
        for srv in self._servers:
            srv.close()
        if self.unix_path is not None and self._unix_ino is not None:
            try:
                st = os.stat(self.unix_path)
                if (st.st_dev, st.st_ino) == self._unix_ino:
                    os.unlink(self.unix_path)
            except OSError:
                pass
            self._unix_ino = None

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds per listener) until the listeners are closed."""
        servers, self._servers = self._servers, []
        for srv in servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(srv.wait_closed(), timeout)
