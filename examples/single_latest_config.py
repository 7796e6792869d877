"""SingleLatest: a configuration value; readers see the current value, never a backlog."""

import asyncio
from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferCfg


@dataclass
class Config:
    sample_period_ms: int
    unit: str


async def operator(ctx, producer):
    producer.produce(Config(1000, "C"))
    await asyncio.sleep(0.05)
    for period in (500, 250, 100):  # rapid changes collapse into the newest
        producer.produce(Config(period, "C"))
    await asyncio.sleep(0.1)
    producer.produce(Config(100, "F"))
    await asyncio.sleep(0.1)
    ctx.db.stop()


async def worker(ctx, consumer):
    async for cfg in consumer.subscribe():
        print(f"worker applies period={cfg.sample_period_ms}ms unit={cfg.unit}")


async def main():
    builder = AimDbBuilder()
    builder.configure(
        Config,
        "config.sampling",
        lambda reg: reg.buffer(BufferCfg.SingleLatest()).source(operator).tap(worker),
    )
    async with builder.build() as db:
        await db.wait_stop_requested()
        print("current:", db.consumer(Config, "config.sampling").peek())


if __name__ == "__main__":
    asyncio.run(main())
