"""Run a benchmark against an earlier commit and the working tree, alternately, in one run.

The machine's own spread is often larger than a change's effect, so "before" and "after"
are measured in the same run, alternating (before, after, after, before, ...), each round
in a fresh process. The earlier commit's ``src/`` is exported to a temporary folder and put
first on ``PYTHONPATH``; the benchmark script itself is always the working tree's.

    python bench/before_after.py --ref 0d2b377 --rounds 4 -- bench/connectors.py --only mqtt

The benchmark must accept ``--json PATH`` and write a list of rows (``name`` plus numeric
fields) there, as ``bench/connectors.py`` and ``bench/nats_connector.py`` do; a benchmark
whose option for that is another one names it with ``--json-flag`` (``bench/remote.py``
writes its rows with ``--rows``, its ``--json`` is a results file of text tables; an
equals sign keeps the value from being read as an option: ``--json-flag=--rows``):

    python bench/before_after.py --ref 440f179 --rounds 6 --json-flag=--rows \
        --fields median_us,p99_us,events_per_s_total,tight_ns,produce_ns -- bench/remote.py

Prints, per row and field, the median and range of each side and the change of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_once(src: Path, cmd: list[str], out: Path, flag: str = "--json") -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(src))
    subprocess.run([sys.executable, *cmd, flag, str(out)], cwd=ROOT, env=env, check=True)
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


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
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS]")
    args = ap.parse_args()
    cmd = [c for c in args.cmd if c != "--"]
    if not cmd:
        ap.error("give the benchmark after --")
    fields = args.fields.split(",")
    runs: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        before_src = export(args.ref, Path(tmp))
        sides = {"before": before_src, "after": ROOT / "src"}
        order = []
        for i in range(args.rounds):
            order += ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for n, side in enumerate(order):
            print(f"== round {n + 1}/{len(order)}: {side}", flush=True)
            runs[side].append(run_once(sides[side], cmd, Path(tmp) / f"{n}.json", args.json_flag))
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
