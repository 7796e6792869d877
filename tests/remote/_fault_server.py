"""A database with a remote server in its own process, for the fault tests.

Run: ``python _fault_server.py SOCKET IDLE_TIMEOUT``. Prints ``READY <pid>`` once the
server listens; produces ~2,000 values of ~1 KB per second into ``fast.blob`` (a ring)
and holds one value in ``quiet.value``. Exits when its stdin closes (the test ended).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferCfg
from aimdb.remote import RemoteConfig, start_server


@dataclass
class Blob:
    seq: int
    data: str


@dataclass
class Value:
    celsius: float


def _exit_with_parent() -> None:
    sys.stdin.read()
    os._exit(0)


async def main(path: str, idle_timeout: float) -> None:
    b = AimDbBuilder()
    b.configure(Blob, "fast.blob", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=1024)))
    b.configure(Value, "quiet.value", lambda r: r.buffer(BufferCfg.SingleLatest()))
    async with b.build() as db:
        db.producer(Value, "quiet.value").produce(Value(21.5))
        await start_server(db, RemoteConfig(unix=path, idle_timeout=idle_timeout))
        print("READY", os.getpid(), flush=True)
        producer = db.producer(Blob, "fast.blob")
        payload = "x" * 1000
        seq = 0
        while True:
            for _ in range(20):
                seq += 1
                producer.produce(Blob(seq, payload))
            await asyncio.sleep(0.01)


if __name__ == "__main__":
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
