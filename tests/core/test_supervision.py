"""The database owns every task: services and connectors are supervised, start() fails cleanly.

On every runtime (asyncio, uvloop, trio).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, InvalidConfiguration, StageFailed
from aimdb.links import Connector
from aimdb.testing import MemoryConnector


@dataclass
class Temp:
    celsius: float


def _alive(rt: Any) -> list[str]:
    if rt.name == "asyncio":
        import asyncio

        return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("aimdb"))
    return []


def _builder(**kw: Any) -> AimDbBuilder:
    b = AimDbBuilder(restart_backoff=(0.001, 0.01), **kw)
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)))
    return b


class _BindFails(MemoryConnector):
    def bind(self, routes: Any) -> None:
        raise RuntimeError("bind failed")


async def test_start_that_fails_part_way_closes_cleanly(rt: Any) -> None:
    """Regression: start() set ``running`` before the task group existed, so aclose() then failed."""
    b = _builder()
    conn = _BindFails()
    b.with_connector(conn)
    b.configure(Temp, "t", lambda r: r.link_to("memory://out").finish())
    db = b.build()
    with pytest.raises(RuntimeError, match="bind failed"):
        await db.start()
    assert db.state == "stopped"
    await db.aclose()  # idempotent, raises nothing
    assert _alive(rt) == []


async def test_start_with_unknown_runtime_fails_and_aclose_works(rt: Any) -> None:
    db = _builder(runtime="no-such-runtime").build()
    with pytest.raises(LookupError):
        await db.start()
    assert db.state == "stopped"
    await db.aclose()


@pytest.mark.runtimes("asyncio")
async def test_service_that_raises_is_logged_once_counted_and_restarted(rt: Any, caplog: Any) -> None:
    calls: list[int] = []

    async def service(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise ValueError("service hiccup")
        await rt.sleep(3600)

    async with _builder().build() as db:
        task = db.add_service("svc", service, 7)
        for _ in range(200):
            if task.running and len(calls) == 2:
                break
            await rt.sleep(0.01)
        st = task.statistics()
        assert (st.failures, st.restarts, st.starts, st.state) == (1, 1, 2, "running")
        assert st.last_error is not None and "service hiccup" in st.last_error
        assert st.last_error_at is not None
        assert calls == [7, 7]
        assert any(t.name == "svc" and t.kind == "service" for t in db.tasks())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "service hiccup" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert task.statistics().state == "stopped"


async def test_service_with_on_error_stop_stops_the_database(rt: Any) -> None:
    async def service() -> None:
        raise KeyError("gone")

    db = _builder().build()
    with pytest.raises(StageFailed) as info:
        async with db:
            db.add_service("svc", service, on_error="stop")
            await db.wait_stop_requested()
    assert info.value.stage == "svc"
    assert isinstance(info.value.cause, KeyError)
    assert db.failure is info.value


async def test_service_with_on_error_log_ends(rt: Any) -> None:
    async def service() -> None:
        raise KeyError("gone")

    async with _builder().build() as db:
        task = db.add_service("svc", service, on_error="log")
        await task.join()
        assert task.statistics().state == "failed"
        assert db.state == "running"


def test_bad_on_error_policy_is_refused() -> None:
    from aimdb._core._tasks import SupervisedTask

    with pytest.raises(ValueError, match="on_error"):
        SupervisedTask(None, "x", None, (), kind="service", policy="ignore")  # type: ignore[arg-type]


class _AsyncioOnly(Connector):
    scheme = "aio"
    runtimes = ("asyncio",)

    async def run(self, routes: Any) -> None:
        return None


def test_build_refuses_a_connector_that_cannot_run_on_the_chosen_runtime() -> None:
    b = _builder(runtime="trio")
    b.with_connector(_AsyncioOnly())
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    kinds = [p.kind for p in info.value.problems]
    assert kinds == ["unsupported_runtime"], info.value.problems
    assert "trio" in str(info.value)


@pytest.mark.runtimes("trio")
async def test_build_inside_trio_refuses_the_mqtt_connector(rt: Any) -> None:
    from aimdb.connectors import MqttConnector

    b = _builder()
    b.with_connector(MqttConnector("mqtt://127.0.0.1:1"))
    with pytest.raises(InvalidConfiguration, match=r"runs on asyncio, not on trio"):
        b.build()


@pytest.mark.runtimes("trio")
async def test_start_refuses_when_the_runtime_is_only_known_at_start(rt: Any) -> None:
    from aimdb.connectors import MqttConnector

    b = AimDbBuilder()
    b.configure(Temp, "t", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=8)))
    b.with_connector(MqttConnector("mqtt://127.0.0.1:1"))
    # build() inside trio refuses at once; a database built where no loop runs yet is
    # refused by start(), once the runtime is known
    import aimdb._backends as backends

    real = backends.running_backend
    backends.running_backend = lambda: None  # type: ignore[assignment]
    try:
        built = b.build()
    finally:
        backends.running_backend = real  # type: ignore[assignment]
    with pytest.raises(InvalidConfiguration, match="not on trio"):
        await built.start()
    assert built.state == "stopped"


def test_with_connector_reports_a_missing_contract() -> None:
    class Half:
        scheme = "half"

        async def run(self, routes: Any) -> None:
            return None

    b = _builder()
    b.with_connector(Half())  # type: ignore[arg-type]
    with pytest.raises(InvalidConfiguration) as info:
        b.build()
    (problem,) = info.value.problems
    assert problem.kind == "bad_connector"
    assert "bind" in problem.message and "shutdown" in problem.message
