"""The records table's layout and the page's words for a record's writer, in headless Chromium.

Keys are identity: at 800, 1024 and 1440 px wide viewports every key is shown whole (its
cell does not overflow, has no ellipsis, lies inside the table's scroll box, and wraps only
at dots); the value cell is the one cut, with the full value in its tooltip. The writer of a
record is named the same in the records table, the detail line and the dataflow graph, and
the same as ``aimdb record list`` prints it (WRITER and W columns).

Needs what ``test_page.py`` needs (Debian's chromium, Playwright, aiohttp).
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest

from tests.dashboard._harness import CLI, SHOTS, WAIT_MS, Instance, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

LONG_KEY = "config.plant.north.hall7.line3.cell12.spindle.bearing.temperature.limit"
# writer kinds of _instance.py: passive + writable, source, join, passive, passive + writable
WRITER_KEYS = ["config.setpoint", "sensor.tick", "derived.join", "station.2.temp", LONG_KEY]

# Per key cell: is its content wider than its box, its text-overflow, whether it lies inside
# the scroll box, and per dot-separated segment the number of lines it is spread over.
_KEY_CELLS = """() => [...document.querySelectorAll('#records tbody tr')].map(tr => {
  const td = tr.querySelector('td.c-key');
  const box = tr.closest('.scroll').getBoundingClientRect();
  const r = td.getBoundingClientRect();
  const segments = [...td.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).map(n => {
    const range = document.createRange();
    range.selectNodeContents(n);
    return new Set([...range.getClientRects()].map(q => Math.round(q.top))).size;
  });
  const tops = [...td.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).map(n => {
    const range = document.createRange();
    range.selectNodeContents(n);
    return Math.round(range.getBoundingClientRect().top);
  });
  return {key: tr.dataset.key, text: td.textContent, scroll: td.scrollWidth, client: td.clientWidth,
          overflow: getComputedStyle(td).textOverflow,
          inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5,
          segments, lines: new Set(tops).size};
})"""


@pytest.mark.parametrize("width", [800, 1024, 1440])
def test_every_key_is_shown_whole(page: Any, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_function("document.querySelectorAll('#records tbody tr').length >= 11", timeout=WAIT_MS)
    cells = page.evaluate(_KEY_CELLS)
    assert LONG_KEY in [c["key"] for c in cells]
    for c in cells:
        assert c["text"] == c["key"], c
        assert c["scroll"] <= c["client"], c  # nothing of the key is hidden
        assert c["overflow"] != "ellipsis", c
        assert c["inside"], c  # not pushed out of the table's box
        assert all(n == 1 for n in c["segments"]), c  # wrapped at dots only, never inside a segment
    short = next(c for c in cells if c["key"] == "station.1.weather")
    assert short["lines"] == 1, short  # a short key is not wrapped
    # the table fits its box: no sideways scrolling, the value column gave way
    fits = page.evaluate(
        "() => { const s = document.querySelector('#records-section .scroll');"
        " return s.scrollWidth <= s.clientWidth; }"
    )
    assert fits
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#records-section").screenshot(path=str(SHOTS / f"dashboard-keys-{width}.png"))


def test_a_cut_value_has_the_full_value_in_its_tooltip(page: Any, instance: Instance) -> None:
    page.set_viewport_size({"width": 800, "height": 900})
    value = {"celsius": 12.5, "humidity": 61.25, "ts_ns": 1_700_000_000_123_456}
    assert instance.call("produce", "station.1.weather", value)["ok"]
    full = "celsius: 12.5, humidity: 61.25, ts_ns: 1700000000123456"
    page.wait_for_function(
        "t => [...document.querySelectorAll('#records tbody tr')].some(tr =>"
        " tr.dataset.key === 'station.1.weather' && tr.querySelector('td.c-value').textContent === t)",
        arg=full,
        timeout=WAIT_MS,
    )
    cell = page.evaluate(
        "() => { const td = [...document.querySelectorAll('#records tbody tr')]"
        ".find(tr => tr.dataset.key === 'station.1.weather').querySelector('td.c-value');"
        " return {title: td.title, scroll: td.scrollWidth, client: td.clientWidth,"
        " overflow: getComputedStyle(td).textOverflow}; }"
    )
    assert cell["scroll"] > cell["client"], cell  # cut at this width (so the tooltip matters)
    assert cell["overflow"] == "ellipsis", cell
    assert cell["title"] == full, cell


def _page_writers(page: Any, key: str) -> tuple[str, str, str, bool, bool]:
    """(table writer, detail writer, graph writer, table W, detail says writable) of `key`."""
    page.locator("#records tbody tr").filter(has=page.locator("td.c-key", has_text=key)).first.click()
    page.wait_for_function("k => document.getElementById('detail-title').textContent === k", arg=key)
    row = page.evaluate(
        "k => { const tr = [...document.querySelectorAll('#records tbody tr')]"
        ".find(t => t.dataset.key === k);"
        " return [tr.querySelector('td.c-writer').textContent,"
        " tr.querySelector('td.c-writable').textContent]; }",
        key,
    )
    meta = page.text_content("#detail-meta") or ""
    found = re.search(r"writer: (\S+)", meta)
    assert found, meta
    graph = page.evaluate(
        "k => { const g = [...document.querySelectorAll('#graph g.node')].find("
        "n => n.dataset.kind === 'record' && n.dataset.key === k);"
        " return [...g.querySelectorAll('text')].map(t => t.textContent); }",
        key,
    )
    graph_writer = [line for line in graph if line.startswith("writer: ")]
    assert len(graph_writer) == 1, graph
    flags = meta.split(" · ")
    return row[0], found.group(1), graph_writer[0].split(": ", 1)[1], row[1] == "yes", "writable" in flags


def _cli_writers(instance: Instance) -> dict[str, tuple[str, bool]]:
    """WRITER and W of every record as ``aimdb record list -o plain`` prints them."""
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run(
        [*CLI, "--connect", f"unix://{instance.unix}", "record", "list", "-o", "plain"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    head, *rows = proc.stdout.splitlines()
    w_at, writer_at = head.index(" W ") + 1, head.index("WRITER")
    out = {}
    for line in rows:
        key = line.split()[0]
        out[key] = (line[writer_at:w_at].strip(), line[w_at : w_at + 3].strip() == "yes")
    return out


def test_the_writer_has_one_name_everywhere(page: Any, instance: Instance) -> None:
    page.wait_for_selector("#graph g.node", timeout=WAIT_MS)
    cli = _cli_writers(instance)
    seen = {}
    for key in WRITER_KEYS:
        table, detail, graph, table_w, detail_w = _page_writers(page, key)
        assert table == detail == graph, (key, table, detail, graph)
        assert (table, table_w) == cli[key], (key, table, table_w, cli[key])
        assert detail_w == table_w, key
        seen[key] = table
    assert seen == {
        "config.setpoint": "remote",
        "sensor.tick": "source",
        "derived.join": "join",
        "station.2.temp": "none",
        LONG_KEY: "remote",
    }


def test_graph_boxes_hold_their_whole_labels(page: Any) -> None:
    page.wait_for_selector("#graph g.node", timeout=WAIT_MS)
    boxes = page.evaluate(
        "() => [...document.querySelectorAll('#graph g.node')].filter(g => g.dataset.kind !== 'join')"
        ".map(g => ({key: g.dataset.key, width: g.querySelector('rect').getBBox().width,"
        " texts: [...g.querySelectorAll('text')].map(t => [t.textContent, t.getBBox().width])}))"
    )
    assert LONG_KEY in [b["key"] for b in boxes]
    for b in boxes:
        assert b["texts"][0][0] == b["key"], b  # the key (or URL), not cut
        for text, width in b["texts"]:
            assert "…" not in text, b
            assert width <= b["width"], b
