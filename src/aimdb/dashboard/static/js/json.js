// JSON for the page with integers beyond 2^53 kept exact.
//
// Plain JSON.parse turns 1796456131475486700 into the double 1796456131475486720. Where the
// browser has JSON.parse source text access (the reviver's third argument, `context.source`)
// and JSON.rawJSON, such an integer is parsed into a BigInt from its source digits and written
// back by stringify as those digits. Where it does not, the value is parsed as today (a
// rounded double) but wrapped in Approx, so the page shows it marked as approximate instead
// of passing the rounded digits off as the stored ones.

/** True when this JavaScript engine has reviver source access and JSON.rawJSON. */
export const EXACT_SUPPORTED = (() => {
  if (typeof JSON.rawJSON !== "function") return false;
  let source;
  try {
    JSON.parse("[9007199254740993]", (key, value, context) => {
      if (key === "0") source = context && context.source;
      return value;
    });
  } catch {
    return false;
  }
  return source === "9007199254740993";
})();

/** An integer beyond 2^53 that could not be parsed exactly: `value` is the rounded double. */
export class Approx {
  constructor(value) {
    this.value = value;
  }

  toJSON() {
    return this.value;
  }

  toString() {
    return `≈${BigInt(this.value)}`;
  }
}

// A run of 16 digits is the cheapest sign that a text may hold an integer beyond 2^53
// (9007199254740992 has 16 digits); texts without one skip the reviver altogether.
const LONG_DIGITS = /\d{16}/;
const INTEGER = /^-?\d+$/;

function exactReviver(key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && INTEGER.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}

function approxReviver(key, value) {
  // Only integer-valued numbers can have come from a long integer literal.
  if (typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value)) return new Approx(value);
  return value;
}

// True when `v` holds an integer-valued double beyond 2^53 (what JSON.parse makes of a long
// integer literal). With `valuesOnly`, only numbers inside a "value" key count: in a protocol
// frame the others (the top-level "ts", for example) are metadata the page uses as doubles.
function hasUnsafe(v, valuesOnly, depth = 0) {
  if (typeof v === "number") return !valuesOnly && Number.isInteger(v) && !Number.isSafeInteger(v);
  if (v === null || typeof v !== "object" || depth > 64) return false;
  if (Array.isArray(v)) {
    for (const x of v) if (hasUnsafe(x, valuesOnly, depth + 1)) return true;
    return false;
  }
  for (const k in v) if (hasUnsafe(v[k], valuesOnly && k !== "value", depth + 1)) return true;
  return false;
}

function parse(text, exact, valuesOnly) {
  const plain = JSON.parse(text);
  // The common case costs one JSON.parse and a walk: the reviver (several times slower)
  // only runs again over a text that holds a long integer where it matters.
  if (!LONG_DIGITS.test(text) || !hasUnsafe(plain, valuesOnly)) return plain;
  return JSON.parse(text, exact ? exactReviver : approxReviver);
}

/**
 * Parse JSON `text` (a record value, as typed into the write form). Integers beyond
 * Number.MAX_SAFE_INTEGER become BigInt when `exact` (the default where supported), else
 * Approx; everything else is what JSON.parse gives. Throws SyntaxError as JSON.parse does.
 */
export function parseJSON(text, exact = EXACT_SUPPORTED) {
  return parse(text, exact, false);
}

/**
 * Parse a protocol frame. As parseJSON, but only what is under a "value" key (record values,
 * also in history rows) is looked at: when such a value holds an integer beyond 2^53 the whole
 * frame is parsed again with big integers as BigInt (or Approx), protocol timestamps included
 * (read those with asNumber); otherwise it is exactly JSON.parse(text).
 */
export function parseFrame(text, exact = EXACT_SUPPORTED) {
  return parse(text, exact, true);
}

function bigReplacer(key, value) {
  return typeof value === "bigint" ? JSON.rawJSON(value.toString()) : value;
}

function hasBig(v, depth = 0) {
  if (typeof v === "bigint") return true;
  if (v === null || typeof v !== "object" || depth > 64) return false;
  for (const k in v) if (hasBig(v[k], depth + 1)) return true;
  return false;
}

/**
 * JSON.stringify that writes BigInt values as their exact digits (and Approx values as their
 * double). `space` as for JSON.stringify.
 */
export function stringifyJSON(value, space) {
  if (!hasBig(value)) return JSON.stringify(value, null, space);
  if (typeof JSON.rawJSON !== "function") {
    // Never reached with values parseJSON made here (no rawJSON means no BigInt from it).
    throw new TypeError("this browser cannot write integers beyond 2^53 exactly");
  }
  return JSON.stringify(value, bigReplacer, space);
}

/**
 * A protocol number (a timestamp in ns, for example) as a Number: a BigInt parseJSON made of
 * a long integer is converted knowingly (a double is precise enough for ms arithmetic).
 */
export function asNumber(x) {
  return typeof x === "bigint" ? Number(x) : x instanceof Approx ? x.value : x;
}
