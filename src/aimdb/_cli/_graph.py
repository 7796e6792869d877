"""Pictures of a dataflow graph: Graphviz DOT written here, SVG and PNG rendered by ``dot``.

The input is the reply of the remote ``graph`` method (``nodes``, ``edges``, ``order``).
Every record is a box naming its key, value type, buffer and writer (and ``persisted``
for a record whose values are stored); a transform is a
labelled edge from its input, a join a small diamond its inputs meet in; a link is an
ellipse holding the link's URL, with an edge into the record it writes (``link_from``) or
out of the record it mirrors (``link_to``). A record written by links names them as its
writer. Node names are the record keys and link URLs as they are (a key never contains
``/``, a URL always does) and ``join KEY`` for a join (a key never contains a space).
"""

from __future__ import annotations

import enum
import shutil
import subprocess
from typing import Any

GRAPHVIZ_PACKAGE = "graphviz"
"""The package (Debian, Homebrew, conda, ...) that provides the ``dot`` command."""


class GraphFormat(str, enum.Enum):
    """Output formats of ``aimdb graph``."""

    table = "table"
    plain = "plain"
    text = "text"
    json = "json"
    dot = "dot"
    svg = "svg"
    png = "png"


class RenderError(Exception):
    """The picture could not be rendered; the message is one line for the user."""


def dot_string(text: str) -> str:
    r"""``text`` as a DOT double-quoted string: backslashes, quotes and line breaks escaped.

    Inside a quoted DOT string a backslash starts an escape (``\n``, ``\l``, ``\N``...),
    so a literal one is doubled; a line break becomes ``\n`` (a centred line in labels).
    """
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    body = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return '"' + body + '"'


_WRITER_COLOUR = {
    "source": "#dbeafe",
    "transform": "#dcfce7",
    "join": "#dcfce7",
    "link": "#fef3c7",
    "remote": "#fce7f3",
    "none": "#f3f4f6",
}


def writer_label(node: dict[str, Any], links_in: list[str]) -> str:
    """What writes a record: the server's writer kind, the link URLs for ``link``.

    A passive record that remote clients may write is ``remote``.
    """
    writer = str(node.get("writer", "none"))
    if writer == "none" and node.get("writable"):
        writer = "remote"
    if writer == "link" and links_in:
        return "link " + ", ".join(links_in)
    return writer


def to_dot(g: dict[str, Any]) -> str:
    """Render a graph reply as a Graphviz DOT digraph (see the module docstring)."""
    nodes = {n["key"]: n for n in g["nodes"]}
    links_in: dict[str, list[str]] = {}
    joins: dict[str, list[str]] = {}
    for e in g["edges"]:
        if e["kind"] == "link_in":
            links_in.setdefault(e["to"], []).append(e["from"])
        elif e["kind"] == "join":
            joins.setdefault(e["to"], []).append(e["from"])
    lines = [
        "digraph aimdb {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#4b5563"];',
    ]
    order = [k for k in (g.get("order") or []) if k in nodes]
    order += [k for k in nodes if k not in order]
    for key in order:
        n = nodes[key]
        writer = writer_label(n, links_in.get(key, []))
        label = f"{key}\n{n.get('type', '?')} · {n.get('buffer', '?')}\nwriter: {writer}"
        if n.get("persisted"):
            label += "\npersisted"
        colour = _WRITER_COLOUR.get(writer.split(" ", 1)[0], "#f3f4f6")
        lines.append(
            f"  {dot_string(key)} [label={dot_string(label)}, fillcolor={dot_string(colour)}];"
        )
    urls: list[str] = []
    for e in g["edges"]:
        if e["kind"] == "link_in" and e["from"] not in urls:
            urls.append(e["from"])
        elif e["kind"] == "link_out" and e["to"] not in urls:
            urls.append(e["to"])
    for url in urls:
        lines.append(
            f"  {dot_string(url)} [label={dot_string(url)}, shape=ellipse, style=filled, "
            'fillcolor="#fff7ed"];'
        )
    for key in joins:
        lines.append(
            f'  {dot_string("join " + key)} [label="join", shape=diamond, style=filled, fillcolor="#dcfce7"];'
        )
        lines.append(f"  {dot_string('join ' + key)} -> {dot_string(key)};")
    for e in g["edges"]:
        kind = e["kind"]
        if kind == "link_in":
            lines.append(_edge(e["from"], e["to"], "link_from"))
        elif kind == "link_out":
            lines.append(_edge(e["from"], e["to"], "link_to"))
        elif kind == "join":
            lines.append(_edge(e["from"], "join " + e["to"]))
        else:
            lines.append(_edge(e["from"], e["to"], kind))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edge(a: str, b: str, label: str | None = None) -> str:
    attrs = f" [label={dot_string(label)}]" if label else ""
    return f"  {dot_string(a)} -> {dot_string(b)}{attrs};"


def render(dot_source: str, fmt: str, timeout: float = 60.0) -> bytes:
    """Render DOT source to ``fmt`` (``svg`` or ``png``) with Graphviz's ``dot`` command.

    Raises:
        RenderError: ``dot`` is not installed (the message names the package) or failed.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError(
            f"Graphviz's 'dot' command is not installed; install the '{GRAPHVIZ_PACKAGE}' package "
            f"(e.g. apt install {GRAPHVIZ_PACKAGE}), or use --format dot"
        )
    try:
        proc = subprocess.run(
            [exe, "-T" + fmt], input=dot_source.encode(), capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"running {exe} failed: {exc}") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RenderError(f"dot -T{fmt} failed (exit {proc.returncode}): {why[-1] if why else 'no message'}")
    return proc.stdout
