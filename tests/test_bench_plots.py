"""The benchmark plots in ``docs/images/`` show the numbers of the tables beside them.

``bench/results/*.json`` hold each benchmarks page's tables as data; ``bench/plots.py`` draws
the SVG plots from them. These tests check that every results table is, cell for cell, a
table on its page, that every plot is shown on its page, and that drawing the plots again
gives the committed files byte for byte (so a changed results file without redrawn plots,
or a non-reproducible rendering, fails).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib is not installed (pip install 'aimdb[test]')",
)


@pytest.fixture(scope="module")
def plots() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_plots", ROOT / "bench" / "plots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_plots"] = module
    spec.loader.exec_module(module)
    return module


def _results() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


def missing_tables(plots: ModuleType, results: Path) -> list[str]:
    """Names of the tables in ``results`` that are not, cell for cell, a table on its page."""
    doc = json.loads(results.read_text(encoding="utf-8"))
    on_page = [(t.headers, t.rows) for t in plots.markdown_tables((ROOT / "docs" / doc["page"]).read_text())]
    return [name for name, t in doc["tables"].items() if (t["headers"], t["rows"]) not in on_page]


@pytest.mark.parametrize("results", _results(), ids=lambda p: p.name)
def test_results_tables_are_the_tables_on_the_page(plots: ModuleType, results: Path) -> None:
    assert missing_tables(plots, results) == []


def test_a_changed_cell_is_found(plots: ModuleType, tmp_path: Path) -> None:
    doc = json.loads((RESULTS / "core.json").read_text(encoding="utf-8"))
    doc["tables"]["w1"]["rows"][0][3] = "9.99M"
    changed = tmp_path / "core.json"
    changed.write_text(json.dumps(doc), encoding="utf-8")
    assert missing_tables(plots, changed) == ["w1"]


def test_every_plot_is_drawn_from_a_results_file_and_shown_on_its_page(plots: ModuleType) -> None:
    for name, (source, _draw) in plots.PLOTS.items():
        page = json.loads((RESULTS / (source + ".json")).read_text(encoding="utf-8"))["page"]
        assert (IMAGES / (name + ".svg")).is_file(), f"run python bench/plots.py ({name})"
        assert f"](images/{name}.svg)" in (ROOT / "docs" / page).read_text(), f"{name} is not on {page}"
    drawn = {p.stem for p in IMAGES.glob("bench-*.svg")}
    assert drawn == set(plots.PLOTS), "a plot in docs/images/ that bench/plots.py does not draw"


def test_redrawing_gives_the_committed_files(plots: ModuleType) -> None:
    assert plots.main(["--check"]) == 0, "run python bench/plots.py and commit docs/images/"
    svg = (IMAGES / "bench-demo.svg").read_bytes()
    assert b"<dc:date>" not in svg and b"matplotlib v" not in svg


def test_check_mode_reports_a_stale_plot(plots: ModuleType, tmp_path: Path) -> None:
    for name in ("bench-demo", "bench-remote"):
        shutil.copy(IMAGES / (name + ".svg"), tmp_path / (name + ".svg"))
    assert plots.main(["--check", "--out", str(tmp_path), "bench-demo", "bench-remote"]) == 0
    stale = tmp_path / "bench-demo.svg"
    stale.write_bytes(stale.read_bytes() + b"\n")
    assert plots.main(["--check", "--out", str(tmp_path), "bench-demo", "bench-remote"]) == 1


def test_a_changed_result_changes_the_plot(plots: ModuleType, tmp_path: Path) -> None:
    shutil.copytree(RESULTS, tmp_path / "results")
    path = tmp_path / "results" / "demo.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"2.77"', '"2.78"'), encoding="utf-8")
    assert plots.render("bench-demo", tmp_path / "results") != (IMAGES / "bench-demo.svg").read_bytes()


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("5.20M", 5.2e6),
        ("1,800", 1800.0),
        ("76.1 µs", 76.1),
        ("622,830 (raw `executemany`)", 622830.0),
        ("0.98 / 5.94", 0.98),
        ("14.47x", 14.47),
        ("0.050", 0.05),
        ("12k", 12000.0),
    ],
)
def test_cells_are_read_as_numbers(plots: ModuleType, cell: str, value: float) -> None:
    assert plots.num(cell) == pytest.approx(value)


def test_a_dash_is_no_number(plots: ModuleType) -> None:
    assert re.match("nan", str(plots.num("-")))


def test_results_files_shared_by_scripts_keep_the_other_tables(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "_common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = common
    spec.loader.exec_module(common)
    path = tmp_path / "runtimes.json"
    shutil.copy(RESULTS / "runtimes.json", path)
    before = json.loads(path.read_text(encoding="utf-8"))
    fresh = {"headers": ["implementation", "ns per delivery"], "rows": [["aimdb", 300]]}
    common.write_results(path, "benchmarks-runtimes.md", "python bench/trio_fanout.py", {"trio": fresh})
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after["source"] == before["source"]
    assert after["tables"]["sync-asyncio"] == before["tables"]["sync-asyncio"]
    assert after["tables"]["trio"] == {
        "source": "python bench/trio_fanout.py",
        "headers": ["implementation", "ns per delivery"],
        "rows": [["aimdb", "300"]],
    }
    # another page's file is replaced, not merged
    common.write_results(path, "benchmarks-remote.md", "python bench/remote.py", {"get": fresh})
    assert list(json.loads(path.read_text(encoding="utf-8"))["tables"]) == ["get"]
