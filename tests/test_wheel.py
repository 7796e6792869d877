"""The wheel built with ``python -m build`` installs into a fresh venv and works outside the repo.

The wheel is built from the sdist. The venv gets the wheel with ``--no-index --no-deps``
(no network); its dependencies come from the test interpreter's site-packages, added as a
plain path (so this checkout's own editable install is not picked up: ``.pth`` files there
are not processed). Every command (the build and the venv's set-up included) runs without
the test run's ``PYTHON*`` variables (``PYTHONPATH``, ``PYTHONWARNINGS`` ...), and the
checks run in a temporary directory, so only the installed package is used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_FILES = (
    "index.html",
    "style.css",
    "js/app.js",
    "js/chart.js",
    "js/connection.js",
    "js/format.js",
    "js/graph.js",
    "js/links.js",
    "js/records.js",
    "vendor/uplot/uPlot.iife.min.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
    "vendor/uplot/VENDORED.md",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed; returns the venv directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # Without --wheel/--sdist, build makes the sdist and then the wheel from the sdist: what
    # the wheel carries, the sdist carries too.
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
        env=_env(),
    )
    wheels = list(dist.glob("aimdb-*.whl"))
    assert len(wheels) == 1
    with tarfile.open(next(dist.glob("aimdb-*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for name in ("run.mjs", "package.json", "package-lock.json", "__init__.py"):
        assert f"src/aimdb/_micropython/{name}" in names, sorted(names)
    assert not any("node_modules" in n for n in names)
    for name in DASHBOARD_FILES:
        assert f"src/aimdb/dashboard/static/{name}" in names, sorted(names)
    with zipfile.ZipFile(wheels[0]) as whl:
        in_wheel = set(whl.namelist())
    for name in DASHBOARD_FILES:
        assert f"aimdb/dashboard/static/{name}" in in_wheel, sorted(in_wheel)
    env = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300, env=_env())
    py = env / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheels[0])],
        check=True,
        timeout=300,
        env=_env(),
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    ).stdout.strip()
    (Path(site) / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def _env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this one without ``PYTHON*``, ``VIRTUAL_ENV``, ``AIMDB_CONNECT``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "AIMDB_CONNECT")}
    env.update(extra)
    return env


def test_subprocesses_get_no_python_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PYTHONPATH`` would put a checkout before the wheel; ``PYTHONWARNINGS=error`` broke pip."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    monkeypatch.setenv("PYTHONSAFEPATH", "1")
    assert not [k for k in _env() if k.startswith("PYTHON")]
    assert _env(PYTHONX="1")["PYTHONX"] == "1"  # what a test asks for explicitly stays


def test_wheel_installs_and_runs_quickstart(installed: Path, tmp_path: Path) -> None:
    py = installed / "bin" / "python"
    proc = subprocess.run(
        [str(py), str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the source tree: the installed package is used
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["temp: 21.0", "temp: 22.5", "temp: 24.1"]
    check = subprocess.run(
        [str(py), "-c", "import aimdb, os; print(os.path.dirname(aimdb.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_env(),
    )
    assert str(installed) in check.stdout
    static = subprocess.run(
        [
            str(py),
            "-c",
            "import os, aimdb.dashboard as d;"
            " print(os.path.isfile(os.path.join(d.STATIC_DIR, 'index.html')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_env(),
    )
    assert static.stdout.strip() == "True", static.stderr


@pytest.mark.slow
def test_wheel_runs_the_demo_with_the_real_micropython_station(installed: Path, tmp_path: Path) -> None:
    """From the wheel alone: install the interpreter with the documented command, then the
    demo's MicroPython station runs on MicroPython (as the station itself reports)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is not installed")
    aimdb = str(installed / "bin" / "aimdb")
    env = _env(AIMDB_MICROPYTHON_HOME=str(tmp_path / "mpy"), AIMDB_RUNTIME_DIR=str(tmp_path / "rt"))
    env.pop("AIMDB_MICROPYTHON_RUNNER", None)

    def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [aimdb, *argv], capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env
        )

    before = run("micropython", "status")
    assert before.returncode == 1, before.stdout + before.stderr
    assert "aimdb micropython install" in before.stderr

    # Without the interpreter the demo says so in one line and runs the station on CPython.
    fallback = run("demo", "--headless", "--duration", "2", "--name", "wheel-fallback")
    notes = [s for s in fallback.stdout.splitlines() if "MicroPython unavailable" in s]
    assert len(notes) == 1 and "aimdb micropython install" in notes[0], fallback.stdout
    assert fallback.returncode == 0, fallback.stdout + fallback.stderr

    inst = run("micropython", "install", timeout=600)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    assert str(tmp_path / "mpy") in inst.stdout
    status = run("micropython", "status")
    assert status.returncode == 0, status.stderr
    assert str(installed) in status.stdout  # the runner script comes from the installed wheel
    assert str(ROOT) not in status.stdout

    proc = run("demo", "--headless", "--duration", "6", "--name", "wheel-demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MicroPython unavailable" not in proc.stdout
    summary = json.loads(proc.stdout.splitlines()[-1])
    valley = summary["stations"]["valley"]
    assert valley["runtime"] == "micropython", summary
    assert str(valley["implementation"]).startswith("micropython 1.27"), summary
    assert valley["values"] > 0, summary
    assert str(summary["stations"]["alpine"]["implementation"]).startswith("cpython "), summary
