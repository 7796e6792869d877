"""``bench/before_after.py`` reads both kinds of ``--json`` output: a list of rows and a results file."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def before_after() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_before_after", ROOT / "bench" / "before_after.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_before_after"] = module
    spec.loader.exec_module(module)
    return module


def test_a_list_of_rows_is_taken_as_it_is(before_after: ModuleType) -> None:
    rows = [{"name": "mqtt qos0", "per_s": 1000.0}]
    assert before_after.rows_of(rows) == rows


def test_a_results_file_becomes_named_rows_of_numeric_fields(before_after: ModuleType) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _common import results_json
    finally:
        sys.path.remove(str(ROOT / "bench"))
    tables = {
        "runs": {"headers": ["run", "values/s", "samples", "p99 ms", "CPU %"],
                 "rows": [["demo, default, 10 Hz", "60", "1,234", "3.21", "1.50"],
                          ["floor", "60", "2,000", "-", "0.40"]]},
        "stations": {"headers": ["run", "station", "p50 ms"],
                     "rows": [["demo", "alpine", "0.5"], ["demo", "coast", "0.7"]]},
    }
    data = json.loads(results_json("benchmarks-demo.md", "a run", tables))
    assert before_after.rows_of(data) == [
        {"name": "runs: demo, default, 10 Hz", "values_s": 60.0, "samples": 1234.0, "p99_ms": 3.21,
         "cpu": 1.5},
        {"name": "runs: floor", "values_s": 60.0, "samples": 2000.0, "cpu": 0.4},  # "-" is no number
        {"name": "stations: demo / alpine", "p50_ms": 0.5},  # the first cell repeats: the second joins
        {"name": "stations: demo / coast", "p50_ms": 0.7},
    ]
