"""Backend-neutral engine: records, buffers, builder, database, stages (MicroPython-safe)."""
