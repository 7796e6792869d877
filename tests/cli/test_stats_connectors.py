"""``aimdb stats`` shows the connectors table (real subprocesses against a real instance
with a real MQTT connector pointed at a closed port, so it fails with a long error)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.connectors import MqttConnector, ReconnectPolicy
from aimdb.testing import MemoryConnector

from ..remote._helpers import ServerThread, Temp, short_tmpdir
from .test_conventions import BOX, aimdb, in_terminal

pytestmark = pytest.mark.timeout(120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = _closed_port()


def _builder() -> AimDbBuilder:
    b = AimDbBuilder()
    b.with_connector(MemoryConnector())
    b.with_connector(
        MqttConnector(
            f"mqtt://gateway:pw-in-url@127.0.0.1:{PORT}",
            reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.5),
        )
    )
    b.configure(
        Temp,
        "plant.temp",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)).link_to("mqtt://t").finish().link_to("memory://t").finish(),
    )
    return b


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(_builder()) as st:
        for _ in range(200):  # bounded: until the MQTT connector has failed at least once
            if st.call(lambda: st.db.connector_statistics()["mqtt"].failed_attempts) > 0:
                break
            time.sleep(0.05)
        yield st


def test_json_carries_the_connectors(server: ServerThread) -> None:
    d = aimdb("-c", server.endpoint, "stats", "-o", "json")
    assert d.code == 0, d.err
    conns = {c["scheme"]: c for c in json.loads(d.out)["connectors"]}
    assert list(conns) == ["memory", "mqtt"]
    assert conns["memory"]["state"] == "running"
    mqtt = conns["mqtt"]
    assert mqtt["url"] == f"mqtt://127.0.0.1:{PORT}"
    assert mqtt["failed_attempts"] > 0 and mqtt["last_error"]
    assert "pw-in-url" not in d.out and "gateway" not in d.out


def test_plain_table_in_a_pipe(server: ServerThread) -> None:
    d = aimdb("-c", server.endpoint, "stats")
    assert d.code == 0, d.err
    assert not (BOX & set(d.out)), d.out
    lines = d.out.splitlines()
    at = lines.index("connectors")
    assert lines[at + 1].split() == [
        "SCHEME", "URL", "STATE", "CONNECTS", "FAILED", "DISCONNECTS", "ERRORS", "LAST", "ERROR"
    ]
    rows = {ln.split()[0]: ln.split() for ln in lines[at + 2 :]}
    assert rows["memory"][1:4] == ["memory://", "running", "0"]
    assert rows["mqtt"][1] == f"mqtt://127.0.0.1:{PORT}"
    assert rows["mqtt"][2] in ("connecting", "disconnected", "failed")
    assert int(rows["mqtt"][4]) > 0  # FAILED
    assert "pw-in-url" not in d.out


@pytest.mark.parametrize("columns", [80, 160])
def test_boxed_table_fits_the_terminal(server: ServerThread, columns: int) -> None:
    with short_tmpdir() as runtime_dir:
        code, text = in_terminal(columns, "-c", server.endpoint, "stats", runtime_dir=runtime_dir)
    assert code == 0, text
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= columns, text
    assert BOX & set(text) and "connectors" in text, text
    assert "memory://" in text and "running" in text, text
    assert "SCHEME" in text and "STATE" in text and "LAST ERROR" in text, text
    if columns == 160:
        assert "hidden" not in text and "DISCONNECTS" in text and "FAILED" in text, text
