"""The ``aimdb`` commands: inspect and steer running instances.

Every command that talks to an instance connects with ``--connect`` (an endpoint or the
name ``aimdb instance list`` shows; else ``$AIMDB_CONNECT``, else the only local
instance). Errors are one line on standard error with a documented exit code
(:mod:`._output`); tracebacks are never shown. The remote client and rich are imported
only by the commands that need them, so ``aimdb --help`` stays fast.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import typer

from . import _output as out
from ._output import EXIT_ERROR, EXIT_INTERRUPTED, Column, Format

if TYPE_CHECKING:
    from ..remote import AsyncClient, Event, Subscription

R = TypeVar("R")

_CONTEXT = {"help_option_names": ["-h", "--help"]}
_OUTPUT_HELP = "Output format: table (terminal default), plain (default in pipes and files) or json."


@dataclass
class _Opts:
    connect: str | None
    token: str | None
    format: Format | None
    timeout: float


class CliError(Exception):
    """An error to show as one line (exit code 1)."""


app = typer.Typer(
    name="aimdb",
    help="Inspect and steer running aimdb instances.",
    epilog="Exit codes: 0 success, 1 error (connection, refusal, unknown record), 2 usage error, "
    "130 interrupted, 141 output pipe closed.",
    context_settings=_CONTEXT,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
instance_app = typer.Typer(help="Discover and check instances.", context_settings=_CONTEXT)
record_app = typer.Typer(help="List, read and write records.", context_settings=_CONTEXT)
app.add_typer(instance_app, name="instance")
app.add_typer(record_app, name="record")


# One option object for the root and every command, so -o/--output works before and after the verb.
_OUTPUT: Any = typer.Option(None, "--output", "-o", "--format", "-f", help=_OUTPUT_HELP, case_sensitive=False)


def _opts(ctx: typer.Context, output: Format | None = None) -> _Opts:
    obj = ctx.find_root().obj
    o = obj if isinstance(obj, _Opts) else _Opts(None, None, None, 5.0)
    return _Opts(o.connect, o.token, output or o.format, o.timeout)


def _fmt(o: _Opts) -> Format:
    return out.resolve_format(o.format)


def _execute(fn: Callable[[], Awaitable[R]]) -> R:
    """Run ``fn()`` on a fresh event loop, turning every failure into one line and exit 1."""
    import asyncio

    from ..remote import RemoteError

    try:
        return asyncio.run(_guard(fn))
    except (CliError, RemoteError, ValueError, TimeoutError) as exc:
        out.err(f"error: {exc}")
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        out.closed_pipe()
    except OSError as exc:
        out.err(f"error: {exc}")
    raise typer.Exit(EXIT_ERROR)


async def _guard(fn: Callable[[], Awaitable[R]]) -> R:
    return await fn()


def _looks_like_endpoint(text: str) -> bool:
    return (
        "://" in text or ":" in text or "/" in text or text.endswith(".sock") or text.startswith(("~", "."))
    )


async def resolve_connect(text: str | None, token: str | None, timeout: float) -> str | None:
    """Turn an instance name from ``aimdb instance list`` into its endpoint.

    Endpoints (``unix://``, ``tcp://``, ``HOST:PORT``, paths) and ``None`` pass unchanged.

    Raises:
        CliError: no live local instance has that name, or several have.
    """
    if text is None or _looks_like_endpoint(text):
        return text
    from ..remote import list_instances

    found = [i for i in await list_instances(timeout=timeout, token=token) if i.get("alive")]
    named = [i for i in found if i.get("name") == text]
    if len(named) == 1:
        return str(named[0]["endpoint"])
    if named:
        where = ", ".join(str(i["endpoint"]) for i in named)
        raise CliError(
            f"several local instances are named {text!r} ({where}); use --connect with one endpoint"
        )
    names = sorted({str(i.get("name")) for i in found if i.get("name")})
    hint = _did_you_mean(text, names)
    running = f"; running: {', '.join(names)}" if names else "; no local instance is running"
    raise CliError(f"no local instance named {text!r}{hint}{running} (a TCP endpoint is HOST:PORT)")


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


async def _client(o: _Opts) -> AsyncClient:
    from ..remote import AsyncClient

    endpoint = await resolve_connect(o.connect, o.token, o.timeout)
    return await AsyncClient.connect(endpoint, token=o.token, timeout=o.timeout, client_name="aimdb-cli")


async def _with_key_hint(c: AsyncClient, key: str, call: Awaitable[R]) -> R:
    """Await ``call``; a ``not_found`` reply about ``key`` gains a "did you mean" hint."""
    from ..remote import RemoteError

    try:
        return await call
    except RemoteError as exc:
        if exc.code != "not_found":
            raise
        keys = [str(r["key"]) for r in await c.list(None)]
        raise CliError(f"{exc}{_did_you_mean(key, keys)}") from None


def writer_of(rec: dict[str, Any]) -> str:
    """What writes a record, from a ``record.list`` entry or a graph node.

    The server's ``writer`` (``source``, ``transform``, ``join``, ``link``, ``none``), except
    that a passive record remote clients may write is shown as ``remote``.
    """
    writer = str(rec.get("writer", "none"))
    return "remote" if writer == "none" and rec.get("writable") else writer


# ------------------------------------------------------------------ root


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        out.line(f"aimdb {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    connect: Optional[str] = typer.Option(
        None,
        "--connect",
        "-c",
        envvar="AIMDB_CONNECT",
        help="Instance name (see 'aimdb instance list'), unix://PATH or tcp://HOST:PORT "
        "(default: the only local instance).",
    ),
    token: Optional[str] = typer.Option(None, "--token", envvar="AIMDB_TOKEN", help="Server token."),
    fmt: Optional[Format] = _OUTPUT,
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for connects and replies."),
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    """Inspect and steer running aimdb instances."""
    ctx.obj = _Opts(connect, token, fmt, timeout)
    if ctx.invoked_subcommand is None:
        out.write(ctx.get_help() + "\n")
        raise typer.Exit(0)


def _group_help(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        out.write(ctx.get_help() + "\n")
        raise typer.Exit(0)


instance_app.callback(invoke_without_command=True)(_group_help)
record_app.callback(invoke_without_command=True)(_group_help)


# ------------------------------------------------------------------ instance


@instance_app.command("list")
def instance_list(ctx: typer.Context, output: Optional[Format] = _OUTPUT) -> None:
    """List local instances (sockets in the runtime directory) and whether they answer."""
    o = _opts(ctx, output)

    async def go() -> list[dict[str, Any]]:
        from ..remote import list_instances

        return await list_instances(timeout=o.timeout, token=o.token)

    found = _execute(go)
    fmt = _fmt(o)
    if fmt is Format.json:
        out.print_json(found)
        return
    if not found:
        out.err("no local instances found")
        return
    rows = []
    for i in found:
        status = "ok" if "protocol" in i else ("stale" if not i.get("alive") else str(i.get("code")))
        rows.append(
            [
                str(i.get("name", "-")),
                str(i["endpoint"]),
                str(i.get("pid", "-")),
                str(i.get("records", "-")),
                str(i.get("dashboard") or "-"),
                status,
            ]
        )
    cols = [
        Column("NAME"),
        Column("ENDPOINT", wrap=True),
        Column("PID", drop=1),
        Column("RECORDS", drop=3),
        Column("DASHBOARD", drop=2),
        Column("STATUS", drop=4),
    ]
    out.table(cols, rows, fmt)


@instance_app.command("info")
def instance_info(ctx: typer.Context, output: Optional[Format] = _OUTPUT) -> None:
    """Show the instance's handshake data and server counters."""
    o = _opts(ctx, output)

    async def go() -> dict[str, Any]:
        c = await _client(o)
        try:
            stats = await c.stats()
            return {"endpoint": c.endpoint, **c.server_info, "server": stats.get("server", {})}
        finally:
            await c.aclose()

    info = _execute(go)
    fmt = _fmt(o)
    if fmt is Format.json:
        out.print_json(info)
        return
    rows: list[list[str]] = []
    for k, v in info.items():
        if isinstance(v, dict):
            rows.extend([f"{k}.{k2}", out.compact(v2, 100)] for k2, v2 in v.items())
        else:
            rows.append([k, out.compact(v, 100)])
    out.table([Column("FIELD"), Column("VALUE", wrap=True)], rows, fmt)


@instance_app.command("ping")
def instance_ping(
    ctx: typer.Context,
    count: int = typer.Option(3, "--count", "-n", min=1, max=1000, help="Number of pings."),
    output: Optional[Format] = _OUTPUT,
) -> None:
    """Measure round trips to the instance."""
    o = _opts(ctx, output)

    async def go() -> list[float]:
        c = await _client(o)
        try:
            return [await c.ping() for _ in range(count)]
        finally:
            await c.aclose()

    times = _execute(go)
    if _fmt(o) is Format.json:
        out.print_json({"rtt_ms": [t * 1000 for t in times]})
        return
    for i, t in enumerate(times, 1):
        out.line(f"ping {i}: {t * 1000:.3f} ms")


# ------------------------------------------------------------------ record

_RECORD_COLUMNS = [
    Column("KEY"),
    Column("TYPE", drop=7),
    Column("BUFFER", drop=5),
    Column("WRITER", drop=6),
    Column("W", drop=2),
    Column("P", drop=2),
    Column("VALUE", drop=1),
    Column("PRODUCED", drop=4),
    Column("READERS", drop=0),
    Column("DROPPED", drop=3),
]


@record_app.command("list")
def record_list(
    ctx: typer.Context,
    pattern: Optional[str] = typer.Argument(None, help="Key or pattern (* one segment, # any)."),
    writable: bool = typer.Option(False, "--writable", "-w", help="Only records remote clients may set."),
    output: Optional[Format] = _OUTPUT,
) -> None:
    """List records with their buffer, writer, permissions and statistics.

    W: remote clients may set it; P: persisted (see 'aimdb record history'). At 80
    columns the key is never cut: the least important columns give way first.
    """
    o = _opts(ctx, output)

    async def go() -> list[dict[str, Any]]:
        c = await _client(o)
        try:
            return await c.list(pattern)
        finally:
            await c.aclose()

    recs = _execute(go)
    if writable:
        recs = [r for r in recs if r.get("writable")]
    fmt = _fmt(o)
    if fmt is Format.json:
        out.print_json(recs)
        return
    rows = []
    for r in recs:
        s = r.get("stats") or {}
        buf = r["buffer"] if r["buffer"] != "spmc_ring" else f"ring({r['capacity']})"
        rows.append(
            [
                str(r["key"]),
                str(r["type"]),
                str(buf),
                writer_of(r),
                "yes" if r.get("writable") else "",
                "yes" if r.get("persisted") else "",
                "yes" if r.get("has_value") else "",
                str(s.get("produced", "")),
                str(s.get("readers", "")),
                str(s.get("dropped", "")),
            ]
        )
    out.table(_RECORD_COLUMNS, rows, fmt)


@record_app.command("get")
def record_get(ctx: typer.Context, key: str = typer.Argument(..., help="Record key.")) -> None:
    """Print the current value of a record as JSON."""
    o = _opts(ctx)

    async def go() -> Any:
        c = await _client(o)
        try:
            return await _with_key_hint(c, key, c.get(key))
        finally:
            await c.aclose()

    out.print_json(_execute(go))


@record_app.command("set")
def record_set(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Record key."),
    value: str = typer.Argument(..., help="The value as JSON, e.g. '{\"celsius\": 21.5}'."),
    output: Optional[Format] = _OUTPUT,
) -> None:
    """Write a value to a writable record (the server must allow it)."""
    o = _opts(ctx, output)
    try:
        data = json.loads(value)
    except ValueError as exc:
        out.err(f"error: VALUE is not valid JSON: {exc}")
        raise typer.Exit(EXIT_ERROR) from None

    async def go() -> Any:
        c = await _client(o)
        try:
            return await _with_key_hint(c, key, c.set(key, data))
        finally:
            await c.aclose()

    stored = _execute(go)
    if _fmt(o) is Format.json:
        out.print_json({"key": key, "value": stored})
    else:
        out.line(f"{key} = {out.compact(stored, 200)}")


@record_app.command("drain")
def record_drain(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Record key."),
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000, help="At most this many values."),
) -> None:
    """Print the values pending for this connection (the first drain creates the cursor)."""
    o = _opts(ctx)

    async def go() -> list[Any]:
        c = await _client(o)
        try:
            return await _with_key_hint(c, key, c.drain(key, limit))
        finally:
            await c.aclose()

    out.print_json(_execute(go))


# ------------------------------------------------------------------ watch


@app.command("watch")
def watch(
    ctx: typer.Context,
    pattern: str = typer.Argument(..., help="Key or pattern (* one segment, # any number)."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Stop after N events."),
    snapshot: bool = typer.Option(True, "--snapshot/--no-snapshot", help="Start with current values."),
    queue: Optional[int] = typer.Option(None, "--queue", min=1, help="Server-side queue size."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after SECONDS."),
    output: Optional[Format] = _OUTPUT,
) -> None:
    """Follow records live: a table on a terminal, one line per event otherwise.

    Lines are 'HH:MM:SS.mmm SEQ KEY VALUE' (local time the server picked the value up; '*'
    after SEQ marks the snapshot); json writes one event object per line.
    """
    o = _opts(ctx, output)
    fmt = _fmt(o)
    live = fmt is Format.table and out.stdout_is_terminal()

    async def go() -> int:
        c = await _client(o)
        try:
            sub = await _with_key_hint(c, pattern, c.subscribe(pattern, snapshot=snapshot, queue=queue))
            if live:
                return await _watch_live(sub, count, duration)
            return await _watch_lines(sub, count, duration, fmt)
        finally:
            await c.aclose()

    _execute(go)


async def _next_event(sub: Subscription, deadline: float | None) -> Event | None:
    if deadline is None:
        return await sub.next()
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        return await sub.next(left)
    except TimeoutError:
        return None


async def _watch_lines(sub: Subscription, count: int | None, duration: float | None, fmt: Format) -> int:
    from ..remote import RemoteError

    deadline = None if duration is None else time.monotonic() + duration
    n = 0
    snaps = 0
    chatty = fmt is not Format.json
    if sub.snapshot == 0 and chatty:
        out.err(f"watching {', '.join(sub.keys)}")
    while count is None or n < count:
        try:
            ev = await _next_event(sub, deadline)
        except RemoteError:
            raise CliError("connection closed by the server") from None
        if ev is None:
            break
        n += 1
        if ev.gap:
            out.err(f"warning: missed {ev.gap} event(s) before seq {ev.seq} ({ev.key})")
        if fmt is Format.json:
            out.line(json.dumps(ev.as_dict(), separators=(",", ":")))
        else:
            mark = "*" if ev.snapshot else " "
            out.line(f"{out.clock(ev.ts)} {ev.seq:>6}{mark} {ev.key}  {out.compact(ev.value, 200)}")
        if ev.snapshot:
            snaps += 1
            if snaps == sub.snapshot and chatty:
                out.err(f"-- snapshot complete ({snaps} record(s)) --")
    return n


async def _watch_live(sub: Subscription, count: int | None, duration: float | None) -> int:
    from rich.live import Live
    from rich.table import Table

    from ..remote import RemoteError

    deadline = None if duration is None else time.monotonic() + duration
    rows: dict[str, dict[str, Any]] = {
        k: {"value": None, "seq": 0, "n": 0, "t": 0.0, "ts": 0} for k in sub.keys
    }
    n = 0

    def render() -> Table:
        t = Table(title=f"watch {', '.join(sub.keys[:3])}")
        t.add_column("KEY", overflow="fold")
        t.add_column("VALUE", overflow="fold")
        for h in ("SEQ", "UPDATES", "AT", "AGE"):
            t.add_column(h, no_wrap=True)
        now = time.monotonic()
        for k, r in rows.items():
            seen = r["n"] > 0
            t.add_row(
                k,
                out.compact(r["value"], 70) if seen else "-",
                str(r["seq"] or "-"),
                str(r["n"]),
                out.clock(r["ts"]) if seen else "-",
                out.age(now - r["t"]) if seen else "-",
            )
        t.caption = f"missed {sub.missed} event(s)" if sub.missed else None
        return t

    with Live(render(), refresh_per_second=8, transient=False) as lv:
        while count is None or n < count:
            try:
                ev = await _next_event(sub, deadline)
            except RemoteError:
                break
            if ev is None:
                break
            n += 1
            r = rows.setdefault(ev.key, {"value": None, "seq": 0, "n": 0, "t": 0.0, "ts": 0})
            r.update(value=ev.value, seq=ev.seq, n=r["n"] + 1, t=time.monotonic(), ts=ev.ts)
            lv.update(render())
    if sub.missed:
        out.err(f"warning: missed {sub.missed} event(s) in total")
    return n


# ------------------------------------------------------------------ graph and stats


@app.command("graph")
def graph(
    ctx: typer.Context,
    output: Optional[str] = typer.Option(
        None,
        "--format",
        "-f",
        "--output",
        "-o",
        help="table or plain (a tree; text is plain), json, dot (Graphviz source), "
        "svg or png (rendered by Graphviz's dot command).",
        metavar="FORMAT",
    ),
    out_file: Optional[str] = typer.Option(
        None, "-O", "--out-file", help="Write to FILE instead of standard output.", metavar="FILE"
    ),
    dot: bool = typer.Option(False, "--dot", hidden=True, help="Same as --format dot."),
) -> None:
    """Show how records derive from each other and where they link to.

    Records, transforms, joins and links in and out; a record fed by links names them as
    its writer. --format svg|png needs Graphviz's dot command (the graphviz package).
    """
    from ._graph import GraphFormat, RenderError, render, to_dot

    try:
        gfmt = GraphFormat((output or ("dot" if dot else "")).lower()) if (output or dot) else None
    except ValueError:
        choices = ", ".join(f.value for f in GraphFormat)
        raise typer.BadParameter(f"{output!r} is not one of {choices}", param_hint="'--format'") from None
    o = _opts(ctx, None)

    async def go() -> dict[str, Any]:
        c = await _client(o)
        try:
            return await c.graph()
        finally:
            await c.aclose()

    if gfmt is GraphFormat.png and out_file is None and out.stdout_is_terminal():
        raise typer.Exit(_fail("error: png is binary: write it to a file with -O FILE (or redirect stdout)"))
    g = _execute(go)
    data: str | bytes
    if gfmt in (GraphFormat.dot, GraphFormat.svg, GraphFormat.png):
        data = to_dot(g)
        if gfmt is not GraphFormat.dot:
            try:
                data = render(data, gfmt.value)
            except RenderError as exc:
                raise typer.Exit(_fail(f"error: {exc}")) from None
    elif gfmt is GraphFormat.json or (gfmt is None and o.format is Format.json):
        data = json.dumps(g, indent=2, default=str) + "\n"
    else:
        boxed = gfmt is GraphFormat.table if gfmt is not None else _fmt(o) is Format.table
        data = to_tree(g, boxed=boxed)
    if out_file is not None:
        try:
            with open(out_file, "wb") as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
        except OSError as exc:
            raise typer.Exit(_fail(f"error: cannot write {out_file}: {exc.strerror or exc}")) from None
    elif isinstance(data, bytes):
        out.write_bytes(data)
    else:
        out.write(data)


def to_tree(g: dict[str, Any], boxed: bool = True) -> str:
    """Render a graph reply as an indented tree: inputs at the root, derived records below.

    ``boxed`` draws the branches with box-drawing characters, else with ASCII.
    """
    nodes = {n["key"]: n for n in g["nodes"]}
    children: dict[str, list[tuple[str, str]]] = {}
    has_parent: set[str] = set()
    for e in g["edges"]:
        children.setdefault(e["from"], []).append((e["to"], e["kind"]))
        if e["to"] in nodes and (e["from"] in nodes or e["kind"] == "link_in"):
            has_parent.add(e["to"])
    tee, last, bar, gap = ("├── ", "└── ", "│   ", "    ") if boxed else ("|-- ", "`-- ", "|   ", "    ")
    lines = ["records"]

    def label(key: str, via: str | None) -> str:
        n = nodes.get(key)
        if n is None:
            return f"{key} ({via})"
        extra = f" [{via}]" if via else ""
        kept = " · persisted" if n.get("persisted") else ""
        return f"{key}: {n['type']} · {n['buffer']} · writer={writer_of(n)}{kept}{extra}"

    def add(prefix: str, is_last: bool, key: str, via: str | None, seen: frozenset[str]) -> None:
        lines.append(prefix + (last if is_last else tee) + label(key, via))
        if key in seen:
            return
        kids = children.get(key, [])
        for i, (child, kind) in enumerate(kids):
            add(prefix + (gap if is_last else bar), i == len(kids) - 1, child, kind, seen | {key})

    roots = [k for k in (g.get("order") or list(nodes)) if k in nodes and k not in has_parent]
    inbound = sorted({e["from"] for e in g["edges"] if e["kind"] == "link_in"})
    tops: list[tuple[str, str | None]] = [(u, "link_in") for u in inbound] + [(k, None) for k in roots]
    for i, (key, via) in enumerate(tops):
        add("", i == len(tops) - 1, key, via, frozenset())
    return "\n".join(lines) + "\n"


@app.command("stats")
def stats(
    ctx: typer.Context,
    key: Optional[str] = typer.Argument(None, help="Only this record."),
    reset: bool = typer.Option(False, "--reset", help="Zero the counters (server must allow it)."),
    output: Optional[Format] = _OUTPUT,
) -> None:
    """Show (or reset) buffer, stage, link, connector and server statistics.

    Without KEY: a table of the records, then one of the connectors (state, connection
    counters, last error); -o json shows everything the server sent.
    """
    o = _opts(ctx, output)

    async def go() -> dict[str, Any]:
        c = await _client(o)
        try:
            if reset:
                await c.reset_stats()
                return {"reset": True}
            if key is None:
                return await c.stats()
            return await _with_key_hint(c, key, c.stats(key))
        finally:
            await c.aclose()

    data = _execute(go)
    fmt = _fmt(o)
    if reset and fmt is not Format.json:
        out.line("statistics reset")
        return
    if fmt is Format.json or reset or key:
        out.print_json(data)
        return
    rows = []
    for k, s in data.get("records", {}).items():
        b = s.get("buffer") or {}
        stages = ", ".join(f"{st['name']}:{st['values']}" for st in s.get("stages", []))
        rows.append(
            [
                k,
                str(b.get("kind", "-")),
                str(b.get("produced", "-")),
                str(b.get("delivered", "-")),
                str(b.get("dropped", "-")),
                str(b.get("readers", "-")),
                stages,
            ]
        )
    cols = [
        Column("KEY"),
        Column("BUFFER", drop=3),
        Column("PRODUCED", drop=5),
        Column("DELIVERED", drop=4),
        Column("DROPPED", drop=2),
        Column("READERS", drop=0),
        Column("STAGES", drop=1, wrap=True),
    ]
    out.table(cols, rows, fmt)
    connectors = data.get("connectors")
    if connectors:  # servers before the field omit it; nothing to show without connectors
        out.write("\n")
        out.table(CONNECTOR_COLUMNS, connector_rows(connectors), fmt, title="connectors")


#: the columns of the connectors table of ``aimdb stats`` (counters give way first at 80 columns)
CONNECTOR_COLUMNS = [
    Column("SCHEME"),
    Column("URL", wrap=True),
    Column("STATE", drop=5),
    Column("CONNECTS", drop=1),
    Column("FAILED", drop=3),
    Column("DISCONNECTS", drop=0),
    Column("ERRORS", drop=2),
    Column("LAST ERROR", drop=4, wrap=True),
]


def connector_rows(connectors: list[dict[str, Any]]) -> list[list[str]]:
    """One row per entry of a ``stats`` reply's ``connectors`` (see :data:`CONNECTOR_COLUMNS`)."""
    rows = []
    for c in connectors:
        last = c.get("last_error")
        rows.append(
            [
                str(c.get("scheme", "-")),
                str(c.get("url", "-")),
                str(c.get("state", "-")),
                str(c.get("connects", "-")),
                str(c.get("failed_attempts", "-")),
                str(c.get("disconnects", "-")),
                str(c.get("errors", "-")),
                "-" if last is None else str(last),
            ]
        )
    return rows


# ------------------------------------------------------------------ micropython

micropython_app = typer.Typer(
    help="The MicroPython interpreter the demo's MicroPython station runs on.", context_settings=_CONTEXT
)
app.add_typer(micropython_app, name="micropython")
micropython_app.callback(invoke_without_command=True)(_group_help)


@micropython_app.command("install")
def micropython_install(
    force: bool = typer.Option(False, "--force", help="Reinstall even when it is installed."),
) -> None:
    """Install the pinned MicroPython WebAssembly interpreter (npm ci, needs Node.js).

    It goes to $AIMDB_MICROPYTHON_HOME, else to a per-user cache directory
    (~/.cache/aimdb/micropython-VERSION); the printed directory is where it is.
    """
    from .. import _micropython as mpy

    if mpy.is_installed() and not force:
        out.line(f"MicroPython ({mpy.PACKAGE} {mpy.VERSION}) is already installed in {mpy.home()}")
        return
    out.err(f"installing {mpy.PACKAGE} {mpy.VERSION} into {mpy.home()} (npm ci) ...")
    try:
        where = mpy.install(force=force)
    except mpy.InstallError as exc:
        raise typer.Exit(_fail(f"error: {exc}")) from None
    out.line(f"MicroPython ({mpy.PACKAGE} {mpy.VERSION}) installed in {where}")


@micropython_app.command("status")
def micropython_status() -> None:
    """Say whether MicroPython can run here (exit 0) or why not (exit 1)."""
    from .. import _micropython as mpy

    found = mpy.runner()
    if found.command is None:
        raise typer.Exit(_fail(f"MicroPython cannot run here: {found.reason}"))
    out.line(f"MicroPython {mpy.VERSION} runs with: {' '.join(found.command)}")


def _fail(message: str) -> int:
    out.err(message)
    return EXIT_ERROR


# ------------------------------------------------------------------ dashboard


_ALLOW_ORIGIN: Any = typer.Option(
    [], "--allow-origin", help="Another browser origin allowed to connect (repeatable; '*' for any)."
)


@app.command("dashboard")
def dashboard(
    ctx: typer.Context,
    connect: Optional[str] = typer.Option(
        None, "--connect", "-c", help="Instance name or endpoint (default: as for every command)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve the page on."),
    port: int = typer.Option(0, "--port", help="Port to serve the page on (0: a free port)."),
    allow_origin: list[str] = _ALLOW_ORIGIN,
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
) -> None:
    """Serve the live dashboard page and relay it to a running instance (prints the URL)."""
    o = _opts(ctx)
    try:
        from ..remote import _relay
    except ImportError as exc:
        out.err(f"error: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    shown = f"[{host}]" if ":" in host else host

    target: list[str] = []

    def report(c: Any) -> None:
        out.err(
            f"dashboard: stopped after relaying {c.connections} connection(s); {c.instance_lost} closed "
            f"because the instance was gone, {c.origin_refused} refused for their origin"
        )

    def announce(url: str) -> None:
        out.line(f"dashboard: {url}  (relaying to {target[0]}; Ctrl-C to stop)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    async def go() -> None:
        from ..remote import resolve_endpoint

        text = await resolve_connect(connect or o.connect, o.token, o.timeout)
        endpoint = await resolve_endpoint(text)
        target.append(str(endpoint))
        await _relay.run_dashboard(
            endpoint, f"{shown}:{port}", allowed_origins=allow_origin, announce=announce, report=report
        )

    _execute(go)


# ------------------------------------------------------------------ demo


@app.command(
    "demo",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def demo(ctx: typer.Context) -> None:
    """Run the weather-mesh demo (all arguments go to the demo; try 'aimdb demo --help')."""
    try:
        from .. import _demo
    except ImportError as exc:
        out.err(f"error: the demo is not available in this installation ({exc})")
        raise typer.Exit(EXIT_ERROR) from None
    code = _demo.main(list(ctx.args))
    raise typer.Exit(int(code or 0))


# ------------------------------------------------------------------ entry point


def run(argv: list[str]) -> int:
    """Run the CLI with ``argv`` (without the program name) and return the exit code."""
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv), prog_name="aimdb", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        out.err(str(code))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # last resort: one line, never a traceback
        out.err(f"error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return 0


from . import _history as _history  # noqa: E402  (registers 'aimdb record history')
