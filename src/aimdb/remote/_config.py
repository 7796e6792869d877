"""Configuration of the remote-access server (:class:`RemoteConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import _protocol as P

AUTO = "auto"


@dataclass
class RemoteConfig:
    """Configuration of a remote-access server.

    Attributes:
        name: instance name, shown by ``hello`` and used for the default socket file
            ``<runtime dir>/<name>.sock``.
        unix: Unix socket path; ``"auto"`` (default) for the default path, ``None`` for
            no Unix socket.
        tcp: ``"HOST:PORT"`` to also listen on TCP (port 0 picks a free port); ``None``
            (default) for no TCP. Use ``127.0.0.1`` unless you mean to expose it.
        token: when set, ``hello`` must carry this token (compared in constant time)
            before anything else is answered.
        writable: allow-list of record keys (or ``*``/``#`` patterns) that ``record.set``
            may write. Empty (default) means read-only. Records with a source,
            transform or join, or declared ``remote(writable=False)``, stay read-only.
        allow_reset: whether ``stats.reset`` is allowed.
        max_connections: concurrent connections; further ones get ``too_many_connections``.
        max_subscriptions: subscriptions (and drain cursors) per connection.
        max_frame: largest request frame in bytes.
        max_depth: deepest nesting of arrays and objects a request frame may have (the
            frame object itself is depth 1); deeper frames get ``frame_too_deep`` and the
            session goes on. At most :data:`MAX_DEPTH_LIMIT`.
        queue_size: events a subscription holds for a slow client before dropping the
            oldest (also the largest ``queue`` a client may ask for).
        handshake_timeout: seconds a new connection has to complete ``hello``; then it
            gets ``handshake_required`` and is closed.
        idle_timeout: seconds a connection may stay idle after ``hello`` before it gets
            ``idle_timeout`` and is closed; ``None`` never closes idle connections.
            Activity is a line received from the client (a request, a notification or
            a blank keep-alive line; bytes of an unfinished line do not count) and any
            subscription event the connection accepts; a client whose socket stays full
            (it does not read) is idle.
        socket_mode: file mode of the Unix socket.
        http: ``"HOST:PORT"`` to also serve HTTP (port 0 picks a free port): the remote
            protocol over WebSocket at ``/ws``, Prometheus metrics at ``/metrics`` and the
            dashboard page at ``/``; ``None`` (default) for none. Needs
            ``pip install 'aimdb[dashboard]'``. Use ``127.0.0.1`` unless you mean to
            expose it: the token, the read-only default and the limits apply as on the
            sockets, but ``/metrics`` and the page are served to anyone who can connect.
        allowed_origins: browser origins (``"http://host:port"``, or ``"*"`` for any)
            allowed to open ``/ws`` besides the listener's own origin (and, on a loopback
            host, its ``localhost``/``127.0.0.1``/``[::1]`` equivalents). A WebSocket
            request from any other origin gets HTTP 403 and is counted in
            ``origin_refused``; one without an ``Origin`` header (not a browser) is allowed.
        metrics: serve ``/metrics`` on the HTTP listener.
        static_dir: folder served at ``/`` on the HTTP listener; ``"auto"`` (default) for
            the dashboard page shipped with aimdb, ``None`` for no files.
    """

    name: str = "aimdb"
    unix: str | None = AUTO
    tcp: str | None = None
    token: str | None = None
    writable: Sequence[str] = field(default_factory=tuple)
    allow_reset: bool = False
    max_connections: int = 16
    max_subscriptions: int = 32
    max_frame: int = P.DEFAULT_MAX_FRAME
    max_depth: int = P.DEFAULT_MAX_DEPTH
    queue_size: int = 256
    handshake_timeout: float = 10.0
    idle_timeout: float | None = 300.0
    socket_mode: int = 0o600
    http: str | None = None
    allowed_origins: Sequence[str] = field(default_factory=tuple)
    metrics: bool = True
    static_dir: str | None = AUTO

    def problems(self) -> list[str]:
        """Return what is wrong with this configuration (empty when valid)."""
        out = []
        for name in ("max_connections", "max_subscriptions", "max_frame", "max_depth", "queue_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                out.append(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.max_depth, int) and self.max_depth > P.MAX_DEPTH_LIMIT:
            out.append(f"max_depth must be at most {P.MAX_DEPTH_LIMIT}, got {self.max_depth!r}")
        for name in ("handshake_timeout", "idle_timeout"):
            t = getattr(self, name)
            if name == "idle_timeout" and t is None:
                continue
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
                out.append(f"{name} must be a positive number of seconds, got {t!r}")
        if self.tcp is not None:
            try:
                ep = P.parse_endpoint(self.tcp if "://" in self.tcp else "tcp://" + self.tcp)
                if ep.kind != "tcp":
                    out.append(f"tcp must be HOST:PORT, got {self.tcp!r}")
            except ValueError as exc:
                out.append(str(exc))
        if self.http is not None:
            try:
                ep = P.parse_endpoint(self.http if "://" in self.http else "tcp://" + self.http)
                if ep.kind != "tcp":
                    out.append(f"http must be HOST:PORT, got {self.http!r}")
            except ValueError as exc:
                out.append(f"http: {exc}")
        if isinstance(self.allowed_origins, str):
            out.append("allowed_origins must be a list of origins, not a string")
        if isinstance(self.writable, str):
            out.append("writable must be a list of keys, not a string")
        return out
