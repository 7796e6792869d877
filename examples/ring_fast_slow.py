"""SpmcRing: one fast tap keeps up, one slow tap lags and is told exactly how much it lost."""

import asyncio
from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferCfg, BufferClosed, BufferLagged


@dataclass
class Reading:
    seq: int


async def burst(ctx, producer):
    for i in range(20):
        producer.produce(Reading(i))
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.2)
    ctx.db.stop()


async def fast(ctx, consumer):
    seen = 0
    async for _ in consumer.subscribe():
        seen += 1
    print(f"fast tap saw {seen} readings")


async def slow(ctx, consumer):
    reader = consumer.subscribe()
    seen, lost = [], 0
    while True:
        try:
            seen.append((await reader.recv()).seq)
        except BufferLagged as lag:
            lost += lag.missed
            continue
        except BufferClosed:
            break
        await asyncio.sleep(0.01)  # slower than the producer
    print(f"slow tap saw {len(seen)} readings, lost {lost}, last {seen[-1]}")


builder = AimDbBuilder()
builder.configure(
    Reading,
    "sensor.burst",
    lambda reg: reg.buffer(BufferCfg.SpmcRing(capacity=4))
    .source(burst)
    .tap(fast, name="fast")
    .tap(slow, name="slow"),
)

if __name__ == "__main__":
    asyncio.run(builder.run())
