"""Shared parts of the fault suite: a place for the figures the tests measure.

``fault_figures`` is a function that notes one line of figures (say, a reconnect time);
the lines are printed in a "fault figures" section at the end of the run, so they are
seen without ``-s`` and whether the tests passed or not.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def fault_figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``note(line)``: keep ``line`` for the run's "fault figures" summary (and print it)."""
    rows = request.config.stash.setdefault(_FIGURES, [])

    def note(line: str) -> None:
        print(line)
        rows.append(line)

    return note


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(_FIGURES, [])
    if rows:
        terminalreporter.section("fault figures")
        for row in rows:
            terminalreporter.write_line(row)
