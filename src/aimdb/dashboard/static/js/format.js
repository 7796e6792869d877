// Small helpers: safe element creation (text only, never HTML) and value formatting.

import { Approx, asNumber } from "./json.js";

/** An element with optional class and text (set with textContent: record data stays text). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Set a node's text only when it changed (no layout work for unchanged cells). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function num(v) {
  if (Number.isInteger(v)) return String(v);
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e9)) return v.toExponential(3);
  return String(Math.round(v * 1e4) / 1e4);
}

/**
 * A record value as one short line: objects as `a: 1, b: x`, strings as they are, integers
 * beyond 2^53 (BigInt from json.js) with every digit, approximate ones as `≈digits`.
 */
export function formatValue(v, depth = 0) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number") return num(v);
  if (typeof v === "bigint") return v.toString(); // an integer beyond 2^53, exact
  if (v instanceof Approx) return v.toString(); // "≈digits": rounded by a browser without exact parsing
  if (typeof v === "string") return depth === 0 ? v : JSON.stringify(v);
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) {
    if (depth > 1) return `[${v.length}]`;
    return `[${v.slice(0, 8).map((x) => formatValue(x, depth + 1)).join(", ")}${v.length > 8 ? ", …" : ""}]`;
  }
  if (typeof v === "object") {
    if (depth > 1) return "{…}";
    const parts = Object.keys(v).map((k) => `${k}: ${formatValue(v[k], depth + 1)}`);
    return depth === 0 ? parts.join(", ") : `{${parts.join(", ")}}`;
  }
  return String(v);
}

/** Clip `text` to `max` characters with an ellipsis. */
export function clip(text, max) {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** A duration in ms as a short human string: "<1 s", "12 s", "3 min", "2 h", "4 d". */
export function formatAge(ms) {
  if (!Number.isFinite(ms)) return "–";
  const s = ms / 1000;
  if (s < 1) return "<1 s";
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** An uptime in ms as "1 d 2 h 3 min 4 s" (largest units only, at most three). */
export function formatUptime(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  let s = Math.floor(ms / 1000);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]]) {
    if (s >= size || (unit === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(s / size)} ${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, 3).join(" ");
}

/** A latency in ms: "3 ms", "1.2 s". */
export function formatLag(ms) {
  if (!Number.isFinite(ms)) return "–";
  if (ms < 0) return "0 ms";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A rate in values per second: "0", "0.2", "12", "1.5k". */
export function formatRate(r) {
  if (!Number.isFinite(r)) return "–";
  if (r === 0) return "0";
  if (r < 10) return String(Math.round(r * 10) / 10);
  if (r < 10000) return String(Math.round(r));
  return `${Math.round(r / 100) / 10}k`;
}

/**
 * The numeric fields of a value as [path, number] pairs (nested objects give dotted
 * paths; a bare number is the field "value"). Booleans and strings are not charted. Integers
 * beyond 2^53 (BigInt, or Approx on a browser without exact parsing) are given as doubles,
 * converted knowingly: the chart treats them like timestamps and counters (see bigField).
 */
export function numericFields(v, prefix = "", out = [], depth = 0) {
  if (typeof v === "number" && Number.isFinite(v)) {
    out.push([prefix || "value", v]);
  } else if (typeof v === "bigint" || v instanceof Approx) {
    out.push([prefix || "value", asNumber(v)]);
  } else if (v && typeof v === "object" && !Array.isArray(v) && depth < 4) {
    for (const k of Object.keys(v)) numericFields(v[k], prefix ? `${prefix}.${k}` : k, out, depth + 1);
  }
  return out;
}

/** True when `n` (from numericFields) is an integer beyond 2^53: a timestamp or counter, not charted first. */
export function bigField(n) {
  return Number.isInteger(n) && !Number.isSafeInteger(n);
}

/** The number at dotted `path` of `v` ("value" for a bare number), or null; big integers as doubles. */
export function pick(v, path) {
  if (path === "value" && (typeof v === "number" || typeof v === "bigint" || v instanceof Approx)) return asNumber(v);
  let cur = v;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object" || cur instanceof Approx) return null;
    cur = cur[part];
  }
  cur = asNumber(cur);
  return typeof cur === "number" && Number.isFinite(cur) ? cur : null;
}

/**
 * What writes a record, named as `aimdb record list` and `aimdb graph` name it: the
 * protocol's writer kind (`source`, `transform`, `join`, `link`, `none`) from a record.list
 * entry or graph node, except that a passive record (`none`) remote clients may write is
 * `remote`. Whether remote clients may write is the separate `writable` flag.
 */
export function writerLabel(info) {
  const writer = String(info && info.writer !== undefined ? info.writer : "none");
  return writer === "none" && info.writable ? "remote" : writer;
}

/** A record's buffer as the records table shows it: `ring(N)`, `single_latest`, `mailbox`, `none`. */
export function bufferLabel(info) {
  return info.buffer === "spmc_ring" ? `ring(${info.capacity})` : String(info.buffer);
}

/** The markers after the writer: `writable` (remote clients may set it), `persisted`. */
export function recordFlags(info) {
  const flags = [];
  if (info.writable) flags.push("writable");
  if (info.persisted) flags.push("persisted");
  return flags;
}

/**
 * Put `key` into `node` as text with a line-break opportunity (<wbr>) after every dot, so a
 * long key wraps at its dots instead of being cut. textContent stays the key.
 */
export function setKeyText(node, key) {
  const parts = String(key).split(".");
  const kids = [];
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    kids.push(document.createTextNode(last ? part : `${part}.`));
    if (!last) kids.push(document.createElement("wbr"));
  });
  node.replaceChildren(...kids);
}
