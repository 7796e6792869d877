"""The sync API from plain threads: a sensor thread and an actuator thread around one database.

* the sensor thread reads a (simulated) temperature sensor every 50 ms and ``set``s it;
* a controller thread reads temperatures and, when they cross a threshold, sends a
  command through a ``Mailbox`` record (latest command wins);
* the actuator thread ``get``s commands from the mailbox and acts on them.

The program ends by itself after about one second and prints what each thread did.
Run: ``python examples/sync_api.py``
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import aimdb.sync
from aimdb import AimDbBuilder, BufferCfg, GetTimeout, RuntimeShutdown


@dataclass
class Temperature:
    celsius: float


@dataclass
class Command:
    action: str  # "heat" or "cool"


def build() -> AimDbBuilder:
    b = AimDbBuilder()
    b.configure(Temperature, "room.temp", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=64)))
    b.configure(Command, "room.heater", lambda r: r.buffer(BufferCfg.Mailbox()))
    return b


def sensor(p: aimdb.sync.SyncProducer[Temperature], samples: int) -> None:
    for i in range(samples):
        reading = 20.0 + 3.0 * math.sin(i / 3.0)  # the "sensor"
        p.set(Temperature(round(reading, 2)))
        time.sleep(0.05)
    print(f"sensor: set {samples} readings")


def controller(
    temps: aimdb.sync.SyncConsumer[Temperature], cmds: aimdb.sync.SyncProducer[Command], samples: int
) -> None:
    state = ""
    sent = 0
    for _ in range(samples):
        t = temps.get(timeout=2)
        want = "heat" if t.celsius < 19.0 else "cool" if t.celsius > 21.0 else state
        if want and want != state:
            cmds.set(Command(want))
            sent += 1
            state = want
    print(f"controller: read {samples} readings, sent {sent} commands")


def actuator(cmds: aimdb.sync.SyncConsumer[Command], log: list[str]) -> None:
    while True:
        try:
            c = cmds.get(timeout=0.5)
        except GetTimeout:
            continue
        except RuntimeShutdown:  # the handle detached: we are done
            break
        log.append(c.action)
    print(f"actuator: executed {len(log)} commands: {' '.join(log)}")


def main() -> None:
    samples = 20
    actions: list[str] = []
    with aimdb.sync.attach(build()) as handle:
        temps = handle.consumer(Temperature, "room.temp")  # subscribed now: misses nothing later
        commands = handle.consumer(Command, "room.heater")
        threads = [
            threading.Thread(target=sensor, args=(handle.producer(Temperature, "room.temp"), samples)),
            threading.Thread(
                target=controller, args=(temps, handle.producer(Command, "room.heater"), samples)
            ),
        ]
        act = threading.Thread(target=actuator, args=(commands, actions))
        for t in [*threads, act]:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.1)  # let the actuator take the last command
    act.join()  # detach woke it with RuntimeShutdown
    print("done: database stopped, all threads finished")


if __name__ == "__main__":
    main()
