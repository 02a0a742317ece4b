/**
 * gravityd browser client: queue listening events, batch them to POST /events, retry safely,
 * hand whatever is left to navigator.sendBeacon when the page is hidden or unloaded, and keep
 * a copy of it in localStorage until a later POST /events confirms it (at least once).
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
 *   persistKey       localStorage key prefix for events handed to (or refused by) a beacon and
 *                    not yet confirmed (default "gravityd.unsent"); null turns off storing and
 *                    re-sending them. See "Page lifecycle".
 *   persistMaxEvents most events kept in localStorage by one client (default 5000).
 *   persistMaxBytes  most bytes (UTF-8 JSON) kept in localStorage by one client (default
 *                    1000000). Past either cap, or when localStorage is full, the oldest are
 *                    dropped from it and reported as "persist_dropped".
 *   onError(err)     called for every event given up: err = {code, message, field?, status,
 *                    event}. code is the server's error code for a refused event (a 4xx other
 *                    than 408 and 429: never retried), "retries_exhausted" after maxRetries
 *                    failed attempts (status 0: a network error), or "persist_dropped" for an
 *                    event whose stored copy was dropped to respect the caps above (status 0;
 *                    it is lost only if its beacon was lost too).
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
 *       Events adopted from earlier pages, or re-sent to confirm this page's beacons (see "Page
 *       lifecycle"), are waited for too while outstanding, and counted like the others.
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
 * waiting for its retry) is first written to localStorage under persistKey + ":" + a
 * per-client id, then goes to navigator.sendBeacon(url + "/events") as text/plain JSON arrays
 * (no CORS preflight), split to stay under beaconMaxBytes each. flush() counts events handed to
 * a beacon as "beaconed". A page never sees a beacon's answer (a 503, a 429 or a dropped
 * connection looks like success), so the stored copy is what makes delivery at least once: the
 * next client created on a page of the same origin (any tab, any later visit) adopts every
 * client's stored events (moving them under its own key), sends them first with POST /events,
 * and removes each from storage only once a POST answered for it: a 202 (stored now, or a
 * duplicate the beacon already delivered), or a final 4xx (dropped and reported through onError
 * and flush(), as for any event). Retryable failures leave them stored, even after maxRetries.
 * A page that comes back on screen (visibilitychange to visible, or a bfcache restore) re-sends
 * its own stored events the same way. Browsers cap what may be in flight from a page at 64 KiB
 * (Chromium refuses a second 60 KB beacon while the first is still going), so a long queue does
 * not fit: what a beacon refuses stays queued (sent normally if the page stays) as well as
 * stored. Storage is bounded by persistMaxEvents and persistMaxBytes per client. Since the
 * server stores an event_id once, at least once from the client is exactly once in the log.
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

/**
 * What earlier pages of this origin left in localStorage under prefix + ":*": {keys, events},
 * events without repeats (two pages may hold the same one). Nothing is removed here: the caller
 * removes the keys once it has written the events under its own key.
 */
function readLeftovers(prefix) {
  const keys = [];
  const events = [];
  if (!prefix) return { keys, events };
  try {
    const store = globalThis.localStorage;
    for (let i = 0; i < store.length; i += 1) {
      const key = store.key(i);
      if (key !== null && key.startsWith(`${prefix}:`)) keys.push(key);
    }
    const seen = new Set();
    for (const key of keys) {
      try {
        const saved = JSON.parse(store.getItem(key));
        if (!Array.isArray(saved)) continue;
        for (const e of saved) {
          if (!e || typeof e.event_id !== "string" || seen.has(e.event_id)) continue;
          seen.add(e.event_id);
          events.push(e);
        }
      } catch {
        // a damaged entry is dropped with its key
      }
    }
  } catch {
    // storage blocked: nothing to adopt
  }
  return { keys, events };
}

function removeKeys(keys) {
  for (const key of keys) {
    try {
      globalThis.localStorage.removeItem(key);
    } catch {
      return; // storage blocked
    }
  }
}

function isQuotaError(e) {
  return Boolean(
    e &&
      (e.name === "QuotaExceededError" ||
        e.name === "NS_ERROR_DOM_QUOTA_REACHED" ||
        e.code === 22 ||
        e.code === 1014),
  );
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
    persistMaxEvents = 5000,
    persistMaxBytes = 1000000,
    onError = undefined,
  } = options;
  if (!(batchSize >= 1)) throw new RangeError("batchSize must be at least 1");
  const endpoint = String(url).replace(/\/+$/, "") + "/events";
  const perBatch = Math.min(Math.floor(batchSize), SERVER_MAX_BATCH);
  const sessionId = tabSessionId(sessionKey);
  const encoder = new TextEncoder();

  // Events not yet acknowledged by a POST /events that must outlive this page (handed to a
  // beacon, refused by one, or adopted from an earlier page): this page's copy of what is under
  // ownKey, oldest first. Removed once a POST /events answers for them (202, or a final 4xx).
  const ownKey = persistKey ? `${persistKey}:${uuid4()}` : null;
  const stored = new Map(); // event_id -> {event, json, bytes}
  let storedBytes = 2; // the brackets
  let persisted = false; // ownKey exists in localStorage
  let adopting = []; // earlier pages' keys, removed once their events are under ownKey

  // A record is one tracked event and its delivery state; `done` is set once, by settle().
  const queue = []; // in tracking order
  let current = null; // {records, attempt, timer}: the batch in flight or waiting to retry
  let flushTimer = null;
  let closed = false;
  let unsettled = 0;
  let due = false; // send partial batches now: leftovers, timer fired, flush()
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
  }

  // ------------------------------------------------------------- localStorage (at least once)

  /** Another page of the origin adopted our key: it answers for those events now. */
  function checkClaimed() {
    if (!persisted) return;
    try {
      if (globalThis.localStorage.getItem(ownKey) !== null) return;
    } catch {
      return;
    }
    persisted = false;
    stored.clear();
    storedBytes = 2;
  }

  function dropStored(id, why) {
    const s = stored.get(id);
    stored.delete(id);
    storedBytes -= s.bytes;
    report({
      code: "persist_dropped",
      message:
        `no longer kept in localStorage (${why}): ` +
        "lost unless its beacon or this page delivers it",
      status: 0,
      event: s.event,
    });
  }

  /** Write `stored` under ownKey, oldest dropped (and reported) past the caps or the quota. */
  function save() {
    for (const id of stored.keys()) {
      if (stored.size <= persistMaxEvents && storedBytes <= persistMaxBytes) break;
      dropStored(id, "over persistMaxEvents or persistMaxBytes");
    }
    for (;;) {
      try {
        if (stored.size === 0) {
          if (persisted) globalThis.localStorage.removeItem(ownKey);
          persisted = false;
        } else {
          const parts = Array.from(stored.values(), (s) => s.json);
          globalThis.localStorage.setItem(ownKey, `[${parts.join(",")}]`);
          persisted = true;
        }
        return;
      } catch (e) {
        if (!isQuotaError(e) || stored.size === 0) return; // blocked: they live with the page
        if (adopting.length) {
          removeKeys(adopting); // their events are in `stored`: make room before dropping any
          adopting = [];
          continue;
        }
        let n = Math.ceil(stored.size / 4);
        for (const id of stored.keys()) {
          if (n-- <= 0) break;
          dropStored(id, "localStorage is full");
        }
      }
    }
  }

  /** Keep these events under ownKey until a POST /events answers for them. */
  function keep(events) {
    if (ownKey === null) return;
    checkClaimed();
    let added = false;
    for (const event of events) {
      if (stored.has(event.event_id)) continue;
      const json = JSON.stringify(event);
      const bytes = encoder.encode(json).length + 1;
      stored.set(event.event_id, { event, json, bytes });
      storedBytes += bytes;
      added = true;
    }
    if (added) save();
  }

  /** A POST /events answered for these events (acknowledged or refused for good). */
  function forget(events) {
    if (ownKey === null || stored.size === 0) return;
    checkClaimed();
    let removed = false;
    for (const { event_id: id } of events) {
      const s = stored.get(id);
      if (s === undefined) continue;
      stored.delete(id);
      storedBytes -= s.bytes;
      removed = true;
    }
    if (removed) save();
  }

  /** Queue stored events that no record of this page is delivering: they go first. */
  function resend(events) {
    const live = new Set();
    if (current !== null) for (const r of current.records) if (!r.done) live.add(r.event.event_id);
    for (const r of queue) if (!r.done) live.add(r.event.event_id);
    const fresh = events.filter((e) => !live.has(e.event_id)).map((e) => record(e));
    if (fresh.length === 0) return;
    queue.unshift(...fresh);
    unsettled += fresh.length;
    due = true;
    pump();
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
    const events = live.map((r) => r.event);
    let response;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(events),
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
    forget(events); // answered for, even those a beacon took meanwhile
    finish(batch);
  }

  function beaconAll() {
    const records = [];
    if (current !== null) records.push(...current.records.filter((r) => !r.done));
    records.push(...queue.filter((r) => !r.done));
    if (records.length === 0) return;
    // Stored before the beacons leave: a beacon's answer is never seen, so the next page
    // re-sends them (a page killed right after the beacons still has them).
    keep(records.map((r) => r.event));
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

  // Back on screen (another app, or the bfcache): confirm what the beacons took.
  const resendOwn = () => resend(Array.from(stored.values(), (s) => s.event));
  const onPageHide = () => beaconAll();
  const onPageShow = (e) => {
    if (e.persisted) resendOwn();
  };
  const onVisibility = () => {
    if (document.visibilityState === "hidden") beaconAll();
    else if (document.visibilityState === "visible") resendOwn();
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
    window.addEventListener("pageshow", onPageShow);
    document.addEventListener("visibilitychange", onVisibility);
    window.addEventListener("online", onOnline);
  }
  if (ownKey !== null) {
    // Leftovers of earlier pages: held under our own key before theirs go, then sent first.
    const { keys, events } = readLeftovers(persistKey);
    adopting = keys;
    keep(events);
    removeKeys(adopting);
    adopting = [];
    resend(events);
  }

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
      window.removeEventListener("pageshow", onPageShow);
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
