"""``aimdb record history``: real subprocesses of the command against a real instance whose
values are stored in a real SQLite file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from aimdb import AimDbBuilder, BufferCfg
from aimdb.persistence import SqliteBackend

from ..remote._helpers import ServerThread, Temp, short_tmpdir
from .test_conventions import aimdb, in_terminal

N = 6


@pytest.fixture(scope="module")
def runtime_dir() -> Iterator[str]:
    with short_tmpdir() as d:
        yield d


@pytest.fixture(scope="module")
def server(runtime_dir: str) -> Iterator[ServerThread]:
    b = AimDbBuilder()
    b.configure(Temp, "hub.temp", lambda r: r.buffer(BufferCfg.SingleLatest()).persist())
    b.configure(Temp, "hub.plain", lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.with_persistence(SqliteBackend(os.path.join(runtime_dir, "hub.db"), commit_interval=0.01))
    os.environ["AIMDB_RUNTIME_DIR"] = runtime_dir
    try:
        with ServerThread(b, name="hist", unix="auto") as st:
            for i in range(N):
                st.call(lambda i=i: st.db.producer(Temp, "hub.temp").produce(Temp(float(i))))
                time.sleep(0.003)  # distinct timestamps
            deadline = time.monotonic() + 20
            while st.db.persistence_statistics().written < N:
                assert time.monotonic() < deadline, "values not stored in time"
                time.sleep(0.01)
            yield st
    finally:
        del os.environ["AIMDB_RUNTIME_DIR"]


def _json(*argv: str, runtime_dir: str) -> dict[str, object]:
    done = aimdb("record", "history", *argv, "-o", "json", runtime_dir=runtime_dir)
    assert done.code == 0, done
    data = json.loads(done.out)
    assert isinstance(data, dict)
    return data


def _ts(runtime_dir: str) -> list[int]:
    rows = _json("hub.temp", runtime_dir=runtime_dir)["rows"]
    assert isinstance(rows, list)
    return [int(r["ts"]) for r in rows]


def test_json_output_is_the_reply_with_ns_times(server: ServerThread, runtime_dir: str) -> None:
    data = _json("hub.temp", runtime_dir=runtime_dir)
    rows = data["rows"]
    assert isinstance(rows, list) and len(rows) == N
    assert [r["value"] for r in rows] == [{"celsius": float(i)} for i in range(N)]
    assert all(isinstance(r["ts"], int) and r["ts"] > 1_600_000_000 * 10**9 for r in rows)
    assert data["count"] == N and data["more"] is False and data["key"] == "hub.temp"
    cut = _json("hub.temp", "-n", "2", "--newest-first", runtime_dir=runtime_dir)
    assert [r["value"]["celsius"] for r in cut["rows"]] == [N - 1.0, N - 2.0]  # type: ignore[index,union-attr]
    assert cut["more"] is True


def test_plain_and_table_output_show_local_times(server: ServerThread, runtime_dir: str) -> None:
    ts = _ts(runtime_dir)
    first = datetime.fromtimestamp(ts[0] / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    done = aimdb("record", "history", "hub.temp", "--limit", "3", runtime_dir=runtime_dir)
    assert done.code == 0, done
    lines = done.out.splitlines()
    assert lines[0].split() == ["TIME", "VALUE"] and len(lines) == 4, done.out
    assert lines[1].startswith(first) and lines[1].endswith('{"celsius":0.0}'), done.out
    assert "more rows match: showing the oldest 3" in done.err
    code, text = in_terminal(80, "record", "history", "hub.temp", runtime_dir=runtime_dir)
    assert code == 0, text
    assert first in text and "│" in text and max(len(ln) for ln in text.splitlines()) <= 80, text


def test_since_and_until_forms(server: ServerThread, runtime_dir: str) -> None:
    ts = _ts(runtime_dir)
    for since in ("10m", "2h", "1d", "90s"):
        assert _json("hub.temp", "--since", since, runtime_dir=runtime_dir)["count"] == N, since
    # ISO-8601 local time (naive), inclusive: the row at that microsecond is shown
    local = datetime.fromtimestamp(ts[2] // 1000 / 1e6).isoformat()
    rows = _json("hub.temp", "--since", local, runtime_dir=runtime_dir)["rows"]
    assert [r["ts"] for r in rows] == ts[2:]  # type: ignore[union-attr,index]
    # ISO-8601 with Z (UTC), until exclusive
    utc = datetime.fromtimestamp(ts[4] // 1000 / 1e6, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = _json("hub.temp", "--since", local, "--until", utc, runtime_dir=runtime_dir)["rows"]
    assert [r["ts"] for r in rows] == ts[2:4]  # type: ignore[union-attr,index]
    assert _json("hub.temp", "--until", "1h", runtime_dir=runtime_dir)["count"] == 0


@pytest.mark.parametrize("bad", ["yesterday", "10x", "-5m", "0m", "2026-13-01", ""])
def test_a_malformed_time_is_one_line_and_exit_2(server: ServerThread, runtime_dir: str, bad: str) -> None:
    done = aimdb("record", "history", "hub.temp", "--since", bad, runtime_dir=runtime_dir)
    assert done.code == 2, done
    assert done.out == "" and len(done.err.strip().splitlines()) == 1, done
    assert done.err.startswith("error: --since") and ("ISO-8601" in done.err or "positive" in done.err), done


def test_not_persisted_and_unknown_records_are_one_line_and_exit_1(
    server: ServerThread, runtime_dir: str
) -> None:
    done = aimdb("record", "history", "hub.plain", runtime_dir=runtime_dir)
    assert done.code == 1 and len(done.err.strip().splitlines()) == 1, done
    assert "not persisted" in done.err, done
    done = aimdb("record", "history", "hub.tmp", runtime_dir=runtime_dir)
    assert done.code == 1 and "did you mean 'hub.temp'" in done.err, done
    done = aimdb("record", "history", "hub.temp", "-n", "0", runtime_dir=runtime_dir)
    assert done.code == 2, done


def test_record_list_and_graph_mark_persisted_records(server: ServerThread, runtime_dir: str) -> None:
    done = aimdb("record", "list", runtime_dir=runtime_dir)
    assert done.code == 0, done
    lines = done.out.splitlines()
    col = lines[0].index("  P  ") + 2  # plain columns are aligned: the P cell starts there
    cells = {ln.split()[0]: ln[col : col + 3] for ln in lines[1:]}
    assert cells == {"hub.temp": "yes", "hub.plain": "   "}, done.out
    listed = json.loads(aimdb("record", "list", "-o", "json", runtime_dir=runtime_dir).out)
    assert {r["key"]: r["persisted"] for r in listed} == {"hub.temp": True, "hub.plain": False}
    tree = aimdb("graph", "-o", "plain", runtime_dir=runtime_dir).out
    assert "hub.temp: Temp · single_latest · writer=none · persisted" in tree, tree
    assert "hub.plain: Temp · single_latest · writer=none\n" in tree, tree
    dot = aimdb("graph", "--format", "dot", runtime_dir=runtime_dir).out
    assert "writer: none\\npersisted" in dot, dot
