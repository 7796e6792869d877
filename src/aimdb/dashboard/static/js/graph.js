// The dataflow graph as SVG, from the remote `graph` reply (the data `aimdb graph` draws).
//
// Nodes: every record (a box: key, type · buffer, writer as the records table names it, and
// a line of markers `writable` / `persisted` when any applies), every link URL (a rounded
// pill) and one small diamond per join, which the join's inputs meet in. Keys and URLs are
// never cut: the boxes are as wide as the widest label. Layout: a layered
// ("Sugiyama-style", simplified) drawing: each node's layer is its longest path from a node
// without inputs, so sources and inbound links sit on the left and every record or
// outbound link lies right of what it is derived from; within a layer nodes are ordered by
// the mean position of their neighbours (sweeps left to right by inputs and right to left
// by outputs), which keeps most edges short and uncrossed. All text is set with
// textContent.

import { bufferLabel, recordFlags, writerLabel } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const MIN_BOX_W = 220; // boxes grow to the widest label
const COL_GAP = 50;
const ROW_GAP = 20;
const LINE_H = 15;
const TEXT_X = 8; // label inset in a record box
const PAD = 16;
const CHAR_W = 7; // label width per character when the SVG cannot be measured (not rendered)
const WRITER_CLASS = { source: "w-source", transform: "w-derived", join: "w-derived", link: "w-link", remote: "w-remote" };

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Turn a `graph` reply into drawable nodes and edges (records, link URLs, join diamonds). */
export function buildGraph(g) {
  const nodes = new Map();
  const edges = [];
  for (const n of g.nodes || []) {
    const writer = writerLabel(n);
    const lines = [n.key, `${n.type} · ${bufferLabel(n)}`, `writer: ${writer}`];
    const flags = recordFlags(n);
    if (flags.length) lines.push(flags.join(" · "));
    nodes.set(`r:${n.key}`, { id: `r:${n.key}`, kind: "record", key: n.key, lines, writer });
  }
  const joins = new Set();
  for (const e of g.edges || []) {
    if (e.kind === "link_in" || e.kind === "link_out") {
      const url = e.kind === "link_in" ? e.from : e.to;
      const id = `l:${url}`;
      if (!nodes.has(id)) nodes.set(id, { id, kind: "link", key: url, lines: [url] });
      if (e.kind === "link_in") edges.push({ from: id, to: `r:${e.to}`, kind: "link_in", label: "link_from", a: e.from, b: e.to });
      else edges.push({ from: `r:${e.from}`, to: id, kind: "link_out", label: "link_to", a: e.from, b: e.to });
    } else if (e.kind === "join") {
      const id = `j:${e.to}`;
      if (!joins.has(id)) {
        joins.add(id);
        nodes.set(id, { id, kind: "join", key: e.to, lines: ["join"] });
        edges.push({ from: id, to: `r:${e.to}`, kind: "join_out", label: "", a: e.to, b: e.to });
      }
      edges.push({ from: `r:${e.from}`, to: id, kind: "join", label: "", a: e.from, b: e.to });
    } else {
      edges.push({ from: `r:${e.from}`, to: `r:${e.to}`, kind: String(e.kind), label: String(e.kind), a: e.from, b: e.to });
    }
  }
  return { nodes, edges: edges.filter((e) => nodes.has(e.from) && nodes.has(e.to)) };
}

/** Assign `layer` and `row` to every node (see the module comment). Returns the layer count. */
export function layout(nodes, edges) {
  const preds = new Map([...nodes.keys()].map((id) => [id, []]));
  const succs = new Map([...nodes.keys()].map((id) => [id, []]));
  for (const e of edges) {
    preds.get(e.to).push(e.from);
    succs.get(e.from).push(e.to);
  }
  // Longest path from a node without inputs (Kahn's order); nodes on a cycle (only
  // possible through links that loop back) go one layer after everything else.
  const indeg = new Map([...preds].map(([id, p]) => [id, p.length]));
  const queue = [...nodes.keys()].filter((id) => indeg.get(id) === 0);
  const layer = new Map(queue.map((id) => [id, 0]));
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    for (const s of succs.get(id)) {
      layer.set(s, Math.max(layer.get(s) ?? 0, layer.get(id) + 1));
      indeg.set(s, indeg.get(s) - 1);
      if (indeg.get(s) === 0) queue.push(s);
    }
  }
  let maxLayer = 0;
  for (const v of layer.values()) maxLayer = Math.max(maxLayer, v);
  for (const id of nodes.keys()) if (!layer.has(id) || indeg.get(id) > 0) layer.set(id, maxLayer + 1);
  let layers = 0;
  for (const v of layer.values()) layers = Math.max(layers, v + 1);
  const cols = Array.from({ length: layers }, () => []);
  for (const id of nodes.keys()) cols[layer.get(id)].push(id);
  const pos = new Map();
  cols.forEach((col) => col.forEach((id, i) => pos.set(id, i)));
  // Order each layer by the mean row of its neighbours in the layer just visited: left to
  // right by inputs, then right to left by outputs, twice, then once more left to right.
  const order = (col, nbrs, before) => {
    const bary = new Map(
      col.map((id) => {
        const p = nbrs.get(id).filter((q) => before(layer.get(q), layer.get(id)));
        return [id, p.length ? p.reduce((s, q) => s + pos.get(q), 0) / p.length : pos.get(id)];
      }),
    );
    col.sort((a, b) => bary.get(a) - bary.get(b));
    col.forEach((id, i) => pos.set(id, i));
  };
  const down = () => cols.forEach((col) => order(col, preds, (q, me) => q < me));
  const up = () => [...cols].reverse().forEach((col) => order(col, succs, (q, me) => q > me));
  down();
  for (let sweep = 0; sweep < 2; sweep++) {
    up();
    down();
  }
  for (const [id, n] of nodes) {
    n.layer = layer.get(id);
    n.row = pos.get(id);
  }
  return { layers, rows: Math.max(1, ...cols.map((c) => c.length)) };
}

/**
 * Box sizes for `nodes`: as wide as the widest label (`textWidth(line, isKey)` gives a
 * label's width in px) and as tall as the most lines of a record box.
 */
export function geometry(nodes, textWidth) {
  let widest = 0;
  let lines = 3;
  for (const n of nodes.values()) {
    if (n.kind === "join") continue;
    if (n.kind === "record") lines = Math.max(lines, n.lines.length);
    n.lines.forEach((line, i) => {
      widest = Math.max(widest, textWidth(line, n.kind === "record" && i === 0) + 2 * TEXT_X + (n.kind === "link" ? 16 : 0));
    });
  }
  const boxW = Math.max(MIN_BOX_W, Math.ceil(widest));
  const boxH = 9 + lines * LINE_H;
  return { boxW, boxH, colW: boxW + COL_GAP, rowH: boxH + ROW_GAP };
}

// Label widths as drawn: measured in a scratch SVG inside `box` (fonts as styled), or
// estimated from the length when the page does not render it (e.g. a hidden section).
function measurer(box) {
  const scratch = svg("svg", { class: "graph", width: 0, height: 0 });
  box.replaceChildren(scratch);
  const key = scratch.appendChild(svg("text", { class: "label key" }));
  const plain = scratch.appendChild(svg("text", { class: "label" }));
  return (line, isKey) => {
    const t = isKey ? key : plain;
    t.textContent = line;
    const w = t.getComputedTextLength();
    return w > 0 ? w : line.length * CHAR_W;
  };
}

function anchor(n, side, geo) {
  const x = PAD + n.layer * geo.colW;
  const y = PAD + n.row * geo.rowH;
  if (n.kind === "join") return { x: x + (side === "in" ? 0 : 28) + geo.boxW / 2 - 14, y: y + geo.boxH / 2 };
  return { x: side === "in" ? x : x + geo.boxW, y: y + geo.boxH / 2 };
}

/** Draw a `graph` reply into `box` as an SVG (replacing what was there). */
export function drawGraph(box, g) {
  const { nodes, edges } = buildGraph(g);
  const { layers, rows } = layout(nodes, edges);
  const geo = geometry(nodes, measurer(box));
  const width = PAD * 2 + Math.max(1, layers) * geo.colW - COL_GAP;
  const height = PAD * 2 + rows * geo.rowH - ROW_GAP;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "graph", role: "img" });
  root.appendChild(svg("title", {}, "dataflow graph"));
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
  defs.appendChild(marker);
  root.appendChild(defs);
  const edgeLayer = svg("g", { class: "edges" });
  for (const e of edges) {
    const a = anchor(nodes.get(e.from), "out", geo);
    const b = anchor(nodes.get(e.to), "in", geo);
    const dx = Math.max(30, (b.x - a.x) / 2);
    const path = svg("path", {
      d: `M ${a.x} ${a.y} C ${a.x + dx} ${a.y}, ${b.x - dx} ${b.y}, ${b.x} ${b.y}`,
      class: `edge e-${e.kind}`,
      "marker-end": "url(#arrow)",
    });
    path.dataset.from = e.a;
    path.dataset.to = e.b;
    path.dataset.kind = e.kind;
    path.appendChild(svg("title", {}, `${e.a} → ${e.b} (${e.kind})`));
    edgeLayer.appendChild(path);
    if (e.label && e.kind !== "join") {
      edgeLayer.appendChild(svg("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 4, class: "edge-label", "text-anchor": "middle" }, e.label));
    }
  }
  root.appendChild(edgeLayer);
  for (const n of nodes.values()) root.appendChild(drawNode(n, geo));
  box.replaceChildren(root);
}

function drawNode(n, geo) {
  const { boxW: BOX_W, boxH: BOX_H } = geo;
  const x = PAD + n.layer * geo.colW;
  const y = PAD + n.row * geo.rowH;
  const g = svg("g", { class: `node n-${n.kind}`, transform: `translate(${x} ${y})` });
  g.dataset.key = n.key;
  g.dataset.kind = n.kind;
  g.appendChild(svg("title", {}, n.kind === "join" ? `join into ${n.key}` : n.lines.join("\n")));
  if (n.kind === "join") {
    const c = BOX_W / 2;
    g.appendChild(svg("path", { d: `M ${c - 14} ${BOX_H / 2} L ${c} ${BOX_H / 2 - 14} L ${c + 14} ${BOX_H / 2} L ${c} ${BOX_H / 2 + 14} z`, class: "join-shape" }));
    return g;
  }
  if (n.kind === "link") {
    g.appendChild(svg("rect", { width: BOX_W, height: BOX_H, rx: BOX_H / 2, class: "link-shape" }));
    g.appendChild(svg("text", { x: BOX_W / 2, y: BOX_H / 2 + 4, "text-anchor": "middle", class: "label" }, n.lines[0]));
    return g;
  }
  g.appendChild(svg("rect", { width: BOX_W, height: BOX_H, rx: 6, class: `record-shape ${WRITER_CLASS[n.writer] || "w-none"}` }));
  n.lines.forEach((line, i) => {
    g.appendChild(svg("text", { x: TEXT_X, y: 16 + i * LINE_H, class: i === 0 ? "label key" : "label" }, line));
  });
  return g;
}
