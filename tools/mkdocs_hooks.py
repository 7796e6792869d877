"""MkDocs hook: render Sphinx-style roles left in docstrings as cross-references.

Docstrings use ``:class:`~aimdb.BufferLagged``` and similar roles, which Markdown turns into
``:class:<code>~aimdb.BufferLagged</code>``. This hook rewrites them into optional autorefs:
a link when the target is documented, plain code otherwise (never a build warning).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(class|meth|func|mod|attr|exc|data|obj):<code>(~?)([^<]+)</code>")


def _replace(match: re.Match[str]) -> str:
    role, tilde, target = match.groups()
    target = target.strip()
    title = target.rsplit(".", 1)[-1] if tilde else target
    if role in ("meth", "func") and not title.endswith(")"):
        title += "()"
    ident = target if "." in target else "aimdb." + target
    return f'<autoref optional identifier="{ident}"><code>{title}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite roles in the rendered page before autorefs resolves references."""
    return _ROLE.sub(_replace, html)
