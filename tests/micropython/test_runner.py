"""The MicroPython runner (aimdb/_micropython/run.mjs) under the real MicroPython 1.27."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from aimdb import _micropython as mpy
from tests.micropython.runner import (
    EXIT_DEADLOCK,
    EXIT_PYTHON_ERROR,
    EXIT_TIMEOUT,
    RUN_MJS,
    node_executable,
    run_micropython,
)

pytestmark = pytest.mark.usefixtures("micropython")


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def test_passing_script_prints_and_exits_zero() -> None:
    proc = run_micropython(
        _src(
            """
            import sys
            print("hello", sys.implementation.name, sys.implementation.version[:2])
            print("argv", sys.argv[1:])
            """
        ),
        args=["a", "b c"],
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hello micropython (1, 27)", "argv ['a', 'b c']"]
    assert proc.stderr == ""


def test_raising_script_exits_nonzero_with_traceback() -> None:
    proc = run_micropython(
        _src(
            """
            def inner():
                raise ValueError("boom 42")
            print("before")
            inner()
            print("never")
            """
        ),
        timeout=30,
    )
    assert proc.returncode == EXIT_PYTHON_ERROR
    assert proc.stdout == "before\n"
    assert "Traceback (most recent call last):" in proc.stderr
    assert "main.py" in proc.stderr  # the file name, not <stdin>
    assert "in inner" in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: boom 42")


def test_system_exit_code_is_passed_through() -> None:
    proc = run_micropython("import sys\nsys.exit(7)\n", timeout=30)
    assert proc.returncode == 7
    proc = run_micropython("raise SystemExit\n", timeout=30)
    assert proc.returncode == 0


def test_imports_package_from_path(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    pkg = root / "tinypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .core import double\nNAME = 'tinypkg'\n")
    (pkg / "core.py").write_text("def double(x):\n    return 2 * x\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("VALUE = 'leaf'\n")
    (pkg / "data.txt").write_text("not python, not copied")
    script = (
        "import tinypkg\nfrom tinypkg.sub import leaf\nprint(tinypkg.NAME, tinypkg.double(21), leaf.VALUE)\n"
    )
    # A sys.path root (like PYTHONPATH) ...
    proc = run_micropython(script, paths=[root], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "tinypkg 42 leaf\n"
    # ... or the package directory itself, mounted under its own name.
    proc = run_micropython(script, paths=[pkg], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "tinypkg 42 leaf\n"


def test_traceback_names_host_files_of_mounted_modules(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "broken.py").write_text("def f():\n    raise KeyError('k')\n")
    proc = run_micropython("import broken\nbroken.f()\n", paths=[tmp_path / "lib"], timeout=30)
    assert proc.returncode == EXIT_PYTHON_ERROR
    assert str(tmp_path / "lib" / "broken.py") in proc.stderr
    assert "KeyError" in proc.stderr


def test_asyncio_tasks_event_and_sleep() -> None:
    proc = run_micropython(
        _src(
            """
            import asyncio

            async def waiter(ev, name, log):
                await ev.wait()
                log.append(name)
                await asyncio.sleep_ms(5)
                return name.upper()

            async def main():
                ev = asyncio.Event()
                log = []
                tasks = [asyncio.create_task(waiter(ev, n, log)) for n in ("a", "b", "c")]
                await asyncio.sleep(0.01)
                assert log == []
                ev.set()
                results = []
                for t in tasks:
                    results.append(await t)
                print("log", sorted(log))
                print("results", results)

                async def forever():
                    await asyncio.sleep(10)

                t = asyncio.create_task(forever())
                await asyncio.sleep(0)
                t.cancel()
                try:
                    await t
                except asyncio.CancelledError:
                    print("cancelled")
                try:
                    await asyncio.wait_for(forever(), 0.01)
                except asyncio.TimeoutError:
                    print("timed out")
                print("gather", await asyncio.gather(waiter(ev, "d", log), waiter(ev, "e", log)))

            await asyncio.create_task(main())
            """
        ),
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "log ['a', 'b', 'c']",
        "results ['A', 'B', 'C']",
        "cancelled",
        "timed out",
        "gather ['D', 'E']",
    ]


def test_asyncio_run_shim_runs_main_after_body() -> None:
    proc = run_micropython(
        _src(
            """
            import asyncio

            async def main():
                await asyncio.sleep_ms(1)
                print("main ran in", asyncio.current_task())

            if __name__ == "__main__":
                asyncio.run(main())
            """
        ),
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "main ran in <Task>\n"


def test_exec_option() -> None:
    node = node_executable()
    assert node is not None
    proc = subprocess.run(
        [node, str(RUN_MJS), "--modules", str(mpy.home()), "--exec", "import sys; print(sys.argv)", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "['-c', 'x']\n"


def test_deadlock_is_reported_not_exit_zero() -> None:
    proc = run_micropython("import asyncio\nawait asyncio.Event().wait()\n", timeout=30)
    assert proc.returncode == EXIT_DEADLOCK
    assert "deadlock" in proc.stderr


def test_timeout_kills_busy_loop() -> None:
    proc = run_micropython("while True:\n    pass\n", timeout=1)
    assert proc.returncode == EXIT_TIMEOUT
    assert "timed out" in proc.stderr
