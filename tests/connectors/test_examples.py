"""The MQTT bridge example runs against the local broker and ends by itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_mqtt_bridge_example(mosquitto_url: str) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mqtt_bridge.py"), mosquitto_url, "--seconds", "2"],
        capture_output=True,
        timeout=45,
        check=False,
    )
    out = res.stdout.decode()
    assert res.returncode == 0, out + res.stderr.decode()
    assert "command: set kitchen to 22.5" in out
    assert "bridge applied 1 command(s)" in out
