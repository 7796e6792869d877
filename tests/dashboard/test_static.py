"""The dashboard's static files: present, vendored uPlot unchanged, safe DOM, nothing from other hosts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from aimdb.dashboard import STATIC_DIR

STATIC = Path(STATIC_DIR)
UPLOT = STATIC / "vendor" / "uplot"
UPLOT_SHA256 = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}
OWN = [p for p in STATIC.rglob("*") if p.suffix in (".js", ".html", ".css") and "vendor" not in p.parts]


def test_static_dir_holds_the_page() -> None:
    assert (STATIC / "index.html").is_file()
    names = {p.relative_to(STATIC).as_posix() for p in OWN}
    assert {"index.html", "style.css", "js/app.js", "js/connection.js", "js/graph.js"} <= names


def test_uplot_is_the_vendored_release_unchanged() -> None:
    for name, digest in UPLOT_SHA256.items():
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == digest, name
    assert (
        (UPLOT / "uPlot.iife.min.js")
        .read_text()
        .startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    )
    notes = (UPLOT / "VENDORED.md").read_text()
    assert "1.6.32" in notes and "MIT" in notes
    for digest in UPLOT_SHA256.values():
        assert digest in notes


def test_no_html_parsing_of_data_in_our_scripts() -> None:
    """Record keys and values are untrusted: our code sets text, never HTML."""
    risky = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    for path in OWN:
        if path.suffix == ".js":
            hits = [ln for ln in path.read_text().splitlines() if risky.search(ln)]
            assert hits == [], f"{path.name}: {hits}"


def test_nothing_loaded_from_another_host() -> None:
    url = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.I)
    for path in OWN:
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")  # SVG namespace, not a request
        assert url.findall(text) == [], path.name
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r"""(?:src|href)="([^"]+)\"""", html):
        assert ref.startswith("data:") or (STATIC / ref).is_file(), ref
