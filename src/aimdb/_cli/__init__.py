"""The ``aimdb`` command line."""

from __future__ import annotations

import sys

MISSING_EXTRA = "aimdb: the command line needs its extra: pip install 'aimdb[cli]'"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aimdb`` command; returns the exit code.

    Without the ``cli`` extra (typer and rich) it prints one line naming
    ``pip install 'aimdb[cli]'`` and returns 1.
    """
    try:
        import rich  # noqa: F401  (imported for real only when a table is drawn)
        import typer  # noqa: F401
    except ImportError:
        sys.stderr.write(MISSING_EXTRA + "\n")
        return 1
    from ._app import run

    return run(sys.argv[1:] if argv is None else argv)
