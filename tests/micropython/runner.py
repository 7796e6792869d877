"""Run Python code under MicroPython 1.27 (the WebAssembly port on Node.js).

A thin wrapper around the packaged runner (``src/aimdb/_micropython/run.mjs``) for tests::

    from tests.micropython.runner import run_micropython

    proc = run_micropython("import aimdb\\nprint('ok')", paths=[SRC])
    assert proc.returncode == 0, proc.stderr

``script`` is either Python source text or a path to a ``.py`` file.  Source
text is written to a temporary ``main.py`` (so tracebacks name a file and the
temporary directory is the script directory).  The script may use top-level
``await``; ``asyncio.run(main())`` works too (see the runner's README).

Exit codes of the runner: 0 success, 1 the Python code raised, N from
``SystemExit(N)``, 2 usage error, 3 interpreter missing or broken,
4 deadlock (awaiting something nothing can wake), 124 timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

from aimdb import _micropython as mpy

ROOT = Path(__file__).resolve().parents[2]
RUN_MJS = Path(mpy.RUNNER)
SRC_DIR = ROOT / "src"

EXIT_OK = 0
EXIT_PYTHON_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_DEADLOCK = 4
EXIT_TIMEOUT = 124

PathLike = Union[str, "os.PathLike[str]"]


def node_executable() -> str | None:
    """The ``node`` on PATH, or None."""
    return shutil.which("node")


def is_installed() -> bool:
    return mpy.is_installed()


def ensure_installed() -> None:
    """Install the pinned MicroPython package (``aimdb micropython install``) if it is missing.

    The install is atomic and concurrent callers wait for each other (see
    :func:`aimdb._micropython.install`).
    """
    if not is_installed():
        mpy.install()


def _looks_like_path(script: PathLike) -> bool:
    if isinstance(script, os.PathLike):
        return True
    return "\n" not in script and script.endswith(".py") and Path(script).is_file()


def run_micropython(
    script: PathLike,
    paths: Iterable[PathLike] = (),
    timeout: float = 60,
    args: Sequence[str] = (),
    heap: str | None = None,
    cwd: PathLike | None = None,
    install: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (source text or a ``.py`` path) under MicroPython.

    ``paths`` are directories made importable (``--path``: a package directory
    is mounted under its own name, any other directory is a sys.path root).
    ``timeout`` (seconds) bounds the run: the runner kills MicroPython and
    exits 124.  Returns the completed process with text stdout/stderr.
    """
    node = node_executable()
    if node is None:
        raise RuntimeError("node is not on PATH")
    if install:
        ensure_installed()
    cmd = [node, str(RUN_MJS), "--modules", str(mpy.home()), "--timeout", str(timeout)]
    for p in paths:
        cmd += ["--path", os.fspath(p)]
    if heap is not None:
        cmd += ["--heap", heap]
    # Safety net above the runner's own timeout (which kills MicroPython).
    outer_timeout = timeout + 30 if timeout else None
    if _looks_like_path(script):
        cmd += [os.fspath(script), *args]
        return _run(cmd, cwd, outer_timeout)
    with tempfile.TemporaryDirectory(prefix="aimdb-mpy-") as tmp:
        main = Path(tmp) / "main.py"
        main.write_text(os.fspath(script), encoding="utf-8")
        cmd += [str(main), *args]
        return _run(cmd, cwd, outer_timeout)


def _run(cmd: list[str], cwd: PathLike | None, timeout: float | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=None if cwd is None else os.fspath(cwd),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


if __name__ == "__main__":  # pragma: no cover - manual use
    proc = run_micropython(Path(sys.argv[1]), paths=sys.argv[2:])
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    raise SystemExit(proc.returncode)
