"""A real Prometheus server (Debian's ``prometheus`` package) for scrape tests.

:class:`Prometheus` starts ``/usr/bin/prometheus`` on a free loopback port with its own
temporary configuration and storage, scraping the given targets every second, and stops
it (and removes its files) on exit. Blocking; call :meth:`Prometheus.wait_for` from a
thread when the scraped instance runs on the test's event loop.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

PROMETHEUS = "/usr/bin/prometheus"

needs_prometheus = pytest.mark.skipif(
    not os.path.exists(PROMETHEUS), reason=f"{PROMETHEUS} missing (Debian package prometheus)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus server scraping ``targets`` (``HOST:PORT`` of ``/metrics``) every 1 s.

    Use as a context manager; :meth:`wait_for` runs a query until it returns a series.
    """

    def __init__(self, targets: list[str], job: str = "aimdb") -> None:
        self.targets = targets
        self.job = job
        self.work = tempfile.mkdtemp(prefix="aimdb-prom-")
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> Prometheus:
        with open(os.path.join(self.work, "prometheus.yml"), "w") as fh:
            listed = ", ".join(f"'{t}'" for t in self.targets)
            fh.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"scrape_configs:\n  - job_name: {self.job}\n    scrape_interval: 1s\n"
                f"    static_configs:\n      - targets: [{listed}]\n"
            )
        self._log = open(os.path.join(self.work, "prometheus.log"), "wb")
        self._proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.work}/prometheus.yml",
                f"--storage.tsdb.path={self.work}/data",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=self._log,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
        log = self.log()
        shutil.rmtree(self.work, ignore_errors=True)
        if proc is not None and exc[0] is None:
            assert proc.returncode in (0, -15), log[-2000:]

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        try:
            with open(os.path.join(self.work, "prometheus.log"), "rb") as fh:
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """One instant query through the HTTP API; the ``result`` list (empty if none yet)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Repeat ``promql`` until it returns a series (bounded by ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None and self._proc.poll() is None, self.log()[-2000:]
            try:
                result = self.query(promql)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                result = []
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"Prometheus never returned {promql!r}; its log:\n{self.log()[-2000:]}")
