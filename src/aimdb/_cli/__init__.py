"""The ``aimdb`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aimdb`` command."""
    from ._app import run

    return run(sys.argv[1:] if argv is None else argv)
