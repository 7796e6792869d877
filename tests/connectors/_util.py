"""Helpers shared by the connector tests."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Temp:
    celsius: float


@dataclass
class Reading:
    sensor: str
    seq: int
    value: float


@dataclass
class Command:
    action: str
    level: int


async def wait_until(
    pred: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "condition",
    detail: Callable[[], object] | None = None,
) -> None:
    """Poll ``pred`` every 5 ms until it is true; fail the test after ``timeout``.

    ``detail``, when given, is called at the timeout and its result shown in the failure.
    """
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            extra = f" ({detail()!r})" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        await asyncio.sleep(0.005)


def collector(out: list[Any]) -> Callable[[Any, Any], Any]:
    """A tap that appends every value it sees to ``out``."""

    async def tap(ctx: Any, consumer: Any) -> None:
        async for v in consumer.subscribe():
            out.append(v)

    return tap


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not installed (run scripts/setup-test-env)", pytrace=False)
    return path


def mqtt_hostport(url: str) -> tuple[str, str]:
    hostport = url.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    return host, port


def mosquitto_pub(url: str, topic: str, payload: bytes, qos: int = 1, extra: list[str] | None = None) -> None:
    require("mosquitto_pub")
    host, port = mqtt_hostport(url)
    subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-q", str(qos), "-s" if payload else "-n",
         *(extra or [])],
        input=payload,
        check=True,
        timeout=10,
        capture_output=True,
    )


class MosquittoSub:
    """``mosquitto_sub`` in the background, collecting ``count`` messages (one per line)."""

    def __init__(self, url: str, topic: str, count: int) -> None:
        require("mosquitto_sub")
        host, port = mqtt_hostport(url)
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-q", "1", "-C", str(count), "-W", "15",
             "-v"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def result(self, timeout: float = 15.0) -> list[str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        assert self.proc.returncode == 0, err.decode(errors="replace")
        return out.decode().splitlines()
