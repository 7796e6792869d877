"""The documentation site: a strict MkDocs build, the guides in the nav, and runnable guide examples.

``mkdocs build --strict`` fails on any warning: a page missing from the nav or a nav entry
without a page, a broken link or anchor, a cross-reference to an undocumented object, or a
docstring mkdocstrings cannot parse. The examples in the guides are complete programs; each
one is run as written (a ``<!-- not run -->`` comment before a block exempts it).
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


@needs_mkdocs
def test_strict_build_succeeds(tmp_path: Path) -> None:
    proc = _mkdocs_build(CONFIG, tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "reference" / "database" / "index.html").exists()


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
