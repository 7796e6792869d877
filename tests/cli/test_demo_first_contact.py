"""What a new user types around ``aimdb demo``: the headless summary in a pipe, a second
demo, and the hint's command from a new shell. Real demo processes and real pipes."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env(runtime_dir: Path) -> dict[str, str]:
    env = {**os.environ, "AIMDB_RUNTIME_DIR": str(runtime_dir)}
    env.pop("AIMDB_CONNECT", None)
    return env


def test_headless_summary_is_the_last_line_and_pure_json(tmp_path: Path) -> None:
    """``aimdb demo --headless ... | tail -1`` is the summary, parseable as it is."""
    p = subprocess.run(
        f"{shlex.quote(sys.executable)} -m aimdb._demo --headless --duration 3 | tail -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["mode"] == "default" and set(summary["stations"]) == {"alpine", "coast", "valley"}
    assert "Traceback" not in p.stderr


def test_second_demo_says_use_name_in_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "aimdb._demo", "--headless", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert first.stdout is not None
        deadline = time.monotonic() + 30
        hint: list[str] = []
        while time.monotonic() < deadline:
            ln = first.stdout.readline()
            assert ln, "the first demo ended early"
            hint.append(ln)
            if "watch 'station.#'" in ln:
                break
        second = subprocess.run(
            [sys.executable, "-m", "aimdb._demo", "--headless", "--duration", "3"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1 and "--name" in second.stderr, second.stderr
        assert "already running" in second.stderr and second.stdout == ""
        # The hint's command works as printed from a new shell: no virtual environment active,
        # a PATH without the environment's bin directory.
        cmd = next(ln for ln in hint if ln.rstrip().endswith("record list")).split("terminal:", 1)[1]
        bare = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        bare["PATH"] = "/usr/bin:/bin"
        listed = subprocess.run(
            cmd.strip() + " -o json", shell=True, capture_output=True, text=True, timeout=60, env=bare
        )
        assert listed.returncode == 0, (cmd, listed.stderr)
        assert "station.valley.temperature" in {r["key"] for r in json.loads(listed.stdout)}
    finally:
        first.kill()
        first.wait(10)
        if first.stdout is not None:
            first.stdout.close()


def test_hint_names_this_installation(tmp_path: Path) -> None:
    from aimdb._demo._hub import cli_command

    cmd = cli_command()
    assert cmd == "aimdb" or Path(shlex.split(cmd)[0]).is_absolute()
    if os.environ.get("VIRTUAL_ENV"):
        assert cmd != "aimdb"
    assert re.match(r"^\S", cmd)


def test_readme_says_where_aimdb_lives() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/aimdb" in readme and "source .venv/bin/activate" in readme
