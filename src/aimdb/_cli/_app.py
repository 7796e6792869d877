"""The ``aimdb`` command line: inspect and steer running instances (typer + rich).

Every command that talks to an instance connects with ``--connect`` (or
``$AIMDB_CONNECT``, or the only local instance found). Errors are printed as one line on
standard error with a non-zero exit code; tracebacks are never shown.
"""

from __future__ import annotations

import asyncio
import enum
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..remote import AsyncClient, RemoteError, list_instances

R = TypeVar("R")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class Format(str, enum.Enum):
    """Output formats."""

    table = "table"
    json = "json"


@dataclass
class _Opts:
    connect: str | None
    token: str | None
    format: Format
    timeout: float


class CliError(Exception):
    """An error to show as one line (exit code 1)."""


app = typer.Typer(
    name="aimdb",
    help="Inspect and steer running aimdb instances.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
instance_app = typer.Typer(help="Discover and check instances.", no_args_is_help=True)
record_app = typer.Typer(help="List, read and write records.", no_args_is_help=True)
app.add_typer(instance_app, name="instance")
app.add_typer(record_app, name="record")


def _out() -> Console:
    # Not a terminal: a wide fixed width, so tables stay one line per row for scripts.
    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def _opts(ctx: typer.Context) -> _Opts:
    obj = ctx.find_root().obj
    if isinstance(obj, _Opts):
        return obj
    return _Opts(None, None, Format.table, 5.0)


def _execute(fn: Callable[[], Awaitable[R]]) -> R:
    """Run ``fn()`` on a fresh event loop, turning every failure into one line and exit 1."""
    try:
        return asyncio.run(_guard(fn))
    except CliError as exc:
        _err(f"error: {exc}")
    except RemoteError as exc:
        _err(f"error: {exc}")
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (OSError, ValueError, TimeoutError) as exc:
        _err(f"error: {exc}")
    raise typer.Exit(EXIT_ERROR)


async def _guard(fn: Callable[[], Awaitable[R]]) -> R:
    return await fn()


async def _client(o: _Opts) -> AsyncClient:
    return await AsyncClient.connect(o.connect, token=o.token, timeout=o.timeout, client_name="aimdb-cli")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _compact(value: Any, width: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------ root


@app.callback()
def _root(
    ctx: typer.Context,
    connect: Optional[str] = typer.Option(
        None,
        "--connect",
        "-c",
        envvar="AIMDB_CONNECT",
        help="unix://PATH or tcp://HOST:PORT (default: the only local instance).",
    ),
    token: Optional[str] = typer.Option(None, "--token", envvar="AIMDB_TOKEN", help="Server token."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),  # noqa: B008
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for connects and replies."),
) -> None:
    """Inspect and steer running aimdb instances."""
    ctx.obj = _Opts(connect, token, fmt, timeout)


# ------------------------------------------------------------------ instance


@instance_app.command("list")
def instance_list(ctx: typer.Context) -> None:
    """List local instances (sockets in the runtime directory) and whether they answer."""
    o = _opts(ctx)

    async def go() -> list[dict[str, Any]]:
        return await list_instances(timeout=min(o.timeout, 1.0), token=o.token)

    found = _execute(go)
    if o.format is Format.json:
        _print_json(found)
        return
    if not found:
        _out().print("no local instances found")
        return
    t = Table("NAME", "ENDPOINT", "PID", "RECORDS", "STATUS")
    for i in found:
        status = "ok" if "protocol" in i else ("stale" if not i.get("alive") else str(i.get("code")))
        pid, nrec = str(i.get("pid", "-")), str(i.get("records", "-"))
        t.add_row(str(i.get("name", "-")), i["endpoint"], pid, nrec, status)
    _out().print(t)


@instance_app.command("info")
def instance_info(ctx: typer.Context) -> None:
    """Show the instance's handshake data and server counters."""
    o = _opts(ctx)

    async def go() -> dict[str, Any]:
        c = await _client(o)
        try:
            stats = await c.stats()
            return {"endpoint": c.endpoint, **c.server_info, "server": stats.get("server", {})}
        finally:
            await c.aclose()

    info = _execute(go)
    if o.format is Format.json:
        _print_json(info)
        return
    t = Table("FIELD", "VALUE", show_header=False)
    for k, v in info.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                t.add_row(f"{k}.{k2}", _compact(v2, 100))
        else:
            t.add_row(k, _compact(v, 100) if not isinstance(v, str) else v)
    _out().print(t)


@instance_app.command("ping")
def instance_ping(
    ctx: typer.Context,
    count: int = typer.Option(3, "--count", "-n", min=1, max=1000, help="Number of pings."),
) -> None:
    """Measure round trips to the instance."""
    o = _opts(ctx)

    async def go() -> list[float]:
        c = await _client(o)
        try:
            return [await c.ping() for _ in range(count)]
        finally:
            await c.aclose()

    times = _execute(go)
    if o.format is Format.json:
        _print_json({"rtt_ms": [t * 1000 for t in times]})
        return
    for i, t in enumerate(times, 1):
        _out().print(f"ping {i}: {t * 1000:.3f} ms")


# ------------------------------------------------------------------ record


@record_app.command("list")
def record_list(
    ctx: typer.Context,
    pattern: Optional[str] = typer.Argument(None, help="Key or pattern (* one segment, # any)."),
    writable: bool = typer.Option(False, "--writable", "-w", help="Only records remote clients may set."),
) -> None:
    """List records with their buffer, writer, permissions and statistics."""
    o = _opts(ctx)

    async def go() -> list[dict[str, Any]]:
        c = await _client(o)
        try:
            return await c.list(pattern)
        finally:
            await c.aclose()

    recs = _execute(go)
    if writable:
        recs = [r for r in recs if r.get("writable")]
    if o.format is Format.json:
        _print_json(recs)
        return
    t = Table("KEY", "TYPE", "BUFFER", "WRITER", "W", "VALUE", "PRODUCED", "READERS", "DROPPED")
    for r in recs:
        s = r.get("stats") or {}
        buf = r["buffer"] if r["buffer"] != "spmc_ring" else f"ring({r['capacity']})"
        t.add_row(
            r["key"],
            r["type"],
            buf,
            r["writer"],
            "yes" if r.get("writable") else "",
            "yes" if r.get("has_value") else "",
            str(s.get("produced", "")),
            str(s.get("readers", "")),
            str(s.get("dropped", "")),
        )
    _out().print(t)


@record_app.command("get")
def record_get(ctx: typer.Context, key: str = typer.Argument(..., help="Record key.")) -> None:
    """Print the current value of a record as JSON."""
    o = _opts(ctx)

    async def go() -> Any:
        c = await _client(o)
        try:
            return await c.get(key)
        finally:
            await c.aclose()

    _print_json(_execute(go))


@record_app.command("set")
def record_set(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Record key."),
    value: str = typer.Argument(..., help='The value as JSON, e.g. \'{"celsius": 21.5}\'.'),
) -> None:
    """Write a value to a writable record (the server must allow it)."""
    o = _opts(ctx)
    try:
        data = json.loads(value)
    except ValueError as exc:
        _err(f"error: VALUE is not valid JSON: {exc}")
        raise typer.Exit(EXIT_ERROR) from None

    async def go() -> Any:
        c = await _client(o)
        try:
            return await c.set(key, data)
        finally:
            await c.aclose()

    stored = _execute(go)
    if o.format is Format.json:
        _print_json({"key": key, "value": stored})
    else:
        _out().print(f"{key} = {_compact(stored, 200)}")


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
            return await c.drain(key, limit)
        finally:
            await c.aclose()

    _print_json(_execute(go))


# ------------------------------------------------------------------ watch


@app.command("watch")
def watch(
    ctx: typer.Context,
    pattern: str = typer.Argument(..., help="Key or pattern (* one segment, # any number)."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Stop after N events."),
    snapshot: bool = typer.Option(True, "--snapshot/--no-snapshot", help="Start with current values."),
    queue: Optional[int] = typer.Option(None, "--queue", min=1, help="Server-side queue size."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after SECONDS."),
) -> None:
    """Follow records live: a table on a terminal, one line per event otherwise."""
    o = _opts(ctx)
    live = o.format is Format.table and sys.stdout.isatty()

    async def go() -> int:
        c = await _client(o)
        try:
            sub = await c.subscribe(pattern, snapshot=snapshot, queue=queue)
            if live:
                return await _watch_live(sub, count, duration)
            return await _watch_lines(sub, count, duration, o.format)
        finally:
            await c.aclose()

    _execute(go)


async def _next_event(sub: Any, deadline: float | None) -> Any:
    if deadline is None:
        return await sub.next()
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        return await sub.next(left)
    except TimeoutError:
        return None


async def _watch_lines(sub: Any, count: int | None, duration: float | None, fmt: Format) -> int:
    deadline = None if duration is None else time.monotonic() + duration
    n = 0
    snaps = 0
    if sub.snapshot == 0 and fmt is Format.table:
        _err(f"watching {', '.join(sub.keys)}")
    while count is None or n < count:
        try:
            ev = await _next_event(sub, deadline)
        except RemoteError:
            _err("error: connection closed by the server")
            raise typer.Exit(EXIT_ERROR) from None
        if ev is None:
            break
        n += 1
        if ev.gap:
            _err(f"warning: missed {ev.gap} event(s) before seq {ev.seq} ({ev.key})")
        if fmt is Format.json:
            sys.stdout.write(json.dumps(ev.as_dict(), separators=(",", ":")) + "\n")
        else:
            mark = "*" if ev.snapshot else " "
            sys.stdout.write(f"{ev.seq:>6}{mark} {ev.key}  {_compact(ev.value, 200)}\n")
        sys.stdout.flush()
        if ev.snapshot:
            snaps += 1
            if snaps == sub.snapshot and fmt is Format.table:
                _err(f"-- snapshot complete ({snaps} record(s)) --")
    return n


async def _watch_live(sub: Any, count: int | None, duration: float | None) -> int:
    from rich.live import Live

    deadline = None if duration is None else time.monotonic() + duration
    rows: dict[str, dict[str, Any]] = {k: {"value": None, "seq": 0, "n": 0, "t": 0.0} for k in sub.keys}
    n = 0

    def render() -> Table:
        t = Table("KEY", "VALUE", "SEQ", "UPDATES", "AGE", title=f"watch {', '.join(sub.keys[:3])}")
        now = time.monotonic()
        for k, r in rows.items():
            age = f"{now - r['t']:.1f}s" if r["n"] else "-"
            t.add_row(k, _compact(r["value"], 70) if r["n"] else "-", str(r["seq"] or "-"), str(r["n"]), age)
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
            r = rows.setdefault(ev.key, {"value": None, "seq": 0, "n": 0, "t": 0.0})
            r.update(value=ev.value, seq=ev.seq, n=r["n"] + 1, t=time.monotonic())
            lv.update(render())
    if sub.missed:
        _err(f"warning: missed {sub.missed} event(s) in total")
    return n


# ------------------------------------------------------------------ graph and stats


@app.command("graph")
def graph(
    ctx: typer.Context,
    dot: bool = typer.Option(False, "--dot", help="Print Graphviz DOT instead of a tree."),
) -> None:
    """Show how records derive from each other and where they link to."""
    o = _opts(ctx)

    async def go() -> dict[str, Any]:
        c = await _client(o)
        try:
            return await c.graph()
        finally:
            await c.aclose()

    g = _execute(go)
    if dot:
        sys.stdout.write(to_dot(g))
    elif o.format is Format.json:
        _print_json(g)
    else:
        _out().print(to_tree(g))


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: dict[str, Any]) -> str:
    """Render a graph reply as Graphviz DOT."""
    lines = ["digraph aimdb {", "  rankdir=LR;", "  node [shape=box];"]
    for n in g["nodes"]:
        label = _dq(f"{n['key']} ({n['type']}, {n['buffer']})")
        lines.append(f"  {_dq(n['key'])} [label={label}];")
    for e in g["edges"]:
        if e["kind"] in ("link_out", "link_in"):
            url = e["to"] if e["kind"] == "link_out" else e["from"]
            lines.append(f"  {_dq(url)} [shape=ellipse];")
        lines.append(f"  {_dq(e['from'])} -> {_dq(e['to'])} [label={_dq(e['kind'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_tree(g: dict[str, Any]) -> Tree:
    """Render a graph reply as a rich tree: inputs at the root, derived records below."""
    nodes = {n["key"]: n for n in g["nodes"]}
    children: dict[str, list[tuple[str, str]]] = {}
    has_parent: set[str] = set()
    for e in g["edges"]:
        children.setdefault(e["from"], []).append((e["to"], e["kind"]))
        if e["to"] in nodes and e["from"] in nodes:
            has_parent.add(e["to"])
    root = Tree(Text("records"))

    def label(key: str, via: str | None) -> str:
        n = nodes.get(key)
        if n is None:
            return f"{key} ({via})"
        extra = f" [{via}]" if via else ""
        return f"{key}: {n['type']} · {n['buffer']} · writer={n['writer']}{extra}"

    def add(parent: Tree, key: str, via: str | None, seen: frozenset[str]) -> None:
        node = parent.add(Text(label(key, via)))
        if key in seen:
            return
        for child, kind in children.get(key, []):
            add(node, child, kind, seen | {key})

    for key in g.get("order") or list(nodes):
        if key in nodes and key not in has_parent:
            add(root, key, None, frozenset())
    return root


@app.command("stats")
def stats(
    ctx: typer.Context,
    key: Optional[str] = typer.Argument(None, help="Only this record."),
    reset: bool = typer.Option(False, "--reset", help="Zero the counters (server must allow it)."),
) -> None:
    """Show (or reset) buffer, stage, link and server statistics."""
    o = _opts(ctx)

    async def go() -> dict[str, Any]:
        c = await _client(o)
        try:
            if reset:
                await c.reset_stats()
                return {"reset": True}
            return await c.stats(key)
        finally:
            await c.aclose()

    data = _execute(go)
    if o.format is Format.json or reset or key:
        if reset and o.format is Format.table:
            _out().print("statistics reset")
        else:
            _print_json(data)
        return
    t = Table("KEY", "BUFFER", "PRODUCED", "DELIVERED", "DROPPED", "READERS", "STAGES")
    for k, s in data.get("records", {}).items():
        b = s.get("buffer") or {}
        stages = ", ".join(f"{st['name']}:{st['values']}" for st in s.get("stages", []))
        t.add_row(
            k,
            str(b.get("kind", "-")),
            str(b.get("produced", "-")),
            str(b.get("delivered", "-")),
            str(b.get("dropped", "-")),
            str(b.get("readers", "-")),
            stages,
        )
    _out().print(t)


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
        _err(f"error: the demo is not available in this installation ({exc})")
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
        _err(str(code))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # last resort: one line, never a traceback
        _err(f"error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return 0
