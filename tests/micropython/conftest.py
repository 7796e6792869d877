"""Fixtures for the MicroPython tests: skip without node, install the interpreter once."""

from __future__ import annotations

import pytest

from tests.micropython.runner import ensure_installed, node_executable


@pytest.fixture(scope="session")
def micropython() -> None:
    """Make sure ``node`` exists and the pinned MicroPython package is installed.

    Skips only when ``node`` is missing; a missing ``node_modules`` is installed
    with ``aimdb micropython install`` (once per session).
    """
    if node_executable() is None:
        pytest.skip("node (Node.js) is not on PATH: the MicroPython WebAssembly runner needs it")
    ensure_installed()
