// The dashboard page: connects to /ws, lists records, follows their values, charts the
// selected one, shows links, connectors and the dataflow graph, and offers a write form for
// records the server says are writable (the server still decides each write).

import { ChartPanel } from "./chart.js";
import { Connection, RemoteError, storeToken } from "./connection.js";
import { drawGraph } from "./graph.js";
import { LinksView } from "./links.js";
import { bufferLabel, formatUptime, formatValue, recordFlags, setText, writerLabel } from "./format.js";
import { asNumber, parseJSON, stringifyJSON } from "./json.js";
import { RecordTable } from "./records.js";

const STATS_EVERY_MS = 5000;
const $ = (id) => document.getElementById(id);

const state = {
  hello: null,
  clockOffsetMs: 0, // server wall clock minus this page's
  records: new Map(), // key -> record.list entry
  sub: null,
  lastSeq: 0,
  lostEvents: 0,
  events: 0,
  selected: null,
  statsTimer: null,
  statsPolled: false,
  session: 0, // increases on every (re)connect; late replies of older sessions are ignored
};

const serverNowMs = () => Date.now() + state.clockOffsetMs;
const table = new RecordTable($("records").tBodies[0], (key) => select(key), serverNowMs);
const chart = new ChartPanel($("chart"), $("chart-note"));
const links = new LinksView($("links").tBodies[0], $("connectors").tBodies[0], $("links-empty"));

function wsUrl() {
  const u = new URL("ws", window.location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

const conn = new Connection(wsUrl(), {
  onReady: (hello) => ready(hello).catch(failed("loading the instance")),
  onEvent: (frame) => onEvent(frame),
  onState: (s) => onState(s),
  onError: (text) => report(text),
});

// ---------------------------------------------------------------- connection state

function banner(text, kind) {
  const b = $("banner");
  if (!text) {
    b.hidden = true;
    b.textContent = "";
    return;
  }
  b.hidden = false;
  b.className = `banner ${kind || ""}`;
  b.textContent = text;
}

let everConnected = false;

function onState(s) {
  document.body.dataset.conn = s.state;
  setText($("conn-state"), s.state);
  if (s.state === "connected") {
    everConnected = true;
    banner(null);
    $("token-form").hidden = true;
  } else if (s.state === "disconnected") {
    state.session += 1;
    clearInterval(state.statsTimer);
    state.sub = null;
    const secs = (s.retryInMs / 1000).toFixed(1);
    const what = everConnected ? "Connection to the instance lost" : "Cannot reach the instance";
    banner(`${what} (${s.reason}); reconnecting in ${secs} s (attempt ${s.attempt})…`, "down");
  } else if (s.state === "unauthorized") {
    banner(null);
    $("token-form").hidden = false;
    setText($("token-error"), s.hadToken ? `refused: ${s.reason}` : "");
    $("token-input").focus();
  } else if (s.state === "incompatible") {
    banner(`This instance speaks an incompatible protocol: ${s.reason}`, "down");
  }
}

// A problem that is not the connection's state (a request that failed, a frame that was
// not JSON, a connection-level error from the server) is shown in the header with its
// time, and logged to the console (once while it repeats).
let lastReported = "";
function report(text) {
  if (text !== lastReported) console.warn("aimdb dashboard:", text); // a repeat is not logged again
  lastReported = text;
  const at = new Date().toLocaleTimeString();
  setText($("page-error"), `${at} ${text}`);
  $("page-error-item").hidden = false;
}

// A request that failed because the connection went away is not reported: the banner says so.
const failed = (what) => (err) => {
  if (conn.hello) report(`${what}: ${err.message}`);
};

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token-input").value;
  storeToken(token);
  conn.retryWithToken(token);
});

// ---------------------------------------------------------------- instance

async function ready(hello) {
  const session = ++state.session;
  state.hello = hello;
  setText($("instance-name"), String(hello.name));
  document.title = `aimdb · ${hello.name}`;
  setText($("instance-version"), `${hello.server} ${hello.version}`);
  setText($("instance-protocol"), String(hello.protocol));
  setText($("instance-access"), hello.writable && hello.writable.length ? `read, write (${hello.writable.length})` : "read-only");
  await syncClock();
  tickUptime();
  const [list, graph] = await Promise.all([conn.call("record.list"), conn.call("graph")]);
  if (session !== state.session) return;
  state.records = new Map(list.records.map((r) => [r.key, r]));
  setText($("records-count"), `(${list.records.length})`);
  table.setRecords(list.records);
  drawGraph($("graph"), graph);
  if (state.selected && state.records.has(state.selected)) select(state.selected);
  await subscribe(session);
  await pollStats(session);
  // A second poll soon after the first gives every record a rate without waiting.
  setTimeout(() => pollStats(session).catch(failed("stats")), 1000);
  clearInterval(state.statsTimer);
  state.statsTimer = setInterval(() => pollStats(session).catch(failed("stats")), STATS_EVERY_MS);
}

async function syncClock() {
  const t0 = Date.now();
  const pong = await conn.call("ping");
  const t1 = Date.now();
  if (pong && typeof asNumber(pong.ts) === "number") state.clockOffsetMs = asNumber(pong.ts) / 1e6 - (t0 + t1) / 2;
}

function tickUptime() {
  const h = state.hello;
  if (!h || typeof asNumber(h.started_at) !== "number") {
    setText($("instance-uptime"), h ? "unknown" : "–");
    return;
  }
  setText($("instance-uptime"), formatUptime(serverNowMs() - asNumber(h.started_at) / 1e6));
}
setInterval(tickUptime, 1000);

async function subscribe(session) {
  if (![...state.records.values()].some((r) => r.buffer !== "none")) return;
  let reply;
  try {
    reply = await conn.call("record.subscribe", { pattern: "#", snapshot: true });
  } catch (err) {
    if (err instanceof RemoteError && err.code === "not_found") return;
    throw err;
  }
  if (session !== state.session) return;
  state.sub = reply.sub;
  state.lastSeq = 0;
}

async function pollStats(session) {
  if (document.hidden && state.statsPolled) return; // a hidden tab skips polls (rates use elapsed time)
  state.statsPolled = true;
  const reply = await conn.call("stats");
  if (session !== state.session) return;
  table.setStats(reply.records || {}, serverNowMs());
  links.update(reply.records || {}, reply.connectors); // an older server sends no `connectors`
  const srv = reply.server || {};
  setText($("instance-clients"), `${srv.connections ?? "?"} connected`);
}

// ---------------------------------------------------------------- events

function onEvent(frame) {
  if (frame.sub !== state.sub) return;
  state.events += 1;
  if (frame.seq > state.lastSeq + 1) state.lostEvents += frame.seq - state.lastSeq - 1;
  state.lastSeq = Math.max(state.lastSeq, frame.seq);
  const arrived = serverNowMs();
  const tsNs = asNumber(frame.ts);
  const row = table.update(frame.key, frame.value, tsNs, arrived);
  if (row) chart.push(frame.key, frame.value, tsNs);
  queueHeader();
}

let headerQueued = false;
function queueHeader() {
  if (headerQueued) return;
  headerQueued = true;
  requestAnimationFrame(() => {
    headerQueued = false;
    setText($("instance-events"), String(state.events));
    setText($("instance-lost"), String(state.lostEvents));
  });
}

// ---------------------------------------------------------------- selection and writes

function select(key) {
  const info = state.records.get(key);
  if (!info) return;
  state.selected = key;
  table.select(key);
  const row = table.rows.get(key);
  setText($("detail-title"), key);
  const meta = [String(info.type), bufferLabel(info), `writer: ${writerLabel(info)}`, ...recordFlags(info)];
  setText($("detail-meta"), meta.join(" · "));
  chart.select(key, row && row.hasValue ? row.value : undefined, info, conn, state.hello);
  const form = $("write-form");
  setText($("write-result"), "");
  $("write-result").className = "";
  if (info.writable) {
    form.hidden = false;
    $("write-value").value = row && row.hasValue ? stringifyJSON(row.value, 1) : "";
    setText($("write-policy"), "The server allows remote writes to this record.");
  } else {
    form.hidden = true;
    setText($("write-policy"), readOnlyReason(info));
  }
}

function readOnlyReason(info) {
  if (["source", "transform", "join"].includes(info.writer)) return `Read-only: written by its ${info.writer}.`;
  if (info.buffer === "none") return "Read-only: the record has no buffer.";
  return "Read-only: not in this server's write allow-list (or declared without remote(writable=True)).";
}

$("write-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = state.selected;
  const out = $("write-result");
  let value;
  try {
    value = parseJSON($("write-value").value);
  } catch (err) {
    out.className = "error";
    setText(out, `not JSON, nothing sent: ${err.message}`);
    return;
  }
  $("write-submit").disabled = true;
  try {
    const reply = await conn.call("record.set", { key, value });
    out.className = "ok";
    setText(out, `stored: ${formatValue(reply.value)}`);
  } catch (err) {
    out.className = "error";
    setText(out, err instanceof RemoteError ? `refused (${err.code}): ${err.reason}` : `not sent: ${err.message}`);
  } finally {
    $("write-submit").disabled = false;
  }
});

$("filter").addEventListener("input", (ev) => table.applyFilter(ev.target.value));

conn.start();
