"""Child process of the SIGKILL test: produces numbered values into a persisted ring forever.

Prints ``<values produced> <monotonic time>`` after every chunk, so the parent knows how
many values existed at any moment before it kills this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from typing import Any

from aimdb import AimDbBuilder, SpmcRing
from aimdb.persistence import SqliteBackend


@dataclasses.dataclass
class Reading:
    n: int


async def main(path: str, commit_interval: float) -> None:
    async def src(ctx: Any, p: Any) -> None:
        n = 0
        while True:
            for _ in range(100):
                p.produce(Reading(n))
                n += 1
            sys.stdout.write(f"{n} {time.monotonic()}\n")
            sys.stdout.flush()
            await asyncio.sleep(0.005)

    b = AimDbBuilder()
    b.configure(Reading, "r", lambda r: r.buffer(SpmcRing(capacity=4096)).source(src).persist())
    b.with_persistence(SqliteBackend(path, commit_interval=commit_interval))
    await b.build().run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
