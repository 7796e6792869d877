"""Shared by the dashboard's browser tests: the instance subprocess and how a page is opened.

``Instance`` runs ``_instance.py`` (a database with remote access over HTTP) in a subprocess;
``open_page`` opens a URL in a fresh page of a Playwright browser (Debian's chromium) and
collects script errors and dialogs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "build" / "screenshots"
INSTANCE = Path(__file__).with_name("_instance.py")
CLI = [sys.executable, "-c", "import sys; from aimdb._cli import main; sys.exit(main())"]
WAIT_MS = 10_000  # bound of every DOM poll (a noisy shared machine; never a speed claim)


def missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (Debian's chromium package; scripts/setup-test-env installs it)"
    for module, extra in (("playwright", "dev"), ("aiohttp", "dashboard")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'aimdb[{extra}]')"
    return None


class Instance:
    """``_instance.py`` in a subprocess: its page URL, and produce/get through its stdin."""

    def __init__(
        self, port: int = 0, token: str | None = None, unix: str | None = None, *, connectors: bool = True
    ) -> None:
        argv = [sys.executable, str(INSTANCE), str(port)]
        argv += (["--token", token] if token else []) + (["--unix", unix] if unix else [])
        argv += [] if connectors else ["--no-connectors"]
        self.unix = unix
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.url: str = self._reply(30.0)["url"]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.stop()
                raise AssertionError(f"instance said nothing within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"instance exited ({self.proc.wait()}): {err[-2000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, op: str, key: str, value: Any = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "key": key, "value": value}) + "\n")
        self.proc.stdin.flush()
        return self._reply(10.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def open_page(browser: Any, url: str, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(url)
    return page
