"""The built documentation site in headless Chromium, opened from disk (``file://``).

Every page in the nav, at 1280 and at 800 px: nothing is cut off (the page does not scroll
sideways and no element reaches past the content column unless it sits in an element that
scrolls, as wide tables do), Python code blocks are highlighted (Pygments token spans in
another colour), every link into the site names a file (not a directory listing), every
image loads, and nothing is requested from another host. Screenshots of a few pages are
written to ``build/screenshots/`` (the path is printed; run with ``-s`` to see it).

Needs Debian's ``chromium`` (``scripts/setup-test-env`` installs it) and Python Playwright;
no browser is downloaded.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
WIDTHS = [1280, 800]
SHOTS = [
    "index.html",
    "benchmarks.html",
    "benchmarks-connectors.html",
    "guides/buffers.html",
    "reference/database.html",
]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("site_browser", ROOT / "tools" / "site_browser.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["site_browser"] = module
    spec.loader.exec_module(module)
    return module


sb = _load_tool()


def _nav_pages() -> list[str]:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(nav: Any) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in walk(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in walk(value)]
        return []

    return [p[: -len(".md")] + ".html" for p in walk(config["nav"])]


def _missing() -> str | None:
    for module, extra in (("mkdocs", "docs"), ("playwright", "test")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'aimdb[{extra}]')"
    if sb.chromium_path() is None:
        return "chromium is not installed (scripts/setup-test-env installs Debian's chromium)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out: Path = sb.build_site(tmp_path_factory.mktemp("docs-site") / "site")
    return out


@pytest.fixture(scope="module")
def tabs(site: Path) -> Iterator[dict[int, Any]]:
    with sb.browser() as b:
        opened = {w: sb.SiteTab(b, site, w) for w in WIDTHS}
        try:
            yield opened
        finally:
            for tab in opened.values():
                tab.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", _nav_pages())
def test_page_in_the_browser(tabs: dict[int, Any], site: Path, page: str, width: int) -> None:
    report = tabs[width].inspect(page)
    assert report.doc_scroll_width <= report.inner_width, f"{page} scrolls sideways at {width} px"
    assert report.cut == [], f"cut off at {width} px"
    assert report.unhighlighted == [], "python blocks without highlighting"
    assert report.broken_links(site) == []
    assert report.unloaded_images() == []
    assert report.off_host == [], "requests to other hosts"


def test_benchmark_pages_show_their_plots(tabs: dict[int, Any]) -> None:
    report = tabs[1280].inspect("benchmarks.html")
    plots = [i["src"] for i in report.images if "/images/bench-core-" in i["src"]]
    assert len(plots) == 3 and report.unloaded_images() == []


def test_highlighting_is_seen(tabs: dict[int, Any]) -> None:
    report = tabs[800].inspect("guides/buffers.html")
    assert report.python_blocks > 0 and report.unhighlighted == []


def test_the_checks_find_what_they_look_for(tabs: dict[int, Any], site: Path, tmp_path: Path) -> None:
    """A page with a cut-off element, a plain code block, a directory link and a broken image."""
    bad = site / "broken-on-purpose.html"
    bad.write_text(
        (site / "index.html")
        .read_text()
        .replace(
            '<div class="md-content" data-md-component="content">',
            '<div class="md-content" data-md-component="content">'
            '<div style="width:3000px;background:red">too wide</div>'
            '<div class="language-python highlight"><pre><code>import asyncio</code></pre></div>'
            '<a href="guides/">a directory</a><img src="images/no-such-plot.svg">',
            1,
        )
    )
    try:
        report = tabs[800].inspect("broken-on-purpose.html")
    finally:
        bad.unlink()
    assert report.doc_scroll_width > report.inner_width
    assert any("too wide" in c for c in report.cut)
    assert report.unhighlighted == ["import asyncio"]
    assert any(link.endswith("/guides/") for link in report.broken_links(site))
    assert any(src.endswith("no-such-plot.svg") for src in report.unloaded_images())


def test_screenshots(tabs: dict[int, Any]) -> None:
    out = ROOT / "build" / "screenshots"
    written = []
    for width, tab in tabs.items():
        for page in SHOTS:
            tab.open(page)
            name = page.replace("/", "-").replace(".html", f"-{width}.png")
            # the whole page where it is short enough to look at, else the first screen
            written.append(tab.screenshot(out / name, full_page=page.startswith("benchmarks")))
    assert all(p.stat().st_size > 0 for p in written)
    print(f"\nscreenshots of the docs site: {out}")
