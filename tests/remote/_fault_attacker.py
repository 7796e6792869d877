"""A misbehaving client for the fault tests, in its own process.

Run: ``python _fault_attacker.py SOCKET KIND SECONDS`` with KIND ``garbage`` or ``deep``.
Says ``hello``, then sends bad frames as fast as the server takes them for SECONDS while
reading the error replies; prints ``<frames sent> <error replies> <alive>`` and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys

LINES = {
    "garbage": bytes(range(1, 10)) + b"{not json at all" + b"\xff\xfe" * 200 + b"\n",
    "deep": b"[" * 1024 + b"]" * 1024 + b"\n",
}


async def main(path: str, kind: str, seconds: float) -> None:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    writer.write(b'{"id":1,"method":"hello","params":{"version":"1.1"}}\n')
    assert "result" in json.loads(await reader.readline())
    replies = 0

    async def read() -> None:
        nonlocal replies
        while True:
            line = await reader.readline()
            if not line:
                return
            if b'"error"' in line:
                replies += 1

    task = asyncio.get_running_loop().create_task(read())
    batch = LINES[kind] * 50
    sent = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        writer.write(batch)
        await writer.drain()
        sent += 50
    await asyncio.sleep(0.5)  # the last replies
    alive = not task.done()
    task.cancel()
    await asyncio.wait([task])
    writer.close()
    print(sent, replies, int(alive), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
