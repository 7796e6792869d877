// Unit tests of the page's pure functions, run by test_js_units.py with Node's test runner:
// node --experimental-default-type=module --test tests/dashboard/js_units.mjs
import { test } from "node:test";
import assert from "node:assert/strict";

const STATIC = new URL("../../src/aimdb/dashboard/static/js/", import.meta.url);
const { buildGraph, geometry, layout } = await import(new URL("graph.js", STATIC));
const { backoffMs, versionAtLeast } = await import(new URL("connection.js", STATIC));
const formatModule = await import(new URL("format.js", STATIC));
const { formatAge, formatUptime, formatValue, numericFields, pick } = formatModule;

const rec = (key, writer = "none", extra = {}) => ({ key, type: "T", buffer: "single_latest", capacity: 1, writer, writable: false, ...extra });

test("layers: sources left, derived records right of their inputs, links beside their records", () => {
  const g = {
    nodes: [rec("in.a", "link"), rec("b", "source"), rec("c", "transform"), rec("d", "join"), rec("e")],
    edges: [
      { from: "mqtt://x/a", to: "in.a", kind: "link_in" },
      { from: "b", to: "c", kind: "transform" },
      { from: "in.a", to: "d", kind: "join" },
      { from: "c", to: "d", kind: "join" },
      { from: "d", to: "kafka://out", kind: "link_out" },
    ],
    order: ["in.a", "b", "c", "d", "e"],
  };
  const { nodes, edges } = buildGraph(g);
  layout(nodes, edges);
  const L = (id) => nodes.get(id).layer;
  assert.equal(L("l:mqtt://x/a"), 0);
  assert.equal(L("r:b"), 0);
  assert.equal(L("r:e"), 0);
  assert.ok(L("r:in.a") > L("l:mqtt://x/a"));
  assert.ok(L("r:c") > L("r:b"));
  assert.ok(L("j:d") > L("r:c") && L("j:d") > L("r:in.a"));
  assert.ok(L("r:d") > L("j:d"));
  assert.ok(L("l:kafka://out") > L("r:d"));
  // one diamond per join, with an edge into its record
  assert.equal([...nodes.values()].filter((n) => n.kind === "join").length, 1);
  assert.ok(edges.some((e) => e.from === "j:d" && e.to === "r:d"));
  // rows within a layer are distinct
  const seen = new Set([...nodes.values()].map((n) => `${n.layer}/${n.row}`));
  assert.equal(seen.size, nodes.size);
});

test("layout survives a cycle through links and edges to unknown nodes", () => {
  const g = {
    nodes: [rec("a", "link"), rec("b", "link")],
    edges: [
      { from: "a", to: "x://1", kind: "link_out" },
      { from: "x://1", to: "b", kind: "link_in" },
      { from: "b", to: "x://2", kind: "link_out" },
      { from: "x://2", to: "a", kind: "link_in" },
      { from: "hidden", to: "a", kind: "transform" },
    ],
  };
  const { nodes, edges } = buildGraph(g);
  assert.equal(edges.length, 4); // the edge from a node the server did not list is dropped
  const { layers } = layout(nodes, edges);
  assert.ok(layers >= 1);
  for (const n of nodes.values()) assert.ok(Number.isInteger(n.layer) && Number.isInteger(n.row));
});

test("a passive record that remote clients may write is drawn as written remotely", () => {
  const { nodes } = buildGraph({ nodes: [rec("cfg", "none", { writable: true })], edges: [] });
  assert.equal(nodes.get("r:cfg").writer, "remote");
});

test("protocol versions compare by major then minor", () => {
  assert.ok(versionAtLeast("1.3", "1.3"));
  assert.ok(versionAtLeast("1.10", "1.3"));
  assert.ok(versionAtLeast("2.0", "1.3"));
  assert.ok(!versionAtLeast("1.2", "1.3"));
  assert.ok(!versionAtLeast(undefined, "1.3"));
  assert.ok(!versionAtLeast("x", "1.3"));
});

test("reconnect backoff doubles from 0.5 s up to 8 s, with jitter of ±25 %", () => {
  assert.equal(backoffMs(1, () => 0.5), 500);
  assert.equal(backoffMs(2, () => 0.5), 1000);
  assert.equal(backoffMs(5, () => 0.5), 8000);
  assert.equal(backoffMs(50, () => 0.5), 8000);
  assert.equal(backoffMs(1, () => 0), 375);
  assert.equal(backoffMs(1, () => 1), 625);
});

test("values format as one line; numeric fields are found for the chart", () => {
  assert.equal(formatValue({ celsius: 21.5, ok: true, name: "a" }), 'celsius: 21.5, ok: true, name: "a"');
  assert.equal(formatValue(3), "3");
  assert.equal(formatValue("<b>"), "<b>");
  assert.equal(formatValue(1733000000123456), "1733000000123456"); // integers keep every digit
  assert.deepEqual(numericFields({ t: 1, inner: { h: 2, s: "x" }, b: false }), [["t", 1], ["inner.h", 2]]);
  assert.deepEqual(numericFields(4.5), [["value", 4.5]]);
  assert.equal(pick({ inner: { h: 2 } }, "inner.h"), 2);
  assert.equal(pick(4.5, "value"), 4.5);
  assert.equal(pick({ a: "x" }, "a"), null);
});

test("ages and uptimes are short", () => {
  assert.equal(formatAge(200), "<1 s");
  assert.equal(formatAge(12_500), "12 s");
  assert.equal(formatAge(180_000), "3 min");
  assert.equal(formatUptime(3_723_000), "1 h 2 min 3 s");
  assert.equal(formatUptime(90_061_000), "1 d 1 h 1 min");
  assert.equal(formatUptime(500), "0 s");
});

test("history requests stay within the server's max_history", async () => {
  const { historyLimit } = await import(new URL("chart.js", STATIC));
  assert.equal(historyLimit({ limits: { max_history: 1000 } }), 1000);
  assert.equal(historyLimit({ limits: { max_history: 50 } }), 50);
  assert.equal(historyLimit({ limits: { max_history: 100000 } }), 2000);
  assert.equal(historyLimit({ limits: {} }), 1000); // not announced: the documented default
});

test("the writer is named as aimdb record list names it; box sizes fit the widest label", () => {
  const { writerLabel, recordFlags } = formatModule;
  assert.equal(writerLabel({ writer: "none", writable: true }), "remote");
  assert.equal(writerLabel({ writer: "none", writable: false }), "none");
  assert.equal(writerLabel({ writer: "link", writable: true }), "link");
  assert.equal(writerLabel({ writer: "join", writable: false }), "join");
  assert.deepEqual(recordFlags({ writable: true, persisted: true }), ["writable", "persisted"]);
  const { nodes } = buildGraph({ nodes: [rec("a.very.long.key.that.needs.room", "none", { writable: true, persisted: true }), rec("b")], edges: [] });
  assert.deepEqual(nodes.get("r:a.very.long.key.that.needs.room").lines.slice(2), ["writer: remote", "writable · persisted"]);
  const geo = geometry(nodes, (line) => line.length * 10);
  assert.equal(geo.boxW, "a.very.long.key.that.needs.room".length * 10 + 16);
  assert.equal(geo.boxH, 9 + 4 * 15); // four lines
  assert.equal(geometry(buildGraph({ nodes: [rec("b")], edges: [] }).nodes, () => 1).boxW, 220); // the minimum
});
