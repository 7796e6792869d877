"""Where local instances put their Unix sockets, and how to find them.

Servers started with the default configuration listen on ``<runtime dir>/<name>.sock``.
The runtime directory is ``$AIMDB_RUNTIME_DIR`` when set, else ``$XDG_RUNTIME_DIR/aimdb``
when ``XDG_RUNTIME_DIR`` is set, else ``<tempdir>/aimdb-<uid>``; it is created with mode
0700 so only its owner can reach the sockets.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from pathlib import Path


def runtime_dir() -> Path:
    """Return the directory holding local instance sockets (not created)."""
    env = os.environ.get("AIMDB_RUNTIME_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "aimdb"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"aimdb-{uid}"


def ensure_runtime_dir() -> Path:
    """Create the runtime directory (mode 0700) when missing and return it."""
    d = runtime_dir()
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def default_socket_path(name: str) -> Path:
    """Return the default socket path of the instance called ``name``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "aimdb"
    return runtime_dir() / f"{safe}.sock"


def socket_files(directory: Path | None = None) -> list[Path]:
    """Return the ``*.sock`` socket files in ``directory`` (default: the runtime directory)."""
    d = directory if directory is not None else runtime_dir()
    try:
        entries = sorted(d.glob("*.sock"))
    except OSError:
        return []
    out = []
    for p in entries:
        try:
            if stat.S_ISSOCK(p.stat().st_mode):
                out.append(p)
        except OSError:
            continue
    return out


def someone_listens(path: str) -> bool:
    """Return True when a process accepts connections on the Unix socket ``path``.

    Used before replacing a socket file: only a file nobody listens on is stale.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or isinstance(exc, TimeoutError):
            return True  # backlog full: somebody is there
        return False
    finally:
        s.close()
    return True
