// gravityd explorer, the Radio view: the radio's scoreboard (GET /radio/report) as a chart.
//
// Skip rate over time per arm (the context of the radio's radio_next events) as an SVG line
// chart, each arm's totals with their Wilson 95% interval, and the comparison of two arms (the
// difference, its interval, and in plain words whether it could be chance). Every number shown
// is the server's: this page computes no statistics, it only draws them. Same origin only, no
// dependencies; the chart's points carry their numbers as data-* attributes for tests.

const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 15000;
const ALPHA = 0.05; // the significance level of the plain words (the CLI uses the same)
const NULL_ARM = "null"; // how ?arms= names picks without a context
const COLORS = 6; // .arm-0 ... .arm-5 in explorer.css

const $ = (sel) => document.querySelector(sel);
const el = {
  view: $("#radio"),
  bucket: $("#radio-bucket"),
  a: $("#radio-a"),
  b: $("#radio-b"),
  verdict: $("#radio-verdict"),
  chart: $("#radio-chart"),
  legend: $("#radio-legend"),
  body: $("#radio-arms tbody"),
};

const state = { seq: 0, arms: [], pick: { a: null, b: null } };

const armName = (context) => (context === null ? NULL_ARM : context);
const armLabel = (context) => (context === null ? "(no context)" : context);

function fmtRate(x) {
  return x === null || x === undefined ? "–" : x.toFixed(3);
}

function fmtSigned(x) {
  return `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(3)}`;
}

function fmtP(p) {
  if (p === 0) return "< 1e-300";
  if (p < 0.001) return p.toExponential(1);
  return p.toPrecision(2);
}

async function getReport(params) {
  const q = new URLSearchParams(params);
  const res = await fetch(`/radio/report?${q}`, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const msg = (body && body.error && body.error.message) || `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return body;
}

function svg(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

/** The comparison in plain words: who skips less, and whether it could be chance. */
export function verdictWords(cmp) {
  const a = armLabel(cmp.a);
  const b = armLabel(cmp.b);
  if (cmp.difference === null) {
    return { text: `${b} vs ${a}: not comparable yet (an arm has no verdicts).`, significant: null };
  }
  const d = cmp.difference;
  const [lo, hi] = cmp.ci95;
  const numbers =
    `${b} minus ${a}: ${fmtSigned(d)} skip rate ` +
    `(95% CI ${fmtSigned(lo)} to ${fmtSigned(hi)}), p = ${fmtP(cmp.p_value)}`;
  if (cmp.p_value < ALPHA && d !== 0) {
    const who = d < 0 ? `${b} skips less than ${a}` : `${b} skips more than ${a}`;
    return { text: `${who}, and that is significant at the 5% level. ${numbers}.`, significant: true };
  }
  return {
    text: `No significant difference between ${b} and ${a} yet (5% level). ${numbers}.`,
    significant: false,
  };
}

function fillSelect(select, arms, chosen) {
  select.replaceChildren();
  for (const arm of arms) {
    const opt = document.createElement("option");
    opt.value = armName(arm.context);
    opt.textContent = armLabel(arm.context);
    if (opt.value === chosen) opt.selected = true;
    select.appendChild(opt);
  }
}

function renderTable(arms) {
  el.body.replaceChildren();
  arms.forEach((arm, i) => {
    const tr = document.createElement("tr");
    tr.dataset.context = armName(arm.context);
    const name = document.createElement("td");
    const dot = document.createElement("span");
    dot.className = `swatch arm-${i % COLORS}`;
    name.append(dot, armLabel(arm.context));
    tr.appendChild(name);
    const cells = [
      ["transitions", String(arm.transitions)],
      ["skipped", String(arm.skipped)],
      ["kept", String(arm.kept)],
      ["skip-rate", fmtRate(arm.skip_rate)],
      ["ci95", arm.ci95 ? `${fmtRate(arm.ci95[0])} – ${fmtRate(arm.ci95[1])}` : "–"],
    ];
    for (const [cls, text] of cells) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = text;
      tr.appendChild(td);
    }
    el.body.appendChild(tr);
  });
}

function renderLegend(arms) {
  el.legend.replaceChildren();
  arms.forEach((arm, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = `swatch arm-${i % COLORS}`;
    li.append(sw, armLabel(arm.context));
    el.legend.appendChild(li);
  });
}

const dateLabel = (ms, bucket) => {
  const iso = new Date(ms).toISOString();
  return bucket === "hour" ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(5, 10);
};

function renderChart(report) {
  const box = el.chart.getBoundingClientRect();
  const w = Math.max(320, Math.round(box.width) || 800);
  const h = Math.max(200, Math.round(box.height) || 300);
  const pad = { l: 44, r: 16, t: 12, b: 28 };
  const chart = el.chart;
  chart.replaceChildren(chart.querySelector("title") || svg("title"));
  chart.setAttribute("viewBox", `0 0 ${w} ${h}`);
  chart.classList.add("radio-chart");
  const points = report.arms.flatMap((a) => a.series.filter((p) => p.skip_rate !== null));
  chart.dataset.points = String(points.length);
  if (!points.length) {
    const t = svg("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, chart);
    t.textContent = "No radio picks with a verdict in this range yet.";
    return;
  }
  const times = points.map((p) => Date.parse(p.start));
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (t1 === t0) {
    const step = report.bucket === "hour" ? 3600e3 : 86400e3;
    t0 -= step;
    t1 += step;
  }
  const top = Math.min(1, Math.max(0.1, Math.ceil(Math.max(...points.map((p) => p.skip_rate)) * 10 + 1) / 10));
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (r) => h - pad.b - (r / top) * (h - pad.t - pad.b);
  // axes, a grid every 0.1 (or 0.25 on a tall range) and a few dates
  const stepY = top > 0.5 ? 0.25 : 0.1;
  for (let r = 0; r <= top + 1e-9; r += stepY) {
    svg("line", { class: "grid", x1: pad.l, x2: w - pad.r, y1: y(r), y2: y(r) }, chart);
    const label = svg("text", { x: pad.l - 6, y: y(r) + 4, "text-anchor": "end" }, chart);
    label.textContent = r.toFixed(2);
  }
  svg("line", { class: "axis", x1: pad.l, x2: pad.l, y1: pad.t, y2: h - pad.b }, chart);
  svg("line", { class: "axis", x1: pad.l, x2: w - pad.r, y1: h - pad.b, y2: h - pad.b }, chart);
  const ticks = Math.min(6, new Set(times).size);
  for (let i = 0; i < ticks; i += 1) {
    const t = ticks === 1 ? times[0] : t0 + ((t1 - t0) * i) / (ticks - 1);
    const anchor = ticks > 1 && i === 0 ? "start" : ticks > 1 && i === ticks - 1 ? "end" : "middle";
    const label = svg("text", { x: x(t), y: h - 8, "text-anchor": anchor }, chart);
    label.textContent = dateLabel(t, report.bucket);
  }
  report.arms.forEach((arm, i) => {
    const cls = `arm-${i % COLORS}`;
    const pts = arm.series.filter((p) => p.skip_rate !== null);
    if (!pts.length) return;
    const path = pts.map((p, k) => `${k ? "L" : "M"}${x(Date.parse(p.start)).toFixed(1)},${y(p.skip_rate).toFixed(1)}`);
    svg("path", { class: `series ${cls}`, d: path.join(" "), "data-context": armName(arm.context) }, chart);
    for (const p of pts) {
      const dot = svg(
        "circle",
        {
          class: `point ${cls}`,
          cx: x(Date.parse(p.start)).toFixed(1),
          cy: y(p.skip_rate).toFixed(1),
          r: 3.5,
          "data-context": armName(arm.context),
          "data-start": p.start,
          "data-skipped": p.skipped,
          "data-kept": p.kept,
          "data-rate": p.skip_rate,
        },
        chart,
      );
      const tip = svg("title", {}, dot);
      const n = p.skipped + p.kept;
      tip.textContent = `${armLabel(arm.context)} · ${p.start}${p.span ? " (whole day)" : ""}: skip rate ${fmtRate(p.skip_rate)} (${p.skipped} of ${n})`;
    }
  });
}

async function refresh() {
  const seq = ++state.seq;
  const bucket = el.bucket.value;
  try {
    const report = await getReport({ bucket });
    if (seq !== state.seq) return;
    state.arms = report.arms;
    const names = report.arms.map((a) => armName(a.context));
    if (!names.includes(state.pick.a)) state.pick.a = names[0] ?? null;
    if (!names.includes(state.pick.b) || state.pick.b === state.pick.a) {
      state.pick.b = names.find((n) => n !== state.pick.a) ?? null;
    }
    fillSelect(el.a, report.arms, state.pick.a);
    fillSelect(el.b, report.arms, state.pick.b);
    renderTable(report.arms);
    renderLegend(report.arms);
    renderChart(report);
    el.view.dataset.arms = String(report.arms.length);
    if (state.pick.a !== null && state.pick.b !== null) {
      const cmp = await getReport({ bucket, arms: `${state.pick.a},${state.pick.b}` });
      if (seq !== state.seq) return;
      const words = verdictWords(cmp.comparison);
      el.verdict.textContent = words.text;
      el.verdict.dataset.significant = words.significant === null ? "" : words.significant ? "yes" : "no";
      el.verdict.dataset.difference = String(cmp.comparison.difference);
      el.verdict.dataset.a = state.pick.a;
      el.verdict.dataset.b = state.pick.b;
    } else {
      el.verdict.textContent = report.arms.length
        ? "Only one arm so far: nothing to compare it with."
        : "No radio picks with a verdict yet. Send radio_next events with a context (the arm).";
      el.verdict.dataset.significant = "";
    }
    el.view.dataset.bucket = bucket;
    el.view.dataset.state = "ready";
  } catch (err) {
    if (seq !== state.seq) return;
    el.verdict.textContent = `The scoreboard could not be loaded: ${err.message}`;
    el.view.dataset.state = "error";
  }
}

function onPick(which) {
  state.pick[which] = (which === "a" ? el.a : el.b).value;
  const other = which === "a" ? "b" : "a";
  if (state.pick[other] === state.pick[which]) {
    state.pick[other] = state.arms.map((a) => armName(a.context)).find((n) => n !== state.pick[which]) ?? null;
  }
  el.view.dataset.state = "loading";
  refresh();
}

if (el.view) {
  el.bucket.addEventListener("change", () => {
    el.view.dataset.state = "loading";
    refresh();
  });
  el.a.addEventListener("change", () => onPick("a"));
  el.b.addEventListener("change", () => onPick("b"));
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(refresh, 200);
  });
  refresh();
  setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, REFRESH_MS);
}
