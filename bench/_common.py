"""Shared helpers for the benchmark scripts: event loops, machine info, tables, docs markers.

And the measuring code of the two connector benchmarks (``bench/connectors.py``,
``bench/nats_connector.py``): value type, receiving sink, paced producing, result rows, table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimdb import AimDbBuilder, BufferCfg

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"  # one JSON file per docs page; bench/plots.py draws from them


# ---------------------------------------------------------------- event loops


def loop_kinds() -> list[str]:
    """``["asyncio", "uvloop"]`` (uvloop only when installed)."""
    kinds = ["asyncio"]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    else:
        kinds.append("uvloop")
    return kinds


def run_on(kind: str, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``fn()`` to completion on a fresh event loop of ``kind`` ("asyncio" or "uvloop")."""
    if kind == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(fn())


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``q`` in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# ---------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out + (" (src modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def machine_info() -> dict[str, str]:
    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = "not installed"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()) + " (usable: " + str(affinity) + ")",
        "OS": platform.system() + " " + platform.release() + " " + platform.machine(),
        "Python": platform.python_implementation() + " " + platform.python_version(),
        "uvloop": uv,
        "aimdb commit": _git_rev(),
        "load average at start": load_average(),
    }


def command_line() -> str:
    """The command that ran this script, with the script path relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        rel = script.relative_to(ROOT).as_posix()
    except ValueError:
        rel = script.name
    return shlex.join(["python", rel, *sys.argv[1:]])


# ---------------------------------------------------------------- markdown


# Tables made with ``table(..., name=...)`` in this process, for ``write_results``.
RESULT_TABLES: dict[str, dict[str, list[Any]]] = {}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], name: str | None = None) -> str:
    """A markdown table; with ``name`` it is also kept for :func:`write_results` (cells as text)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    if name is not None:
        RESULT_TABLES[name] = {"headers": cells[0], "rows": cells[1:]}
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def write_results(
    path: Path, page: str, source: str, tables: dict[str, dict[str, list[Any]]] | None = None
) -> None:
    """Write tables as a results file (the format ``bench/plots.py`` reads).

    ``tables`` maps a name to ``{"headers": [...], "rows": [[...], ...]}`` with the cells as
    the page shows them; without it, the tables made with ``table(..., name=...)`` in this
    process. ``page`` is the docs page that shows them, ``source`` says which run they came
    from. A file already there for the same page keeps its other tables and its ``source``
    (each replaced table then records its own), so scripts that fill one page share a file.
    """
    new = {
        k: {
            "headers": [str(h) for h in t["headers"]],
            "rows": [[str(c) for c in r] for r in t["rows"]],
            "source": source,
        }
        for k, t in (RESULT_TABLES if tables is None else tables).items()
    }
    merged: dict[str, dict[str, Any]] = {}
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("page") == page:
            merged, source = old["tables"], old["source"]
    merged.update(new)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_json(page, source, merged), encoding="utf-8")


def results_json(page: str, source: str, tables: dict[str, dict[str, Any]]) -> str:
    """A results file's text: JSON with one line per table row, so diffs show changed rows.

    A table's own ``source`` (the run it came from) is written when it differs from the file's.
    """

    def dumps(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False)

    out = ["{", f' "page": {dumps(page)},', f' "source": {dumps(source)},', ' "tables": {']
    for n, (name, t) in enumerate(tables.items()):
        out.append(f"  {dumps(name)}: {{")
        if t.get("source", source) != source:
            out.append(f'   "source": {dumps(t["source"])},')
        out.append(f'   "headers": {dumps(t["headers"])},')
        out.append('   "rows": [')
        out.extend(
            f"    {dumps(r)}" + ("," if i < len(t["rows"]) - 1 else "") for i, r in enumerate(t["rows"])
        )
        out.append("   ]")
        out.append("  }" + ("," if n < len(tables) - 1 else ""))
    out += [" }", "}"]
    return "\n".join(out) + "\n"


def write_between_markers(path: Path, name: str, body: str, title: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``."""
    begin = "<!-- " + name + ":begin -->"
    end = "<!-- " + name + ":end -->"
    block = begin + "\n" + body.rstrip() + "\n" + end
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = "# Benchmarks\n"
    if begin in text and end in text:
        pre = text[: text.index(begin)]
        post = text[text.index(end) + len(end) :]
        text = pre + block + post
    else:
        text = text.rstrip() + "\n\n## " + title + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- connector benchmarks
#
# A value is produced into a record of one database linked to a broker and received by a
# record of a second database linked from it (or the same through a plain client library);
# values/s = received / (last receive - first produce), latency = receive - produce time.

DEADLINE = 30.0  # seconds to wait for the last value of a run


@dataclass
class Sample:
    seq: int
    t: int  # perf_counter_ns at produce


def rounded_index_percentile(values: Sequence[float], p: float) -> float:
    """Percentile of unsorted ``values``: the sorted value at index ``round(p/100 * (n-1))``.

    Not :func:`percentile` (nearest rank): the connector results have always used this one.
    """
    if not values:
        return float("nan")
    xs = sorted(values)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


class Sink:
    """What a receiver saw: how many, the latencies in ms, the time of the last one."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.last_ns = 0
        self.lat_ms: list[float] = []
        self.done = asyncio.Event()

    def __call__(self, seq: int, t: int) -> None:
        now = time.perf_counter_ns()
        self.count += 1
        self.last_ns = now
        self.lat_ms.append((now - t) / 1e6)
        if self.count >= self.n:
            self.done.set()

    async def wait(self) -> None:
        """Wait until all ``n`` values arrived, at most :data:`DEADLINE` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.done.wait(), DEADLINE)


def sink_tap(sink: Sink) -> Any:
    """A tap that feeds every :class:`Sample` of the record into ``sink``."""

    async def tap(ctx: Any, consumer: Any) -> None:
        reader = consumer.subscribe()
        while True:
            for v in await reader.recv_batch(4096):
                sink(v.seq, v.t)

    return tap


def json_payload(i: int) -> bytes:
    """The plain clients' message: sequence number and produce time as JSON."""
    return b'{"seq":%d,"t":%d}' % (i, time.perf_counter_ns())


async def join_reader(task: asyncio.Task[Any]) -> None:
    """Wait for a receiving task at most :data:`DEADLINE` seconds, then cancel and reap it."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(task, DEADLINE)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def paced(n: int, rate: float | None, send: Callable[[int], Awaitable[None]]) -> int:
    """Call ``await send(i)`` n times, at ``rate`` per second or as fast as possible.

    Returns the start time (perf_counter_ns).
    """
    t0 = time.perf_counter_ns()
    start = time.perf_counter()
    for i in range(n):
        if rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await send(i)
    return t0


async def produce_samples(producer: Any, n: int, rate: float | None) -> int:
    """Produce ``Sample(i, now)`` n times: in bursts of 500 per loop turn, or paced at ``rate``.

    Returns the start time (perf_counter_ns).
    """
    if rate is None:
        t0 = time.perf_counter_ns()
        for i in range(0, n, 500):
            for j in range(i, min(n, i + 500)):
                producer.produce(Sample(j, time.perf_counter_ns()))
            await asyncio.sleep(0)
        return t0

    async def send(i: int) -> None:
        producer.produce(Sample(i, time.perf_counter_ns()))

    return await paced(n, rate, send)


def result_row(name: str, sink: Sink, t0: int, n: int, latency: bool) -> dict[str, Any]:
    """One table row: received/sent, values/s (throughput runs), p50/p99 latency in ms."""
    secs = (sink.last_ns - t0) / 1e9 if sink.count else float("nan")
    return {
        "name": name,
        "received": sink.count,
        "sent": n,
        "per_s": round(sink.count / secs) if sink.count and not latency else None,
        "p50_ms": round(rounded_index_percentile(sink.lat_ms, 50), 3),
        "p99_ms": round(rounded_index_percentile(sink.lat_ms, 99), 3),
    }


async def run_pipeline(
    c_pub: Any, c_sub: Any, url: str, n: int, rate: float | None, name: str, settle: float = 0.0
) -> dict[str, Any]:
    """aimdb record -> ``c_pub`` -> broker at ``url`` -> ``c_sub`` -> record of a second database."""
    sink = Sink(n)
    cap = max(1024, n)
    bo = AimDbBuilder().with_connector(c_pub)
    bo.configure(Sample, "s", lambda r: r.buffer(BufferCfg.SpmcRing(capacity=cap)).link_to(url).finish())
    bi = AimDbBuilder().with_connector(c_sub)
    bi.configure(
        Sample,
        "s",
        lambda r: r.buffer(BufferCfg.SpmcRing(capacity=cap)).link_from(url).finish().tap(sink_tap(sink)),
    )
    db_in = bi.build()
    db_out = bo.build()
    async with db_in, db_out:
        await c_sub.wait_connected(30)
        await c_pub.wait_connected(30)
        if settle:
            await asyncio.sleep(settle)
        t0 = await produce_samples(db_out.producer(Sample, "s"), n, rate)
        await sink.wait()
    return result_row(name, sink, t0, n, rate is not None)


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB (Linux ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    """Current resident set size of this process in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def stalled_broker(
    connector: Any,
    url: str,
    pid: int,
    name: str,
    rss_key: str,
    rss_kib: Callable[[], int],
    sample_every: int | None = None,
    n: int = 200_000,
) -> dict[str, Any]:
    """Produce ``n`` 1 KiB values into a record linked to ``url`` while the broker is SIGSTOPped.

    The memory growth is ``rss_kib()`` after minus before (also sampled every ``sample_every``
    values while producing, the largest kept), in MiB, under ``rss_key``.
    """
    b = AimDbBuilder().with_connector(connector)
    b.configure(
        bytes,
        "blob",
        lambda r: (
            r.buffer(BufferCfg.SpmcRing(capacity=1024)).link_to(url).with_serializer(lambda v: v).finish()
        ),
    )
    blob = os.urandom(1024)
    async with b.build() as db:
        await connector.wait_connected(10)
        rss0 = rss_kib()
        peak = rss0
        os.kill(pid, signal.SIGSTOP)
        try:
            p = db.producer(bytes, "blob")
            t0 = time.perf_counter()
            for i in range(n):
                p.produce(blob)
                if i % 256 == 0:
                    await asyncio.sleep(0)
                if sample_every and i % sample_every == 0:
                    peak = max(peak, rss_kib())
            secs = time.perf_counter() - t0
            await asyncio.sleep(0.3)
            st = db.link_statistics()[0]
            peak = max(peak, rss_kib())
        finally:
            os.kill(pid, signal.SIGCONT)
    return {
        "name": name,
        "offered_mib": round(n * 1024 / 2**20),
        "produce_per_s": round(n / secs),
        "sent_before_stall_filled": st.sent,
        "dropped_lag": st.dropped_lag,
        rss_key: round((peak - rss0) / 1024, 1),
    }


def results_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | received/sent | values/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for r in rows:
        if "received" not in r:
            continue
        per_s = "-" if r["per_s"] is None else f"{r['per_s']:,}"
        lines.append(
            f"| {r['name']} | {r['received']}/{r['sent']} | {per_s} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return "\n".join(lines)


def report(rows: list[dict[str, Any]], json_path: Path | None) -> None:
    """Print the table, then the rows that are not in it as JSON; write all rows to ``json_path``."""
    print(results_table(rows))
    for r in rows:
        if "received" not in r:
            print(json.dumps(r))
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


def connector_arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options both connector benchmarks take."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--latency-messages", type=int, default=3_000)
    ap.add_argument("--rate", type=float, default=1_000.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    return ap


def run_main(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> None:
    """Run ``main(args)`` on asyncio (or uvloop with ``--uvloop``), stopped by an alarm after 240 s."""
    signal.alarm(240)
    if args.uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
