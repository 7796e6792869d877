// The live charts of the selected record: one uPlot chart per numeric field (each with its
// own scale), their cursors in sync. They start from
// the stored history (record.history, protocol 1.3) when the record is persisted and the
// server offers it, and otherwise fills from live events only. Redraws are batched per
// animation frame. The number of points held is bounded (MAX_POINTS).

import { versionAtLeast, RemoteError } from "./connection.js";
import { bigField, numericFields, pick } from "./format.js";
import { asNumber } from "./json.js";

const MAX_POINTS = 3000;
const HISTORY_SPAN_NS = 15 * 60 * 1e9; // the last 15 minutes
const HISTORY_LIMIT = 2000; // capped at the server's limits.max_history (1000 by default)
// Fields that look like timestamps, sequence numbers or ids are not charted (unless there is
// nothing else), and neither are integers beyond 2^53 (bigField); the note under the charts
// names them.
const MAX_CHARTS = 6;
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
    this.plots = [];
    this.charted = []; // indexes into fields
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
    this.charted = [];
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
    else {
      const shown = this.charted.map((i) => this.fields[i]);
      const rest = this.fields.filter((_, i) => !this.charted.includes(i));
      this.note.textContent = `${shown.join(", ")}: ${source}${rest.length ? ` · not charted: ${rest.join(", ")}` : ""}`;
    }
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
      const x = asNumber(r.ts) / 1e9;
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
    const pairs = numericFields(value);
    this.fields = pairs.map(([path]) => path);
    this.ys = this.fields.map(() => []);
    const main = this.fields.map((f, i) => i).filter((i) => !AUX_FIELD.test(this.fields[i]) && !bigField(pairs[i][1]));
    this.charted = (main.length ? main : this.fields.map((f, i) => i)).slice(0, MAX_CHARTS);
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
    if (!this.fields || this.charted.length === 0) return;
    if (this.plots.length === 0) {
      const height = this.charted.length === 1 ? 240 : 150;
      const sync = `aimdb-chart-${this.generation}`;
      for (const [n, i] of this.charted.entries()) {
        const div = document.createElement("div");
        div.className = "chart-field";
        this.box.appendChild(div);
        const opts = {
          width: this.width(),
          height,
          series: [{}, { label: this.fields[i], stroke: COLOURS[n % COLOURS.length], width: 1.5 }],
          scales: { x: { time: true, range: xRange } },
          cursor: { sync: { key: sync } },
          legend: { live: true },
        };
        this.plots.push({ plot: new uPlot(opts, [this.xs, this.ys[i]], div), field: i, height });
      }
    } else {
      for (const p of this.plots) p.plot.setData([this.xs, this.ys[p.field]]);
    }
    this.box.dataset.points = String(this.xs.length);
  }

  width() {
    return Math.max(240, this.box.clientWidth || 600);
  }

  resize() {
    for (const p of this.plots) p.plot.setSize({ width: this.width(), height: p.height });
  }

  destroyPlot() {
    for (const p of this.plots) p.plot.destroy();
    this.plots = [];
    this.box.replaceChildren();
  }
}
