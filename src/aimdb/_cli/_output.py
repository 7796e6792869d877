"""How the ``aimdb`` command writes its results: formats, tables that fit, closed pipes.

Every write to standard output goes through :func:`write`, so a reader that goes away
(``aimdb watch ... | head -3``) ends the command quietly with :data:`EXIT_PIPE` instead of
an error line. Rich is imported only when a boxed table is drawn, which keeps
``aimdb --help`` fast.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE, what other tools report when their reader went away


class Format(str, enum.Enum):
    """Output formats: a boxed table, aligned plain columns, or JSON."""

    table = "table"
    plain = "plain"
    json = "json"


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (not a pipe or a file)."""
    try:
        return sys.stdout.isatty()
    except ValueError:  # closed
        return False


def resolve_format(requested: Format | None) -> Format:
    """The format to use: the requested one, else a table on a terminal and plain otherwise."""
    if requested is not None:
        return requested
    return Format.table if stdout_is_terminal() else Format.plain


def terminal_width() -> int | None:
    """Columns of the terminal standard output goes to; ``None`` when it is not one."""
    if not stdout_is_terminal():
        return None
    return shutil.get_terminal_size((80, 24)).columns


def write(text: str) -> None:
    """Write ``text`` to standard output and flush it.

    Raises:
        typer.Exit: with :data:`EXIT_PIPE` when the reader has closed the pipe; standard
            output is pointed at the null device first, so nothing else complains.
    """
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        closed_pipe()


def write_bytes(data: bytes) -> None:
    """Write binary ``data`` (a PNG, say) to standard output, like :func:`write`."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        closed_pipe()


def closed_pipe() -> NoReturn:
    """End the command because the reader of standard output went away.

    Raises:
        typer.Exit: always, with :data:`EXIT_PIPE`; standard output is pointed at the
            null device first, so the interpreter's final flush does not complain.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    raise typer.Exit(EXIT_PIPE)


def line(text: str) -> None:
    """Write one line to standard output (see :func:`write`)."""
    write(text.rstrip("\n") + "\n")


def err(message: str) -> None:
    """Write one line to standard error."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON."""
    write(json.dumps(data, indent=2, default=str) + "\n")


def compact(value: Any, width: int = 60) -> str:
    """``value`` as one-line JSON, cut to ``width`` characters with an ellipsis."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def age(seconds: float) -> str:
    """A duration for people: ``0.4s``, ``12s``, ``3m05s``, ``2h03m``, ``4d02h``."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(ts_ns: int) -> str:
    """A wall-clock time in ns as local ``HH:MM:SS.mmm``."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{ns // 1_000_000:03d}"


@dataclass(frozen=True)
class Column:
    """A table column.

    Attributes:
        header: the title.
        drop: the order in which columns give way when the table is too wide (lowest
            first); ``None`` never drops (the key column).
        wrap: fold long cells over several lines instead of dropping the column.
    """

    header: str
    drop: int | None = None
    wrap: bool = False


_WRAP_MIN = 12


def _need(widths: Sequence[int], boxed: bool) -> int:
    if boxed:  # a space either side of each cell and a rule between and around them
        return sum(widths) + 3 * len(widths) + 1
    return sum(widths) + 2 * max(len(widths) - 1, 0)


def fit(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None, boxed: bool
) -> list[int]:
    """Pick the columns that fit ``width`` (all of them when ``width`` is ``None``).

    Wrapping columns shrink to a minimum first; then columns are dropped in their
    ``drop`` order. Columns without a ``drop`` order always stay, cells are never cut.
    """
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    kept = list(range(len(columns)))
    if width is None:
        return kept

    def least(i: int) -> int:
        return min(natural[i], max(_WRAP_MIN, len(columns[i].header))) if columns[i].wrap else natural[i]

    droppable = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None)
    for _, i in droppable:
        if _need([least(k) for k in kept], boxed) <= width:
            break
        kept.remove(i)
    return kept


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], fmt: Format, title: str | None = None
) -> None:
    """Write ``rows`` as a boxed (``Format.table``) or plain table that fits the terminal.

    Columns that do not fit are left out and named in a last line; key cells are never cut.
    """
    width = terminal_width()
    boxed = fmt is Format.table
    kept = fit(columns, rows, width, boxed)
    cols = [columns[i] for i in kept]
    cells = [[r[i] for i in kept] for r in rows]
    hidden = [c.header for c in columns if c not in cols]
    note = f"hidden at {width} columns: {', '.join(hidden)} (-o json shows all)" if hidden else ""
    if boxed:
        write(_boxed(cols, cells, width, title, note))
        return
    natural = [max([len(c.header), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    out = []
    if title:
        out.append(title)
    for r in [[c.header for c in cols], *cells]:
        out.append("  ".join(cell.ljust(natural[i]) for i, cell in enumerate(r)).rstrip())
    if note:
        out.append(note)
    write("\n".join(out) + "\n")


def _boxed(
    cols: Sequence[Column], cells: Sequence[Sequence[str]], width: int | None, title: str | None, note: str
) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    natural = [max([len(c.header), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    need = _need(natural, True)
    t = Table(title=title)
    for i, c in enumerate(cols):
        if c.wrap:
            t.add_column(c.header, overflow="fold")
        elif c.drop is None:
            t.add_column(c.header, overflow="fold", min_width=min(natural[i], (width or need) - 4))
        else:
            t.add_column(c.header, no_wrap=True)
    for r in cells:
        t.add_row(*r)
    buf = io.StringIO()
    console = Console(file=buf, width=min(width, need) if width else need, highlight=False, markup=False)
    console.print(t)
    return buf.getvalue() + (note + "\n" if note else "")
