"""The MicroPython runner that ships with aimdb (CPython only).

``run.mjs`` (beside this module) runs a script under the real MicroPython 1.27, the
WebAssembly port published on npm, on Node.js. The interpreter itself is an npm package
pinned by ``package.json`` and ``package-lock.json`` (also beside this module); it is not
part of the wheel. :func:`install` puts it into a per-user directory, never into the
installed package: ``$AIMDB_MICROPYTHON_HOME`` when set, else
``$XDG_CACHE_HOME/aimdb/micropython-<version>`` (``~/.cache/...`` without
``XDG_CACHE_HOME``). ``aimdb micropython install`` calls it; the demo never downloads.

``$AIMDB_MICROPYTHON_RUNNER`` names another ``run.mjs`` to use instead of the packaged one
(its own ``node_modules`` is used when it has the interpreter).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "run.mjs"
"""The packaged runner script."""

PACKAGE = "@micropython/micropython-webassembly-pyscript"
"""The npm package that holds the MicroPython interpreter."""

VERSION: str = json.loads((HERE / "package.json").read_text(encoding="utf-8"))["dependencies"][PACKAGE]
"""The pinned version of :data:`PACKAGE`."""

ENV_HOME = "AIMDB_MICROPYTHON_HOME"
ENV_RUNNER = "AIMDB_MICROPYTHON_RUNNER"


class InstallError(Exception):
    """The interpreter could not be installed; the message says why in one line."""


def home() -> Path:
    """The directory whose ``node_modules`` holds (or will hold) the interpreter.

    ``$AIMDB_MICROPYTHON_HOME`` when set; else ``micropython-<version>`` in
    ``$XDG_CACHE_HOME/aimdb`` (``~/.cache/aimdb`` when ``XDG_CACHE_HOME`` is unset).
    """
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser().resolve() / "aimdb" / f"micropython-{VERSION}"


def _entry(prefix: Path) -> Path:
    return prefix / "node_modules" / PACKAGE / "micropython.mjs"


def is_installed(prefix: Path | None = None) -> bool:
    """Whether the interpreter is installed under ``prefix`` (default: :func:`home`)."""
    return _entry(home() if prefix is None else prefix).is_file()


@dataclass(frozen=True)
class Runner:
    """How to run MicroPython here: ``command`` is set, or ``reason`` says in one line why not."""

    command: list[str] | None
    reason: str = ""


def runner(*options: str) -> Runner:
    """Find Node.js, the runner script and the interpreter; never installs anything.

    On success ``command`` is ``[node, run.mjs, "--modules", DIR, *options]``, to which the
    caller appends ``--path`` options, the script and its arguments.
    """
    node = shutil.which("node")
    if node is None:
        return Runner(None, "Node.js is not installed (the 'node' command is not on PATH)")
    env = os.environ.get(ENV_RUNNER)
    script = Path(env).expanduser() if env else RUNNER
    if not script.is_file():
        return Runner(None, f"{ENV_RUNNER}={env} names no file")
    prefix = home()
    if env and is_installed(script.resolve().parent):
        prefix = script.resolve().parent
    elif not is_installed(prefix):
        return Runner(
            None,
            f"the MicroPython interpreter (npm package {PACKAGE} {VERSION}) is not installed; "
            "run: aimdb micropython install",
        )
    return Runner([node, str(script), "--modules", str(prefix), *options])


def install(force: bool = False, timeout: float = 600.0) -> Path:
    """Install the pinned interpreter into :func:`home` with ``npm ci`` and return that directory.

    Nothing happens when it is installed already (unless ``force``). ``npm`` reads the
    lock file shipped with aimdb and prefers its local cache, so a machine that installed
    it once needs no network. The install goes to a temporary directory beside the target
    and is renamed into place, and concurrent installs wait for each other (a lock file),
    so a half-finished install is never used.

    Raises:
        InstallError: ``npm`` is missing or failed (its last output lines are included).
    """
    target = home()
    if is_installed(target) and not force:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not installed (it comes with Node.js); cannot install the interpreter")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if is_installed(target) and not force:
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(HERE / name, tmp / name)
            npm_ci = [npm, "ci", "--prefix", str(tmp), "--prefer-offline", "--no-audit", "--no-fund"]
            proc = subprocess.run(
                [*npm_ci, "--loglevel=error"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if proc.returncode != 0 or not is_installed(tmp):
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise InstallError(f"npm ci failed (exit {proc.returncode}): {tail}")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no concurrent installs guarded
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
