"""``bench/remote.py`` rows for ``bench/before_after.py``, and its page rewrite keeping the comparisons.

``bench/remote.py --write`` regenerates ``docs/benchmarks-remote.md``; the side-by-side
sections below its keep marker are not generated and must survive. ``--rows`` writes the
measurements as numbers, the format ``before_after.py`` compares, and ``before_after.py
--json-flag`` passes the rows file under the benchmark's own option name. Nothing here
measures anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, file: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def remote() -> ModuleType:
    return _load("bench_remote", "remote.py")


GET = {"median_us": 80.0, "p99_us": 160.0, "n": 5000}
SUBS = [
    {"clients": 1, "events_per_s_total": 3e5, "events_per_s_per_client": 3e5, "lost_pct": 20.0},
    {"clients": 50, "events_per_s_total": 2e5, "events_per_s_per_client": 4e3, "lost_pct": 70.0},
]
COST = [
    {"subscribers": n, "tight_ns": 150.0, "produce_ns": 160.0, "wall_per_value_ns": 200.0} for n in (0, 1)
]


def test_write_keeps_the_text_below_the_keep_marker(
    remote: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "benchmarks-remote.md"
    kept = remote.KEEP + "\n\n## Transport layer (before/after)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    page.write_text("# stale generated text\n\n" + kept, encoding="utf-8")
    monkeypatch.setattr(remote, "DOC", page)
    monkeypatch.setattr(remote, "ROOT", tmp_path)
    args = argparse.Namespace(seconds=3.0, gets=5000, values=200_000)
    remote._write_doc(remote._tables(GET, SUBS, COST), args)
    text = page.read_text(encoding="utf-8")
    assert "stale generated text" not in text
    assert text.startswith("# Remote access benchmarks")
    assert text.endswith(kept)
    assert text.count(remote.KEEP) == 1


def test_write_without_a_keep_marker_writes_only_the_generated_page(
    remote: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "benchmarks-remote.md"
    page.write_text("# old page, nothing to keep\n", encoding="utf-8")
    monkeypatch.setattr(remote, "DOC", page)
    monkeypatch.setattr(remote, "ROOT", tmp_path)
    remote._write_doc(remote._tables(GET, SUBS, COST), argparse.Namespace(seconds=2.0, gets=100, values=5000))
    text = page.read_text(encoding="utf-8")
    assert "old page" not in text and remote.KEEP not in text
    assert "--values 5000 --write" in text and "5,000 values produced" in text


def test_rows_are_named_numbers_and_parts_can_be_left_out(remote: ModuleType) -> None:
    rows = remote._rows(GET, SUBS, COST)
    assert [r["name"] for r in rows] == [
        "record.get",
        "subscribe, 1 client",
        "subscribe, 50 clients",
        "produce, 0 remote subscribers",
        "produce, 1 remote subscriber",
    ]
    assert all(isinstance(v, (int, float)) for r in rows for k, v in r.items() if k != "name")
    assert [r["name"] for r in remote._rows(None, SUBS, [])] == [
        "subscribe, 1 client",
        "subscribe, 50 clients",
    ]


def test_before_after_passes_the_rows_file_under_the_named_option(tmp_path: Path) -> None:
    before_after = _load("bench_before_after", "before_after.py")
    script = tmp_path / "fake_bench.py"
    script.write_text(
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "assert '--json' not in args, args\n"
        "out = args[args.index('--rows') + 1]\n"
        "json.dump([{'name': 'x', 'per_s': 5}], open(out, 'w'))\n",
        encoding="utf-8",
    )
    rows = before_after.run_once(ROOT / "src", [str(script)], tmp_path / "out.json", flag="--rows")
    assert rows == [{"name": "x", "per_s": 5}]
