"""``aimdb`` CLI conventions, end to end: real subprocesses of the command against a real
running instance (a database with a remote server on a Unix socket), real pipes and a
real pseudo-terminal for what depends on the terminal."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import AimdbConnector

from ..remote._helpers import ServerThread, Temp, builder, short_tmpdir

BOX = set("│┃━─┏┗╇┡└┌")
LONG_KEYS = [f"station.{n}.{f}" for n in ("alpine", "coast", "valley") for f in ("temperature", "humidity")]


def _wide_builder() -> AimDbBuilder:
    b = builder(ticking=True)
    for k in LONG_KEYS:
        b.configure(Temp, k, lambda r: r.buffer(BufferCfg.SpmcRing(capacity=256)))
    return b


@pytest.fixture(scope="module")
def runtime_dir() -> Iterator[str]:
    with short_tmpdir() as d:
        yield d


@pytest.fixture(scope="module")
def server(runtime_dir: str) -> Iterator[ServerThread]:
    os.environ["AIMDB_RUNTIME_DIR"] = runtime_dir  # the server's socket goes there (discovery)
    try:
        with ServerThread(_wide_builder(), name="second", unix="auto", writable=["config.#"]) as st:
            st.call(lambda: st.db.producer(Temp, "station.1.temp").produce(Temp(21.5)))
            yield st
    finally:
        del os.environ["AIMDB_RUNTIME_DIR"]


@dataclass
class Done:
    code: int
    out: str
    err: str


def aimdb(*argv: str, env: dict[str, str] | None = None, runtime_dir: str | None = None) -> Done:
    """Run the ``aimdb`` entry point in a subprocess with stdout and stderr as pipes."""
    full = {**os.environ, **(env or {})}
    full.pop("AIMDB_CONNECT", None) if "AIMDB_CONNECT" not in (env or {}) else None
    if runtime_dir is not None:
        full["AIMDB_RUNTIME_DIR"] = runtime_dir
    p = subprocess.run(
        [sys.executable, "-c", "import sys; from aimdb._cli import main; sys.exit(main())", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
    )
    return Done(p.returncode, p.stdout, p.stderr)


def in_terminal(columns: int, *argv: str, runtime_dir: str) -> tuple[int, str]:
    """Run ``aimdb`` with stdout and stderr on a pseudo-terminal ``columns`` wide."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "AIMDB_RUNTIME_DIR": runtime_dir, "TERM": "xterm"}
    for name in ("COLUMNS", "LINES", "AIMDB_CONNECT"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aimdb._cli", *argv], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    data = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                data += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, data.decode(errors="replace").replace("\r\n", "\n")


# ------------------------------------------------------------------ first contact


def test_without_the_cli_extra_one_line_and_exit_1() -> None:
    """The entry point, with typer and rich impossible to import (as after ``pip install aimdb``)."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('typer', 'rich', 'click'):\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Block())\n"
        "from aimdb._cli import main\n"
        "sys.exit(main())\n"
    )
    for argv in ([], ["record", "list"], ["--help"]):
        p = subprocess.run([sys.executable, "-c", blocker, *argv], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, p.stderr
        assert p.stderr.count("\n") == 1 and "pip install 'aimdb[cli]'" in p.stderr, p.stderr
        assert p.stdout == ""


def test_bare_help_version() -> None:
    bare = aimdb()
    assert bare.code == 0 and "Usage: aimdb" in bare.out and "record" in bare.out, bare
    for flag in ("-h", "--help"):
        h = aimdb(flag)
        assert h.code == 0 and "Exit codes:" in h.out and "--output" in h.out
    sub = aimdb("record", "list", "-h")
    assert sub.code == 0 and "-o, -f, --output, --format" in sub.out
    group = aimdb("record")
    assert group.code == 0 and "list" in group.out and "Usage: aimdb record" in group.out
    from aimdb import __version__

    for flag in ("-V", "--version"):
        v = aimdb(flag)
        assert v.code == 0 and v.out == f"aimdb {__version__}\n"


def test_shell_completion() -> None:
    # the shell named explicitly, detection off: the answer must not depend on the parent process
    show = aimdb("--show-completion=bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert show.code == 0 and "_AIMDB_COMPLETE" in show.out, (show, {k: v for k, v in os.environ.items()
                                                                      if "COMP" in k or "SHELL" in k})
    env = {"_AIMDB_COMPLETE": "complete_bash", "COMP_WORDS": "aimdb rec", "COMP_CWORD": "1"}
    done = aimdb(env=env)
    assert done.code == 0 and done.out.split() == ["record"], done
    env = {
        "_AIMDB_COMPLETE": "complete_bash",
        "COMP_WORDS": "aimdb record list --output j",
        "COMP_CWORD": "4",
    }
    assert aimdb(env=env).out.split() == ["json"]


def test_exit_codes(server: ServerThread, runtime_dir: str) -> None:
    assert aimdb("record", "nope", runtime_dir=runtime_dir).code == 2  # usage
    assert aimdb("record", "list", "--output", "yaml", runtime_dir=runtime_dir).code == 2
    assert aimdb("-c", "tcp://127.0.0.1:1", "record", "list").code == 1  # runtime error
    assert aimdb("record", "get", "no.such", runtime_dir=runtime_dir).code == 1
    assert aimdb("record", "list", runtime_dir=runtime_dir).code == 0


# ------------------------------------------------------------------ output formats


@pytest.mark.parametrize("flag", ["-o", "--output", "-f", "--format"])
def test_output_flag_after_the_verb(server: ServerThread, runtime_dir: str, flag: str) -> None:
    for argv in (["record", "list"], ["stats"], ["graph"], ["instance", "info"], ["instance", "list"]):
        d = aimdb(*argv, flag, "json", runtime_dir=runtime_dir)
        assert d.code == 0, (argv, d.err)
        json.loads(d.out)
    before = aimdb(flag, "json", "record", "list", runtime_dir=runtime_dir)
    assert before.code == 0 and "station.alpine.temperature" in {r["key"] for r in json.loads(before.out)}
    # After the verb wins over before it.
    both = aimdb("--format", "table", "record", "list", flag, "json", runtime_dir=runtime_dir)
    json.loads(both.out)


def test_plain_output_in_a_pipe(server: ServerThread, runtime_dir: str) -> None:
    for argv in (["record", "list"], ["stats"], ["graph"], ["instance", "list"], ["instance", "info"]):
        d = aimdb(*argv, runtime_dir=runtime_dir)
        assert d.code == 0, d.err
        assert not (BOX & set(d.out)), d.out
        assert "…" not in d.out
    listed = aimdb("record", "list", runtime_dir=runtime_dir).out.splitlines()
    assert listed[0].split() == [
        "KEY",
        "TYPE",
        "BUFFER",
        "WRITER",
        "W",
        "P",
        "VALUE",
        "PRODUCED",
        "READERS",
        "DROPPED",
    ]
    keys = {ln.split()[0] for ln in listed[1:]}
    assert set(LONG_KEYS) <= keys
    boxed = aimdb("record", "list", "-o", "table", runtime_dir=runtime_dir)
    assert BOX & set(boxed.out)


@pytest.mark.parametrize("columns", [80, 160])
def test_tables_fit_the_terminal_without_cutting_keys(
    server: ServerThread, runtime_dir: str, columns: int
) -> None:
    for argv in (["record", "list"], ["stats"]):
        code, text = in_terminal(columns, *argv, runtime_dir=runtime_dir)
        assert code == 0, text
        lines = text.splitlines()
        assert max(len(ln) for ln in lines) <= columns, text
        assert "…" not in text, text
        for k in LONG_KEYS:
            assert any(k in ln for ln in lines), (k, text)
        assert BOX & set(text)
        if columns == 160:
            assert "hidden" not in text and "DROPPED" in text and "READERS" in text, text
    code, text = in_terminal(80, "record", "list", runtime_dir=runtime_dir)
    assert "hidden at 80 columns: W, P, VALUE, READERS, DROPPED (-o json shows all)" in text, text
    assert "WRITER" in text and "TYPE" in text


# ------------------------------------------------------------------ instances and keys


def test_instance_by_name_everywhere(server: ServerThread, runtime_dir: str) -> None:
    listed = aimdb("instance", "list", runtime_dir=runtime_dir)
    assert "second" in listed.out
    for argv in (
        ["-c", "second", "record", "list"],
        ["--connect", "second", "stats"],
        ["-c", "second", "graph"],
    ):
        d = aimdb(*argv, runtime_dir=runtime_dir)
        assert d.code == 0 and "station.1.temp" in d.out, (argv, d.err)
    via_env = aimdb(
        "record", "get", "station.1.temp", env={"AIMDB_CONNECT": "second"}, runtime_dir=runtime_dir
    )
    assert via_env.code == 0 and json.loads(via_env.out) == {"celsius": 21.5}, via_env.err
    typo = aimdb("-c", "secnod", "record", "list", runtime_dir=runtime_dir)
    assert typo.code == 1 and typo.err.count("\n") == 1
    assert "no local instance named 'secnod'; did you mean 'second'?" in typo.err, typo.err


def test_did_you_mean_for_record_keys(server: ServerThread, runtime_dir: str) -> None:
    for argv in (
        ["record", "get", "station.1.tmp"],
        ["record", "set", "station.1.tmp", "{}"],
        ["stats", "station.1.tmp"],
    ):
        d = aimdb(*argv, runtime_dir=runtime_dir)
        assert d.code == 1 and d.err.count("\n") == 1, d.err
        assert "did you mean 'station.1.temp'" in d.err, d.err
    far = aimdb("record", "get", "zzz", runtime_dir=runtime_dir)
    assert far.code == 1 and "did you mean" not in far.err


# ------------------------------------------------------------------ watch


def test_watch_lines_show_local_times(server: ServerThread, runtime_dir: str) -> None:
    d = aimdb("watch", "sensor.#", "--count", "3", "--duration", "20", runtime_dir=runtime_dir)
    assert d.code == 0, d.err
    lines = d.out.splitlines()
    assert len(lines) == 3
    for ln in lines:
        assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} +\d+[* ] sensor\.tick  \{", ln), ln
    j = aimdb("watch", "sensor.#", "--count", "2", "-o", "json", runtime_dir=runtime_dir)
    assert [type(json.loads(ln)["ts"]) for ln in j.out.splitlines()] == [int, int]


def test_watch_into_a_closed_pipe_ends_quietly(server: ServerThread, runtime_dir: str) -> None:
    """``aimdb watch ... | head -3``: the reader goes away; no error line, exit 141."""
    env = {**os.environ, "AIMDB_RUNTIME_DIR": runtime_dir}
    env.pop("AIMDB_CONNECT", None)
    p = subprocess.Popen(
        f"{sys.executable} -m aimdb._cli watch 'sensor.#' --duration 30 | head -3",
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = p.communicate(timeout=60)
    assert len(out.splitlines()) == 3
    assert "Broken pipe" not in err and "Traceback" not in err and "error" not in err, err
    p2 = subprocess.Popen(
        [sys.executable, "-m", "aimdb._cli", "watch", "sensor.#", "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert p2.stdout is not None and p2.stderr is not None
    for _ in range(3):
        p2.stdout.readline()
    p2.stdout.close()
    assert p2.wait(60) == 141
    with p2.stderr:
        rest = p2.stderr.read().decode()
    assert "error" not in rest and "Broken pipe" not in rest and "Traceback" not in rest, rest


# ------------------------------------------------------------------ graph


def test_graph_names_link_writers(server: ServerThread) -> None:
    b = AimDbBuilder().with_connector(AimdbConnector(server.endpoint, backoff=(0.05, 1.0)))
    b.configure(
        Temp,
        "mirror.temp",
        lambda r: r.buffer(BufferCfg.SingleLatest()).link_from("aimdb://station.1.temp").finish(),
    )
    b.configure(Temp, "local.only", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Temp, "remote.fed", lambda r: r.buffer(BufferCfg.SingleLatest()).remote(writable=True))
    with (
        short_tmpdir() as d,
        ServerThread(b, unix=os.path.join(d, "m.sock"), writable=["remote.#"]) as mirror,
    ):
        g = aimdb("-c", mirror.endpoint, "graph")
        assert g.code == 0, g.err
        assert "aimdb://station.1.temp (link_in)" in g.out, g.out
        assert "mirror.temp: Temp · single_latest · writer=link [link_in]" in g.out, g.out
        assert "local.only: Temp · single_latest · writer=none" in g.out, g.out
        assert "remote.fed: Temp · single_latest · writer=remote" in g.out, g.out
        listed = aimdb("-c", mirror.endpoint, "record", "list").out
        assert re.search(r"^mirror\.temp +\S+ +\S+ +link ", listed, re.M), listed
        assert re.search(r"^remote\.fed +\S+ +\S+ +remote ", listed, re.M), listed


def test_watch_live_table_on_a_terminal(server: ServerThread, runtime_dir: str) -> None:
    code, text = in_terminal(
        80, "watch", "sensor.#", "--count", "20", "--duration", "20", runtime_dir=runtime_dir
    )
    assert code == 0, text
    assert "sensor.tick" in text and "AT" in text and "AGE" in text, text
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3}", text), text
    assert "Traceback" not in text


def test_ctrl_c_on_watch_exits_130_quietly(server: ServerThread, runtime_dir: str) -> None:
    import signal

    env = {**os.environ, "AIMDB_RUNTIME_DIR": runtime_dir}
    env.pop("AIMDB_CONNECT", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "aimdb._cli", "watch", "sensor.#", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stdout is not None
    assert "sensor.tick" in p.stdout.readline()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "error" not in err, err


def test_help_imports_neither_rich_nor_the_client() -> None:
    """What keeps ``aimdb --help`` fast: rich, asyncio and aimdb.remote load only when used."""
    code = (
        "import io, sys, contextlib\n"
        "from aimdb._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = main(['--help'])\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('rich', 'asyncio') or m.startswith('aimdb.remote'))\n"
        "print(rc, heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "0 []", p.stdout + p.stderr
