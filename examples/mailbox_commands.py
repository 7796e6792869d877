"""Mailbox: commands with two competing workers; each command is handled exactly once,
and a command overwritten before anyone took it is counted as dropped.
"""

import asyncio
from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferCfg


@dataclass
class Command:
    action: str
    n: int


handled: dict[str, list[int]] = {"w1": [], "w2": []}


async def controller(ctx, producer):
    for i in range(10):
        producer.produce(Command("move", i))
        await asyncio.sleep(0.01)
    producer.produce(Command("stale", 98))  # overwritten before any worker runs:
    producer.produce(Command("stop", 99))  # the newest command wins
    await asyncio.sleep(0.1)
    ctx.db.stop()


def worker(name):
    async def run(ctx, consumer):
        async for cmd in consumer.subscribe():
            handled[name].append(cmd.n)
            await asyncio.sleep(0.015)  # busy: the other worker takes the next command

    return run


async def main():
    builder = AimDbBuilder()
    builder.configure(
        Command,
        "robot.command",
        lambda reg: reg.buffer(BufferCfg.Mailbox())
        .source(controller)
        .tap(worker("w1"), name="w1")
        .tap(worker("w2"), name="w2"),
    )
    async with builder.build() as db:
        await db.wait_stop_requested()
        stats = db.buffer("robot.command").statistics()
    everything = sorted(handled["w1"] + handled["w2"])
    print(f"w1 handled {len(handled['w1'])}, w2 handled {len(handled['w2'])}")
    print(f"handled once each: {everything == sorted(set(everything))}, dropped {stats.dropped}")
    print(f"last command handled: {max(everything)}")


if __name__ == "__main__":
    asyncio.run(main())
