"""``aimdb record history``: stored values of a persisted record, read through ``record.history``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Optional

import typer

from . import _output as out
from ._app import _OUTPUT, _client, _execute, _fmt, _opts, _with_key_hint, record_app
from ._output import EXIT_USAGE, Column, Format

if TYPE_CHECKING:
    from ..remote import HistoryPage

_TIME_HELP = "a duration ago (30s, 10m, 2h, 7d, 2w) or an ISO-8601 time (naive is local time)"


def parse_time(text: str, option: str) -> datetime | timedelta:
    """A ``--since``/``--until`` value: a duration meaning that long ago, or an ISO-8601 time.

    Raises:
        ValueError: neither form; the message names ``option`` and both forms, in one line.
    """
    from ..persistence._sqlite import parse_duration

    t = text.strip()
    if t and t[0].isdigit() and t[-1] in "smhdw" and t[:-1].replace(".", "", 1).isdigit():
        try:
            seconds = parse_duration(t)
        except ValueError as exc:  # zero
            raise ValueError(f"{option} {text!r}: {exc}") from None
        return timedelta(seconds=seconds or 0.0)
    iso = t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t  # fromisoformat takes Z from 3.11 on
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not {_TIME_HELP}") from None


def local_time(ts_ns: int) -> str:
    """A wall-clock time in ns as local ``YYYY-MM-DD HH:MM:SS.mmm``."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs)) + f".{ns // 1_000_000:03d}"


@record_app.command("history")
def record_history(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Record key (a persisted record)."),
    since: Optional[str] = typer.Option(
        None, "--since", metavar="WHEN", help="Earliest time shown: " + _TIME_HELP + "."
    ),
    until: Optional[str] = typer.Option(
        None, "--until", metavar="WHEN", help="Show rows before this time (same forms)."
    ),
    limit: Optional[int] = typer.Option(
        None,
        "--limit",
        "-n",
        min=1,
        metavar="N",
        help="At most N rows (default and most: the server's max_history).",
    ),
    newest_first: bool = typer.Option(False, "--newest-first", help="Newest rows first."),
    output: Optional[Format] = _OUTPUT,
) -> None:
    """Show stored values of a persisted record, oldest first.

    Table and plain output show the local time each value was stored; json gives the
    server's reply (times as integer nanoseconds since the epoch). When the limit cut
    the result, a note on standard error says so.
    """
    o = _opts(ctx, output)
    bounds: dict[str, datetime | timedelta | None] = {"since": None, "until": None}
    for name, text in (("since", since), ("until", until)):
        if text is not None:
            try:
                bounds[name] = parse_time(text, "--" + name)
            except ValueError as exc:
                out.err(f"error: {exc}")
                raise typer.Exit(EXIT_USAGE) from None

    async def go() -> HistoryPage:
        c = await _client(o)
        try:
            call = c.history(
                key, since=bounds["since"], until=bounds["until"], limit=limit, newest_first=newest_first
            )
            return await _with_key_hint(c, key, call)
        finally:
            await c.aclose()

    page = _execute(go)
    fmt = _fmt(o)
    if fmt is Format.json:
        rows: list[dict[str, Any]] = [{"ts": r.ts, "value": r.value} for r in page.rows]
        out.print_json({"key": page.key, "rows": rows, "count": len(rows), "more": page.more})
        return
    cells = [[local_time(r.ts), out.compact(r.value, 200)] for r in page.rows]
    out.table([Column("TIME"), Column("VALUE", wrap=True)], cells, fmt)
    if page.more:
        which = "newest" if newest_first else "oldest"
        out.err(f"more rows match: showing the {which} {len(cells)}; narrow --since/--until or raise -n")
    elif not cells:
        out.err(f"no stored values of {key} in that time range")
