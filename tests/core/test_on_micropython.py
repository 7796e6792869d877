"""The core under real MicroPython 1.27 (WebAssembly port on Node.js): conformance suites,
an end-to-end database and a small benchmark, via tools/micropython/aimdb_suite.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "micropython"


@pytest.fixture(scope="module")
def micropython() -> list[str]:
    from aimdb import _micropython as mpy

    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    mpy.install()  # nothing to do when it is installed already
    found = mpy.runner("--path", str(ROOT / "src"))
    assert found.command is not None, found.reason
    return found.command


def test_core_suite_on_micropython(micropython: list[str]) -> None:
    proc = subprocess.run(
        [*micropython, "--timeout", "120", str(TOOLS / "aimdb_suite.py")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "buffer conformance checks: 24" in out
    assert "runtime conformance checks: 5" in out
    assert "end-to-end ok" in out
    assert out.rstrip().endswith("SUITE OK")


def test_micropython_failure_is_reported(micropython: list[str], tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("from aimdb import AimDbBuilder\nAimDbBuilder().build().producer(int, 'nope')\n")
    proc = subprocess.run([*micropython, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "RecordNotFound" in proc.stderr or "no record with key" in proc.stderr
