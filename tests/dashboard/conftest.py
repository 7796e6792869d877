"""Fixtures of the dashboard's browser tests: one browser and one instance per module, a page per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard._harness import CHROMIUM, WAIT_MS, Instance, open_page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def instance() -> Iterator[Instance]:
    # a Unix socket too, for the CLI (aimdb --connect unix://...)
    inst = Instance(unix=os.path.join(tempfile.mkdtemp(prefix="aimdb-d-"), "i.sock"))
    yield inst
    inst.stop()


@pytest.fixture
def page(browser: Any, instance: Instance) -> Iterator[Any]:
    errors: list[str] = []
    p = open_page(browser, instance.url, errors)
    p.wait_for_selector("body[data-conn='connected']", timeout=WAIT_MS)
    p.wait_for_selector("#records tbody tr", timeout=WAIT_MS)
    yield p
    problem = p.text_content("#page-error") if p.locator("#page-error-item").is_visible() else ""
    p.close()
    assert errors == [], errors  # no script error, and no alert() from record data
    assert problem == ""  # no failed request shown in the header
