"""Type-checked by mypy in tests/test_typing.py: each misuse line must be flagged."""

from dataclasses import dataclass

from aimdb import AimDbBuilder, BufferListener, Consumer, Producer, Reader, RingBuffer


@dataclass
class Temperature:
    celsius: float


db = AimDbBuilder().build()
producer = db.producer(Temperature, "temp")
consumer = db.consumer(Temperature, "temp")
reader = consumer.subscribe()

ok_producer: Producer[Temperature] = producer
ok_consumer: Consumer[Temperature] = consumer
ok_reader: Reader[Temperature] = reader
producer.produce(Temperature(1.0))


async def use() -> None:
    t = await reader.recv()
    print(t.celsius)
    async for v in reader:
        print(v.celsius)
    batch = reader.try_recv_batch()
    print(batch[0].celsius)
    await ring.wait_changed()


ring: RingBuffer[Temperature] = RingBuffer("ring", 4)
print(ring.latest().celsius)
listener: BufferListener = ring.add_listener(lambda: None)
ring.remove_listener(listener)


# --- misuse: every line below must be an error
producer.produce("x")  # E: arg-type
bad_reader: Reader[str] = reader  # E: assignment
print(reader.try_recv().fahrenheit)  # E: attr-defined
db.configure = None  # E: attr-defined
reg = AimDbBuilder().configure(Temperature, "k")
reg.transform(int, "n", lambda v: v)  # E: arg-type
print(ring.latest().fahrenheit)  # E: attr-defined
ring.add_listener(lambda v: None)  # E: arg-type
