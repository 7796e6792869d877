"""The documentation site: a strict MkDocs build, the guides in the nav, and runnable guide examples.

``mkdocs build --strict`` fails on any warning: a page missing from the nav or a nav entry
without a page, a broken link or anchor, a cross-reference to an undocumented object, or a
docstring mkdocstrings cannot parse. The built HTML is checked for what the strict build
does not see: a Markdown list without the blank line before it (rendered as one paragraph),
code blocks left unhighlighted, and pages loading anything from another host. The examples
in the guides are complete programs; each one is run as written (a ``<!-- not run -->``
comment before a block exempts it). The site in a browser: ``tests/docs/test_site_browser.py``.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"

GUIDES = [
    "guides/buffers.md",
    "guides/stages-and-lifecycle.md",
    "guides/connectors.md",
    "guides/sync-api.md",
    "guides/remote-and-cli.md",
    "guides/dashboard.md",
    "guides/persistence.md",
    "guides/micropython.md",
    "guides/testing.md",
    "guides/demo.md",
]

# Guides (and the home page) whose ```python blocks are checked by running them.
RUNNABLE = [
    "index.md",
    "guides/buffers.md",
    "guides/stages-and-lifecycle.md",
    "guides/remote-and-cli.md",
    "guides/micropython.md",
    "guides/testing.md",
]

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (pip install 'aimdb[docs]')"
)


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*cmd, "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def _load_config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return config


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once from the docs as they are (strict)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install 'aimdb[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = _mkdocs_build(CONFIG, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def test_strict_build_succeeds(site: Path) -> None:
    assert (site / "index.html").exists()
    # use_directory_urls: false -- every page is a file, so links work opened from disk
    assert (site / "reference" / "database.html").exists()
    assert not (site / "reference" / "database").exists()


_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.S)
_LIST_LINE = re.compile(r"\n\s*(?:[-*+]|\d+\.) ")


def paragraphs_holding_a_list(html: str) -> list[str]:
    """Paragraphs with a line that starts like a list item: a list missing its blank line."""
    return [m.group(1)[:120] for m in _PARAGRAPH.finditer(html) if _LIST_LINE.search(m.group(1))]


def test_the_list_check_finds_a_list_without_a_blank_line() -> None:
    md = pytest.importorskip("markdown")
    broken = md.markdown("How to read it:\n- one\n- two\n")
    fixed = md.markdown("How to read it:\n\n- one\n- two\n")
    assert paragraphs_holding_a_list(broken) != []
    assert paragraphs_holding_a_list(fixed) == []


def test_no_list_renders_as_a_paragraph(site: Path) -> None:
    found = {str(p.relative_to(site)): paragraphs_holding_a_list(p.read_text()) for p in _pages(site)}
    assert {k: v for k, v in found.items() if v} == {}, "add a blank line before these lists"


# Attributes that make the browser load something (a plain <a href> to another site does not).
_LOADS = re.compile(r"<(?:script|link|img|iframe|source|embed)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.S)


def test_pages_load_nothing_from_other_hosts(site: Path) -> None:
    off_host = {}
    for page in _pages(site):
        urls = [u for u in _LOADS.findall(page.read_text()) if re.match(r"(?:[a-z]+:)?//", u)]
        if urls:
            off_host[str(page.relative_to(site))] = urls
    assert off_host == {}
    css = "".join(p.read_text() for p in site.glob("assets/stylesheets/*.css"))
    assert "fonts.googleapis" not in css and "@import url(http" not in css


def test_code_blocks_are_highlighted_at_build_time(site: Path) -> None:
    html = (site / "guides" / "buffers.html").read_text()
    blocks = re.findall(r'<div class="language-python highlight"><pre>(.*?)</pre>', html, re.S)
    assert blocks, "no highlighted python block on guides/buffers.html"
    # Pygments token classes: keyword, name, string ... (no client-side highlighter)
    assert all(re.search(r'<span class="(?:k|kn|nf|nc|s\d?)">', b) for b in blocks)
    assert "highlight.js" not in html and "hljs" not in html


def _broken_copy(tmp_path: Path, break_docs: Any) -> Path:
    """A copy of the docs and config (absolute paths) with ``break_docs(docs_dir)`` applied."""
    yaml = pytest.importorskip("yaml")
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    break_docs(docs)
    config = _load_config()
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / h) for h in config.get("hooks", [])]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            python = plugin["mkdocstrings"]["handlers"]["python"]
            python["paths"] = [str(ROOT / p) for p in python.get("paths", [])]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@needs_mkdocs
def test_strict_build_fails_on_a_broken_cross_reference(tmp_path: Path) -> None:
    def add_bad_ref(docs: Path) -> None:
        page = docs / "guides" / "buffers.md"
        page.write_text(page.read_text() + "\nSee [nothing][aimdb.NoSuchThing].\n")

    proc = _mkdocs_build(_broken_copy(tmp_path, add_bad_ref), tmp_path / "site")
    assert proc.returncode != 0
    assert "aimdb.NoSuchThing" in proc.stdout + proc.stderr


@needs_mkdocs
def test_strict_build_fails_on_a_missing_nav_page(tmp_path: Path) -> None:
    proc = _mkdocs_build(
        _broken_copy(tmp_path, lambda docs: (docs / "guides" / "testing.md").unlink()), tmp_path / "site"
    )
    assert proc.returncode != 0
    assert "guides/testing.md" in proc.stdout + proc.stderr


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_exists_and_is_in_nav(guide: str) -> None:
    assert (DOCS / guide).is_file(), guide
    assert guide in _nav_pages(_load_config()["nav"]), f"{guide} is not in the nav of mkdocs.yml"


@pytest.mark.parametrize("module", ["aimdb", "aimdb.links"])
def test_every_public_name_is_in_the_reference(module: str) -> None:
    mod = importlib.import_module(module)
    text = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: " + re.escape(module) + r"\.(\w+)\s*$", text, re.M))
    public = {n for n in mod.__all__ if inspect.isclass(getattr(mod, n)) or callable(getattr(mod, n))}
    assert public - documented == set(), "add these to a page under docs/reference/"


# ------------------------------------------------------------------ guide examples

_BLOCK = re.compile(r"(?:<!-- (not run|run: \w+) -->\n)?```python\n(.*?)```", re.S)


def _examples() -> list[Any]:
    out = []
    for page in RUNNABLE:
        text = (DOCS / page).read_text()
        for m in _BLOCK.finditer(text):
            mode = m.group(1) or "run: python"
            if mode == "not run":
                continue
            line = text[: m.start(2)].count("\n") + 1
            out.append(pytest.param(mode.split(": ")[1], m.group(2), id=f"{page}:{line}"))
    return out


@pytest.mark.parametrize(("runner", "code"), _examples())
def test_guide_example_runs(runner: str, code: str, tmp_path: Path) -> None:
    if "import trio" in code and importlib.util.find_spec("trio") is None:
        pytest.skip("trio is not installed")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AIMDB_CONNECT", None)
    if runner == "python":
        cmd = [sys.executable, "-c", code]
    elif runner == "pytest":
        (tmp_path / "test_example.py").write_text(code)
        (tmp_path / "pytest.ini").write_text("[pytest]\n")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"]
    elif runner == "micropython":
        from aimdb._micropython import runner as mpy_runner

        found = mpy_runner("--path", str(ROOT / "src"))
        if found.command is None:
            pytest.skip(f"MicroPython cannot run here: {found.reason}")
        (tmp_path / "example.py").write_text(code)
        cmd = [*found.command, str(tmp_path / "example.py")]
    else:
        raise AssertionError("unknown runner " + runner)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=90, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
