"""The ``aimdb`` command line."""

from __future__ import annotations

import sys

MISSING_EXTRA = "aimdb: the command line needs its extra: pip install 'aimdb[cli]'"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aimdb`` command; returns the exit code.

    Without the ``cli`` extra (typer and rich) it prints one line naming
    ``pip install 'aimdb[cli]'`` and returns 1.
    """
    from importlib.util import find_spec

    try:
        import typer  # noqa: F401

        missing = find_spec("rich") is None  # rich itself is imported only to draw a table
    except ImportError:
        missing = True
    if missing:
        sys.stderr.write(MISSING_EXTRA + "\n")
        return 1
    from ._app import run

    return run(sys.argv[1:] if argv is None else argv)
