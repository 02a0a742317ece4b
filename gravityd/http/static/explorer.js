// gravityd graph explorer: a track in the middle, its warp lanes around it.
//
// Plain ES module + SVG, no dependencies and no build step. Every request goes to this origin and
// only to public read endpoints (GET /tracks/..., GET /stats): there is no admin-only part, so
// nothing here needs (or ever sends) the admin token.
//
// State lives in the URL (/?track=ID&limit=N&direction=in&rejected=1), so a view can be shared,
// bookmarked and reloaded; travelling to a neighbour pushes a history entry, controls replace it.

const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
// a whole track id, as the server checks it; anything else (`..`, `../../metrics`) is never put
// into a request path
const TRACK_ID_RE = new RegExp(`^${UUID_RE.source}$`, UUID_RE.flags);
// what the server answers for a malformed id (GET /tracks/{id}: 400 invalid_track_id)
const BAD_TRACK_ID = Object.freeze({
  code: "invalid_track_id",
  message: "the track id must be a UUID",
});
const DIRECTIONS = ["out", "in", "both"];
const DEFAULTS = Object.freeze({ limit: 10, direction: "out", rejected: false });
const STATS_EVERY_MS = 2000;
const TOP_EVERY_MS = 20000;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (sel) => document.querySelector(sel);
const el = {
  main: $("#explorer"),
  form: $("#track-form"),
  input: $("#track-input"),
  centerTitle: $("#center-title"),
  centerId: $("#center-id"),
  centerCounts: $("#center-counts"),
  back: $("#back"),
  copy: $("#copy-link"),
  limit: $("#limit"),
  direction: $("#direction"),
  rejected: $("#show-rejected"),
  wrap: $("#graph-wrap"),
  svg: $("#graph"),
  message: $("#message"),
  tooltip: $("#tooltip"),
  lanesBody: $("#lanes tbody"),
  lanesCount: $("#lanes-count"),
  top: $("#top-tracks"),
  stats: $("#stats"),
};

/** The current view (what the URL says) and what was fetched for it. */
const state = {
  view: { track: null, ...DEFAULTS },
  center: null, // GET /tracks/{id}
  lanes: [], // GET /tracks/{id}/gravity_neighbors
  loadSeq: 0,
  abort: null,
  selected: null, // track id whose details are shown (hover, focus or tap)
  pinned: false, // a tap pinned the tooltip (touch screens)
  lastPointer: "mouse",
  drawn: { w: 0, h: 0 }, // the graph box size the SVG was last drawn for
};

// ------------------------------------------------------------------------------------- helpers

class ApiFailure extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

async function getJson(url, signal) {
  let res;
  try {
    res = await fetch(url, { signal, headers: { Accept: "application/json" } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiFailure(0, "network", "The server did not answer. Is gravityd running?");
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    const e = body && body.error;
    throw new ApiFailure(
      res.status,
      (e && e.code) || "http_error",
      (e && e.message) || `HTTP ${res.status} ${res.statusText}`.trim(),
      e && e.field,
    );
  }
  return body;
}

const shortId = (id) => (id ? String(id).slice(0, 8) : "");

/** "Title — Artist" where the catalogue knows the track, else the short id. */
function labelOf(item) {
  if (item && item.title) return item.artist ? `${item.title} — ${item.artist}` : item.title;
  return item ? shortId(item.track_id) : "";
}

function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, Math.max(1, max - 1)).trimEnd()}…`;
}

function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && a < 0.001) return x.toExponential(1);
  if (a >= 1000) return Math.round(x).toLocaleString("en-US");
  return Number(x.toFixed(digits)).toString();
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "none yet";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function node(tag, attrs = {}, text) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "className") n.className = v;
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== undefined) n.textContent = text;
  return n;
}

function svgNode(tag, attrs = {}) {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) n.setAttribute(k, String(v));
  }
  return n;
}

// ------------------------------------------------------------------------------- URL and history

function readView(search = location.search) {
  const q = new URLSearchParams(search);
  const raw = (q.get("track") || "").trim();
  const limit = Number.parseInt(q.get("limit") || "", 10);
  const direction = q.get("direction");
  return {
    track: raw || null,
    limit: Number.isInteger(limit) && limit >= 1 && limit <= 100 ? limit : DEFAULTS.limit,
    direction: DIRECTIONS.includes(direction) ? direction : DEFAULTS.direction,
    rejected: q.get("rejected") === "1",
  };
}

function urlOf(view) {
  const q = new URLSearchParams();
  if (view.track) q.set("track", view.track);
  if (view.limit !== DEFAULTS.limit) q.set("limit", String(view.limit));
  if (view.direction !== DEFAULTS.direction) q.set("direction", view.direction);
  if (view.rejected) q.set("rejected", "1");
  const s = q.toString();
  return `${location.pathname}${s ? `?${s}` : ""}`;
}

function depth() {
  return (history.state && history.state.depth) || 0;
}

/** Go to a view: a new history entry (travel) or the current one rewritten (controls). */
function go(view, { push }) {
  const url = urlOf(view);
  if (push) {
    if (url === `${location.pathname}${location.search}`) return load(view);
    history.pushState({ depth: depth() + 1 }, "", url);
  } else {
    history.replaceState({ depth: depth() }, "", url);
  }
  return load(view);
}

function travel(trackId) {
  hideTooltip();
  return go({ ...state.view, track: trackId }, { push: true });
}

// ------------------------------------------------------------------------------------- loading

function setMessage(kind, text) {
  el.message.dataset.kind = kind;
  el.message.textContent = text;
  el.message.hidden = !text;
}

function syncControls(view) {
  const limitValue = String(view.limit);
  if (![...el.limit.options].some((o) => o.value === limitValue)) {
    el.limit.append(node("option", { value: limitValue }, limitValue));
  }
  el.limit.value = limitValue;
  el.direction.value = view.direction;
  el.rejected.checked = view.rejected;
  el.back.disabled = depth() === 0;
}

async function load(view) {
  state.view = view;
  syncControls(view);
  if (state.abort) state.abort.abort();
  const seq = ++state.loadSeq;
  state.center = null;
  state.lanes = [];
  state.selected = null;
  hideTooltip();
  el.copy.hidden = !view.track;
  markCurrentTop();
  if (!view.track) {
    el.main.dataset.state = "idle";
    el.main.dataset.trackId = "";
    el.centerTitle.textContent = "Pick a track";
    el.centerId.textContent = "";
    el.centerCounts.textContent = "";
    document.title = "gravityd · warp lanes explorer";
    setMessage("welcome", "Pick one of the strongest tracks or paste a track id.");
    render();
    return;
  }
  el.main.dataset.state = "loading";
  el.main.dataset.trackId = view.track;
  el.centerTitle.textContent = shortId(view.track);
  el.centerId.textContent = view.track;
  el.centerCounts.textContent = "";
  if (!TRACK_ID_RE.test(view.track)) {
    // refused here, exactly as the server would refuse it, without a request
    render();
    showFailure(new ApiFailure(400, BAD_TRACK_ID.code, BAD_TRACK_ID.message, "id"));
    return;
  }
  setMessage("loading", "Loading warp lanes…");
  const ctl = new AbortController();
  state.abort = ctl;
  const id = encodeURIComponent(view.track);
  const q = new URLSearchParams({ limit: String(view.limit), direction: view.direction });
  q.set("with", "meta");
  if (view.rejected) q.set("rejected", "1");
  try {
    const [center, lanes] = await Promise.all([
      getJson(`/tracks/${id}`, ctl.signal),
      getJson(`/tracks/${id}/gravity_neighbors?${q}`, ctl.signal),
    ]);
    if (seq !== state.loadSeq) return;
    state.center = center;
    state.lanes = Array.isArray(lanes) ? lanes : [];
    showCenter(center);
    const shown = state.lanes.length;
    if (shown === 0) setMessage("empty", emptyText(center, view));
    else setMessage("", "");
    render();
    el.main.dataset.state = "ready"; // after the DOM is complete: tests and tools wait on it
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.loadSeq) return;
    render();
    showFailure(err);
  }
}

function emptyText(center, view) {
  if (center.blocked) {
    return "This track is blocked (taken down): it shows in no lanes, top tracks or radio picks until an operator unblocks it.";
  }
  const outN = center.out_lanes || 0;
  const inN = center.in_lanes || 0;
  if (outN + inN === 0) {
    return "No warp lanes for this track yet: no listener has moved to or from it (or the id is unknown).";
  }
  if (view.direction === "out" && inN > 0) {
    return `No lanes out of this track, but ${inN} lead into it: try direction "in" or "both".`;
  }
  if (view.direction === "in" && outN > 0) {
    return `No lanes into this track, but ${outN} lead out of it: try direction "out" or "both".`;
  }
  return "No warp lanes in this direction (listeners skipped away from all of them).";
}

function showFailure(err) {
  el.main.dataset.state = "error";
  if (err instanceof ApiFailure && err.status >= 400 && err.status < 500) {
    const badId = err.field === "id" || err.code === "invalid_track_id" || err.status === 404;
    el.centerTitle.textContent = badId ? "Not a track id" : "Bad request";
    setMessage(
      "bad-request",
      err.code === BAD_TRACK_ID.code
        ? `Not a valid track id: ${err.message} (such as 6f1c1d2e-8b7a-4a52-9a37-0d7d2f6f2a11).`
        : `The server refused this request: ${err.message}`,
    );
  } else if (err instanceof ApiFailure && err.status === 0) {
    el.centerTitle.textContent = "Server unreachable";
    setMessage("server-error", err.message);
  } else {
    el.centerTitle.textContent = "Server error";
    const detail = err instanceof ApiFailure ? `${err.status}: ${err.message}` : String(err);
    setMessage("server-error", `The server failed to answer (${detail}). Try again in a moment.`);
  }
  el.centerCounts.textContent = "";
}

function showCenter(center) {
  const label = labelOf(center);
  el.centerTitle.textContent = label;
  el.centerTitle.title = label;
  el.centerId.textContent = center.track_id;
  el.centerCounts.textContent = center.blocked
    ? `blocked · ${center.out_lanes} out · ${center.in_lanes} in`
    : `${center.out_lanes} out · ${center.in_lanes} in`;
  el.main.dataset.blocked = center.blocked ? "true" : "false";
  document.title = `${truncate(label, 40)} · gravityd explorer`;
}

// ------------------------------------------------------------------------------------ rendering

function render() {
  renderTable();
  renderGraph();
}

function laneKind(lane) {
  return lane.rejected ? "rejected" : lane.direction === "in" ? "in" : "out";
}

function renderTable() {
  const rows = state.lanes.map((lane, i) => {
    const kind = laneKind(lane);
    const tr = node("tr", {
      "data-track-id": lane.track_id,
      "data-direction": lane.direction,
      "data-rejected": lane.rejected ? "1" : null,
      className: `row ${kind}`,
    });
    tr.append(node("td", { className: "rank" }, String(i + 1)));
    const cell = node("td", { className: "track" });
    const link = node("a", {
      href: urlOf({ ...state.view, track: lane.track_id }),
      "data-track-id": lane.track_id,
      className: lane.title ? "known" : "unknown",
    });
    link.append(node("span", { className: "t" }, lane.title || shortId(lane.track_id)));
    if (lane.title && lane.artist) link.append(node("span", { className: "a" }, lane.artist));
    const ev = lane.evidence || {};
    const evText = `${fmtNum(ev.pos, 2)} · ${fmtNum(ev.neg, 2)} · ${fmtNum(ev.acc, 2)} · ${ev.n ?? "–"}`;
    cell.append(
      link,
      node(
        "span",
        { className: "visually-hidden sr-evidence" },
        `weight ${fmtNum(lane.weight)}; evidence pos, neg, acc, n: ${evText}`,
      ),
    );
    tr.append(cell);
    const dirText = lane.rejected ? "skip" : lane.direction;
    const dir = node("td", { className: "dir" });
    dir.append(node("span", { className: `badge ${kind}` }, dirText));
    tr.append(dir);
    const score = node("td", { className: "score" });
    const bar = node("span", { className: "bar", "aria-hidden": "true" });
    const fill = node("span");
    fill.style.width = `${Math.round(lane.normalized_score * 100)}%`; // CSSOM: fine under a strict CSP
    bar.append(fill);
    score.append(bar, node("span", { className: "num" }, lane.normalized_score.toFixed(2)));
    tr.append(score);
    tr.append(node("td", { className: "weight" }, fmtNum(lane.weight)));
    tr.append(node("td", { className: "evidence" }, evText));
    return tr;
  });
  el.lanesBody.replaceChildren(...rows);
  const positive = state.lanes.filter((l) => !l.rejected).length;
  const rejected = state.lanes.length - positive;
  el.lanesCount.textContent = state.view.track
    ? `${positive}${rejected ? ` + ${rejected} skipped` : ""}`
    : "";
}

/** Angles (radians, 0 = right, y down) for lanes: strongest nearest the horizontal. */
function assignAngles(lanes, direction, dense) {
  const sides = { right: [], left: [] };
  lanes.forEach((lane, i) => {
    let side;
    if (direction === "both") side = lane.direction === "in" ? "left" : "right";
    else side = i % 2 === 0 ? "right" : "left";
    sides[side].push(lane);
  });
  const out = new Map();
  for (const [side, items] of Object.entries(sides)) {
    const m = items.length;
    const half = Math.ceil((m - 1) / 2);
    const maxSpread = ((dense ? 88 : 78) * Math.PI) / 180;
    const step = half === 0 ? 0 : Math.min((26 * Math.PI) / 180, maxSpread / half);
    items.forEach((lane, j) => {
      const k = Math.ceil(j / 2);
      const sign = j % 2 === 1 ? 1 : -1;
      const offset = k * step * sign;
      out.set(lane.track_id, side === "right" ? offset : Math.PI - offset);
    });
  }
  return out;
}

function renderGraph() {
  const svg = el.svg;
  const w = Math.max(240, el.wrap.clientWidth);
  const h = Math.max(240, el.wrap.clientHeight);
  state.drawn = { w: el.wrap.clientWidth, h: el.wrap.clientHeight };
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.dataset.trackId = state.center ? state.center.track_id : "";
  const kids = [defs()];
  const narrow = w < 520;
  const cx = w / 2;
  const cy = h / 2;
  const labelRoom = narrow ? 28 : Math.min(170, w * 0.2);
  const rxMax = Math.max(60, cx - labelRoom - 20);
  const ryMax = Math.max(60, cy - 30);
  // distance from the centre falls with normalized_score over the range shown (down to 0 when
  // skipped-away lanes are shown), so a few strong lanes do not crowd the middle; the guide
  // rings are labelled with the scores they stand for
  const scores = state.lanes.filter((l) => !l.rejected).map((l) => l.normalized_score);
  let lo = state.lanes.some((l) => l.rejected) || !scores.length ? 0 : Math.min(...scores);
  lo = Math.max(0, Math.min(0.5, Math.floor(lo * 10) / 10));
  const innerFrac = 0.32;
  const radius = (score, max) =>
    max * (innerFrac + (1 - innerFrac) * ((1 - Math.max(score, lo)) / (1 - lo)));

  const rings = svgNode("g", { class: "rings", "aria-hidden": "true" });
  for (const s of [1, (1 + lo) / 2, lo]) {
    rings.append(
      svgNode("ellipse", { cx, cy, rx: radius(s, rxMax), ry: radius(s, ryMax), class: "ring" }),
    );
    const t = svgNode("text", { x: cx, y: cy - radius(s, ryMax) - 5, class: "ring-label" });
    t.textContent = s === 1 ? "score 1.0" : String(Number(s.toFixed(2)));
    rings.append(t);
  }
  kids.push(rings);

  if (!state.center) {
    svg.replaceChildren(...kids);
    return;
  }

  const dense = state.lanes.length > 24; // many lanes: smaller nodes and lines, no rank numbers
  const angles = assignAngles(state.lanes, state.view.direction, dense);
  const placed = state.lanes.map((lane, i) => {
    const score = lane.rejected ? 0 : Math.max(0, Math.min(1, lane.normalized_score));
    const a = angles.get(lane.track_id) ?? 0;
    const x = cx + radius(score, rxMax) * Math.cos(a);
    const y = cy + radius(score, ryMax) * Math.sin(a);
    const r = dense ? 3.5 + 5 * score : narrow ? 8 + 6 * score : 10 + 8 * score;
    return { lane, i, score, x, y, r, kind: laneKind(lane) };
  });
  const centerR = narrow ? 18 : 26;

  const lines = svgNode("g", { class: "lines", "aria-hidden": "true" });
  // weakest first, so strong lanes are drawn on top
  for (const p of [...placed].reverse()) {
    const dx = p.x - cx;
    const dy = p.y - cy;
    const len = Math.hypot(dx, dy) || 1;
    const ux = dx / len;
    const uy = dy / len;
    const gap = 5;
    let x1 = cx + ux * (centerR + gap);
    let y1 = cy + uy * (centerR + gap);
    let x2 = p.x - ux * (p.r + gap);
    let y2 = p.y - uy * (p.r + gap);
    if (p.lane.direction === "in") [x1, y1, x2, y2] = [x2, y2, x1, y1];
    lines.append(
      svgNode("line", {
        x1,
        y1,
        x2,
        y2,
        class: `lane ${p.kind}`,
        "data-track-id": p.lane.track_id,
        "stroke-width": (p.lane.rejected ? 2 : dense ? 0.8 + 3.5 * p.score : 1.5 + 7 * p.score)
          .toFixed(2),
        "marker-end": `url(#arrow-${p.kind})`,
      }),
    );
  }
  kids.push(lines);

  const nodes = svgNode("g", { class: "nodes" });
  for (const p of placed) {
    const g = svgNode("g", {
      class: `node lane-node ${p.kind}`,
      "data-track-id": p.lane.track_id,
      "data-direction": p.lane.direction,
      "data-rejected": p.lane.rejected ? "1" : null,
      tabindex: 0,
      role: "button",
      "aria-label": `${p.i + 1}. ${labelOf(p.lane)}, ${p.lane.rejected ? "skipped away" : p.lane.direction}, score ${fmtNum(p.lane.normalized_score, 2)}. Open this track.`,
      transform: `translate(${p.x.toFixed(1)} ${p.y.toFixed(1)})`,
    });
    g.append(svgNode("circle", { r: p.r + 8, class: "hit" }));
    g.append(svgNode("circle", { r: p.r, class: "dot" }));
    if (p.r >= 8) {
      const num = svgNode("text", { class: "rank", dy: "0.35em" });
      num.textContent = String(p.i + 1);
      g.append(num);
    }
    nodes.append(g);
    p.el = g;
  }
  kids.push(nodes);

  // the centre
  const c = svgNode("g", {
    class: "node center",
    "data-track-id": state.center.track_id,
    transform: `translate(${cx} ${cy})`,
  });
  c.append(svgNode("circle", { r: centerR + 14, class: "halo" }));
  c.append(svgNode("circle", { r: centerR, class: "dot" }));
  kids.push(c);
  svg.replaceChildren(...kids);

  // labels (titles only: artists are in the table and the tooltip), strongest first, each kept
  // only where it overlaps no other label, node or the legend; widths are measured, not guessed
  const labels = svgNode("g", { class: "labels", "aria-hidden": "true" });
  svg.append(labels);
  const boxes = placed.map((p) => ({ x0: p.x - p.r, x1: p.x + p.r, y0: p.y - p.r, y1: p.y + p.r }));
  boxes.push({ x0: cx - centerR, x1: cx + centerR, y0: cy - centerR, y1: cy + centerR });
  const legend = el.wrap.querySelector(".legend");
  if (legend) {
    boxes.push({ x0: 0, x1: legend.offsetLeft + legend.offsetWidth, y0: legend.offsetTop, y1: h });
  }
  const overlaps = (b, skip) =>
    boxes.some((o, j) => j !== skip && b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1);
  const maxChars = narrow ? 14 : 26;
  const font = narrow ? 11 : 12.5;
  placed.forEach((p, idx) => {
    const right = p.x >= cx;
    const lx = right ? p.x + p.r + 5 : p.x - p.r - 5;
    const t = svgNode("text", {
      x: lx,
      y: p.y,
      dy: "0.35em",
      class: `label ${p.kind}${p.lane.title ? "" : " unknown"}`,
      "text-anchor": right ? "start" : "end",
      "data-track-id": p.lane.track_id,
    });
    const full = p.lane.title || shortId(p.lane.track_id);
    t.textContent = truncate(full, maxChars);
    labels.append(t);
    let tw = t.getComputedTextLength();
    // shorten to the room left before the edge rather than dropping the label
    const room = right ? w - 4 - lx : lx - 4;
    for (let n = Math.min(full.length, maxChars) - 1; tw > room && n >= 6; n -= 1) {
      t.textContent = truncate(full, n);
      tw = t.getComputedTextLength();
    }
    const b = {
      x0: right ? lx : lx - tw,
      x1: right ? lx + tw : lx,
      y0: p.y - font * 0.7,
      y1: p.y + font * 0.7,
    };
    if (b.x0 < 2 || b.x1 > w - 2 || b.y0 < 2 || b.y1 > h - 2 || overlaps(b, idx)) {
      t.remove(); // box idx is this lane's own node, which its label may touch
      return;
    }
    boxes.push(b);
  });
  state.placed = new Map(placed.map((p) => [p.lane.track_id, p]));
  if (state.selected && state.placed.has(state.selected)) showTooltip(state.selected, state.pinned);
}

function defs() {
  const d = svgNode("defs");
  for (const kind of ["out", "in", "rejected"]) {
    const m = svgNode("marker", {
      id: `arrow-${kind}`,
      viewBox: "0 0 10 10",
      refX: 8,
      refY: 5,
      markerWidth: 9,
      markerHeight: 9,
      markerUnits: "userSpaceOnUse",
      orient: "auto-start-reverse",
      class: `arrow ${kind}`,
    });
    m.append(svgNode("path", { d: "M0,0 L10,5 L0,10 z" }));
    d.append(m);
  }
  const grad = svgNode("radialGradient", { id: "center-fill", cx: "50%", cy: "40%", r: "65%" });
  grad.append(svgNode("stop", { offset: "0%", "stop-color": "#f5f3ff" }));
  grad.append(svgNode("stop", { offset: "55%", "stop-color": "#a78bfa" }));
  grad.append(svgNode("stop", { offset: "100%", "stop-color": "#6d28d9" }));
  d.append(grad);
  return d;
}

// -------------------------------------------------------------------------------------- tooltip

function laneById(id) {
  return state.lanes.find((l) => l.track_id === id);
}

function showTooltip(id, pinned = false) {
  const lane = laneById(id);
  const p = state.placed && state.placed.get(id);
  if (!lane || !p) return;
  state.selected = id;
  state.pinned = pinned;
  const tip = el.tooltip;
  const kind = laneKind(lane);
  const ev = lane.evidence || {};
  const title = node("p", { className: "tip-title" }, lane.title || "Unknown title");
  const sub = node("p", { className: "tip-sub" }, lane.artist || lane.track_id);
  const dl = node("dl", { className: "tip-grid" });
  const rows = [
    ["direction", lane.rejected ? `${lane.direction} · skipped away` : lane.direction],
    ["weight", fmtNum(lane.weight)],
    ["normalized score", fmtNum(lane.normalized_score, 3)],
    ["pos / neg", `${fmtNum(ev.pos)} / ${fmtNum(ev.neg)}`],
    ["accepted (acc)", fmtNum(ev.acc)],
    ["traversals (n)", ev.n ?? "–"],
  ];
  for (const [k, v] of rows) dl.append(node("dt", {}, k), node("dd", {}, String(v)));
  const parts = [title, sub, dl];
  if (pinned) {
    const goBtn = node("button", { type: "button", id: "tooltip-go" }, "Open this track →");
    goBtn.addEventListener("click", () => travel(id));
    parts.push(goBtn);
  } else {
    parts.push(node("p", { className: "tip-hint" }, "Click to travel there"));
  }
  tip.replaceChildren(...parts);
  tip.dataset.trackId = id;
  const W = el.wrap.clientWidth;
  const H = el.wrap.clientHeight;
  const sheet = W < 520; // phones: a full-width sheet on the half of the graph away from the node
  tip.className = `tooltip ${kind}${pinned ? " pinned" : ""}${sheet ? " sheet" : ""}`;
  tip.hidden = false;
  const tw = tip.offsetWidth;
  const th = tip.offsetHeight;
  if (sheet) {
    tip.style.left = "8px";
    tip.style.top = `${p.y < H / 2 ? Math.max(8, H - th - 8) : 8}px`;
  } else {
    // beside, above or below the node: where it fits and hides the fewest other lanes
    const clampY = (y) => Math.min(Math.max(8, y), H - th - 8);
    const clampX = (x) => Math.min(Math.max(8, x), W - tw - 8);
    const gap = p.r + 12;
    const spots = [
      [p.x + gap, clampY(p.y - th / 2)],
      [p.x - gap - tw, clampY(p.y - th / 2)],
      [clampX(p.x - tw / 2), p.y - gap - th],
      [clampX(p.x - tw / 2), p.y + gap],
    ].filter(([x, y]) => x >= 8 && x + tw <= W - 8 && y >= 8 && y + th <= H - 8);
    const hidden = ([x, y]) => {
      let n = 0;
      for (const q of state.placed.values()) {
        if (q.x > x - q.r && q.x < x + tw + q.r && q.y > y - q.r && q.y < y + th + q.r) n += 1;
      }
      const cx = W / 2;
      const cy = H / 2;
      if (cx > x && cx < x + tw && cy > y && cy < y + th) n += 3;
      return n;
    };
    const [x, y] = spots.length
      ? spots.reduce((best, s) => (hidden(s) < hidden(best) ? s : best))
      : [8, 8];
    tip.style.left = `${x}px`;
    tip.style.top = `${y}px`;
  }
  highlight(id);
}

function hideTooltip() {
  state.selected = null;
  state.pinned = false;
  el.tooltip.hidden = true;
  highlight(null);
}

function highlight(id) {
  el.svg.classList.toggle("focusing", Boolean(id));
  for (const n of el.svg.querySelectorAll(".active")) n.classList.remove("active");
  for (const n of el.lanesBody.querySelectorAll("tr.active")) n.classList.remove("active");
  if (!id) return;
  const sel = `[data-track-id="${CSS.escape(id)}"]`;
  for (const n of el.svg.querySelectorAll(sel)) n.classList.add("active");
  const row = el.lanesBody.querySelector(`tr${sel}`);
  if (row) row.classList.add("active");
}

// ------------------------------------------------------------------------------- top and stats

function markCurrentTop() {
  for (const a of el.top.querySelectorAll("a[data-track-id]")) {
    if (a.dataset.trackId === state.view.track) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function refreshTop() {
  try {
    const items = await getJson("/tracks/top?limit=20");
    const lis = items.map((t) => {
      const li = node("li");
      const a = node("a", {
        href: urlOf({ ...state.view, track: t.track_id }),
        "data-track-id": t.track_id,
      });
      const name = node("span", { className: "top-name" });
      name.append(node("span", { className: "t" }, t.title || shortId(t.track_id)));
      if (t.title && t.artist) name.append(node("span", { className: "a" }, t.artist));
      a.append(name, node("span", { className: "lanes-n", title: "lanes" }, String(t.lanes)));
      li.append(a);
      return li;
    });
    if (lis.length === 0) {
      lis.push(node("li", { className: "muted" }, "No lanes yet: post some listening events."));
    }
    el.top.replaceChildren(...lis);
    markCurrentTop();
  } catch (err) {
    const msg = err instanceof ApiFailure ? err.message : String(err);
    el.top.replaceChildren(node("li", { className: "muted" }, `Could not load: ${msg}`));
  }
  setTimeout(refreshTop, TOP_EVERY_MS);
}

async function refreshStats() {
  if (!document.hidden) {
    try {
      const s = await getJson("/stats");
      $("#stat-events").textContent = fmtNum(s.events_per_s, 1);
      $("#stat-lag").textContent = s.fold_lag === 0 ? "0 (caught up)" : fmtNum(s.fold_lag, 0);
      $("#stat-nodes").textContent = fmtNum(s.nodes, 0);
      $("#stat-edges").textContent = fmtNum(s.edges, 0);
      $("#stat-snapshot").textContent = fmtAge(s.snapshot_age_s);
      el.stats.dataset.state = s.ready ? "ready" : "loading";
      el.stats.title = `cursor ${s.cursor} of ${s.last_id}; ${s.catalog_tracks ?? 0} catalogued titles`;
      $("#stats-status").textContent = s.ready ? "" : "The graph is still loading.";
    } catch {
      el.stats.dataset.state = "offline";
      $("#stats-status").textContent = "The daemon does not answer.";
    }
  }
  setTimeout(refreshStats, STATS_EVERY_MS);
}

// -------------------------------------------------------------------------------------- events

function extractId(text) {
  const t = text.trim();
  const m = t.match(UUID_RE);
  return m ? m[0].toLowerCase() : t;
}

el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const id = extractId(el.input.value);
  if (!id) {
    el.input.focus();
    return;
  }
  el.input.value = "";
  travel(id);
});

el.back.addEventListener("click", () => {
  if (depth() > 0) history.back();
});

el.copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(location.href);
    el.copy.textContent = "Copied";
  } catch {
    el.copy.textContent = "Copy failed";
  }
  setTimeout(() => {
    el.copy.textContent = "Copy link";
  }, 1500);
});

el.limit.addEventListener("change", () => {
  go({ ...state.view, limit: Number.parseInt(el.limit.value, 10) }, { push: false });
});
el.direction.addEventListener("change", () => {
  go({ ...state.view, direction: el.direction.value }, { push: false });
});
el.rejected.addEventListener("change", () => {
  go({ ...state.view, rejected: el.rejected.checked }, { push: false });
});

window.addEventListener("popstate", () => load(readView()));

// links to tracks (lanes table, top list) travel in-page; modified clicks open a new tab as usual
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-track-id]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  travel(a.dataset.trackId);
});

// graph nodes: hover/focus shows the details, click (or Enter) travels; on a touch screen the
// first tap shows the details and a button to travel, a second tap on the same node travels.
el.svg.addEventListener("pointerdown", (e) => {
  state.lastPointer = e.pointerType || "mouse";
});
el.svg.addEventListener("click", (e) => {
  const g = e.target.closest(".lane-node");
  if (!g) {
    hideTooltip();
    return;
  }
  const id = g.dataset.trackId;
  if (state.lastPointer === "touch" && !(state.pinned && state.selected === id)) {
    showTooltip(id, true);
    return;
  }
  travel(id);
});
el.svg.addEventListener("pointerover", (e) => {
  const g = e.target.closest(".lane-node");
  if (g && e.pointerType !== "touch" && !state.pinned) showTooltip(g.dataset.trackId);
});
el.svg.addEventListener("pointerout", (e) => {
  const g = e.target.closest(".lane-node");
  if (g && !state.pinned && !(e.relatedTarget && g.contains(e.relatedTarget))) hideTooltip();
});
el.svg.addEventListener("focusin", (e) => {
  const g = e.target.closest(".lane-node");
  if (g) showTooltip(g.dataset.trackId);
});
el.svg.addEventListener("focusout", () => {
  if (!state.pinned) hideTooltip();
});
el.svg.addEventListener("keydown", (e) => {
  const g = e.target.closest(".lane-node");
  if (!g) return;
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    travel(g.dataset.trackId);
  } else if (e.key === "Escape") {
    hideTooltip();
  }
});
el.lanesBody.addEventListener("pointerover", (e) => {
  const tr = e.target.closest("tr[data-track-id]");
  if (tr && e.pointerType !== "touch" && !state.pinned) showTooltip(tr.dataset.trackId);
});
el.lanesBody.addEventListener("pointerleave", () => {
  if (!state.pinned) hideTooltip();
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") hideTooltip();
});

// redraw when the graph's box changes size (rotation, window resize), not on the first report
let resizeTimer = 0;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (el.wrap.clientWidth !== state.drawn.w || el.wrap.clientHeight !== state.drawn.h) {
      renderGraph();
    }
  }, 60);
}).observe(el.wrap);

// ---------------------------------------------------------------------------------------- start

history.replaceState({ depth: depth() }, "", urlOf(readView()));
load(readView());
refreshTop();
refreshStats();
