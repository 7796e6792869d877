"""Speak the protocol with socat (no aimdb client involved)."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from ._helpers import Temp, aio, served

pytestmark = pytest.mark.skipif(
    shutil.which("socat") is None, reason="socat not installed (apt-get install socat)"
)


async def socat(address: str, frames: list[str], timeout: float = 10) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        "socat",
        "-t",
        "1",
        "-",
        address,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(("\n".join(frames) + "\n").encode()), timeout)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@aio
async def test_socat_unix_session() -> None:
    async with served(writable=["config.#"]) as (db, server):
        db.producer(Temp, "station.1.temp").produce(Temp(21.5))
        replies = await socat(
            "UNIX-CONNECT:" + server.unix_path,
            [
                '{"id":1,"method":"hello","params":{"version":"1.0","client":"socat"}}',
                '{"id":2,"method":"record.get","params":{"key":"station.1.temp"}}',
                "garbage",
                '{"id":3,"method":"record.set","params":{"key":"config.setpoint","value":{"celsius":19}}}',
                '{"id":4,"method":"record.set","params":{"key":"station.1.temp","value":{"celsius":0}}}',
                '{"id":5,"method":"record.subscribe","params":{"pattern":"station.*.temp"}}',
            ],
        )
        by_id = {r.get("id"): r for r in replies if "event" not in r}
        assert by_id[1]["result"]["protocol"] == "1.3"
        assert by_id[2]["result"] == {"key": "station.1.temp", "value": {"celsius": 21.5}}
        assert by_id[None]["error"]["code"] == "parse_error"
        assert by_id[3]["result"]["value"] == {"celsius": 19.0}
        assert by_id[4]["error"]["code"] == "permission_denied"
        assert by_id[5]["result"]["snapshot"] == 1
        events = [r for r in replies if "event" in r]
        assert events == [
            {
                "event": "snapshot",
                "sub": "s1",
                "seq": 1,
                "key": "station.1.temp",
                "value": {"celsius": 21.5},
                "ts": events[0]["ts"],
            }
        ]


@aio
async def test_socat_tcp() -> None:
    async with served(unix=None, tcp="127.0.0.1:0") as (_, server):
        host, port = server.tcp_address
        replies = await socat(
            f"TCP:{host}:{port}",
            ['{"id":"a","method":"record.list"}', '{"id":"b","method":"hello","params":{"version":"1.2"}}'],
        )
        assert replies[0]["error"]["code"] == "handshake_required"
        assert replies[1]["id"] == "b" and replies[1]["result"]["server"] == "aimdb-python"
