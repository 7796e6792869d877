"""The page's pure JavaScript (graph layout, backoff, version check, formatting) under Node.

The tests themselves are in ``js_units.mjs`` (Node's built-in test runner); this runs them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# JSON.parse source text access and JSON.rawJSON (json.js): on by default from Node 21 and in
# Chromium; Node 20 has them behind this flag. Without them the exact-integer test fails.
NODE_FLAGS = ["--harmony-json-parse-with-source"]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_page_modules_under_node() -> None:
    proc = subprocess.run(
        ["node", "--experimental-default-type=module", *NODE_FLAGS, "--test", str(HERE / "js_units.mjs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
