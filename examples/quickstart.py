"""The README quickstart: a source produces three temperatures, a tap prints them.

Run it with ``python examples/quickstart.py``; it stops by itself after the last value
(pass ``--forever`` to keep running until Ctrl-C, exactly like the README snippet).
"""

import asyncio
import sys
from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferCfg


@dataclass
class Temperature:
    celsius: float


async def sample(ctx, producer):
    for celsius in (21.0, 22.5, 24.1):
        producer.produce(Temperature(celsius))
        await asyncio.sleep(0.1)
    if "--forever" not in sys.argv:
        ctx.db.stop()


async def show(ctx, consumer):
    async for t in consumer.subscribe():
        print(f"temp: {t.celsius:.1f}")


builder = AimDbBuilder()
builder.configure(
    Temperature,
    "temp.indoor",
    lambda reg: reg.buffer(BufferCfg.SpmcRing(capacity=16)).source(sample).tap(show),
)

if __name__ == "__main__":
    asyncio.run(builder.run())
