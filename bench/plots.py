"""Draw the benchmark plots in ``docs/images/`` from the results files in ``bench/results/``.

Each results file holds the tables of one benchmarks page, cell by cell as the page shows
them (``bench/core.py``, ``bench/demo.py`` and ``bench/remote.py`` write theirs when they
update the docs, ``bench/sync_api.py`` and ``bench/trio_fanout.py`` with ``--json``; the
others were taken from the runs their pages describe, see each file's ``source``). Every
plot is drawn from those cells and labels its bars with the cell text, so a plot shows the
numbers of the table beside it; ``tests/test_bench_plots.py`` checks that each results table
is on its page and that drawing again gives the committed SVG files byte for byte::

    python bench/plots.py               # redraw every plot into docs/images/
    python bench/plots.py --check       # exit 1 if a committed plot differs from its results
    python bench/plots.py --out DIR     # draw into DIR instead

Rendering is reproducible: the Agg/SVG backends, a fixed ``svg.hashsalt``, no date in the
metadata and text drawn as paths (no font lookup in the browser).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"

STYLE = {
    "svg.hashsalt": "aimdb-bench-plots",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "x",
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
}
COLORS = ["#3f51b5", "#ef6c00", "#2e7d32", "#8e24aa", "#00838f"]


# ---------------------------------------------------------------- results files and tables


@dataclass
class Table:
    """A table of text cells, as on a docs page."""

    headers: list[str]
    rows: list[list[str]]

    def column(self, header: str) -> list[str]:
        """The cells of the column named ``header``."""
        i = self.headers.index(header)
        return [r[i] for r in self.rows]

    def where(self, **match: str) -> Table:
        """The rows whose cells equal ``match`` (column name -> text; ``_`` stands for a space)."""
        idx = {self.headers.index(k.replace("_", " ")): v for k, v in match.items()}
        return Table(self.headers, [r for r in self.rows if all(r[i] == v for i, v in idx.items())])


def load(name: str, results: Path = RESULTS) -> dict[str, Table]:
    """The tables of ``bench/results/<name>.json`` by name."""
    doc = json.loads((results / (name + ".json")).read_text(encoding="utf-8"))
    return {k: Table(t["headers"], t["rows"]) for k, t in doc["tables"].items()}


_ROW = re.compile(r"^\s*\|(.*)\|\s*$")
_RULE = re.compile(r"^[\s|:-]+$")


def markdown_tables(text: str) -> list[Table]:
    """Every pipe table in a markdown text (header row, rule, rows), cells stripped."""
    tables: list[Table] = []
    lines = text.splitlines()
    i = 0
    while i + 1 < len(lines):
        head, rule = _ROW.match(lines[i]), lines[i + 1]
        if head and _ROW.match(rule) and _RULE.match(rule) and "-" in rule:
            rows = []
            j = i + 2
            while j < len(lines) and (m := _ROW.match(lines[j])):
                rows.append([c.strip() for c in m.group(1).split("|")])
                j += 1
            tables.append(Table([c.strip() for c in head.group(1).split("|")], rows))
            i = j
        else:
            i += 1
    return tables


_NUMBER = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")


def num(cell: str) -> float:
    """The number a cell starts with: ``"5.20M"`` 5.2e6, ``"1,800"``, ``"76.1 µs"``, ``"-"`` nan."""
    text = cell.strip().lstrip("*")
    m = _NUMBER.match(text)
    if not m or not m.group(0) or m.group(0) == "-":
        return math.nan
    value = float(m.group(0).replace(",", ""))
    rest = text[m.end() :]
    if rest.startswith("M"):
        value *= 1e6
    elif rest.startswith("k"):
        value *= 1e3
    return value


# ---------------------------------------------------------------- drawing


def hbars(
    ax: Axes,
    labels: Sequence[str],
    series: dict[str, tuple[Sequence[float], Sequence[str]]],
    xlabel: str,
    title: str = "",
    log: bool = False,
) -> None:
    """Grouped horizontal bars: one group per label, one bar per series, each with its cell text."""
    n = len(series)
    height = 0.8 / n
    for k, (name, (values, texts)) in enumerate(series.items()):
        ys = [j + (k - (n - 1) / 2) * height for j in range(len(labels))]
        drawn = [0.0 if math.isnan(v) else v for v in values]
        bars = ax.barh(ys, drawn, height=height, label=name, color=COLORS[k % len(COLORS)])
        ax.bar_label(bars, labels=list(texts), padding=2, fontsize=7)
    ax.set_yticks(range(len(labels)), list(labels))
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if log:
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi * 4)
    else:
        ax.set_xlim(0, ax.get_xlim()[1] * 1.15)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.10g}"))
    if title:
        ax.set_title(title, loc="left", fontsize=9, fontweight="bold")
    if n > 1:
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=n, frameon=False)


def column(t: Table, header: str, scale: float = 1.0) -> tuple[list[float], list[str]]:
    """A column's numbers (times ``scale``) and its cell texts."""
    cells = t.column(header)
    return [num(c) * scale for c in cells], cells


def figure(rows: int, cols: int = 1, height: float = 2.6, width: float = 7.0) -> Any:
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    return fig, [ax for line in axes for ax in line]


# ---------------------------------------------------------------- the plots


def core_w1(r: dict[str, Table]) -> Any:
    fig, axes = figure(2, height=2.8)
    w1 = r["w1"]
    for ax, loop in zip(axes, ("asyncio", "uvloop"), strict=True):
        t = w1.where(loop=loop)
        readers = list(dict.fromkeys(t.column("readers")))
        series = {}
        for variant in dict.fromkeys(t.column("variant")):
            v = t.where(variant=variant)
            series[variant] = column(v, "deliveries/s", 1e-6)
        hbars(
            ax,
            [f"{n} reader{'s' if n != '1' else ''}" for n in readers],
            series,
            "million deliveries/s (higher is better)",
            f"W1 fan-out, {loop}",
        )
    return fig


def core_w2(r: dict[str, Table]) -> Any:
    fig, axes = figure(2, height=2.4)
    w2 = r["w2"]
    for ax, loop in zip(axes, ("asyncio", "uvloop"), strict=True):
        t = w2.where(loop=loop)
        labels = [f"{rate} {impl}" for rate, impl in zip(t.column("rate"), t.column("impl"), strict=True)]
        series = {"p50": column(t, "p50 us"), "p99": column(t, "p99 us")}
        hbars(ax, labels, series, "µs produce -> receive (lower is better)", f"W2 latency, {loop}")
    return fig


def core_produce(r: dict[str, Table]) -> Any:
    fig, axes = figure(1, height=3.6)
    t = r["produce"]
    cases = list(dict.fromkeys(t.column("case")))
    series = {loop: column(t.where(loop=loop), "median ns") for loop in dict.fromkeys(t.column("loop"))}
    hbars(
        axes[0],
        cases,
        series,
        "median ns per call, log scale (lower is better)",
        "produce(), 16 readers",
        True,
    )
    return fig


def demo(r: dict[str, Table]) -> Any:
    fig, axes = figure(1, height=3.4)
    t = r["runs"]
    series = {"p50": column(t, "p50 ms"), "p99": column(t, "p99 ms"), "max": column(t, "max ms")}
    hbars(axes[0], t.column("run"), series, "ms produce -> reader (lower is better)", "Latency per run")
    return fig


def runtimes(r: dict[str, Table]) -> Any:
    fig, axes = figure(2, height=2.6)
    labels: list[str] = []
    ours: tuple[list[float], list[str]] = ([], [])
    base: tuple[list[float], list[str]] = ([], [])
    for loop in ("asyncio", "uvloop"):
        t = r["sync-" + loop]
        labels += [f"{loop}: {m.replace(' (µs per value)', '')}" for m in t.column(t.headers[0])]
        for acc, header in ((ours, "aimdb.sync"), (base, "queue.Queue")):
            values, texts = column(t, header)
            acc[0].extend(values)
            acc[1].extend(texts)
    hbars(
        axes[0],
        labels,
        {"aimdb.sync": ours, "queue.Queue": base},
        "µs per value, log scale (lower is better)",
        "Sync API",
        log=True,
    )
    t = r["trio"]
    hbars(
        axes[1],
        t.column("implementation"),
        {"ns per delivery": column(t, "ns per delivery")},
        "ns per delivery (lower is better)",
        "trio backend, W1 fan-out to 16 readers",
    )
    return fig


def remote(r: dict[str, Table]) -> Any:
    fig, axes = figure(2, height=2.2)
    t = r["subscribe"]
    hbars(
        axes[0],
        [f"{c} client{'s' if c != '1' else ''}" for c in t.column("clients")],
        {"events/s total": column(t, "events/s total"), "per client": column(t, "events/s per client")},
        "events/s (higher is better)",
        "Subscribe event throughput",
    )
    t = r["produce-cost"]
    hbars(
        axes[1],
        [f"{s} subscriber{'s' if s != '1' else ''}" for s in t.column("remote subscribers")],
        {h: column(t, h) for h in ("tight loop", "inside produce", "wall per value")},
        "ns per value, log scale",
        "Cost a remote subscriber adds to produce()",
        log=True,
    )
    return fig


def persistence(r: dict[str, Table]) -> Any:
    fig, axes = figure(1, height=2.2)
    t = r["persistence"]
    first, second = t.rows[0], t.rows[1]
    hbars(
        axes[0],
        ["aimdb, persisted ring", "raw executemany, pre-encoded rows", "raw executemany, encoding too"],
        {
            "values/s": (
                [num(first[1]), num(first[2]), num(second[2])],
                [first[1], first[2].split(" (")[0], second[2]],
            )
        },
        "values/s written to SQLite (higher is better)",
        "Persisted throughput",
    )
    return fig


def _distinct(names: Sequence[str]) -> list[str]:
    """Names with a repeat marked: the second ``x`` becomes ``x (round 2)``."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} (round {seen[n]})")
    return out


def connectors(r: dict[str, Table]) -> Any:
    fig, axes = figure(2, height=3.4, width=8.0)
    t = r["latest"]
    bulk = Table(t.headers, [row for row in t.rows if row[2] != "-"])
    paced = Table(t.headers, [row for row in t.rows if row[2] == "-"])
    hbars(
        axes[0],
        _distinct(bulk.column("run")),
        {"values/s": column(bulk, "values/s")},
        "values/s end to end, log scale (higher is better)",
        "Throughput, MQTT and Kafka",
        log=True,
    )
    hbars(
        axes[1],
        [n.replace(" @1000/s", "") for n in paced.column("run")],
        {"p50": column(paced, "p50 ms"), "p99": column(paced, "p99 ms")},
        "ms at 1,000 values/s, log scale (lower is better)",
        "Latency, paced",
        log=True,
    )
    return fig


def nats(r: dict[str, Table]) -> Any:
    fig, axes = figure(2, height=3.2, width=8.0)
    tables = {loop: r["nats-" + loop] for loop in ("asyncio", "uvloop")}
    bulk = {k: Table(t.headers, [row for row in t.rows if row[2] != "-"]) for k, t in tables.items()}
    paced = {k: Table(t.headers, [row for row in t.rows if row[2] == "-"]) for k, t in tables.items()}
    hbars(
        axes[0],
        _distinct(bulk["asyncio"].column(bulk["asyncio"].headers[0])),
        {loop: column(t, "values/s") for loop, t in bulk.items()},
        "values/s end to end (higher is better)",
        "NATS throughput",
    )
    hbars(
        axes[1],
        [n.replace(" @1000/s", "") for n in paced["asyncio"].column(paced["asyncio"].headers[0])],
        {loop: column(t, "p99 ms") for loop, t in paced.items()},
        "p99 ms at 1,000 values/s (lower is better)",
        "NATS latency, paced",
    )
    return fig


# plot file name (docs/images/<name>.svg) -> (results file name, drawing)
PLOTS: dict[str, tuple[str, Callable[[dict[str, Table]], Any]]] = {
    "bench-core-w1": ("core", core_w1),
    "bench-core-w2": ("core", core_w2),
    "bench-core-produce": ("core", core_produce),
    "bench-demo": ("demo", demo),
    "bench-runtimes": ("runtimes", runtimes),
    "bench-remote": ("remote", remote),
    "bench-persistence": ("persistence", persistence),
    "bench-connectors": ("connectors", connectors),
    "bench-connectors-nats": ("connectors", nats),
}


def render(name: str, results: Path = RESULTS) -> bytes:
    """The SVG of plot ``name`` drawn from the results files in ``results``."""
    source, draw = PLOTS[name]
    with plt.rc_context(STYLE):
        fig = draw(load(source, results))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "bench/plots.py"})
        plt.close(fig)
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=IMAGES, help="directory for the SVG files")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    ap.add_argument("names", nargs="*", help="plots to draw (default: all): " + ", ".join(PLOTS))
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in PLOTS]
    if unknown:
        ap.error("no such plot: " + ", ".join(unknown))
    stale = []
    for name in args.names or PLOTS:
        svg = render(name)
        path = args.out / (name + ".svg")
        if args.check:
            if not path.exists() or path.read_bytes() != svg:
                stale.append(path)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_bytes(svg)
        print(f"wrote {path} ({len(svg):,} bytes)")
    for path in stale:
        print(f"{path} differs from its results file: run python bench/plots.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
