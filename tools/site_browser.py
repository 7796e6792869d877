"""The built documentation site in headless Chromium: layout checks and screenshots.

Used by ``tests/docs/test_site_browser.py`` (checks every page) and by
``scripts/docs-screenshots`` (renders the screenshots in ``docs/images/``). Pages are opened
from disk (``file://``), as a reader who downloaded the built site would. The browser is
the system's Chromium (Debian's ``chromium``), driven by Python Playwright; no browser is
downloaded. Every request for something not on disk is refused and recorded.

Run as a script to render the screenshots::

    python tools/site_browser.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mkdocs.yml"

# The screenshots in docs/images/: file name, page, viewport width, theme scheme, and the
# element to scroll to the middle of the screen (None: the top of the page).
SCREENSHOTS = [
    ("site-home.png", "index.html", 1280, "default", None),
    (
        "site-benchmarks.png",
        "benchmarks-connectors.html",
        1280,
        "default",
        "img[src$='bench-connectors.svg']",
    ),
    ("site-guide-dark.png", "guides/buffers.html", 1280, "slate", None),
]
HEIGHT = 800

# Run in the page: what is cut off, what is highlighted, which links and images it has.
_INSPECT = """
() => {
  // The content column; tables scroll inside it (Material's .md-typeset__scrollwrap).
  const content = document.querySelector('.md-content') || document.body;
  const box = content.getBoundingClientRect();
  const scrolls = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll') return true;
    }
    return false;
  };
  const describe = (el) => {
    const cls = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).join('.') : '';
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (cls ? '.' + cls : '') +
      ' "' + (el.textContent || '').trim().slice(0, 60) + '"';
  };
  const cut = [];
  for (const el of content.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > box.right + 1 || r.left < box.left - 1) {
      if (!scrolls(el)) {
        cut.push(describe(el) + ' right=' + Math.round(r.right) + ' box=' + Math.round(box.right));
      }
    }
  }
  const plain = [];
  let highlighted = 0;
  for (const code of content.querySelectorAll('div.language-python.highlight pre code')) {
    // Highlighted: Pygments token spans, at least one drawn in another colour than plain code.
    const base = getComputedStyle(code).color;
    const tokens = Array.from(code.querySelectorAll('span[class]'));
    if (tokens.some(t => getComputedStyle(t).color !== base)) highlighted += 1;
    else plain.push((code.textContent || '').slice(0, 60));
  }
  return {
    docScrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    cut: cut,
    pythonBlocks: highlighted + plain.length,
    unhighlighted: plain,
    links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
    images: Array.from(content.querySelectorAll('img'),
                       i => ({src: i.src, loaded: i.complete && i.naturalWidth > 0})),
  };
}
"""


@dataclass
class PageReport:
    """What one page looked like at one width."""

    page: str
    width: int
    doc_scroll_width: int
    inner_width: int
    cut: list[str]
    python_blocks: int
    unhighlighted: list[str]
    links: list[str]
    images: list[dict[str, Any]]
    off_host: list[str] = field(default_factory=list)

    def broken_links(self, site: Path) -> list[str]:
        """Links into the site that do not name a file on disk (a directory counts as broken)."""
        out = []
        for link in self.links:
            parts = urlsplit(link)
            if parts.scheme != "file":
                continue
            target = Path(unquote(parts.path))
            if not target.is_file():
                out.append(link)
            elif site.resolve() not in target.resolve().parents:
                out.append(link + " (outside the site)")
        return out

    def unloaded_images(self) -> list[str]:
        """Images that did not load (naturalWidth 0)."""
        return [i["src"] for i in self.images if not i["loaded"]]


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def build_site(dest: Path) -> Path:
    """``mkdocs build --strict`` into ``dest``; raises ``RuntimeError`` with the output on failure."""
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(CONFIG)]
    cmd += ["--site-dir", str(dest)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    if proc.returncode != 0:
        raise RuntimeError("mkdocs build failed:\n" + proc.stdout + proc.stderr)
    return dest


@contextmanager
def browser() -> Iterator[Any]:
    """A headless system Chromium (Playwright ``Browser``); ``RuntimeError`` when there is none."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium; scripts/setup-test-env)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class SiteTab:
    """One tab at a fixed width that opens pages of the built site from disk."""

    def __init__(self, b: Any, site: Path, width: int, scheme: str = "default") -> None:
        self.site = site.resolve()
        self.width = width
        self.context = b.new_context(viewport={"width": width, "height": HEIGHT}, device_scale_factor=1)
        self.off_host: list[str] = []
        self.context.route("**/*", self._route)
        if scheme != "default":
            # Material keeps the chosen palette in localStorage ("__palette", scoped per site path).
            self.context.add_init_script(
                "document.addEventListener('DOMContentLoaded', () => {"
                f"document.body.setAttribute('data-md-color-scheme', '{scheme}');"
                "});"
            )
        self.page = self.context.new_page()

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.off_host.append(url)
            route.abort()

    def open(self, page: str) -> None:
        """Open ``page`` (a path inside the site) and wait until it and its images loaded."""
        self.off_host.clear()
        self.page.goto((self.site / page).as_uri(), wait_until="load")

    def inspect(self, page: str) -> PageReport:
        """Open ``page`` and report its layout, highlighting, links and images."""
        self.open(page)
        r = self.page.evaluate(_INSPECT)
        return PageReport(
            page=page,
            width=self.width,
            doc_scroll_width=r["docScrollWidth"],
            inner_width=r["innerWidth"],
            cut=r["cut"],
            python_blocks=r["pythonBlocks"],
            unhighlighted=r["unhighlighted"],
            links=r["links"],
            images=r["images"],
            off_host=list(self.off_host),
        )

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """A PNG of the open page (the viewport, or the whole page)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def close(self) -> None:
        """Close the tab's browser context."""
        self.context.close()


def render_screenshots(out: Path) -> list[Path]:
    """Build the site and write the :data:`SCREENSHOTS` into ``out``."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(Path(tmp) / "site")
        with browser() as b:
            for name, page, width, scheme, focus in SCREENSHOTS:
                tab = SiteTab(b, site, width, scheme)
                try:
                    tab.open(page)
                    if focus is not None:
                        tab.page.locator(focus).first.evaluate("e => e.scrollIntoView({block: 'center'})")
                    written.append(tab.screenshot(out / name))
                finally:
                    tab.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Render the screenshots; 1 with a one-line reason when the site or the browser fails."""
    ap = argparse.ArgumentParser(description="Render screenshots of the built documentation site.")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="directory for the PNG files")
    args = ap.parse_args(argv)
    try:
        for path in render_screenshots(args.out):
            print(f"wrote {path}")
    except RuntimeError as exc:
        print(f"docs-screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
