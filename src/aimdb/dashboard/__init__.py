"""The live dashboard page: static HTML, CSS and JavaScript served by the HTTP listener.

The page is plain files (no build step, nothing fetched from another host) in
:data:`STATIC_DIR`: ``index.html``, ``style.css``, the ES modules under ``js/`` and the
vendored uPlot chart library under ``vendor/uplot/``. The remote-access HTTP listener
(``RemoteConfig(http=...)``) and ``aimdb dashboard`` serve this folder at ``/`` and the
remote protocol at ``/ws``; the page speaks that protocol over a WebSocket.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR: str = str(Path(__file__).resolve().parent / "static")
"""Absolute path of the folder holding the page's files (``index.html`` at its top)."""

__all__ = ("STATIC_DIR",)
