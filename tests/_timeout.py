"""The suite's per-test timeout: a hung test fails, and a test that cannot be failed ends the run.

pytest-timeout's ``signal`` method raises ``Failed`` in the main thread once, at the
timeout (``timeout`` in pyproject.toml, or a ``timeout`` marker). That ends a test that
waits or loops in its own frames, but not:

* a busy loop in an event-loop task (a pump that never yields): ``Failed`` lands in that
  task and ends it (or a task that catches it starts again), while the test itself goes on
  waiting for something that never comes, with no second signal;
* a test blocked on a thread (``asyncio.to_thread`` on a call that never returns): ``Failed``
  leaves the event loop, but ``asyncio.run`` then waits for the default executor's
  threads, and the interpreter waits for them again when it exits.

This plugin keeps the ``signal`` method (one hung test fails, the run goes on) and
escalates while the test, its setup or its teardown are still running:

1. at the timeout: the other threads' stacks are printed and ``Failed`` is raised (what
   pytest-timeout does);
2. every ``timeout_repeat`` seconds after it: ``Failed`` again, wherever the main thread
   is now (in the event loop once the spinning task has died, in ``asyncio.run``'s wait
   for the executor);
3. ``timeout_grace`` seconds after the timeout: every thread's stack is printed and the
   run ends (exit status 1), as pytest-timeout's ``thread`` method does. An ended run is
   a failure to look at; a stalled one costs the CI's whole time budget and says nothing.

At the end of the run, if a timed-out test left a thread running that the interpreter
would wait for, the process exits with the run's status instead of waiting.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

import pytest
import pytest_timeout

_TIMED_OUT = pytest.StashKey[list[str]]()
_STATUS = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("timeout_repeat", "seconds between further timeouts of a test still running (10)",
                  default="10")
    parser.addini("timeout_grace", "seconds after the timeout at which the whole run ends (60)",
                  default="60")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TIMED_OUT] = []


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Arm the escalating timeout for ``item`` (only for the ``signal`` method in the main thread)."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own handling
    config = item.config
    repeat = float(config.getini("timeout_repeat"))
    grace = float(config.getini("timeout_grace"))
    fired = 0

    def on_alarm(signum: int, frame: Any) -> None:
        nonlocal fired
        __tracebackhide__ = True
        fired += 1
        if fired == 1:
            config.stash[_TIMED_OUT].append(item.nodeid)
            pytest_timeout.timeout_sigalrm(item, settings)  # prints the stacks, raises Failed
        else:
            pytest.fail(f"Timeout (>{settings.timeout}s): still running "
                        f"{(fired - 1) * repeat:g}s after the timeout")

    def end_run() -> None:
        sys.stderr.write(f"\n{item.nodeid}: still running {grace:g}s after its timeout of "
                         f"{settings.timeout}s; ending the run\n")
        pytest_timeout.timeout_timer(item, settings)  # prints every stack, then os._exit(1)

    hard = threading.Timer(settings.timeout + grace, end_run)
    hard.name = "aimdb-timeout-backstop"
    hard.daemon = True

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        hard.cancel()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout, repeat)
    hard.start()
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Hold the alarm while pytest makes a phase's report: a repeated timeout must hit the test."""
    if getattr(item, "cancel_timeout", None) is None:
        return (yield)
    left, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        return (yield)
    finally:
        if left > 0:
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After a timeout, do not wait at exit for a thread the timed-out test left blocked."""
    timed_out = config.stash.get(_TIMED_OUT, [])
    if not timed_out:
        return
    left = [t.name for t in threading.enumerate()
            if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if not left:
        return
    sys.stderr.write(f"\nthreads left running after the timeout of {', '.join(timed_out)}: "
                     f"{', '.join(left)}; exiting without waiting for them\n")
    atexit._run_exitfuncs()  # e.g. the brokers' clean-up (the threads' own join would block)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash.get(_STATUS, 1))
