"""Run a benchmark against an earlier commit and the working tree, alternately, in one run.

The machine's own spread is often larger than a change's effect, so "before" and "after"
are measured in the same run, alternating (before, after, after, before, ...), each round
in a fresh process. The earlier commit's ``src/`` is exported to a temporary folder and put
first on ``PYTHONPATH``; the benchmark script itself is always the working tree's.

    python bench/before_after.py --ref 0d2b377 --rounds 4 -- bench/connectors.py --only mqtt

The benchmark must accept ``--json PATH`` and write there either a list of rows (``name``
plus numeric fields), as ``bench/connectors.py`` and ``bench/nats_connector.py`` do, or a
results file (the tables of a docs page, as ``bench/demo.py --quick --json PATH`` writes).
A results file's rows are named ``table: first cell`` (``table: first / second cell`` when
the first is not unique) and their numeric cells become fields named after the column,
lower case with runs of other characters as ``_`` (``p99 ms`` -> ``p99_ms``, ``CPU %`` ->
``cpu``). Prints, per row and field, the median and range of each side and the change of
the medians.

    python bench/before_after.py --ref 69ca258 --rounds 3 --fields p50_ms,p99_ms,cpu \\
        --before-env AIMDB_MICROPYTHON_RUNNER=/path/to/old/run.mjs \\
        -- bench/demo.py --quick --private-broker

``--before-env KEY=VALUE`` sets a variable for the earlier commit's runs only: what that
commit kept outside ``src/`` (the demo's MicroPython runner lived in ``tools/micropython/``
before it moved into the package) is not exported with it.

A benchmark whose option for the rows file is another one names it with ``--json-flag``
(``bench/remote.py`` writes its rows with ``--rows``, its ``--json`` is a results file of
text tables; an equals sign keeps the value from being read as an option:
``--json-flag=--rows``):

    python bench/before_after.py --ref 440f179 --rounds 6 --json-flag=--rows \\
        --fields median_us,p99_us,events_per_s_total,tight_ns,produce_ns -- bench/remote.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def export(ref: str, dest: Path) -> Path:
    """Write ``ref``'s ``src/`` under ``dest`` and return the folder to import from."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def _number(cell: Any) -> float | None:
    """``cell`` as a number (``"1,234"``, ``"0.52"``, ``12``), or ``None`` when it is not one."""
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return float(cell)
    try:
        return float(str(cell).replace(",", "").strip())
    except ValueError:
        return None


def _field(header: str) -> str:
    """A column header as a field name: ``"p99 ms"`` -> ``p99_ms``, ``"CPU %"`` -> ``cpu``."""
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


def rows_of(data: Any) -> list[dict[str, Any]]:
    """The rows of one run: a list of rows as it is, or the rows of a results file's tables."""
    if isinstance(data, list):
        return data
    rows: list[dict[str, Any]] = []
    for tname, t in data["tables"].items():
        firsts = [str(r[0]) for r in t["rows"]]
        unique = len(set(firsts)) == len(firsts)
        for r in t["rows"]:
            name = f"{tname}: {r[0]}" if unique or len(r) < 2 else f"{tname}: {r[0]} / {r[1]}"
            row: dict[str, Any] = {"name": name}
            for h, c in zip(t["headers"][1:], r[1:]):
                v = _number(c)
                if v is not None:
                    row[_field(h)] = v
            rows.append(row)
    return rows


def run_once(
    src: Path,
    cmd: list[str],
    out: Path,
    extra_env: dict[str, str] | None = None,
    flag: str = "--json",
) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(src), **(extra_env or {}))
    subprocess.run([sys.executable, *cmd, flag, str(out)], cwd=ROOT, env=env, check=True)
    return rows_of(json.loads(out.read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="the commit to compare against (before)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per side")
    ap.add_argument("--fields", default="per_s,p50_ms,p99_ms", help="numeric fields to compare")
    ap.add_argument("--json", type=Path, help="write every run's rows here")
    ap.add_argument(
        "--json-flag",
        default="--json",
        help="the benchmark's option that takes the rows file (default --json)",
    )
    ap.add_argument("--before-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for the earlier commit's runs only (repeatable)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS]")
    args = ap.parse_args()
    cmd = [c for c in args.cmd if c != "--"]
    if not cmd:
        ap.error("give the benchmark after --")
    fields = args.fields.split(",")
    before_env: dict[str, str] = {}
    for item in args.before_env:
        key, eq, value = item.partition("=")
        if not eq or not key:
            ap.error(f"--before-env wants KEY=VALUE, got {item!r}")
        before_env[key] = value
    runs: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        before_src = export(args.ref, Path(tmp))
        sides = {"before": before_src, "after": ROOT / "src"}
        order = []
        for i in range(args.rounds):
            order += ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for n, side in enumerate(order):
            print(f"== round {n + 1}/{len(order)}: {side}", flush=True)
            extra = before_env if side == "before" else None
            runs[side].append(run_once(sides[side], cmd, Path(tmp) / f"{n}.json", extra, args.json_flag))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    names = [r["name"] for r in runs["after"][0]]
    print(f"\n{args.rounds} runs per side, alternating; before = {args.ref}, after = working tree\n")
    print("| row | field | before: median (range) | after: median (range) | change |")
    print("|---|---|---|---|---|")
    for name in names:
        for f in fields:
            sides_vals = {}
            for side in ("before", "after"):
                vals = [r[f] for run in runs[side] for r in run if r["name"] == name and r.get(f) is not None]
                sides_vals[side] = vals
            if not sides_vals["before"] or not sides_vals["after"]:
                continue
            mb = statistics.median(sides_vals["before"])
            ma = statistics.median(sides_vals["after"])

            def cell(vals: list[float], med: float) -> str:
                return f"{med:,.3g} ({min(vals):,.3g}-{max(vals):,.3g})"

            change = f"{(ma - mb) / mb * 100:+.1f} %" if mb else "-"
            before, after = cell(sides_vals["before"], mb), cell(sides_vals["after"], ma)
            print(f"| {name} | {f} | {before} | {after} | {change} |")


if __name__ == "__main__":
    main()
