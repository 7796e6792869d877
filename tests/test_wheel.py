"""A wheel built with ``python -m build`` installs into a clean venv and runs the quickstart."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_runs_quickstart(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = list(dist.glob("aimdb-*.whl"))
    assert len(wheels) == 1
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheels[0])], check=True, timeout=300)
    proc = subprocess.run(
        [str(py), str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the source tree: the installed package is used
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["temp: 21.0", "temp: 22.5", "temp: 24.1"]
    check = subprocess.run(
        [str(py), "-c", "import aimdb, os; print(os.path.dirname(aimdb.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert str(env) in check.stdout
