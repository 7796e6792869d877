// Connectors and links, from the `stats` reply. One row per link (record, direction, URL,
// state and counters). Connectors: a server that sends `connectors` (protocol 1.3, with
// per-connector statistics) gets one row per connector with its own state, connection
// counters and last error, plus how many links it serves; an older server gets one row
// per URL scheme summing its links (the protocol then has no per-connector statistics).
// Rows are kept between polls; a cell is written only when its text changes. Everything
// from the server is written as text (textContent), never as markup.

import { el, setText } from "./format.js";

const LINK_COLS = ["record", "dir", "url", "state", "sent", "received", "failed", "dropped_lag", "errors", "last_error"];
// per-connector statistics (`stats.connectors`)
const CONN_COLS = ["scheme", "url", "state", "connects", "failed", "disconnects", "errors", "links", "last_error"];
const CONN_HEAD = ["connector", "url", "state", "connects", "failed", "disconnects", "errors", "links", "last error"];
// an older server: links grouped by URL scheme
const GROUP_COLS = ["scheme", "links", "state", "sent", "received", "failed"];
const GROUP_HEAD = ["connector", "links", "state", "sent", "received", "failed"];
const HEALTHY = new Set(["connected", "running"]);
// on the way up or not started yet: neither healthy nor broken
const PENDING = new Set(["idle", "connecting"]);

function schemeOf(url) {
  const i = url.indexOf("://");
  return i > 0 ? url.slice(0, i) : url;
}

/** The colour of a connector's state cell: green up, red down, plain while pending. */
function stateColour(state) {
  if (HEALTHY.has(state)) return "var(--ok)";
  if (PENDING.has(state)) return "";
  return "var(--bad)";
}

export class LinksView {
  constructor(linksBody, connectorsBody, emptyNote) {
    this.linksBody = linksBody;
    this.connectorsBody = connectorsBody;
    this.emptyNote = emptyNote;
    this.linkRows = new Map();
    this.connRows = new Map();
    this.connMode = null; // "connectors" or "schemes": which columns the connector rows have
  }

  /**
   * Update from a `stats` reply: `records` ({key: {links: [...]}}) and `connectors`
   * (the per-connector list, `undefined` from a server that does not send it).
   */
  update(records, connectors) {
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
    if (Array.isArray(connectors)) this.showConnectors(connectors, schemes);
    else this.showSchemes(schemes);
    const noLinks = this.linkRows.size === 0;
    this.emptyNote.hidden = !noLinks;
    this.linksBody.closest("table").hidden = noLinks;
    this.connectorsBody.closest("table").hidden = this.connRows.size === 0;
  }

  /** One row per connector of `stats.connectors`: its state, counters and last error. */
  showConnectors(connectors, schemes) {
    this.setMode("connectors", CONN_HEAD);
    const seen = new Set();
    for (const cn of connectors) {
      if (!cn || typeof cn !== "object") continue;
      const s = String(cn.scheme ?? "");
      if (seen.has(s)) continue; // one connector per scheme
      seen.add(s);
      const row = this.connRow(s, CONN_COLS);
      const state = String(cn.state ?? "");
      const values = {
        scheme: s,
        url: cn.url ?? "",
        state,
        connects: cn.connects ?? "",
        failed: cn.failed_attempts ?? "",
        disconnects: cn.disconnects ?? "",
        errors: cn.errors ?? "",
        links: (schemes.get(s) || { links: 0 }).links,
        last_error: cn.last_error ?? "",
      };
      for (const c of CONN_COLS) setText(row.cells[c], String(values[c]));
      row.tr.dataset.state = state;
      row.tr.classList.toggle("bad", !HEALTHY.has(state) && !PENDING.has(state));
      const colour = stateColour(state);
      if (row.cells.state.style.color !== colour) row.cells.state.style.color = colour;
      this.connectorsBody.appendChild(row.tr); // in the server's order (a no-op when unchanged)
    }
    this.dropConnRows(seen);
  }

  /** An older server: one row per URL scheme, summing its links. */
  showSchemes(schemes) {
    this.setMode("schemes", GROUP_HEAD);
    for (const [s, agg] of schemes) {
      const row = this.connRow(s, GROUP_COLS);
      const states = [...agg.states].map(([st, n]) => `${n} ${st}`).join(", ");
      const values = { scheme: s, links: agg.links, state: states, sent: agg.sent, received: agg.received, failed: agg.failed };
      for (const c of GROUP_COLS) setText(row.cells[c], String(values[c]));
      row.tr.classList.toggle("bad", [...agg.states.keys()].some((st) => !HEALTHY.has(st)));
    }
    this.dropConnRows(new Set(schemes.keys()));
  }

  /** Switch the connector table's columns (rows of the other kind are dropped). */
  setMode(mode, head) {
    if (this.connMode === mode) return;
    this.connMode = mode;
    for (const row of this.connRows.values()) row.tr.remove();
    this.connRows.clear();
    const thead = this.connectorsBody.closest("table").tHead;
    if (thead) {
      const tr = el("tr");
      for (const h of head) tr.appendChild(el("th", null, h));
      thead.replaceChildren(tr);
    }
  }

  connRow(scheme, cols) {
    let row = this.connRows.get(scheme);
    if (!row) {
      row = this.makeRow(cols, "connector");
      row.tr.dataset.scheme = scheme;
      this.connRows.set(scheme, row);
      this.connectorsBody.appendChild(row.tr);
    }
    return row;
  }

  dropConnRows(keep) {
    for (const [s, row] of this.connRows) {
      if (!keep.has(s)) {
        row.tr.remove();
        this.connRows.delete(s);
      }
    }
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
