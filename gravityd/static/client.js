/**
 * gravityd browser client: queue listening events, batch them to POST /events, retry safely,
 * and hand whatever is left to navigator.sendBeacon when the page is hidden or unloaded.
 *
 * A dependency-free ES module for modern browsers; no build step. The daemon serves it at
 * GET /client.js with CORS headers, so a page of any allowed origin can load it directly:
 *
 *   import { createGravityClient } from "https://gravity.example.com/client.js";
 *   // or: const { createGravityClient } = await import("https://gravity.example.com/client.js");
 *
 *   const gravity = createGravityClient({
 *     url: "https://gravity.example.com", // the daemon; default: where this file came from
 *     onError: (err) => console.warn("gravityd", err.code, err.message, err.event),
 *   });
 *   gravity.track("play_start", trackId, { context: "radio" });
 *   gravity.track("skip", trackId, { meta: { elapsed_ms: 2300 } });
 *   const report = await gravity.flush();  // everything tracked so far is acknowledged
 *
 * Options of createGravityClient (all optional):
 *   url              daemon base URL, no trailing slash needed. Default: the directory this
 *                    module was loaded from (right when it is imported from the daemon itself).
 *   batchSize        most events per POST /events (default 50, at most 5000).
 *   flushIntervalMs  a partial batch is sent this long after its first event (default 1000).
 *   maxRetries       retries of one batch before its events are given up (default 10: with the
 *                    default backoff, 1.3 to 2.5 minutes of failures). Infinity retries forever.
 *   backoffBaseMs    retry step (default 500): the n-th retry waits between half and all of
 *                    min(backoffMaxMs, backoffBaseMs * 2^n) (jitter), and at least Retry-After.
 *   backoffMaxMs     longest retry delay (default 30000).
 *   beaconMaxBytes   largest sendBeacon body (default 60000; browsers cap keepalive bodies at
 *                    64 KiB in flight per page).
 *   userId           user_id added to every event that does not carry its own (a UUID).
 *   context          context added to every event that does not carry its own.
 *   sessionKey       sessionStorage key of the session id (default "gravityd.session_id").
 *   persistKey       localStorage key prefix for events a beacon could not take (default
 *                    "gravityd.unsent"); null turns that off. See "Page lifecycle".
 *   onError(err)     called for every event given up: err = {code, message, field?, status,
 *                    event}. code is the server's error code for a refused event (a 4xx other
 *                    than 408 and 429: never retried) or "retries_exhausted" after maxRetries
 *                    failed attempts (status 0: a network error).
 *
 * The client object:
 *   track(eventType, trackId, {meta, context, timestamp, userId} = {}) -> event_id
 *       Queues one event. eventType is one of play_start, play_10s, skip, radio_next, like
 *       (anything else throws a TypeError); the server validates the rest (a bad track id is
 *       reported through onError and flush()). timestamp: a Date, epoch milliseconds or an ISO
 *       8601 string; default now. Returns the event's event_id (a UUID), the idempotency key.
 *   flush() -> Promise<report>
 *       Sends everything queued now, without waiting for the timer, and resolves once every
 *       event tracked before the call is settled: acknowledged by the server (202), handed to
 *       sendBeacon, refused by the server, or given up after maxRetries. It never rejects; the
 *       report says what happened: {delivered, beaconed, rejected: [err...], failed: [err...],
 *       ok} where ok is true when nothing was rejected or given up. err is what onError gets.
 *       While the server is unreachable, flush() waits through the retries.
 *   close() -> Promise<report>
 *       flush(), then stop: timers and page listeners are removed, track() throws afterwards.
 *   sessionId   this tab's session id (read-only).
 *   pending     number of events not settled yet (read-only).
 * Other exports: EVENT_TYPES, DEFAULT_SESSION_KEY, DEFAULT_PERSIST_KEY, uuid4().
 *
 * Delivery: one request at a time, in order, so the log sees a session's events in the order
 * they were tracked. Network errors, 5xx, 429 and 408 are retried with exponential backoff and
 * jitter, honouring Retry-After (seconds or an HTTP date) when the browser may read it (a
 * cross-origin answer must list it in Access-Control-Expose-Headers). A retry resends the same
 * events with the same event_ids, so a request that succeeded but whose answer was lost is
 * stored once (the server deduplicates by event_id). Other 4xx answers are never retried: the
 * refused events are dropped and reported; valid events of the same batch are kept by the
 * server. Events tracked while a batch waits for its retry queue up behind it.
 *
 * Page lifecycle: on `pagehide`, and on `visibilitychange` to hidden (the last reliable moment
 * on mobile), everything not yet acknowledged (the queue, the batch in flight and a batch
 * waiting for its retry) goes to navigator.sendBeacon(url + "/events") as text/plain JSON
 * arrays (no CORS preflight), split to stay under beaconMaxBytes each. Events handed to the
 * beacon count as delivered (a page never sees a beacon's answer, so an event the server refuses
 * there is not reported). Browsers cap what may be in flight from a page at 64 KiB (Chromium
 * refuses a second 60 KB beacon while the first is still going), so a long queue does not fit:
 * what a beacon refuses stays queued (sent normally if the page stays or comes back from the
 * bfcache) and is also written to localStorage under persistKey + ":" + a per-client id. The next
 * client created on a page of the same origin (any tab, any later visit) adopts such leftovers
 * and sends them first. Events that go both ways, or that were in flight when the page went,
 * may reach the server twice; it stores them once (event_id).
 *
 * Session id: one per tab, kept in sessionStorage under sessionKey (default
 * "gravityd.session_id") of the page's origin, so reloads and navigations within the tab keep
 * it and a new tab gets a new one. Browsers copy sessionStorage into a tab duplicated by the
 * user or opened by window.open from this page, so such a tab continues the session. Without
 * usable storage (blocked, sandboxed) the id lives as long as the page.
 *
 * event_id: crypto.randomUUID() where available (secure contexts: https and loopback), else a
 * version 4 UUID from crypto.getRandomValues.
 */

export const EVENT_TYPES = Object.freeze([
  "play_start",
  "play_10s",
  "skip",
  "radio_next",
  "like",
]);
export const DEFAULT_SESSION_KEY = "gravityd.session_id";
export const DEFAULT_PERSIST_KEY = "gravityd.unsent";

const EVENT_TYPE_SET = new Set(EVENT_TYPES);
const SERVER_MAX_BATCH = 5000; // the contract's floor of max_batch_events

/** A random version 4 UUID; randomUUID exists only in secure contexts. */
export function uuid4() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; // version 4
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function tabSessionId(key) {
  try {
    const store = globalThis.sessionStorage;
    let id = store.getItem(key);
    if (!id) {
      id = uuid4();
      store.setItem(key, id);
    }
    return id;
  } catch {
    return uuid4(); // storage blocked: a session per page load
  }
}

/** Events that earlier pages of this origin could not send; taken out of storage. */
function adoptLeftovers(prefix) {
  if (!prefix) return [];
  const events = [];
  try {
    const store = globalThis.localStorage;
    const keys = [];
    for (let i = 0; i < store.length; i += 1) {
      const key = store.key(i);
      if (key !== null && key.startsWith(`${prefix}:`)) keys.push(key);
    }
    for (const key of keys) {
      try {
        const saved = JSON.parse(store.getItem(key));
        if (Array.isArray(saved)) events.push(...saved.filter((e) => e && e.event_id));
      } catch {
        // a damaged entry is dropped
      }
      store.removeItem(key);
    }
  } catch {
    // storage blocked: nothing to adopt
  }
  return events;
}

function record(event) {
  return { event, done: false, waiters: [] };
}

function defaultUrl() {
  return new URL(".", import.meta.url).href;
}

function isoTime(value) {
  if (value === undefined || value === null) return new Date().toISOString();
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "number") return new Date(value).toISOString();
  return String(value);
}

/** Milliseconds a Retry-After header asks for, or null when absent or unreadable. */
function retryAfterMs(response) {
  const raw = response.headers.get("Retry-After");
  if (raw === null || raw.trim() === "") return null;
  const secs = Number(raw);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const when = Date.parse(raw);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

/** Answers that say nothing about the events themselves: try again later. */
function isRetryable(status) {
  // 408: the server timed out reading the body (a slow mobile upload), so it refused nothing.
  return status === 408 || status === 429 || status >= 500;
}

export function createGravityClient(options = {}) {
  const {
    url = defaultUrl(),
    batchSize = 50,
    flushIntervalMs = 1000,
    maxRetries = 10,
    backoffBaseMs = 500,
    backoffMaxMs = 30000,
    beaconMaxBytes = 60000,
    userId = undefined,
    context = undefined,
    sessionKey = DEFAULT_SESSION_KEY,
    persistKey = DEFAULT_PERSIST_KEY,
    onError = undefined,
  } = options;
  if (!(batchSize >= 1)) throw new RangeError("batchSize must be at least 1");
  const endpoint = String(url).replace(/\/+$/, "") + "/events";
  const perBatch = Math.min(Math.floor(batchSize), SERVER_MAX_BATCH);
  const sessionId = tabSessionId(sessionKey);
  const encoder = new TextEncoder();

  // A record is one tracked event and its delivery state; `done` is set once, by settle().
  const queue = adoptLeftovers(persistKey).map((event) => record(event)); // in tracking order
  const ownKey = persistKey ? `${persistKey}:${uuid4()}` : null;
  let persisted = false; // ownKey holds leftovers
  let current = null; // {records, attempt, timer}: the batch in flight or waiting to retry
  let flushTimer = null;
  let closed = false;
  let unsettled = queue.length;
  let due = queue.length > 0; // send partial batches now: leftovers, timer fired, flush()
  const waiters = new Set(); // flush() calls: {remaining, report, resolve}

  function report(err) {
    if (typeof onError !== "function") return;
    try {
      onError(err);
    } catch (e) {
      setTimeout(() => {
        throw e; // surface a faulty callback without breaking delivery
      });
    }
  }

  function settle(record, outcome, err) {
    if (record.done) return;
    record.done = true;
    unsettled -= 1;
    if (err) report(err);
    for (const w of record.waiters) {
      if (outcome === "rejected") w.report.rejected.push(err);
      else if (outcome === "failed") w.report.failed.push(err);
      else w.report[outcome] += 1;
      w.remaining -= 1;
      if (w.remaining === 0) {
        waiters.delete(w);
        const r = w.report;
        r.ok = r.rejected.length === 0 && r.failed.length === 0;
        w.resolve(r);
      }
    }
    record.waiters = null;
    if (unsettled === 0 && persisted) persist([]);
  }

  function persist(events) {
    persisted = events.length > 0;
    try {
      if (!persisted) globalThis.localStorage.removeItem(ownKey);
      else globalThis.localStorage.setItem(ownKey, JSON.stringify(events));
    } catch {
      // storage blocked or full: these events live only as long as the page
    }
  }

  function scheduleTimer() {
    if (flushTimer !== null || closed || queue.length === 0) return;
    flushTimer = setTimeout(() => {
      flushTimer = null;
      due = true;
      pump();
    }, flushIntervalMs);
  }

  function pump() {
    while (queue.length && queue[0].done) queue.shift(); // beaconed while queued
    if (current !== null) return; // one request at a time; its end calls pump() again
    if (queue.length === 0) {
      due = waiters.size > 0;
      return;
    }
    if (!due && waiters.size === 0 && queue.length < perBatch) {
      scheduleTimer();
      return;
    }
    const records = queue.splice(0, perBatch);
    current = { records, attempt: 0, timer: null };
    send(current);
  }

  function finish(batch) {
    if (current === batch) {
      current = null;
      pump();
    }
  }

  function retryOrGiveUp(batch, live, status, waitMs, message) {
    if (current !== batch) return; // beaconed meanwhile
    if (batch.attempt >= maxRetries) {
      for (const r of live) {
        settle(r, "failed", {
          code: "retries_exhausted",
          message: `gave up after ${batch.attempt + 1} attempts: ${message}`,
          status,
          event: r.event,
        });
      }
      finish(batch);
      return;
    }
    // "Equal jitter": half of the exponential step, plus a random part of the other half, so
    // clients that failed together spread out; Retry-After is a floor, never shortened.
    const step = Math.min(backoffMaxMs, backoffBaseMs * 2 ** batch.attempt);
    const delay = Math.max(waitMs ?? 0, step / 2 + (Math.random() * step) / 2);
    batch.attempt += 1;
    batch.timer = setTimeout(() => {
      batch.timer = null;
      send(batch);
    }, delay);
  }

  async function send(batch) {
    const live = batch.records.filter((r) => !r.done);
    if (live.length === 0) return finish(batch);
    let response;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(live.map((r) => r.event)),
        credentials: "omit",
        mode: "cors",
      });
    } catch (e) {
      return retryOrGiveUp(batch, live, 0, null, `network error: ${e && e.message}`);
    }
    const status = response.status;
    if (isRetryable(status)) {
      response.body?.cancel().catch(() => {});
      return retryOrGiveUp(batch, live, status, retryAfterMs(response), `HTTP ${status}`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null; // an answer without JSON (a proxy's page): judged by its status alone
    }
    const byIndex = new Map();
    for (const item of (body && Array.isArray(body.rejected) && body.rejected) || []) {
      if (item && Number.isInteger(item.index)) byIndex.set(item.index, item.error || {});
    }
    if (status >= 200 && status < 300) {
      live.forEach((r, i) => {
        const e = byIndex.get(i);
        if (e) settle(r, "rejected", { ...e, status, event: r.event });
        else settle(r, "delivered");
      });
    } else {
      // 4xx (or an unexpected 1xx/3xx): never retried, every event of the request is dropped.
      const whole = (body && body.error) || { code: `http_${status}`, message: `HTTP ${status}` };
      live.forEach((r, i) => {
        settle(r, "rejected", { ...(byIndex.get(i) || whole), status, event: r.event });
      });
    }
    finish(batch);
  }

  function beaconAll() {
    const records = [];
    if (current !== null) records.push(...current.records.filter((r) => !r.done));
    records.push(...queue.filter((r) => !r.done));
    if (records.length === 0) return;
    let chunk = [];
    let parts = [];
    let size = 2; // the brackets
    const chunks = [];
    for (const r of records) {
      const json = JSON.stringify(r.event);
      const bytes = encoder.encode(json).length + 1;
      if (chunk.length && (size + bytes > beaconMaxBytes || chunk.length >= SERVER_MAX_BATCH)) {
        chunks.push([chunk, parts]);
        chunk = [];
        parts = [];
        size = 2;
      }
      chunk.push(r);
      parts.push(json);
      size += bytes;
    }
    chunks.push([chunk, parts]);
    for (const [rs, ps] of chunks) {
      if (!handOff(`[${ps.join(",")}]`)) break; // over the browser's quota: keep the rest
      for (const r of rs) settle(r, "beaconed");
    }
    if (current !== null && current.records.every((r) => r.done)) {
      if (current.timer !== null) clearTimeout(current.timer);
      current = null; // a fetch still in flight ends in finish(), which then does nothing
    }
    const left = queue.filter((r) => !r.done);
    queue.length = 0;
    queue.push(...left);
    if (ownKey !== null && (persisted || records.some((r) => !r.done))) {
      persist(records.filter((r) => !r.done).map((r) => r.event));
    }
    pump();
  }

  function handOff(text) {
    try {
      if (typeof navigator.sendBeacon === "function") return navigator.sendBeacon(endpoint, text);
      fetch(endpoint, {
        method: "POST",
        body: text,
        keepalive: true,
        mode: "no-cors",
        headers: { "Content-Type": "text/plain" },
      }).catch(() => {});
      return true;
    } catch {
      return false;
    }
  }

  const onPageHide = () => beaconAll();
  const onVisibility = () => {
    if (document.visibilityState === "hidden") beaconAll();
  };
  const onOnline = () => {
    // Connectivity is back: a batch waiting out its backoff goes now.
    if (current !== null && current.timer !== null) {
      clearTimeout(current.timer);
      current.timer = null;
      send(current);
    }
  };
  const hasWindow = typeof window !== "undefined" && typeof document !== "undefined";
  if (hasWindow) {
    window.addEventListener("pagehide", onPageHide);
    document.addEventListener("visibilitychange", onVisibility);
    window.addEventListener("online", onOnline);
  }
  if (queue.length) pump(); // adopted leftovers

  function track(eventType, trackId, { meta, context: ctx, timestamp, userId: uid } = {}) {
    if (closed) throw new Error("this gravityd client is closed");
    if (!EVENT_TYPE_SET.has(eventType)) {
      throw new TypeError(`eventType must be one of ${EVENT_TYPES.join(", ")}, got ${eventType}`);
    }
    const event = {
      event_id: uuid4(),
      session_id: sessionId,
      track_id: trackId,
      event_type: eventType,
      timestamp: isoTime(timestamp),
    };
    const c = ctx ?? context;
    if (c !== undefined && c !== null) event.context = c;
    if (meta !== undefined && meta !== null) event.meta = meta;
    const u = uid ?? userId;
    if (u !== undefined && u !== null) event.user_id = u;
    JSON.stringify(event); // a TypeError now (BigInt, cycles) rather than a stuck batch later
    queue.push(record(event));
    unsettled += 1;
    pump();
    return event.event_id;
  }

  function flush() {
    const outstanding = [];
    if (current !== null) outstanding.push(...current.records.filter((r) => !r.done));
    outstanding.push(...queue.filter((r) => !r.done));
    const empty = { delivered: 0, beaconed: 0, rejected: [], failed: [], ok: true };
    if (outstanding.length === 0) return Promise.resolve(empty);
    return new Promise((resolve) => {
      const w = { remaining: outstanding.length, report: empty, resolve };
      for (const r of outstanding) r.waiters.push(w);
      waiters.add(w);
      due = true;
      if (flushTimer !== null) {
        clearTimeout(flushTimer);
        flushTimer = null;
      }
      pump();
    });
  }

  async function close() {
    closed = true;
    const result = await flush();
    if (flushTimer !== null) clearTimeout(flushTimer);
    flushTimer = null;
    if (hasWindow) {
      window.removeEventListener("pagehide", onPageHide);
      document.removeEventListener("visibilitychange", onVisibility);
      window.removeEventListener("online", onOnline);
    }
    return result;
  }

  return Object.freeze({
    track,
    flush,
    close,
    get sessionId() {
      return sessionId;
    },
    get pending() {
      return unsettled;
    },
  });
}
