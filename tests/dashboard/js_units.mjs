// Unit tests of the page's pure functions, run by test_js_units.py with Node's test runner:
// node --experimental-default-type=module --harmony-json-parse-with-source --test tests/dashboard/js_units.mjs
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

test("integers beyond 2^53 survive parse and stringify exactly; others parse as JSON.parse does", async () => {
  const { Approx, EXACT_SUPPORTED, asNumber, parseFrame, parseJSON, stringifyJSON } = await import(new URL("json.js", STATIC));
  assert.ok(EXACT_SUPPORTED, "run with --harmony-json-parse-with-source on Node 20");
  const text = '{"event":"update","ts":1796456131475486700,"value":{"ts_ns":1152921504606846977,"n":-9007199254740993,"t":21.5,"e":1e+300,"s":"12345678901234567"}}';
  const frame = parseFrame(text);
  assert.equal(frame.value.ts_ns, 1152921504606846977n);
  assert.equal(frame.value.n, -9007199254740993n);
  assert.equal(frame.value.t, 21.5);
  assert.equal(frame.value.e, 1e300); // not an integer literal: stays a double
  assert.equal(frame.value.s, "12345678901234567");
  assert.equal(asNumber(frame.ts), 1796456131475486700); // protocol timestamps, converted knowingly
  assert.equal(stringifyJSON(frame), text);
  assert.equal(formatValue(frame.value), 'ts_ns: 1152921504606846977, n: -9007199254740993, t: 21.5, e: 1e+300, s: "12345678901234567"');
  // big ints reach the chart only as doubles, converted knowingly, and marked as not charted first
  assert.deepEqual(numericFields(frame.value), [["ts_ns", 1152921504606846977], ["n", -9007199254740993], ["t", 21.5], ["e", 1e300]]);
  assert.ok(formatModule.bigField(numericFields(frame.value)[0][1]) && !formatModule.bigField(21.5));
  assert.equal(pick(frame.value, "ts_ns"), 1152921504606846977);
  // the write form: pre-filled with stringify, parsed back on Write, sent with stringify
  const form = stringifyJSON(frame.value, 1);
  assert.match(form, /"ts_ns": 1152921504606846977/);
  assert.equal(stringifyJSON({ id: 1, method: "record.set", params: { key: "k", value: parseJSON(form) } }),
    '{"id":1,"method":"record.set","params":{"key":"k","value":' + text.slice(text.indexOf('{"ts_ns"'), -1) + "}}");
  assert.deepEqual(parseJSON('{"a":1,"b":[2,3.5]}'), { a: 1, b: [2, 3.5] }); // no long digits: plain parse
  // a frame whose only long integers are protocol timestamps is plain JSON.parse (the fast path)
  const plain = parseFrame('{"result":{"rows":[{"ts":1796456131475486700,"value":{"t":1}}]},"ts":1796456131475486700}');
  assert.equal(plain.ts, 1796456131475486700);
  assert.equal(plain.result.rows[0].ts, 1796456131475486700);
  // a big integer in a history row's value: exact, and the row's ts reads as a number
  const hist = parseFrame('{"result":{"rows":[{"ts":1796456131475486700,"value":[1,1152921504606846977]}]}}');
  assert.equal(hist.result.rows[0].value[1], 1152921504606846977n);
  assert.equal(asNumber(hist.result.rows[0].ts), 1796456131475486700);
  assert.equal(parseJSON("1152921504606846977"), 1152921504606846977n); // the write form: a bare number too
  // a browser without source access: the rounded double, marked as approximate
  const approx = parseJSON('{"ts_ns":1152921504606846977,"t":1}', false);
  assert.ok(approx.ts_ns instanceof Approx);
  assert.equal(formatValue(approx), "ts_ns: ≈1152921504606846976, t: 1");
  assert.deepEqual(numericFields(approx), [["ts_ns", 1152921504606846976], ["t", 1]]);
  assert.equal(stringifyJSON(approx), '{"ts_ns":1152921504606847000,"t":1}');
});
