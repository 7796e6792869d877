"""mypy flags misuse of the public generics (``Producer[T].produce("x")`` and friends)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
CASE = HERE / "typing" / "check_handles.py"


def test_misuse_is_rejected_and_correct_use_is_not() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--show-error-codes",
            "--hide-error-context",
            "--no-error-summary",
            str(CASE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = CASE.read_text().splitlines()
    expected = {i + 1: m.group(1) for i, line in enumerate(lines) if (m := re.search(r"# E: ([\w-]+)", line))}
    found: dict[int, set[str]] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r".*check_handles\.py:(\d+): error: .*\[([\w-]+)\]$", line)
        if m:
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
    assert len(expected) == 7
    for lineno, code in expected.items():
        assert code in found.get(lineno, set()), (lineno, code, proc.stdout)
    unexpected = {k: v for k, v in found.items() if k not in expected}
    assert unexpected == {}, proc.stdout
