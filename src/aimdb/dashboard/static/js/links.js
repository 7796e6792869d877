// Links and connectors, from the `stats` reply: one row per link (record, direction, URL,
// state and counters) and one row per connector, i.e. per URL scheme (mqtt, kafka, nats,
// aimdb, ...), summing its links. Rows are kept between polls; a cell is written only when
// its text changes.

import { el, setText } from "./format.js";

const LINK_COLS = ["record", "dir", "url", "state", "sent", "received", "failed", "dropped_lag", "errors", "last_error"];
const CONN_COLS = ["scheme", "links", "state", "sent", "received", "failed"];
const HEALTHY = new Set(["connected", "running"]);

function schemeOf(url) {
  const i = url.indexOf("://");
  return i > 0 ? url.slice(0, i) : url;
}

export class LinksView {
  constructor(linksBody, connectorsBody, emptyNote) {
    this.linksBody = linksBody;
    this.connectorsBody = connectorsBody;
    this.emptyNote = emptyNote;
    this.linkRows = new Map();
    this.connRows = new Map();
  }

  /** Update from `stats` → records: {key: {links: [...]}}. */
  update(records) {
    const seen = new Set();
    const schemes = new Map();
    for (const [key, st] of Object.entries(records || {})) {
      for (const ln of (st && st.links) || []) {
        const id = `${key}\u0000${ln.direction}\u0000${ln.url}`;
        seen.add(id);
        let row = this.linkRows.get(id);
        if (!row) {
          row = this.makeRow(LINK_COLS, "link");
          this.linkRows.set(id, row);
          this.linksBody.appendChild(row.tr);
        }
        const values = {
          record: key,
          dir: ln.direction === "in" ? "in ←" : "out →",
          url: ln.url,
          state: ln.state,
          sent: ln.sent,
          received: ln.received,
          failed: ln.failed,
          dropped_lag: ln.dropped_lag,
          errors: ln.errors,
          last_error: ln.last_error || "",
        };
        for (const c of LINK_COLS) setText(row.cells[c], String(values[c] ?? ""));
        row.tr.dataset.state = String(ln.state);
        row.tr.classList.toggle("bad", !HEALTHY.has(ln.state));
        const s = schemeOf(String(ln.url));
        const agg = schemes.get(s) || { links: 0, states: new Map(), sent: 0, received: 0, failed: 0 };
        agg.links += 1;
        agg.states.set(ln.state, (agg.states.get(ln.state) || 0) + 1);
        agg.sent += ln.sent || 0;
        agg.received += ln.received || 0;
        agg.failed += ln.failed || 0;
        schemes.set(s, agg);
      }
    }
    for (const [id, row] of this.linkRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.linkRows.delete(id);
      }
    }
    for (const [s, agg] of schemes) {
      let row = this.connRows.get(s);
      if (!row) {
        row = this.makeRow(CONN_COLS, "connector");
        this.connRows.set(s, row);
        this.connectorsBody.appendChild(row.tr);
      }
      const states = [...agg.states].map(([st, n]) => `${n} ${st}`).join(", ");
      const values = { scheme: s, links: agg.links, state: states, sent: agg.sent, received: agg.received, failed: agg.failed };
      for (const c of CONN_COLS) setText(row.cells[c], String(values[c]));
      row.tr.classList.toggle("bad", [...agg.states.keys()].some((st) => !HEALTHY.has(st)));
    }
    for (const [s, row] of this.connRows) {
      if (!schemes.has(s)) {
        row.tr.remove();
        this.connRows.delete(s);
      }
    }
    const none = this.linkRows.size === 0;
    this.emptyNote.hidden = !none;
    this.linksBody.closest("table").hidden = none;
    this.connectorsBody.closest("table").hidden = none;
  }

  makeRow(cols, cls) {
    const tr = el("tr", cls);
    const cells = {};
    for (const c of cols) {
      cells[c] = el("td", `c-${c}`);
      tr.appendChild(cells[c]);
    }
    return { tr, cells };
  }
}
