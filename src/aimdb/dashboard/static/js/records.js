// The records table: one row per readable record, built once per record list; live values
// arrive as events and are written at most once per animation frame, only into the rows
// that changed. Ages tick once a second and a cell is written only when its text changes.
// Keys are never cut (they wrap at dots when the table is narrow); the value cell is the one
// cut to the width left, with the full value in its tooltip.

import { bufferLabel, clip, el, formatAge, formatLag, formatRate, formatValue, setKeyText, setText, writerLabel } from "./format.js";

const VALUE_CHARS = 160;

export class RecordTable {
  /**
   * @param {HTMLTableSectionElement} tbody
   * @param {(key: string) => void} onSelect called when a row is clicked
   * @param {() => number} serverNowMs the server's wall clock as estimated by the page
   */
  constructor(tbody, onSelect, serverNowMs) {
    this.tbody = tbody;
    this.onSelect = onSelect;
    this.serverNowMs = serverNowMs;
    this.rows = new Map(); // key -> row state
    this.dirty = new Set();
    this.frameQueued = false;
    this.selected = null;
    this.filter = "";
    this.lastStats = null; // {atMs, produced: Map}
    setInterval(() => this.tickAges(), 1000);
  }

  /** Build the rows for a record.list reply (rows of records still listed are kept). */
  setRecords(list) {
    const keep = new Map();
    const frag = document.createDocumentFragment();
    for (const info of list) {
      let row = this.rows.get(info.key);
      if (!row) row = this.makeRow(info);
      row.info = info;
      setText(row.cells.type, String(info.type));
      setText(row.cells.buffer, bufferLabel(info));
      setText(row.cells.writer, writerLabel(info));
      setText(row.cells.writable, info.writable ? "yes" : "");
      keep.set(info.key, row);
      frag.appendChild(row.tr);
    }
    for (const [key, row] of this.rows) if (!keep.has(key)) row.tr.remove();
    this.rows = keep;
    this.tbody.replaceChildren(frag);
    this.applyFilter(this.filter);
  }

  makeRow(info) {
    const tr = el("tr");
    tr.dataset.key = info.key;
    const cells = {};
    for (const name of ["key", "type", "buffer", "writer", "writable", "value", "age", "rate", "lag", "lost"]) {
      const td = el("td", `c-${name}`);
      tr.appendChild(td);
      cells[name] = td;
    }
    setKeyText(cells.key, info.key);
    cells.key.title = info.key;
    cells.value.textContent = info.has_value ? "…" : "–";
    tr.addEventListener("click", () => this.onSelect(info.key));
    return { tr, cells, info, value: undefined, hasValue: false, tsMs: NaN, lagMs: NaN, events: 0, rate: NaN, lost: 0 };
  }

  /** A value arrived (snapshot or update event). Returns the row state, or undefined. */
  update(key, value, tsNs, arrivedServerMs) {
    const row = this.rows.get(key);
    if (!row) return undefined;
    row.value = value;
    row.hasValue = true;
    row.tsMs = tsNs / 1e6;
    row.lagMs = arrivedServerMs - row.tsMs;
    row.events += 1;
    this.dirty.add(row);
    this.queueFrame();
    return row;
  }

  queueFrame() {
    if (this.frameQueued) return;
    this.frameQueued = true;
    requestAnimationFrame(() => this.flush());
  }

  /** Write every changed row into the DOM (once per frame). */
  flush() {
    this.frameQueued = false;
    const now = this.serverNowMs();
    for (const row of this.dirty) {
      const text = formatValue(row.value);
      setText(row.cells.value, clip(text, VALUE_CHARS));
      if (row.cells.value.title !== text) row.cells.value.title = text; // the cell may be cut
      setText(row.cells.age, formatAge(now - row.tsMs));
      setText(row.cells.lag, formatLag(row.lagMs));
    }
    this.dirty.clear();
  }

  tickAges() {
    if (document.hidden) return;
    const now = this.serverNowMs();
    for (const row of this.rows.values()) {
      if (row.hasValue) setText(row.cells.age, formatAge(now - row.tsMs));
    }
  }

  /** Rates and losses from a `stats` reply (rate = produced delta over the poll interval). */
  setStats(stats, atMs) {
    const produced = new Map();
    const prev = this.lastStats;
    for (const [key, row] of this.rows) {
      const st = stats[key];
      const buf = st && st.buffer;
      if (!buf) continue;
      produced.set(key, buf.produced);
      if (prev && prev.produced.has(key) && atMs > prev.atMs) {
        const d = buf.produced - prev.produced.get(key);
        row.rate = d >= 0 ? (d * 1000) / (atMs - prev.atMs) : NaN; // negative: stats were reset
      }
      row.lost = buf.dropped || 0;
      setText(row.cells.rate, formatRate(row.rate));
      setText(row.cells.lost, String(row.lost));
      row.tr.classList.toggle("has-loss", row.lost > 0);
    }
    this.lastStats = { atMs, produced };
  }

  select(key) {
    if (this.selected) this.selected.tr.classList.remove("selected");
    this.selected = this.rows.get(key) || null;
    if (this.selected) this.selected.tr.classList.add("selected");
  }

  applyFilter(text) {
    this.filter = text;
    const f = text.trim().toLowerCase();
    for (const [key, row] of this.rows) row.tr.hidden = f !== "" && !key.toLowerCase().includes(f);
  }
}
