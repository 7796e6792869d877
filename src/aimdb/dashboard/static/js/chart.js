// The live chart of the selected record: one uPlot line per numeric field. It starts from
// the stored history (record.history, protocol 1.3) when the record is persisted and the
// server offers it, and otherwise fills from live events only. Redraws are batched per
// animation frame. The number of points held is bounded (MAX_POINTS).

import { versionAtLeast, RemoteError } from "./connection.js";
import { numericFields, pick } from "./format.js";

const MAX_POINTS = 3000;
const HISTORY_SPAN_NS = 15 * 60 * 1e9; // the last 15 minutes
const HISTORY_LIMIT = 2000; // capped at the server's limits.max_history (1000 by default)
// Fields that look like timestamps, sequence numbers or ids start hidden (their scale would
// flatten the others); a click on the legend shows them.
const AUX_FIELD = /(^|[._])(ts|t|seq|n|id|count|time|timestamp)$|_(ns|us|ms)$/i;
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

// A single point (or equal x values) gets a one-minute window instead of uPlot's years.
function xRange(u, min, max) {
  return min === max ? [min - 30, max + 30] : [min, max];
}

/** Rows to ask record.history for: HISTORY_LIMIT, at most the server's announced max_history. */
export function historyLimit(hello) {
  const cap = hello && hello.limits && Number.isInteger(hello.limits.max_history) ? hello.limits.max_history : 1000;
  return Math.max(1, Math.min(HISTORY_LIMIT, cap));
}

export class ChartPanel {
  /**
   * @param {HTMLElement} box the chart container (its data-points attribute counts points)
   * @param {HTMLElement} note a line under the chart (where the points come from)
   */
  constructor(box, note) {
    this.box = box;
    this.note = note;
    this.key = null;
    this.fields = null; // dotted paths of the numeric fields
    this.xs = [];
    this.ys = [];
    this.plot = null;
    this.frameQueued = false;
    this.generation = 0;
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(box);
  }

  /**
   * Show record `key`: `current` is its newest value (or undefined), `info` its record.list
   * entry, `conn` the connection (for record.history) and `hello` the server's hello reply.
   */
  select(key, current, info, conn, hello) {
    this.generation += 1;
    this.key = key;
    this.fields = null;
    this.xs = [];
    this.ys = [];
    this.destroyPlot();
    this.box.dataset.points = "0";
    this.note.textContent = "";
    if (current !== undefined) this.ensureFields(current);
    const canHistory = info && info.persisted === true && hello && versionAtLeast(hello.protocol, "1.3");
    if (canHistory) this.loadHistory(key, conn, this.generation, historyLimit(hello));
    else this.describe("live values since the page opened");
  }

  describe(source) {
    if (!this.key) return;
    if (this.fields === null) this.note.textContent = `waiting for a value (${source})`;
    else if (this.fields.length === 0) this.note.textContent = "no numeric field to chart";
    else this.note.textContent = `${this.fields.join(", ")}: ${source}`;
  }

  async loadHistory(key, conn, gen, limit) {
    this.describe("loading stored history…");
    const nowNs = Date.now() * 1e6;
    let reply;
    try {
      reply = await conn.call("record.history", {
        key,
        since: Math.round(nowNs - HISTORY_SPAN_NS),
        limit,
        newest_first: true,
      });
    } catch (err) {
      if (gen !== this.generation) return;
      // not_persisted, method_not_found (an older server) or a lost connection: live only.
      const why = err instanceof RemoteError ? err.code : "unavailable";
      this.describe(`live values only (history ${why})`);
      return;
    }
    if (gen !== this.generation) return;
    const rows = Array.isArray(reply && reply.rows) ? reply.rows.slice().reverse() : [];
    if (rows.length && this.fields === null) this.ensureFields(rows[rows.length - 1].value);
    if (this.fields === null || this.fields.length === 0) {
      this.describe("stored history and live values");
      return;
    }
    const firstLive = this.xs.length ? this.xs[0] : Infinity;
    const hx = [];
    const hy = this.fields.map(() => []);
    for (const r of rows) {
      const x = r.ts / 1e9;
      if (!(x < firstLive)) continue;
      hx.push(x);
      this.fields.forEach((f, i) => hy[i].push(pick(r.value, f)));
    }
    this.xs = hx.concat(this.xs);
    this.ys = this.ys.map((col, i) => hy[i].concat(col));
    this.trim();
    this.describe(`${hx.length} stored value${hx.length === 1 ? "" : "s"}${reply.more ? " (more stored)" : ""}, then live`);
    this.queueDraw();
  }

  ensureFields(value) {
    if (this.fields !== null) return;
    this.fields = numericFields(value).map(([path]) => path);
    this.ys = this.fields.map(() => []);
  }

  /** A value of the selected record arrived. */
  push(key, value, tsNs) {
    if (key !== this.key) return;
    const fresh = this.fields === null;
    this.ensureFields(value);
    if (fresh) this.describe("live values since the page opened");
    if (this.fields.length === 0) return;
    const x = tsNs / 1e9;
    if (this.xs.length && x < this.xs[this.xs.length - 1]) return; // out of order: skip
    this.xs.push(x);
    this.fields.forEach((f, i) => this.ys[i].push(pick(value, f)));
    this.trim();
    this.queueDraw();
  }

  trim() {
    const extra = this.xs.length - MAX_POINTS;
    if (extra > 0) {
      this.xs.splice(0, extra);
      for (const col of this.ys) col.splice(0, extra);
    }
  }

  queueDraw() {
    if (this.frameQueued) return;
    this.frameQueued = true;
    requestAnimationFrame(() => {
      this.frameQueued = false;
      this.draw();
    });
  }

  draw() {
    if (!this.fields || this.fields.length === 0) return;
    const data = [this.xs, ...this.ys];
    if (!this.plot) {
      const aux = this.fields.map((f) => AUX_FIELD.test(f));
      const allAux = aux.every(Boolean);
      const series = [
        {},
        ...this.fields.map((f, i) => ({ label: f, stroke: COLOURS[i % COLOURS.length], width: 1.5, show: allAux || !aux[i] })),
      ];
      this.plot = new uPlot(
        { width: this.width(), height: 240, series, scales: { x: { time: true, range: xRange } }, legend: { live: true } },
        data,
        this.box,
      );
    } else {
      this.plot.setData(data);
    }
    this.box.dataset.points = String(this.xs.length);
  }

  width() {
    return Math.max(240, this.box.clientWidth || 600);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: 240 });
  }

  destroyPlot() {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.box.replaceChildren();
  }
}
