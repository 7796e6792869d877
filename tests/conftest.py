"""Test configuration: every ``async def`` test runs on each runtime (asyncio, uvloop, trio).

A test opts out of runtimes with ``@pytest.mark.runtimes("asyncio", ...)``. The
``rt`` fixture is the aimdb runtime backend of the current run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import sys
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

pytest_plugins = ["tests._timeout"] + (
    ["tests.brokers.fixtures"]
    if os.path.exists(os.path.join(ROOT, "tests", "brokers", "fixtures.py"))
    else []
)


def _available() -> list[Any]:
    params: list[Any] = [pytest.param("asyncio", id="asyncio")]
    try:
        import uvloop  # noqa: F401

        params.append(pytest.param("uvloop", id="uvloop"))
    except ImportError:
        params.append(pytest.param("uvloop", id="uvloop", marks=pytest.mark.skip("uvloop missing")))
    try:
        import trio  # noqa: F401

        from aimdb._backends import get_backend

        get_backend("trio")
        params.append(pytest.param("trio", id="trio"))
    except (ImportError, LookupError):
        params.append(pytest.param("trio", id="trio", marks=pytest.mark.skip("trio backend missing")))
    return params


RUNTIMES = _available()


def pytest_configure(config: pytest.Config) -> None:
    # Tests interrupt child processes with SIGINT (Ctrl-C). A shell starts a background job
    # with SIGINT ignored, and children inherit that, so they would never see it: restore the
    # default here, which the children then inherit.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "runtimes(*names): run this async test only on these runtimes")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    marker = metafunc.definition.get_closest_marker("runtimes")
    params = RUNTIMES
    if marker is not None:
        params = [p for p in RUNTIMES if p.values[0] in marker.args]
    metafunc.fixturenames.append("aimdb_runtime")
    metafunc.parametrize("aimdb_runtime", params)


@pytest.fixture
def rt(aimdb_runtime: str) -> Any:
    from aimdb._backends import get_backend

    return get_backend("asyncio" if aimdb_runtime == "uvloop" else aimdb_runtime)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    runtime = pyfuncitem.funcargs["aimdb_runtime"]
    call = functools.partial(fn, **kwargs)
    if runtime == "trio":
        import trio

        trio.run(call)
    elif runtime == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(call())
    else:
        asyncio.run(call())
    return True
