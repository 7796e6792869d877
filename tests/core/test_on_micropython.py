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


def test_cancelled_task_ends_cancelled_on_micropython(micropython: list[str], tmp_path: Path) -> None:
    # The backend's task runner used to catch CancelledError and end the task as if it had
    # returned: a cancelled task must end cancelled (its own code may still clean up).
    script = tmp_path / "cancel.py"
    script.write_text(
        "import asyncio\n"
        "from aimdb._backends._micropython import MicroPythonBackend\n"
        "async def main():\n"
        "    group = MicroPythonBackend().open_task_group()\n"
        "    await group.start()\n"
        "    cleaned = []\n"
        "    async def forever():\n"
        "        try:\n"
        "            await asyncio.sleep(100)\n"
        "        finally:\n"
        "            cleaned.append(1)\n"
        "    h = group.spawn('forever', forever)\n"
        "    await asyncio.sleep(0)\n"
        "    await group.aclose()\n"
        "    try:\n"
        "        await h._task\n"
        "        print('ended: returned')\n"
        "    except asyncio.CancelledError:\n"
        "        print('ended: cancelled')\n"
        "    print('done', h.done(), 'cleaned', len(cleaned))\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run([*micropython, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ended: cancelled" in proc.stdout, proc.stdout
    assert "done True cleaned 1" in proc.stdout, proc.stdout
