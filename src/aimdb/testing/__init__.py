"""Test support: conformance suites for buffers and runtimes, and an in-memory connector.

The suites are plain coroutines (no pytest needed) and run on every runtime, MicroPython
included: ``await check_ring_buffer(lambda cap: MyRing(cap))``.
"""

from ._conformance import (
    check_latest_buffer as check_latest_buffer,
)
from ._conformance import (
    check_mailbox as check_mailbox,
)
from ._conformance import (
    check_ring_buffer as check_ring_buffer,
)
from ._conformance import (
    check_runtime_backend as check_runtime_backend,
)
from ._conformance import (
    run_buffer_conformance as run_buffer_conformance,
)
from ._memory import MemoryConnector as MemoryConnector

__all__ = (
    "MemoryConnector",
    "check_latest_buffer",
    "check_mailbox",
    "check_ring_buffer",
    "check_runtime_backend",
    "run_buffer_conformance",
)
