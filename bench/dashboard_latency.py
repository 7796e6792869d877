"""Dashboard benchmark: produce() → visible in the page, beside a socket client; server CPU.

Run: ``python bench/dashboard_latency.py [--records 1000] [--seconds 30] [--write]``
(``--write`` updates docs/benchmarks-dashboard.md and bench/results/dashboard.json).

A server process holds ``--records`` records updated at 1 Hz each (spread evenly over the
second) and one probe record produced at 10 Hz whose value carries its produce time
(``t_us``, wall clock, µs). It serves remote access over a Unix socket and over HTTP
(the dashboard page and ``/ws``).

1. Latency: the page is open in headless Chromium (Debian's /usr/bin/chromium) and a
   MutationObserver on the probe row's value cell takes the browser's wall clock when the
   new value is written into the DOM (the page writes it in its next animation frame);
   latency = that time minus ``t_us``. In the same run, an ``AsyncClient`` on the Unix socket
   subscribed to the probe takes its receive time the same way.
2. Server CPU: user+system time of the server process (``/proc/PID/stat``) over
   ``--seconds``, first with no client, then with the page open (subscribed to every
   record, polling ``stats`` every 5 s), as a percentage of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks-dashboard.md"
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Reading:
    value: float
    n: int


@dataclass
class Probe:
    seq: int
    t_us: int


# ---------------------------------------------------------------- server process


async def _serve(records: int, sock: str) -> None:
    from aimdb import AimDbBuilder, BufferCfg
    from aimdb.remote import RemoteConfig, start_server

    b = AimDbBuilder()
    keys = [f"bench.r{i:04d}" for i in range(records)]
    for k in keys:
        b.configure(Reading, k, lambda r: r.buffer(BufferCfg.SingleLatest()))
    b.configure(Probe, "bench.probe", lambda r: r.buffer(BufferCfg.SingleLatest()))
    async with b.build() as db:
        cfg = RemoteConfig(name="bench-dashboard", unix=sock, http="127.0.0.1:0")
        server = await start_server(db, cfg)
        print(json.dumps({"url": server.http_url, "unix": server.endpoints[0]}), flush=True)
        producers = [db.producer(Reading, k) for k in keys]
        probe = db.producer(Probe, "bench.probe")
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        seq = 0
        slots = 100  # 10 ms slots: each record once per second, the probe every 10th slot
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, start + tick / slots - loop.time()))
            slot = tick % slots
            for i in range(slot, len(producers), slots):
                producers[i].produce(Reading(float(tick % 997), tick))
            if slot % 10 == 0:
                seq += 1
                probe.produce(Probe(seq, time.time_ns() // 1000))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- measurements


async def _socket_latencies(unix: str, seconds: float) -> list[float]:
    from aimdb.remote import connect

    out: list[float] = []
    async with await connect(unix, client_name="bench") as client:
        sub = await client.subscribe("bench.probe", snapshot=False)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ev = await sub.next(timeout=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, asyncio.TimeoutError):
                break
            out.append(time.time_ns() / 1000 - ev.value["t_us"])
        await sub.close()
    return out


OBSERVE = """
() => {
  window.__lat = [];
  const tr = [...document.querySelectorAll('#records tbody tr')].find(t => t.dataset.key === 'bench.probe');
  const cell = tr.querySelector('td.c-value');
  new MutationObserver(() => {
    const now = (performance.timeOrigin + performance.now()) * 1000;
    const m = /t_us: (\\d+)/.exec(cell.textContent);
    if (m) window.__lat.push(now - Number(m[1]));
  }).observe(cell, { childList: true, characterData: true, subtree: true });
}
"""


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(q / 100.0 * len(s) + 0.5) - 1))
    return s[k]


def _ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks-dashboard.md")
    ap.add_argument("--serve", metavar="SOCKET", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve(args.records, args.serve))
        return

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "bench"))
    from _common import RESULTS, command_line, machine_info, table, write_between_markers, write_results

    sock = os.path.join(tempfile.mkdtemp(prefix="aimdb-bench-"), "dash.sock")
    server = subprocess.Popen(
        [sys.executable, __file__, "--records", str(args.records), "--serve", sock],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        time.sleep(2.0)  # let the producer settle
        c0, t0 = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(args.seconds)
        idle_cpu = 100 * (_cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
        print(f"server CPU, no client: {idle_cpu:.1f} % of one core", flush=True)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(info["url"])
            page.wait_for_selector("body[data-conn='connected']", timeout=30_000)
            page.wait_for_function(
                f"document.querySelectorAll('#records tbody tr').length === {args.records + 1}",
                timeout=30_000,
            )
            page.evaluate(OBSERVE)
            time.sleep(2.0)
            page.evaluate("() => { window.__lat = []; }")
            c0, t0 = _cpu_seconds(server.pid), time.monotonic()
            # Playwright's sync API owns this thread's event loop: the socket client runs in its own.
            with ThreadPoolExecutor(1) as pool:
                sock_lat = pool.submit(asyncio.run, _socket_latencies(info["unix"], args.seconds)).result()
            page_cpu = 100 * (_cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
            page_lat: list[float] = page.evaluate("window.__lat")
            events = page.text_content("#instance-events")
            lost = page.text_content("#instance-lost")
            browser.close()
    finally:
        server.kill()
        server.wait()
    print(f"server CPU, page open: {page_cpu:.1f} % of one core; page events {events}, lost {lost}")

    lat_rows = [
        [
            "dashboard page (WebSocket, DOM written)",
            len(page_lat),
            _ms(_pct(page_lat, 50)),
            _ms(_pct(page_lat, 99)),
            _ms(max(page_lat)),
        ],
        [
            "AsyncClient (Unix socket, event received)",
            len(sock_lat),
            _ms(_pct(sock_lat, 50)),
            _ms(_pct(sock_lat, 99)),
            _ms(max(sock_lat)),
        ],
    ]
    cpu_rows = [
        ["no client", f"{idle_cpu:.1f} %"],
        ["dashboard page open (plus the socket client)", f"{page_cpu:.1f} %"],
    ]
    t1 = table(["client", "samples", "p50", "p99", "max"], lat_rows, name="latency")
    t2 = table(["server with", "CPU (% of one core)"], cpu_rows, name="cpu")
    print(t1)
    print(t2)
    if args.write:
        m = machine_info()
        body = "\n".join(
            [
                "Measured with:",
                "",
                "```",
                command_line(),
                "```",
                "",
                ", ".join(f"{k}: {v}" for k, v in m.items()) + ".",
                "",
                f"{args.records:,} records updated at 1 Hz each plus a probe record at 10 Hz; "
                f"each phase {args.seconds:g} s. The page received {events} events and lost {lost} "
                "(sequence gaps) during the run.",
                "",
                "### produce() → visible (target: p99 ≤ 200 ms in the page)",
                "",
                t1,
                "",
                "### Server CPU (target: ≤ 10 % of one core with the page open)",
                "",
                t2,
            ]
        )
        write_between_markers(DOC, "dashboard", body, "Results")
        write_results(RESULTS / "dashboard.json", "benchmarks-dashboard.md", command_line())


if __name__ == "__main__":
    main()
