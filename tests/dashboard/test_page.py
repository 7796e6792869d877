"""The dashboard page in headless Chromium against a real instance serving HTTP and ``/ws``.

The instance is ``_instance.py`` in a subprocess (remote access with ``http=``); the page is
the one the instance serves. Checked through the DOM: records listed (HTML-looking keys and
values stay text), a produced value shows up, the chart of a ticking record has points, the
graph has a join's edges, links and connectors with their state, a permitted write lands
(read back through the database), a refused one shows the server's reason, a token prompt,
and a lost instance shows the banner and is picked up again when it is back. Screenshots go
to ``build/screenshots/dashboard-*.png``.

Needs Debian's ``chromium`` at /usr/bin/chromium and Python Playwright (no browser
download), and aiohttp (the ``dashboard`` extra).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from typing import Any

import pytest

from aimdb.remote import METHODS
from tests.dashboard._harness import CLI, SHOTS, WAIT_MS, Instance, missing, open_page

HTML_KEY = "html.<i>key<i>"
LONG_KEY = "config.plant.north.hall7.line3.cell12.spindle.bearing.temperature.limit"

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def _row(page: Any, key: str) -> Any:
    return page.locator("#records tbody tr").filter(has=page.locator("td.c-key", has_text=key)).first


def _cell_text(page: Any, key: str, col: str) -> str:
    text: str = page.evaluate(
        "([k, c]) => { for (const tr of document.querySelectorAll('#records tbody tr'))"
        " if (tr.dataset.key === k) return tr.querySelector('td.c-' + c).textContent; return null; }",
        [key, col],
    )
    return text


def _wait_cell(page: Any, key: str, col: str, needle: str) -> None:
    page.wait_for_function(
        "([k, c, n]) => { for (const tr of document.querySelectorAll('#records tbody tr'))"
        " if (tr.dataset.key === k) return tr.querySelector('td.c-' + c).textContent.includes(n);"
        " return false; }",
        arg=[key, col, needle],
        timeout=WAIT_MS,
    )


def test_instance_and_every_readable_record_listed(page: Any) -> None:
    keys = page.eval_on_selector_all("#records tbody tr", "trs => trs.map(t => t.dataset.key)")
    assert keys == [
        "station.1.temp",
        "station.2.temp",
        "station.1.log",
        "config.setpoint",
        "sensor.tick",
        "derived.double",
        "derived.join",
        HTML_KEY,
        "sensor.hist",
        "station.1.weather",
        LONG_KEY,
        "config.stamp",
    ]  # declaration order; hidden.secret (remote(readable=False)) is not there
    assert page.text_content("#instance-name") == "dash-test"
    assert page.text_content("#instance-version").startswith("aimdb-python ")
    page.wait_for_function(
        "document.getElementById('instance-uptime').textContent.endsWith(' s')", timeout=WAIT_MS
    )
    assert _cell_text(page, "station.1.log", "buffer") == "ring(8)"
    assert _cell_text(page, "sensor.tick", "writer") == "source"
    assert _cell_text(page, "config.setpoint", "writer") == "remote"  # as aimdb record list says
    assert _cell_text(page, "config.setpoint", "writable") == "yes"
    assert _cell_text(page, "sensor.tick", "writable") == ""
    # rates come from two stats polls: the ticking source (10 values/s) gets a non-zero one
    page.wait_for_function(
        "() => { const tr = [...document.querySelectorAll('#records tbody tr')]"
        ".find(t => t.dataset.key === 'sensor.tick');"
        " const r = parseFloat(tr.querySelector('td.c-rate').textContent); return r > 0; }",
        timeout=WAIT_MS,
    )
    _shot(page, "records")


def test_produced_value_shows_up(page: Any, instance: Instance) -> None:
    t0 = time.perf_counter()
    assert instance.call("produce", "station.2.temp", {"celsius": 123.25})["ok"]
    _wait_cell(page, "station.2.temp", "value", "celsius: 123.25")
    print(f"station.2.temp visible {1000 * (time.perf_counter() - t0):.0f} ms after produce()")
    assert _cell_text(page, "station.2.temp", "age").endswith(" s")  # an age in seconds, not the dash


def test_record_data_stays_text(page: Any, instance: Instance) -> None:
    value = "<b id=injected>bold</b><img src=x onerror=alert(2)><script>alert(3)</script>"
    assert instance.call("produce", HTML_KEY, value)["ok"]
    _wait_cell(page, HTML_KEY, "value", "<b id=injected>")
    assert _cell_text(page, HTML_KEY, "key") == HTML_KEY
    assert _cell_text(page, HTML_KEY, "value") == value
    assert page.locator("#injected").count() == 0
    assert page.locator("main img, main i, main script").count() == 0
    # the graph draws the key as text too
    labels = page.eval_on_selector_all("#graph g.node", "gs => gs.map(g => g.dataset.key)")
    assert HTML_KEY in labels


def test_chart_of_a_ticking_record_has_points(page: Any) -> None:
    _row(page, "sensor.tick").click()
    assert page.text_content("#detail-title") == "sensor.tick"
    page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 5", timeout=WAIT_MS)
    assert page.locator("#chart canvas").count() == 1
    assert "celsius" in page.text_content("#chart-note")
    # not persisted: the chart fills from live events and says so
    assert "live values" in page.text_content("#chart-note")
    # a record with a source has no write form; the reason is shown
    assert page.locator("#write-form").is_hidden()
    assert "written by its source" in page.text_content("#write-policy")
    _shot(page, "chart")


def test_one_chart_per_numeric_field(page: Any, instance: Instance) -> None:
    _row(page, "station.1.weather").click()
    for i in range(3):
        value = {"celsius": 10.0 + i, "humidity": 50.0 - i, "ts_ns": 1_700_000_000_000_000_000 + i}
        assert instance.call("produce", "station.1.weather", value)["ok"]
        page.wait_for_function(
            f"Number(document.getElementById('chart').dataset.points) >= {i + 1}", timeout=WAIT_MS
        )
    assert page.locator("#chart .chart-field canvas").count() == 2  # celsius and humidity, own scales
    note = page.text_content("#chart-note")
    assert note.startswith("celsius, humidity: live values"), note
    assert note.endswith("not charted: ts_ns"), note
    _shot(page, "fields")


@pytest.mark.skipif(
    "record.history" not in METHODS,
    reason="record.history (protocol 1.3) is not in this build of aimdb",
)
def test_chart_of_a_persisted_record_starts_from_its_history(page: Any) -> None:
    _row(page, "sensor.hist").click()
    page.wait_for_function(
        "document.getElementById('chart-note').textContent.includes('stored value')", timeout=WAIT_MS
    )
    assert page.text_content("#chart-note").startswith("celsius: 40 stored values"), page.text_content(
        "#chart-note"
    )
    assert int(page.get_attribute("#chart", "data-points")) == 40  # nothing produced since
    assert page.locator("#chart canvas").count() == 1
    _shot(page, "history")


def test_graph_shows_transform_join_and_link_edges(page: Any) -> None:
    page.wait_for_selector("#graph svg g.node", timeout=WAIT_MS)
    edges = page.eval_on_selector_all(
        "#graph path.edge", "ps => ps.map(p => [p.dataset.from, p.dataset.to, p.dataset.kind])"
    )
    assert ["station.1.temp", "derived.join", "join"] in edges
    assert ["config.setpoint", "derived.join", "join"] in edges
    assert ["derived.join", "derived.join", "join_out"] in edges  # the diamond into the record
    assert ["station.1.temp", "derived.double", "transform"] in edges
    assert ["station.1.temp", "aimdb://peer.temp", "link_out"] in edges
    # sources left, sinks right: the join's inputs lie left of the join, the join left of its record
    x = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#graph g.node')].map("
        "g => [g.dataset.kind + ':' + g.dataset.key, g.getBoundingClientRect().x]))"
    )
    assert x["record:station.1.temp"] < x["join:derived.join"] < x["record:derived.join"]
    assert x["record:config.setpoint"] < x["join:derived.join"]
    assert x["record:station.1.temp"] < x["link:aimdb://peer.temp"]
    page.locator("#graph-section").screenshot(path=str(SHOTS / "dashboard-graph.png"))


def test_links_and_connectors_with_state(page: Any) -> None:
    page.wait_for_selector("#links tbody tr", timeout=WAIT_MS)
    row = page.locator("#links tbody tr").first
    assert row.locator("td.c-record").text_content() == "station.1.temp"
    assert row.locator("td.c-url").text_content() == "aimdb://peer.temp"
    assert row.locator("td.c-dir").text_content() == "out →"
    state = row.locator("td.c-state").text_content()
    assert state not in ("", "connected")  # the peer does not exist
    assert "bad" in (row.get_attribute("class") or "")
    conn = page.locator("#connectors tbody tr").first
    assert conn.locator("td.c-scheme").text_content() == "aimdb"
    assert conn.locator("td.c-links").text_content() == "1"
    assert page.locator("#links-empty").is_hidden()
    assert page.locator("#links").is_visible() and page.locator("#connectors").is_visible()


def test_a_connector_row_shows_its_own_state_counters_and_last_error(page: Any) -> None:
    page.wait_for_selector("#connectors tbody tr td.c-connects", timeout=WAIT_MS)  # the first stats poll
    head = page.locator("#connectors thead th").all_text_contents()
    assert head == [
        "connector", "url", "state", "connects", "failed", "disconnects", "errors", "links", "last error"
    ]
    conn = page.locator("#connectors tbody tr").first
    # the aimdb:// connector's own statistics (stats.connectors), not a sum over its links
    page.wait_for_function(
        "() => Number(document.querySelector('#connectors tbody tr td.c-failed').textContent) > 0",
        timeout=WAIT_MS,
    )
    assert page.locator("#connectors tbody tr").count() == 1
    assert conn.locator("td.c-scheme").text_content() == "aimdb"
    assert (conn.locator("td.c-url").text_content() or "").startswith("tcp://127.0.0.1:")
    state = conn.locator("td.c-state").text_content()
    assert state in ("connecting", "disconnected")  # the peer does not exist
    assert conn.get_attribute("data-state") == state
    assert conn.locator("td.c-connects").text_content() == "0"
    assert conn.locator("td.c-links").text_content() == "1"
    last = conn.locator("td.c-last_error")
    page.wait_for_function(
        "() => document.querySelector('#connectors tbody tr td.c-last_error').textContent !== ''",
        timeout=WAIT_MS,
    )
    assert "127.0.0.1" in (last.text_content() or "")
    assert last.locator("*").count() == 0  # the error is text, not markup
    if state == "disconnected":  # red while down; "connecting" stays plain
        colour = conn.locator("td.c-state").evaluate("td => getComputedStyle(td).color")
        assert colour == "rgb(185, 28, 28)", colour
    page.locator("#links-section").screenshot(path=str(SHOTS / "dashboard-connectors.png"))


def test_an_older_server_without_connectors_keeps_the_grouping_by_scheme(browser: Any) -> None:
    inst = Instance(connectors=False)
    errors: list[str] = []
    try:
        p = open_page(browser, inst.url, errors)
        p.wait_for_selector("#connectors tbody tr", timeout=WAIT_MS)
        head = p.locator("#connectors thead th").all_text_contents()
        assert head == ["connector", "links", "state", "sent", "received", "failed"]
        conn = p.locator("#connectors tbody tr").first
        assert conn.locator("td.c-scheme").text_content() == "aimdb"
        assert conn.locator("td.c-links").text_content() == "1"
        assert conn.locator("td.c-connects").count() == 0
        p.close()
    finally:
        inst.stop()
    assert errors == [], errors


def test_permitted_write_lands(page: Any, instance: Instance) -> None:
    _row(page, "config.setpoint").click()
    page.wait_for_selector("#write-form:not([hidden])", timeout=WAIT_MS)
    page.fill("#write-value", '{"celsius": 17.5}')
    page.click("#write-submit")
    page.wait_for_function(
        "document.getElementById('write-result').textContent.startsWith('stored')", timeout=WAIT_MS
    )
    assert instance.call("get", "config.setpoint") == {"ok": True, "value": {"celsius": 17.5}}
    _wait_cell(page, "config.setpoint", "value", "celsius: 17.5")
    _shot(page, "write")


def test_an_integer_beyond_2_53_is_shown_and_written_back_exactly(page: Any, instance: Instance) -> None:
    big = 2**60 + 1  # _instance.BIG_INT; a double would make it 1152921504606846976
    _wait_cell(page, "config.stamp", "value", f"ts_ns: {big},")
    _row(page, "config.stamp").click()
    page.wait_for_selector("#write-form:not([hidden])", timeout=WAIT_MS)
    prefilled = page.input_value("#write-value")
    assert str(big) in prefilled, prefilled
    # Write the pre-filled value with only the label changed: ts_ns goes back as it came.
    page.fill("#write-value", prefilled.replace('"start"', '"written"'))
    page.click("#write-submit")
    page.wait_for_function(
        "document.getElementById('write-result').textContent.startsWith('stored')", timeout=WAIT_MS
    )
    assert f"ts_ns: {big}," in page.text_content("#write-result")
    assert instance.call("get", "config.stamp") == {"ok": True, "value": {"ts_ns": big, "label": "written"}}
    _wait_cell(page, "config.stamp", "value", f'ts_ns: {big}, label: "written"')


def test_refused_write_shows_the_servers_reason(page: Any, instance: Instance) -> None:
    _row(page, "config.setpoint").click()
    page.wait_for_selector("#write-form:not([hidden])", timeout=WAIT_MS)
    before = instance.call("get", "config.setpoint")
    page.fill("#write-value", '{"celsius": "hot"}')
    page.click("#write-submit")
    page.wait_for_function(
        "document.getElementById('write-result').textContent.startsWith('refused')", timeout=WAIT_MS
    )
    text = page.text_content("#write-result")
    assert text.startswith("refused (invalid_value): value does not fit Setpoint"), text
    assert instance.call("get", "config.setpoint") == before
    # text that is not JSON is caught in the page and nothing is sent
    page.fill("#write-value", "{celsius: 1")
    page.click("#write-submit")
    assert page.text_content("#write-result").startswith("not JSON, nothing sent")
    assert instance.call("get", "config.setpoint") == before


def test_token_prompt_then_connected(browser: Any) -> None:
    inst = Instance(token="s3cret")
    errors: list[str] = []
    try:
        p = open_page(browser, inst.url, errors)
        p.wait_for_selector("#token-form:not([hidden])", timeout=WAIT_MS)
        assert p.locator("#records tbody tr").count() == 0
        p.fill("#token-input", "wrong")
        p.click("#token-form button")
        p.wait_for_function(
            "document.getElementById('token-error').textContent.startsWith('refused')", timeout=WAIT_MS
        )
        p.fill("#token-input", "s3cret")
        p.click("#token-form button")
        p.wait_for_selector("body[data-conn='connected']", timeout=WAIT_MS)
        assert p.locator("#token-form").is_hidden()
        assert p.evaluate("sessionStorage.getItem('aimdb.dashboard.token')") == "s3cret"
        p.wait_for_selector("#records tbody tr", timeout=WAIT_MS)
        p.close()
    finally:
        inst.stop()
    assert errors == [], errors


def test_instance_gone_banner_then_reconnects(browser: Any) -> None:
    inst = Instance()
    port = inst.port
    errors: list[str] = []
    p = open_page(browser, inst.url, errors)
    try:
        p.wait_for_selector("body[data-conn='connected']", timeout=WAIT_MS)
        inst.stop()
        p.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
        assert "Connection to the instance lost" in p.text_content("#banner")
        assert "reconnecting in" in p.text_content("#banner")
        _shot(p, "banner")
        inst = Instance(port=port)  # back on the same address
        p.wait_for_selector("body[data-conn='connected']", timeout=WAIT_MS + 10_000)  # backoff ≤ 10 s
        assert p.locator("#banner").is_hidden()
        assert inst.call("produce", "station.2.temp", {"celsius": -4.5})["ok"]
        _wait_cell(p, "station.2.temp", "value", "celsius: -4.5")
        p.close()
    finally:
        inst.stop()
    assert errors == [], errors


def test_page_served_by_aimdb_dashboard_relay(browser: Any) -> None:
    """``aimdb dashboard --connect unix://...`` serves the same page for a socket-only instance."""
    sock = os.path.join(tempfile.mkdtemp(prefix="aimdb-d-"), "i.sock")
    inst = Instance(unix=sock)
    relay = subprocess.Popen(
        [*CLI, "dashboard", "--connect", f"unix://{sock}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[str] = []
    try:
        assert relay.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(relay.stdout, selectors.EVENT_READ)
            assert sel.select(30.0), "aimdb dashboard printed nothing within 30 s"
        line = relay.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split()[1]
        assert url != inst.url
        p = open_page(browser, url, errors)
        p.wait_for_selector("body[data-conn='connected']", timeout=WAIT_MS)
        assert p.text_content("#instance-name") == "dash-test"
        p.wait_for_selector("#records tbody tr", timeout=WAIT_MS)
        assert inst.call("produce", "station.2.temp", {"celsius": 61.5})["ok"]
        _wait_cell(p, "station.2.temp", "value", "celsius: 61.5")
        _row(p, "config.setpoint").click()
        p.fill("#write-value", '{"celsius": 3.25}')
        p.click("#write-submit")
        p.wait_for_function(
            "document.getElementById('write-result').textContent.startsWith('stored')", timeout=WAIT_MS
        )
        assert inst.call("get", "config.setpoint") == {"ok": True, "value": {"celsius": 3.25}}
        p.close()
    finally:
        relay.terminate()
        try:
            relay.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.communicate()
        inst.stop()
    assert errors == [], errors
