"""``hello`` reports ``started_at``: the server's start, ns since the epoch (for uptime)."""

from __future__ import annotations

import asyncio
import time

from ._helpers import Raw, served


def test_started_at_is_the_server_start_in_ns_and_stays_put() -> None:
    async def main() -> None:
        before = time.time_ns()
        async with served() as (_, server):
            after = time.time_ns()
            raw = await Raw.open(server.unix_path)
            first = (await raw.hello())["result"]["started_at"]
            raw.close()
            await asyncio.sleep(0.01)
            raw = await Raw.open(server.unix_path)
            second = (await raw.hello())["result"]["started_at"]
            raw.close()
        assert isinstance(first, int)
        assert before <= first <= after
        assert second == first  # the server's start, not the connection's

    asyncio.run(main())
