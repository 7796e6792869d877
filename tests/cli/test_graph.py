"""``aimdb graph --format text|dot|svg|png``: real subprocesses of the command against a real
instance whose records are fed by a source, a transform, a join and a link, and linked out;
the DOT is checked by Graphviz itself and the SVG by an XML parser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb._cli._graph import dot_string, to_dot
from aimdb.remote import AimdbConnector

from ..remote._helpers import ServerThread, Setpoint, Temp, builder, short_tmpdir
from .test_conventions import aimdb

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz (dot) is not installed")
ODD_KEY = 'odd."key".back\\slash'  # quotes and a backslash: DOT must escape them


@pytest.fixture(scope="module")
def mirror() -> Iterator[ServerThread]:
    """An instance with a link in (from a second instance), a join, a transform and a link out."""
    with ServerThread(builder(), writable=["config.#", "station.#"]) as upstream:
        conn = AimdbConnector(upstream.endpoint, backoff=(0.05, 1.0))
        b = AimDbBuilder().with_connector(conn)
        b.configure(
            Temp,
            "in.temp",
            lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("aimdb://station.1.temp").finish(),
        )
        b.configure(
            Setpoint, "in.setpoint", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True)
        )
        b.configure(
            Temp,
            "calc.delta",
            lambda r: r.buffer(BufferCfg.SingleLatest()).join(
                [(Temp, "in.temp"), (Setpoint, "in.setpoint")], lambda t, s: Temp(t.celsius - s.celsius)
            ),
        )
        b.configure(
            Temp,
            "calc.double",
            lambda r: (
                r.buffer(BufferCfg.SingleLatest())
                .transform(Temp, "calc.delta", lambda t: Temp(t.celsius * 2))
                .link_to("aimdb://station.2.temp")
                .finish()
            ),
        )
        b.configure(Temp, ODD_KEY, lambda r: r.buffer(BufferCfg.SingleLatest()))
        with short_tmpdir() as d, ServerThread(b, unix=os.path.join(d, "m.sock"), writable=["in.#"]) as m:
            yield m


def _dot_nodes_and_edges(dot_text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Node names and edges as Graphviz itself reads them (``dot -Tcanon`` normalises)."""
    canon = subprocess.run(
        ["dot", "-Tplain"], input=dot_text, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    nodes, edges = set(), set()
    import shlex

    for line in canon.splitlines():
        parts = shlex.split(line)
        if parts and parts[0] == "node":
            nodes.add(parts[1])
        elif parts and parts[0] == "edge":
            edges.add((parts[1], parts[2]))
    return nodes, edges


@needs_dot
def test_dot_is_valid_and_has_the_records_join_transform_and_links(mirror: ServerThread) -> None:
    done = aimdb("-c", mirror.endpoint, "graph", "--format", "dot")
    assert done.code == 0, done.err
    assert done.out.startswith("digraph aimdb {"), done.out
    svg = subprocess.run(["dot", "-Tsvg"], input=done.out, capture_output=True, text=True, timeout=60)
    assert svg.returncode == 0, svg.stderr
    nodes, edges = _dot_nodes_and_edges(done.out)
    for key in ("in.temp", "in.setpoint", "calc.delta", "calc.double", ODD_KEY):
        assert key in nodes, nodes
    assert {"aimdb://station.1.temp", "aimdb://station.2.temp", "join calc.delta"} <= nodes
    assert ("aimdb://station.1.temp", "in.temp") in edges
    assert ("in.temp", "join calc.delta") in edges
    assert ("in.setpoint", "join calc.delta") in edges
    assert ("join calc.delta", "calc.delta") in edges
    assert ("calc.delta", "calc.double") in edges
    assert ("calc.double", "aimdb://station.2.temp") in edges
    # the link writer is named, a remote-writable record says so
    assert "writer: link aimdb://station.1.temp" in done.out
    assert "in.setpoint\\nSetpoint · single_latest\\nwriter: remote" in done.out


@needs_dot
def test_svg_is_xml_with_the_labels(mirror: ServerThread, tmp_path: Path) -> None:
    target = tmp_path / "graph.svg"
    done = aimdb("-c", mirror.endpoint, "graph", "--format", "svg", "-O", str(target))
    assert done.code == 0, done.err
    assert done.out == ""
    root = ET.parse(target).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for label in ("in.temp", "calc.delta", "calc.double", "join", "aimdb://station.1.temp", "writer: remote"):
        assert label in texts, texts
    assert ODD_KEY in texts, texts  # escaped in the DOT, shown as it is


@needs_dot
def test_png_goes_to_a_file_or_a_pipe(mirror: ServerThread, tmp_path: Path) -> None:
    target = tmp_path / "graph.png"
    done = aimdb("-c", mirror.endpoint, "graph", "-o", "png", "-O", str(target))
    assert done.code == 0, done.err
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    entry = "import sys; from aimdb._cli import main; sys.exit(main())"
    piped = subprocess.run(
        [sys.executable, "-c", entry, "-c", mirror.endpoint, "graph", "--format", "png"],
        capture_output=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith(b"\x89PNG\r\n\x1a\n")


def test_without_graphviz_svg_fails_in_one_line_naming_the_package(
    mirror: ServerThread, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"  # PATH without dot (but with whatever else the interpreter needs)
    bindir.mkdir()
    done = aimdb("-c", mirror.endpoint, "graph", "--format", "svg", env={"PATH": str(bindir)})
    assert done.code == 1, done.out + done.err
    assert done.err.count("\n") == 1 and "graphviz" in done.err and "Traceback" not in done.err, done.err
    assert done.out == ""


def test_text_tree_and_unknown_format(mirror: ServerThread) -> None:
    done = aimdb("-c", mirror.endpoint, "graph", "--format", "text")
    assert done.code == 0, done.err
    assert "in.temp: Temp · single_latest · writer=link [link_in]" in done.out, done.out
    bad = aimdb("-c", mirror.endpoint, "graph", "--format", "gif")
    assert bad.code == 2 and "gif" in bad.err, bad.err


def test_dot_string_escapes_quotes_backslashes_and_line_breaks() -> None:
    assert dot_string('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    g = {
        "nodes": [{"key": 'x"y', "type": "T", "buffer": "ring", "writer": "source"}],
        "edges": [{"from": 'x"y', "to": 'mqtt://t/"q"', "kind": "link_out"}],
        "order": ['x"y'],
    }
    text = to_dot(g)
    assert '"x\\"y"' in text and '"mqtt://t/\\"q\\""' in text, text


def test_the_docs_picture_of_the_demo_graph_is_generated_and_complete() -> None:
    """docs/images/demo-graph.svg comes from scripts/docs-graph (Graphviz), not by hand."""
    path = Path(__file__).resolve().parents[2] / "docs" / "images" / "demo-graph.svg"
    text = path.read_text(encoding="utf-8")
    assert "<!-- Generated by graphviz" in text
    root = ET.fromstring(text)
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for name in ("alpine", "coast", "valley"):
        for key in (f"station.{name}.temperature", f"station.{name}.humidity", f"hub.{name}.dewpoint"):
            assert key in texts, (key, texts)
    assert texts.count("join") == 3 and texts.count("writer: join") == 3, texts
