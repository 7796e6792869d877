"""MkDocs hook: render reStructuredText leftovers in docstrings as Markdown would.

Docstrings use Sphinx roles (``:class:`~aimdb.BufferLagged```) and ``::`` before literal
blocks. After Markdown these appear as ``:class:<code>~aimdb.BufferLagged</code>`` and
``text::</p><pre>``. The hook turns roles into optional autorefs (a link when the target is
documented, plain code otherwise, never a build warning) and ``::`` into ``:``.

A role naming a bare or partial name (``:func:`serve```, ``:meth:`Buffer.close```) links to
the object documented on the same page whose full name ends with it, when there is exactly
one; otherwise a bare name is looked up as ``aimdb.<name>`` and a dotted one as given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_ROLE = re.compile(r":(?:py:)?(class|meth|func|mod|attr|exc|data|obj):<code>(~?)([^<]+)</code>")
_LITERAL = re.compile(r"::</p>(\s*<pre)")
_ANCHOR = re.compile(r'\bid="(aimdb(?:\.\w+)*)"')


def _resolver(html: str) -> Callable[[str], str]:
    anchors: set[str] = set(_ANCHOR.findall(html))

    def resolve(target: str) -> str:
        if target.startswith("aimdb.") or target == "aimdb":
            return target
        found = [a for a in anchors if a.endswith("." + target)]
        if len(found) == 1:
            return found[0]
        return target if "." in target else "aimdb." + target

    return resolve


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite roles and literal-block markers before autorefs resolves references."""
    resolve = _resolver(html)

    def role(match: re.Match[str]) -> str:
        kind, tilde, target = match.groups()
        target = target.strip()
        title = target.rsplit(".", 1)[-1] if tilde else target
        if kind in ("meth", "func") and not title.endswith(")"):
            title += "()"
        return f'<autoref optional identifier="{resolve(target)}"><code>{title}</code></autoref>'

    return _LITERAL.sub(r":</p>\1", _ROLE.sub(role, html))
