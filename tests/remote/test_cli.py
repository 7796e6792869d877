"""The ``aimdb`` CLI against a live server (in-process, CliRunner and a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from aimdb._cli._app import app, run

from ._helpers import ServerThread, Temp, aio, builder


@pytest.fixture(scope="module")
def server() -> ServerThread:
    with ServerThread(builder(ticking=True), writable=["config.#"], allow_reset=True) as st:
        st.call(lambda: st.db.producer(Temp, "station.1.temp").produce(Temp(21.5)))
        yield st


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_record_list_table_and_json(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--connect", server.endpoint, "record", "list")
    assert code == 0
    assert "station.1.temp" in out and "single_latest" in out and "ring(8)" in out
    code, out, _ = cli(capsys, "-c", server.endpoint, "--format", "json", "record", "list", "config.*")
    assert code == 0
    recs = json.loads(out)
    assert [r["key"] for r in recs] == ["config.setpoint", "config.locked", "config.cmd"]
    code, out, _ = cli(capsys, "-c", server.endpoint, "-f", "json", "record", "list", "--writable")
    assert sorted(r["key"] for r in json.loads(out)) == ["config.cmd", "config.setpoint"]


def test_record_get_set(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-c", server.endpoint, "record", "get", "station.1.temp")
    assert code == 0 and json.loads(out) == {"celsius": 21.5}
    code, out, _ = cli(capsys, "-c", server.endpoint, "record", "set", "config.setpoint", '{"celsius": 20}')
    assert code == 0 and "config.setpoint" in out
    code, out, _ = cli(capsys, "-c", server.endpoint, "record", "get", "config.setpoint")
    assert json.loads(out) == {"celsius": 20.0}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["record", "set", "sensor.tick", '{"celsius": 1}'], "source"),
        (["record", "set", "config.setpoint", "{not json"], "not valid JSON"),
        (["record", "set", "config.setpoint", '{"kelvin": "x"}'], "does not fit"),
        (["record", "get", "no.such"], "no record"),
        (["watch", "no.such.#", "--count", "1"], "matches"),
    ],
)
def test_errors_are_one_line(
    server: ServerThread, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = cli(capsys, "-c", server.endpoint, *argv)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert "Traceback" not in err + out


def test_connection_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    for target in ("tcp://127.0.0.1:1", "unix:///nonexistent/aimdb.sock", "ftp://x"):
        code, _, err = cli(capsys, "-c", target, "record", "list")
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    code, _, err = cli(capsys, "record", "nope")
    assert code == 2 and "Traceback" not in err


def test_wrong_token(capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread(token="abc") as st:
        code, _, err = cli(capsys, "-c", st.endpoint, "--token", "xyz", "record", "list")
        assert code == 1 and "wrong token" in err
        code, _, _ = cli(capsys, "-c", st.endpoint, "--token", "abc", "instance", "ping", "-n", "2")
        assert code == 0


def test_instance_commands(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-c", server.endpoint, "-f", "json", "instance", "info")
    info = json.loads(out)
    assert code == 0 and info["protocol"] == "1.3" and info["server"]["connections"] >= 1
    code, out, _ = cli(capsys, "-c", server.endpoint, "instance", "ping", "--count", "3")
    assert code == 0 and out.count("ms") == 3


def test_instance_list_discovers_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ._helpers import short_tmpdir

    with short_tmpdir() as d:
        monkeypatch.setenv("AIMDB_RUNTIME_DIR", d)
        monkeypatch.delenv("AIMDB_CONNECT", raising=False)
        code, out, err = cli(capsys, "record", "list")
        assert code == 1 and "no running aimdb instance" in err
        with ServerThread(name="disc", unix="auto"):
            code, out, _ = cli(capsys, "-f", "json", "instance", "list")
            found = json.loads(out)
            assert code == 0 and [(i["name"], i["alive"]) for i in found] == [("disc", True)]
            code, out, _ = cli(capsys, "record", "list")  # discovery picks the only instance
            assert code == 0 and "station.1.temp" in out


def test_instance_list_shows_the_dashboard_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("aiohttp", reason="needs the dashboard extra (aiohttp)")
    from ._helpers import short_tmpdir

    with short_tmpdir() as d:
        monkeypatch.setenv("AIMDB_RUNTIME_DIR", d)
        with (
            ServerThread(name="web", unix="auto", http="127.0.0.1:0") as st,
            ServerThread(name="plain", unix="auto"),
        ):
            url = st.server.http_url if st.server is not None else None
            assert url is not None
            code, out, _ = cli(capsys, "-f", "json", "instance", "list")
            found = {i["name"]: i for i in json.loads(out)}
            assert code == 0 and found["web"]["dashboard"] == url and found["plain"]["dashboard"] is None
            code, out, _ = cli(capsys, "-f", "plain", "instance", "list")
            lines = out.splitlines()
            assert "DASHBOARD" in lines[0]
            web = next(ln for ln in lines if ln.startswith("web "))
            plain = next(ln for ln in lines if ln.startswith("plain "))
            assert url in web and " - " in plain


def test_graph_text_and_dot(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-c", server.endpoint, "graph")
    assert code == 0 and "station.1.temp" in out and "derived.double" in out and "[transform]" in out
    code, out, _ = cli(capsys, "-c", server.endpoint, "graph", "--dot")
    assert code == 0 and out.startswith("digraph aimdb {")
    assert '"station.1.temp" -> "derived.double" [label="transform"];' in out


def test_stats_and_reset(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-c", server.endpoint, "stats")
    assert code == 0 and "station.1.temp" in out
    code, out, _ = cli(capsys, "-c", server.endpoint, "stats", "--reset")
    assert code == 0 and "reset" in out


def test_watch_lines_with_cli_runner(server: ServerThread) -> None:
    result = CliRunner().invoke(
        app, ["-c", server.endpoint, "-f", "json", "watch", "sensor.#", "--count", "5"]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 5 and events[0]["snapshot"] is True
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert all(e["key"] == "sensor.tick" for e in events)


def test_watch_subprocess_table_lines(server: ServerThread) -> None:
    env = {**os.environ, "AIMDB_CONNECT": server.endpoint}
    proc = subprocess.run(
        [sys.executable, "-m", "aimdb._cli", "watch", "station.#", "--count", "3", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and "station.1.temp" in lines[0] and "*" in lines[0]
    assert "snapshot complete" in proc.stderr


def test_demo_subcommand_is_wired() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aimdb._cli", "demo", "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


class SlowDoor:
    """A Unix socket that forwards each connection to ``target`` only ``delay`` seconds after accepting it.

    Stands for an instance too busy to answer at once (a loaded machine): the delay runs
    from the accept, so it does not depend on how fast the client started.
    """

    def __init__(self, path: str, target: str, delay: float) -> None:
        import socket
        import threading

        self.target, self.delay = target, delay
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, fn: object, *args: object) -> None:
        import threading

        t = threading.Thread(target=fn, args=args, daemon=True)  # type: ignore[arg-type]
        self.threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self._spawn(self._serve, conn)

    def _serve(self, conn: object) -> None:
        import socket
        import threading
        import time

        assert isinstance(conn, socket.socket)
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            time.sleep(self.delay)
            up.connect(self.target)
            back = threading.Thread(target=self._copy, args=(up, conn), daemon=True)
            back.start()
            self._copy(conn, up)
            back.join(10)
        except OSError:
            pass
        finally:
            up.close()
            conn.close()

    @staticmethod
    def _copy(src: object, dst: object) -> None:
        import socket

        assert isinstance(src, socket.socket) and isinstance(dst, socket.socket)
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux)
        except OSError:
            pass
        self.sock.close()
        for t in self.threads:
            t.join(15)


def test_discovery_waits_for_an_instance_slow_to_answer(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe gives a busy instance the user's --timeout, not a fixed fraction of a second.

    Before, discovery probed with min(--timeout, 1 s) (0.5 s from the library) and called an
    instance that answered later "not running": on a loaded machine the demo's
    ``aimdb record list`` said "no running aimdb instance found".
    """
    from ._helpers import short_tmpdir

    assert server.server is not None and server.server.unix_path is not None
    with short_tmpdir() as d:
        monkeypatch.setenv("AIMDB_RUNTIME_DIR", d)
        monkeypatch.delenv("AIMDB_CONNECT", raising=False)
        door = SlowDoor(os.path.join(d, "busy.sock"), server.server.unix_path, delay=2.0)
        try:
            code, out, err = cli(capsys, "--timeout", "30", "record", "list")
            assert code == 0 and "station.1.temp" in out, err
            code, out, err = cli(capsys, "--timeout", "30", "-f", "json", "instance", "list")
            assert code == 0, err
            assert [(i["alive"], i.get("code")) for i in json.loads(out)] == [(True, None)], out
        finally:
            door.close()


@aio
async def test_a_socket_that_accepts_and_never_answers_is_alive_not_stale() -> None:
    """A process listens (it accepted the connection) but is stopped or stuck: alive, code ``timeout``."""
    import socket

    from aimdb.remote import probe

    from ._helpers import short_tmpdir

    with short_tmpdir() as d:
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            mute.bind(os.path.join(d, "mute.sock"))
            mute.listen(1)
            stale.bind(os.path.join(d, "stale.sock"))  # bound, never listening: refused
            got = await probe(os.path.join(d, "mute.sock"), timeout=0.2)
            assert (got["alive"], got["code"]) == (True, "timeout"), got
            got = await probe(os.path.join(d, "stale.sock"), timeout=0.2)
            assert (got["alive"], got["code"]) == (False, "connection_failed"), got
        finally:
            mute.close()
            stale.close()
