// The remote protocol over a WebSocket: one JSON frame per text message.
//
// A Connection opens the socket, says hello (with the token kept in sessionStorage, if any),
// matches replies to requests by id, hands subscription events to a callback and, when the
// socket closes, fails every pending request and reconnects with exponential backoff and
// jitter. It never reconnects by itself after auth_failed (the page asks for a token) or
// version_mismatch (nothing a retry can fix). Frames are parsed and written with json.js, so
// integers beyond 2^53 in values stay exact (BigInt) both ways.

import { parseFrame, stringifyJSON } from "./json.js";

export const CLIENT_VERSION = "1.3";
const TOKEN_KEY = "aimdb.dashboard.token";
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;
const CALL_TIMEOUT_MS = 15000;

/** A request the server answered with an error frame. */
export class RemoteError extends Error {
  constructor(code, message, details) {
    super(`${code}: ${message}`);
    this.code = code;
    this.reason = message;
    this.details = details;
  }
}

/** True when protocol version string `have` ("MAJOR.MINOR") is at least `want`. */
export function versionAtLeast(have, want) {
  if (typeof have !== "string") return false;
  const [hM, hm] = have.split(".").map((x) => parseInt(x, 10));
  const [wM, wm] = want.split(".").map((x) => parseInt(x, 10));
  if (!Number.isFinite(hM) || !Number.isFinite(hm)) return false;
  return hM > wM || (hM === wM && hm >= wm);
}

/** The backoff before reconnect attempt `attempt` (1, 2, ...) in ms, with ±25 % jitter. */
export function backoffMs(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + random() * 0.5));
}

export function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives as long as this page
  }
}

export class Connection {
  /**
   * @param {string} url the ws:// or wss:// address of /ws
   * @param {object} handlers onReady(hello), onEvent(frame), onState({state, ...}), onError(text)
   */
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.attempt = 0;
    this.retryTimer = null;
    this.keepAliveTimer = null;
    this.hello = null;
    this.token = storedToken();
    this.stopped = false;
    this.halted = false; // auth_failed / version_mismatch: wait for the user
  }

  start() {
    this.open();
  }

  /** Try again now with `token` (the token form). */
  retryWithToken(token) {
    this.token = token;
    storeToken(token);
    this.halted = false;
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close();
    else this.open();
  }

  open() {
    this.retryTimer = null;
    this.h.onState({ state: "connecting", attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.h.onError(`cannot open ${this.url}: ${err}`);
      this.scheduleReconnect("the address was refused");
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.greet(ws);
    ws.onmessage = (msg) => this.receive(msg.data);
    ws.onclose = (ev) => this.closed(ws, ev);
  }

  async greet(ws) {
    const params = { version: CLIENT_VERSION, client: "aimdb-dashboard" };
    if (this.token) params.token = this.token;
    let hello;
    try {
      hello = await this.call("hello", params);
    } catch (err) {
      if (ws !== this.ws) return;
      if (err instanceof RemoteError && (err.code === "auth_failed" || err.code === "unauthorized")) {
        this.halted = true;
        this.h.onState({ state: "unauthorized", reason: err.reason, hadToken: Boolean(this.token) });
      } else if (err instanceof RemoteError && err.code === "version_mismatch") {
        this.halted = true;
        this.h.onState({ state: "incompatible", reason: err.reason });
      }
      // Anything else: the socket closes (or is closed below) and we retry.
      if (!this.halted) ws.close();
      return;
    }
    if (ws !== this.ws) return;
    this.hello = hello;
    this.attempt = 0;
    this.startKeepAlive(hello);
    this.h.onState({ state: "connected" });
    this.h.onReady(hello);
  }

  startKeepAlive(hello) {
    clearInterval(this.keepAliveTimer);
    const idle = hello.limits && typeof hello.limits.idle_timeout === "number" ? hello.limits.idle_timeout : null;
    const every = idle ? Math.max(1000, Math.min(30000, (idle * 1000) / 3)) : 30000;
    this.keepAliveTimer = setInterval(() => {
      this.call("ping").catch(() => {});
    }, every);
  }

  receive(data) {
    if (typeof data !== "string") return;
    let frame;
    try {
      frame = parseFrame(data);
    } catch {
      this.h.onError("the server sent a frame that is not JSON; skipped");
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if (typeof frame.event === "string") {
      this.h.onEvent(frame);
      return;
    }
    const waiter = frame.id !== null && frame.id !== undefined ? this.pending.get(frame.id) : undefined;
    if (waiter) {
      this.pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.error) {
        const e = frame.error;
        waiter.reject(new RemoteError(String(e.code), String(e.message), e.details));
      } else {
        waiter.resolve(frame.result);
      }
    } else if (frame.error) {
      // id null: a connection-level error (idle_timeout, too_many_connections, ...).
      this.h.onError(`${frame.error.code}: ${frame.error.message}`);
    }
  }

  /** Send one request; resolves with its result, rejects with RemoteError or Error. */
  call(method, params) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = this.nextId++;
    const frame = params === undefined ? { id, method } : { id, method, params };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error(`${method}: no reply within ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      let text;
      try {
        text = stringifyJSON(frame);
      } catch (err) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(err);
        return;
      }
      ws.send(text);
    });
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.hello = null;
    clearInterval(this.keepAliveTimer);
    for (const [, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error("connection closed"));
    }
    this.pending.clear();
    if (this.stopped) return;
    if (this.halted) return;
    const why = ev.code === 1006 || !ev.code ? "connection lost" : `closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`;
    this.scheduleReconnect(why);
  }

  scheduleReconnect(why) {
    this.attempt += 1;
    const delay = backoffMs(this.attempt);
    this.h.onState({ state: "disconnected", reason: why, attempt: this.attempt, retryInMs: delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}
