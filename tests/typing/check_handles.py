"""Type-checked by mypy in tests/test_typing.py: each misuse line must be flagged."""

from dataclasses import dataclass

from aimdb import AimDbBuilder, Consumer, Producer, Reader


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


# --- misuse: every line below must be an error
producer.produce("x")  # E: arg-type
bad_reader: Reader[str] = reader  # E: assignment
print(reader.try_recv().fahrenheit)  # E: attr-defined
db.configure = None  # E: attr-defined
reg = AimDbBuilder().configure(Temperature, "k")
reg.transform(int, "n", lambda v: v)  # E: arg-type
