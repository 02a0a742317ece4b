// gravityd explorer, the Map and Route views: the whole graph at once (GET /galaxies,
// /galaxies/{galaxy}) and a playable path from one track to another (GET /route).
//
// Map: every galaxy's tracks at the server's layout (x, y), coloured by galaxy, sized by
// centrality. Hover shows a track's title (where the catalogue has one); a click opens its warp
// lanes in the explorer above. Route: two track ids, the path the server found, each hop with its
// lane score. Every number is the server's; same origin only, no dependencies. The drawn dots
// and hops carry their ids and numbers as data-* attributes, for tests.

const SVG_NS = "http://www.w3.org/2000/svg";
const GALAXIES = 50; // galaxies drawn
const PER_GALAXY = 400; // tracks drawn per galaxy (most central first)

const $ = (sel) => document.querySelector(sel);
const el = {
  view: $("#map"),
  chart: $("#map-chart"),
  status: $("#map-status"),
  tip: $("#map-tip"),
  legend: $("#map-legend"),
  routeForm: $("#route-form"),
  from: $("#route-from"),
  to: $("#route-to"),
  maxLen: $("#route-max-len"),
  routeStatus: $("#route-status"),
  hops: $("#route-hops tbody"),
};

function svg(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

async function getJson(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error((body && body.error && body.error.message) || `HTTP ${res.status}`);
    err.code = body && body.error && body.error.code;
    throw err;
  }
  return body;
}

/** A galaxy's colour: golden-angle hues, so neighbouring ids never look alike. */
export function galaxyColor(id) {
  return `hsl(${(id * 137.508) % 360} 70% 62%)`;
}

function label(t) {
  if (t.title) return t.artist ? `${t.title} — ${t.artist}` : t.title;
  return t.track_id;
}

function openTrack(trackId) {
  // The explorer above reads ?track= on load; a full navigation keeps its history model simple.
  location.href = `/?track=${encodeURIComponent(trackId)}`;
}

async function drawMap() {
  el.view.dataset.state = "loading";
  try {
    const list = await getJson(`/galaxies?limit=${GALAXIES}`);
    const pages = await Promise.all(
      list.galaxies.map((g) => getJson(`/galaxies/${g.galaxy}?limit=${PER_GALAXY}`)),
    );
    render(list, pages);
    el.view.dataset.state = "ready";
  } catch (err) {
    el.status.textContent = `Could not load the galaxies: ${err.message}`;
    el.view.dataset.state = "error";
  }
}

function render(list, pages) {
  const chart = el.chart;
  chart.replaceChildren();
  el.legend.replaceChildren();
  el.view.dataset.galaxies = String(list.count);
  if (!list.count) {
    el.status.textContent = "No galaxies yet: they are computed in the background once lanes exist.";
    return;
  }
  const tracks = pages.flatMap((p) => p.tracks.map((t) => ({ ...t, galaxy: p.galaxy })));
  const xs = tracks.map((t) => t.x);
  const ys = tracks.map((t) => t.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const w = chart.clientWidth || 800;
  const h = chart.clientHeight || 520;
  const pad = 16;
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
  const sy = (y) => pad + ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
  const top = Math.max(...tracks.map((t) => t.centrality)) || 1;
  chart.setAttribute("viewBox", `0 0 ${w} ${h}`);
  for (const t of tracks) {
    const dot = svg("circle", {
      cx: sx(t.x).toFixed(1),
      cy: sy(t.y).toFixed(1),
      r: (1.5 + 6 * Math.sqrt(t.centrality / top)).toFixed(2),
      fill: galaxyColor(t.galaxy),
      class: "map-dot",
      tabindex: 0,
      "data-track-id": t.track_id,
      "data-galaxy": t.galaxy,
      "data-centrality": t.centrality,
    }, chart);
    dot.addEventListener("mouseenter", () => showTip(dot, t));
    dot.addEventListener("mouseleave", hideTip);
    dot.addEventListener("click", () => openTrack(t.track_id));
    dot.addEventListener("keydown", (e) => {
      if (e.key === "Enter") openTrack(t.track_id);
    });
  }
  for (const g of list.galaxies) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = galaxyColor(g.galaxy);
    li.append(sw, `galaxy ${g.galaxy} · ${g.size}`);
    el.legend.append(li);
  }
  el.status.textContent =
    `${list.count} galaxies (as of position ${list.cursor}); dots sized by centrality. ` +
    "Click a track to open its lanes.";
}

function showTip(dot, t) {
  el.tip.textContent = `${label(t)} · galaxy ${t.galaxy} · centrality ${t.centrality.toPrecision(3)}`;
  const box = dot.getBoundingClientRect();
  const host = el.chart.getBoundingClientRect();
  el.tip.style.left = `${box.left - host.left + 10}px`;
  el.tip.style.top = `${box.top - host.top - 28}px`;
  el.tip.hidden = false;
}

function hideTip() {
  el.tip.hidden = true;
}

async function findRoute(event) {
  event.preventDefault();
  const q = new URLSearchParams({
    from: el.from.value.trim(),
    to: el.to.value.trim(),
    max_len: el.maxLen.value,
  });
  el.routeStatus.dataset.state = "loading";
  el.hops.replaceChildren();
  try {
    const route = await getJson(`/route?${q}`);
    el.routeStatus.textContent =
      `${route.hops} hop${route.hops === 1 ? "" : "s"}, score ${route.score.toPrecision(3)} ` +
      "(the product of the lanes' scores).";
    route.path.forEach((trackId, i) => {
      const tr = document.createElement("tr");
      tr.dataset.trackId = trackId;
      const score = i === 0 ? "" : route.scores[i - 1].toFixed(3);
      tr.dataset.score = score;
      const link = document.createElement("a");
      link.href = `/?track=${encodeURIComponent(trackId)}`;
      link.textContent = trackId;
      const cells = [String(i), link, score];
      for (const c of cells) {
        const td = document.createElement("td");
        td.append(c);
        tr.append(td);
      }
      el.hops.append(tr);
    });
    el.routeStatus.dataset.state = "ready";
  } catch (err) {
    el.routeStatus.textContent =
      err.code === "no_route" ? `No route: ${err.message}.` : `Could not route: ${err.message}`;
    el.routeStatus.dataset.state = err.code === "no_route" ? "none" : "error";
  }
}

if (el.view) {
  drawMap();
  el.routeForm.addEventListener("submit", findRoute);
}
